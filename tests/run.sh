#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what it needs, then lints and tests.
# Set CERTFORM_SKIP_INSTALL=1 to skip the install step on a machine already set up.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${CERTFORM_SKIP_INSTALL:-0}" != "1" ]; then
  if ! command -v openssl >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl
    else
      echo "openssl is required (apt-get install openssl)" >&2
      exit 1
    fi
  fi
  python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
fi

python3 -m ruff check .
python3 -m ruff format --check .
python3 -m pytest -q -p no:cacheprovider "$@"
