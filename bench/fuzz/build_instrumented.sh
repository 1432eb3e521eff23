#!/usr/bin/env bash
# Build dicomnet.core._pdu with libFuzzer's coverage instrumentation, for
# fuzz_codec.py to be guided by the compiled codec's own branches.
#
#   bash bench/fuzz/build_instrumented.sh            # writes build/fuzz/_pdu.*.so
#   DICOMNET_FUZZ_EXTENSION=build/fuzz/_pdu.cpython-311-x86_64-linux-gnu.so \
#       python bench/fuzz/fuzz_codec.py -max_total_time=600 bench/fuzz/corpus
#
# Uses clang when it is installed, else the clang inside the ziglang wheel
# (pip install ziglang). The directives are those of setup.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=build/fuzz
mkdir -p "$out"
python -m cython -3 -X boundscheck=False -X wraparound=False src/_pdu.pyx -o "$out/_pdu.c"
include=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
suffix=$(python -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
if command -v clang >/dev/null; then
    cc=(clang)
else
    cc=(python -m ziglang cc -target x86_64-linux-gnu.2.31)
fi
"${cc[@]}" -shared -fPIC -O1 \
    -fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp \
    -I"$include" -o "$out/_pdu$suffix" "$out/_pdu.c"
echo "$out/_pdu$suffix"
