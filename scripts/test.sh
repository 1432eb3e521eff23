#!/usr/bin/env bash
# Command 2 of the README: install everything the tests need (DCMTK,
# PostgreSQL and HAProxy from Debian's packages, and OpenSSL's headers so the compiled codec
# hashes datasets as it writes them; the tests start their own
# PostgreSQL server and HAProxy on loopback, the package with its compiled
# codec and the test extras) and run the whole suite: lint, types, every test on the compiled codec, then
# the suite again on the pure-Python codec (DICOMNET_NO_EXTENSIONS=1).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's packages: DCMTK (the interop peers), PostgreSQL and HAProxy (started by
# the tests on loopback), OpenSSL's headers (the compiled codec hashes datasets as
# it writes them), iproute2 and util-linux (ip, ss, unshare: the address tests and
# the docs examples run in network namespaces), pypy3 (setup.py builds the pure
# package under PyPy). One apt-get update, only when something is missing.
need=()
[ -x /usr/bin/storescp ] && [ -x /usr/bin/dcmqrscp ] || need+=(dcmtk)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
[ -e /usr/include/openssl/evp.h ] || need+=(libssl-dev)
command -v ip >/dev/null && command -v ss >/dev/null || need+=(iproute2)
command -v unshare >/dev/null || need+=(util-linux)
command -v pypy3 >/dev/null || need+=(pypy3)
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The test extra carries the build requirements (the packaging tests build without
# isolation); the docs extra builds the site; the codecs extra converts transfer syntaxes.
python -m pip install -q --disable-pip-version-check -e '.[test,speed,docs,codecs]'

python -c "import dicomnet.core.codec as c; assert c.IMPLEMENTATION == 'cython', 'compiled codec missing'; print('codec:', c.IMPLEMENTATION)"
ruff check src tests bench tools
mypy
python -m pytest -q
DICOMNET_NO_EXTENSIONS=1 python -m pytest -q -m "not slow"
