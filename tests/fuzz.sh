#!/usr/bin/env bash
# Fuzz the native decoder (collector._native) under AddressSanitizer + UBSan with atheris.
#
# The extension is built with clang and -fsanitize=address,undefined,fuzzer-no-link in a copy of
# the repository ($FUZZ_BUILD), so the normal build in the repository is untouched; the copy is
# then put first on PYTHONPATH, with atheris' ASan runtime (which carries libFuzzer and UBSan's
# handlers) preloaded and PYTHONMALLOC=malloc, so that overruns of Python-allocated buffers (the
# input bytes, the output bytes) are caught too. Coverage comes from the native code.
#
#   tests/fuzz.sh build                  # (re)build the instrumented copy
#   tests/fuzz.sh run [SECONDS] [ARGS]   # fuzz for SECONDS (default 600); ARGS go to libFuzzer
#                                        # (e.g. -seed=7, -fork=2); both formats (byte 0 picks)
#   tests/fuzz.sh leak [ROUNDS]          # memory stays flat over ROUNDS passes of the corpus, and
#                                        # LeakSanitizer finds nothing lost over the corpus
#   tests/fuzz.sh repro FILE...          # run inputs once under the sanitizers (crash-* files)
#   tests/fuzz.sh min FILE               # minimise a crashing input (libFuzzer -minimize_crash)
#   tests/fuzz.sh cov                    # which .pyx lines the corpus reaches (a gcov build)
#   tests/fuzz.sh all [SECONDS]          # build, run, leak
#
# Needs clang (apt-get install -y clang), atheris and Cython (pip install -e ".[fuzz]").
# Work files (the growing corpus, crash artifacts, logs) go to $FUZZ_WORK (default
# /tmp/fuzzwork); the curated seeds live in tests/fuzz_corpus/, and the vectors' seeds are made
# fresh by `tests/fuzz_native.py --make-seeds`.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FUZZ_BUILD:-/tmp/fuzzbuild}
WORK=${FUZZ_WORK:-/tmp/fuzzwork}
PY=$(python3 -c 'import sys; print(sys.executable)')   # the real interpreter, not a shim
ATHERIS=$("$PY" -c 'import atheris; print(atheris.path())')
export PATH="$(dirname "$PY"):$PATH"   # libFuzzer re-runs the script itself (-minimize_crash, -fork)
# every UBSan report aborts, like an ASan one
SAN="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined"

