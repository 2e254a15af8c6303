#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what it needs, then lints and tests.
# Set CERTFORM_SKIP_INSTALL=1 to skip the install step on a machine already set up.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${CERTFORM_SKIP_INSTALL:-0}" != "1" ]; then
  # Real servers the integration tests start (Pebble, BIND 9, HAProxy, nginx, PostgreSQL, OpenSSH),
  # openssl, and headless Chromium (the HTML report's test loads the page in it).
  missing=""
  for tool in openssl pebble pebble-challtestsrv named haproxy nginx sshd ssh-keygen chromium; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing="$missing $tool"
  done
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        openssl pebble bind9 bind9-utils haproxy nginx openssh-server postgresql chromium >/dev/null
    else
      echo "missing:$missing (apt-get install openssl pebble bind9 haproxy nginx openssh-server postgresql chromium)" >&2
      exit 1
    fi
  fi
  mkdir -p /run/sshd 2>/dev/null || true  # sshd's privilege-separation directory
  python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
fi

python3 -m ruff check .
python3 -m ruff format --check .
# Two workers: most of a test's time is a certform process or a server answering, so
# two run side by side on two cores (CERTFORM_TEST_WORKERS=0 runs in this process).
python3 -m pytest -q -p no:cacheprovider -n "${CERTFORM_TEST_WORKERS:-2}" "$@"
