#!/bin/sh
# Throwaway files to try the example with, laid out as certbot's live directory:
# cert.pem, chain.pem (the intermediate), fullchain.pem and privkey.pem for
# www.example.com (90 days), under a demo root and intermediate whose keys are
# deleted at the end.  Never use them for real.
#
#   sh make-demo-files.sh [DIR]        (default: live/www.example.com)
set -eu
dir=${1:-live/www.example.com}
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077

# key_and_csr SUBJECT KEY CSR: a new P-256 key and its certificate request.
key_and_csr() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "$1" -keyout "$2" -out "$3" 2>/dev/null
}

# sign CSR ISSUER_CERT ISSUER_KEY DAYS OUT EXTENSION...: the certificate, random serial.
sign() {
    csr=$1 issuer=$2 issuer_key=$3 days=$4 out=$5
    shift 5
    printf '%s\n' "$@" subjectKeyIdentifier=hash authorityKeyIdentifier=keyid > "$work/ext"
    openssl x509 -req -in "$csr" -CA "$issuer" -CAkey "$issuer_key" -days "$days" \
        -set_serial "0x$(openssl rand -hex 15)" -extfile "$work/ext" -out "$out" 2>/dev/null
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -days 3650 \
    -subj "/O=Example/CN=Demo Root CA" -keyout "$work/root.key" -out "$work/root.pem" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
key_and_csr "/O=Example/CN=Demo Issuing CA" "$work/ca.key" "$work/ca.csr"
sign "$work/ca.csr" "$work/root.pem" "$work/root.key" 1825 "$dir/chain.pem" \
    basicConstraints=critical,CA:TRUE,pathlen:0 keyUsage=critical,keyCertSign,cRLSign
key_and_csr "/CN=www.example.com" "$dir/privkey.pem" "$work/www.csr"
sign "$work/www.csr" "$dir/chain.pem" "$work/ca.key" 90 "$dir/cert.pem" \
    basicConstraints=critical,CA:FALSE keyUsage=critical,digitalSignature \
    extendedKeyUsage=serverAuth subjectAltName=DNS:www.example.com
cat "$dir/cert.pem" "$dir/chain.pem" > "$dir/fullchain.pem"
cp "$work/root.pem" "$dir/root.pem"   # certbot has no such file: what clients trust
chmod 644 "$dir/cert.pem" "$dir/chain.pem" "$dir/fullchain.pem" "$dir/root.pem"
echo "Wrote $dir/cert.pem, chain.pem, fullchain.pem, privkey.pem and root.pem"
