#!/usr/bin/env bash
# Command 2 of the README: install everything the tests need (DCMTK,
# PostgreSQL and HAProxy from Debian's packages, and OpenSSL's headers so the compiled codec
# hashes datasets as it writes them; the tests start their own
# PostgreSQL server and HAProxy on loopback, the package with its compiled
# codec and the test extras) and run the whole suite: lint, types, every test on the compiled codec, then
# the suite again on the pure-Python codec (DICOMNET_NO_EXTENSIONS=1).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/storescp ] || [ ! -x /usr/bin/dcmqrscp ] || [ ! -x /usr/sbin/haproxy ] \
    || ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || [ ! -e /usr/include/openssl/evp.h ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk postgresql haproxy libssl-dev >/dev/null
fi
# ip and ss (iproute2), unshare (util-linux): the listener's address tests in network namespaces
if ! command -v ip >/dev/null || ! command -v ss >/dev/null || ! command -v unshare >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 util-linux >/dev/null
fi
# The test extra carries the build requirements (the packaging tests build without
# isolation); the docs extra builds the site; the docs examples also run in network
# namespaces (unshare, ip: above); setup.py is checked to build the pure package
# under PyPy (Debian's pypy3).
if ! command -v pypy3 >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pypy3 >/dev/null
fi
python -m pip install -q --disable-pip-version-check -e '.[test,speed,docs,codecs]'

python -c "import dicomnet.core.codec as c; assert c.IMPLEMENTATION == 'cython', 'compiled codec missing'; print('codec:', c.IMPLEMENTATION)"
ruff check src tests bench
mypy
python -m pytest -q
DICOMNET_NO_EXTENSIONS=1 python -m pytest -q -m "not slow"