build() {
    command -v clang >/dev/null || { echo "clang is missing: apt-get install -y clang" >&2; exit 2; }
    rm -rf "$BUILD"
    mkdir -p "$BUILD"
    # sources only: no built extension, no generated C (cythonize writes it anew)
    tar -C "$REPO" --exclude='*.so' --exclude='native/*.c' --exclude='__pycache__' \
        -cf - collector native proto setup.py pyproject.toml | tar -C "$BUILD" -xf -
    cat "$REPO"/native/*.pyx "$REPO"/native/*.pxi "$REPO"/native/*.h | sha256sum | tee "$BUILD/pyx.sha256"
    # with CC set, Python's own CFLAGS (-O3 -fwrapv ...) are not used: signed overflow is
    # undefined here, so UBSan checks it (the normal gcc build has -fwrapv)
    (cd "$BUILD" && CC=clang LDSHARED="clang -shared" \
        CFLAGS="$SAN -g -fno-omit-frame-pointer" LDFLAGS="$SAN" \
        "$PY" setup.py build_ext --inplace >"$BUILD/build.log" 2>&1) || true
    so=$(ls "$BUILD"/collector/_native*.so 2>/dev/null || true)
    [ -n "$so" ] && nm -D "$so" >"$BUILD/symbols.txt"
    if [ -z "$so" ] || ! grep -q __asan_report_load8 "$BUILD/symbols.txt" \
            || ! grep -q __sanitizer_cov_8bit_counters_init "$BUILD/symbols.txt"; then
        tail -30 "$BUILD/build.log" >&2
        echo "the instrumented build failed (see $BUILD/build.log)" >&2
        exit 1
    fi
    echo "instrumented: $so"
}

sanitized() {  # run a command with the sanitizer runtime and the instrumented copy
    LD_PRELOAD="$ATHERIS/asan_with_fuzzer.so" \
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1}" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
    ASAN_SYMBOLIZER_PATH=$(command -v llvm-symbolizer || true) \
    PYTHONMALLOC=malloc PYTHONPATH="$BUILD" FUZZ_COMPARE="${FUZZ_COMPARE:-small}" \
        "$@"
}

seeds() {
    mkdir -p "$WORK/corpus" "$WORK/seeds" "$WORK/artifacts"
    PYTHONPATH="$REPO" "$PY" "$REPO/tests/fuzz_native.py" --make-seeds "$WORK/seeds" >/dev/null
    PYTHONPATH="$REPO" "$PY" "$REPO/tests/fuzz_native.py" --make-dict "$WORK/fuzz.dict"
}

run() {
    local seconds=${1:-600}
    shift || true
    seeds
    # new inputs go to the first directory; the others are read only
    sanitized "$PY" "$REPO/tests/fuzz_native.py" -max_total_time="$seconds" -max_len=32768 \
        -timeout=10 -rss_limit_mb=4096 -dict="$WORK/fuzz.dict" -print_final_stats=1 \
        -artifact_prefix="$WORK/artifacts/" "$@" \
        "$WORK/corpus" "$WORK/seeds" "$REPO/tests/fuzz_corpus"
}

leak() {
    local rounds=${1:-200}
    seeds
    # 1. memory stays flat: the same inputs decoded over and over (no sanitizer: real RSS)
    "$PY" "$REPO/tests/fuzz_native.py" --leak-check --rounds "$rounds" \
        "$WORK/corpus" "$WORK/seeds" "$REPO/tests/fuzz_corpus"
    # 2. LeakSanitizer: libFuzzer runs each input, and whenever more was allocated than freed,
    #    asks LSan for blocks that nothing points to any more (a lost buffer or object)
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
        sanitized "$PY" "$REPO/tests/fuzz_native.py" -runs=0 -detect_leaks=1 \
        -artifact_prefix="$WORK/artifacts/leak-" "$WORK/corpus" "$WORK/seeds" "$REPO/tests/fuzz_corpus"
}

repro() {
    sanitized "$PY" "$REPO/tests/fuzz_native.py" -runs=1 "$@"
}

coverage() {  # .pyx line coverage of the decoder by the corpus: a gcc --coverage -O0 build
    local cov="$WORK/gcovbuild"
    seeds
    rm -rf "$cov"
    mkdir -p "$cov"
    tar -C "$REPO" --exclude='*.so' --exclude='native/*.c' --exclude='__pycache__' \
        -cf - collector native proto setup.py pyproject.toml | tar -C "$cov" -xf -
    sed -i 's/"-O3"/"-O0"/' "$cov/setup.py"   # the copy only: lines map back to the .pyx
    (cd "$cov" && CC=gcc LDSHARED="gcc -shared" CFLAGS="--coverage -O0 -g" LDFLAGS="--coverage" \
        "$PY" setup.py build_ext --inplace >"$cov/build.log" 2>&1)
    PYTHONPATH="$cov" FUZZ_COMPARE=none "$PY" "$REPO/tests/fuzz_native.py" --replay \
        "$WORK/corpus" "$WORK/seeds" "$REPO/tests/fuzz_corpus"
    (cd "$cov" && gcov -o build/temp.*/native native/_native.c >/dev/null)
    "$PY" - "$cov/_native.c.gcov" "$cov/native" <<'EOF'
import collections, os, re, sys
marker = re.compile(r'/\* "native/(\w+\.(?:pyx|pxi))":(\d+)')
setup = {"_native.pyx", "consts.pxi", "structs.pxi", "tables.pxi"}  # table setup, not the decoder
lines, cur = collections.defaultdict(lambda: [0, 0]), None
for row in open(sys.argv[1]):
    count, _, text = (row.split(":", 2) + ["", ""])[:3]
    m = marker.search(text)
    if m:
        cur = (m.group(1), int(m.group(2)))  # the C lines that follow come from this line
    elif cur and count.strip() != "-":
        lines[cur][0] += 1
        lines[cur][1] += count.strip() not in ("#####", "=====")
code = {k: v for k, v in lines.items() if k[0] not in setup}
missed = sorted(k for k, v in code.items() if not v[1])
print(f"decoder lines with code: {len(code)}, reached: {len(code) - len(missed)} "
      f"({100 * (len(code) - len(missed)) / len(code):.1f}%); not reached:")
sources = {}
for name, k in missed:
    src = sources.setdefault(name, open(os.path.join(sys.argv[2], name)).read().splitlines())
    print(f"{name}:{k}: {src[k - 1].strip()}")
EOF
}

minimize() {
    sanitized "$PY" "$REPO/tests/fuzz_native.py" -minimize_crash=1 -max_total_time=120 \
        -exact_artifact_path="$WORK/artifacts/minimized" "$1"
    echo "minimised: $WORK/artifacts/minimized"
}

cmd=${1:-all}
shift || true
case "$cmd" in
    build) build ;;
    run) run "$@" ;;
    leak) leak "$@" ;;
    repro) repro "$@" ;;
    cov) coverage ;;
    min) minimize "$@" ;;
    all) build; run "${1:-600}"; leak ;;
    *) sed -n '2,25p' "$0"; exit 2 ;;
esac
