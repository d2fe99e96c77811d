#!/usr/bin/env bash
# The one test command:  bash scripts/test.sh
#
# On Debian/Ubuntu it first installs the packages below that are missing (LLM_STREAM_NO_INSTALL=1 skips
# that), then runs each step of the matrix: every configuration of CMakePresets.json (each also runnable
# alone: cmake --workflow --preset NAME; gcc's includes the consumer projects), fuzzing, Windows under
# wine, 32-bit ARM and big-endian s390x under qemu, Meson, the README's demo. Build trees go to
# build-test/ (LLM_STREAM_TEST_DIR overrides it) and are reused on the next run. Every step runs even
# when an earlier one failed; the last line is "N passed, M failed".
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="${LLM_STREAM_TEST_DIR:-$root/build-test}"
jobs="${LLM_STREAM_JOBS:-2}"

# Debian packages the steps use, one per line.
packages=(
    g++
    clang
    libclang-rt-dev  # clang's sanitizer runtimes, only recommended by clang
    cmake
    make             # the generator of the README's plain `cmake -B build`
    ninja-build
    meson
    pkg-config
    doctest-dev
    libmbedtls-dev
    libssl-dev       # llm_stream_openssl.hpp: test_tls_openssl and llm-chat-openssl through nginx (ctest -L tls)
    nginx-light
    g++-mingw-w64-x86-64-posix  # the Windows build (Winsock, SChannel), run under wine
    g++-arm-linux-gnueabihf     # 32-bit ARM and big-endian s390x builds of the tests,
    g++-s390x-linux-gnu         # run under qemu-user
    qemu-user
    wine64      # runs the Windows build: its tests, llm-chat, HTTPS through SChannel (tests/tls/wine_schannel.sh)
    openssl          # its certificates
    nlohmann-json3-dev  # bench/bench_pipeline.cpp and bench/bench_simdjson.cpp compile in the benchmarks step
    libsimdjson-dev
    libcurl4-openssl-dev  # examples/llm-curl: the sans-I/O core over libcurl
    jq               # tests/e2e_apis.sh compares what llm-chat prints and sends as JSON
    tinyproxy        # tests/proxy/proxy_e2e.sh: llm-chat through real HTTP proxies; each runs on its own
    squid            # config and free port there, so the packaged services (if started) never get in the way
    python3          # tests/capi: the C ABI from Python (ctypes); tests/e2e_relay.sh drives Chromium with it
    mono-mcs         # and from C# (P/Invoke), compiled by mcs
    mono-runtime     # and run by mono, as Unity loads a native plugin
    curl             # tests/e2e_relay.sh: llm-relay's clients (curl -N), its upstream connections (ss),
    iproute2
    chromium         # and a real browser streaming into the relay's page (headless, through python3)
)

# The tests must not depend on whoever runs them: no real server, no developer's settings.
unset LLM_API_KEY LLM_BASE_URL LLM_MODEL LLM_STUB_DELAY_MS
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY  # loopback is proxied too

install_packages() {
    if [[ "${LLM_STREAM_NO_INSTALL:-0}" == 1 ]]; then
        echo "LLM_STREAM_NO_INSTALL=1: not installing anything"
        return
    fi
    if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
        echo "no apt here: make sure these (or their equivalents) are installed: ${packages[*]}"
        return
    fi
    local missing=() package
    for package in "${packages[@]}"; do
        dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed$' ||
            missing+=("$package")
    done
    if ((${#missing[@]} == 0)); then
        echo "all packages present"
        return
    fi
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
    echo "installing: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# preset_title <preset>: the configure preset's display name.
preset_title() {
    cmake --list-presets=configure | sed -n "s/^ *\"$1\" *- //p"
}

# preset_test <preset>: what `cmake --workflow --preset <preset>` does (configure, build, test), in this
# run's work directory instead of build-test/<preset>. The configure step decides what is tested, so the
# test step is a plain ctest in that tree.
preset_test() {
    local dir="$work/$1"
    cmake --preset "$1" -B "$dir"
    cmake --build "$dir" -j "$jobs" -- -k 0  # keep going: every compile error in one run
    # Twice the cores: the network tests spend most of their time waiting on sockets and timers.
    ctest --test-dir "$dir" -j "$((jobs * 2))" --output-on-failure --no-tests=error
}

# strict_header_check <compiler and flags...>: the header and its implementation under the strict
# warnings users compile with (SPEC 4).
strict_header_check() {
    echo "$*"
    printf '#define LLM_STREAM_IMPLEMENTATION\n#include "llm_stream.hpp"\nint main() { return 0; }\n' |
        "$@" -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast \
            -Wnon-virtual-dtor -Werror -fsyntax-only -x c++ -I"$root" -
}

# The header in every combination of compiler, standard, exceptions, TLS and the smallest builds
# (LLM_STREAM_MINIMAL, with LLM_STREAM_NO_DNS too): the presets build only some of them; then each
# feature macro alone. One compiler per core.
strict_header_with() {
    local cxx="$1" std mode tls features feature
    for std in c++17 c++20; do
        for mode in "" "-fno-exceptions -fno-rtti"; do
            for tls in "" -DLLM_STREAM_MBEDTLS; do
                for features in "" -DLLM_STREAM_MINIMAL "-DLLM_STREAM_MINIMAL -DLLM_STREAM_NO_DNS"; do
                    # shellcheck disable=SC2086  # mode, tls and features are lists of flags, or nothing
                    strict_header_check "$cxx" -std="$std" $mode $tls $features || return 1
                done
            done
        done
    done
    for feature in RESPONSES ANTHROPIC GEMINI OLLAMA STUB DNS; do
        strict_header_check "$cxx" -std=c++17 -DLLM_STREAM_NO_$feature || return 1
    done
}

strict_header() {
    local gcc_status=0 clang_status=0 gcc_pid
    strict_header_with g++ &
    gcc_pid=$!
    strict_header_with clang++ || clang_status=$?
    wait "$gcc_pid" || gcc_status=$?
    ((gcc_status == 0 && clang_status == 0))
}

# Compiles run $jobs at a time (the caller sets running=0 and ends with drain); `wait -n` reports the
# first one that fails.
background() {
    "$@" &
    running=$((running + 1))
    if ((running >= jobs)); then wait -n; running=$((running - 1)); fi
}
drain() { while ((running > 0)); do wait -n; running=$((running - 1)); done; }

# Every program of bench/ compiles warning-free: only bench/perf_table.sh builds and runs them, so a
# change would otherwise break one unseen until the next table.
bench_compiles() {
    local source
    running=0
    for source in bench/*.cpp; do
        echo "$source"
        background g++ -std=c++17 -Wall -Wextra -Werror -fsyntax-only -I"$root" -I"$root/tests" "$source"
    done
    drain
}

# foreign_test <dir> <run> <link flags> <tests> <compiler and flags...>: for a target other than this
# machine's, builds llm-chat and the tests named in <tests> (tests/test_NAME.cpp) with that compiler,
# runs them through <run> (wine, qemu), then llm-chat streams one response from our loopback server.
# As in CMake, the implementation and doctest's runner are compiled once; the tests that share them go
# into one program (one link, one start under the emulator); one that brings its own implementation
# (the counting allocator) is a program of its own.
foreign_test() {
    local dir="$1" run="$2" link="$3" tests="$4" name source exe=""
    shift 4
    local cxx=("$@" -I"$root" -I"$dir/include" -DLLM_STREAM_TEST_DATA_DIR='"tests/data"')
    [[ "$("$1" -dumpmachine)" != *mingw* ]] || exe=.exe
    mkdir -p "$dir/include"
    ln -sfn /usr/include/doctest "$dir/include/doctest"  # a cross compiler does not search /usr/include
    running=0
    background "${cxx[@]}" -c tests/support/llm_stream_implementation.cpp -o "$dir/llm_stream_implementation.o"
    background "${cxx[@]}" -c tests/support/doctest_main.cpp -o "$dir/doctest_main.o"
    # shellcheck disable=SC2086  # link and run are lists of words
    background "${cxx[@]}" examples/llm-chat.cpp -o "$dir/llm-chat$exe" $link
    local shared=("$dir/doctest_main.o" "$dir/llm_stream_implementation.o") own=()
    for name in $tests; do
        source="tests/test_$name.cpp"
        background "${cxx[@]}" -c "$source" -o "$dir/test_$name.o"
        if grep -q '^#define LLM_STREAM_IMPLEMENTATION$' "$source"; then own+=("$name"); else shared+=("$dir/test_$name.o"); fi
    done
    drain
    # shellcheck disable=SC2086
    background "${cxx[@]}" "${shared[@]}" -o "$dir/tests$exe" $link
    for name in "${own[@]}"; do
        # shellcheck disable=SC2086
        background "${cxx[@]}" "$dir/test_$name.o" "$dir/doctest_main.o" -o "$dir/test_$name$exe" $link
    done
    drain
    # shellcheck disable=SC2086
    $run "$dir/tests$exe"
    # shellcheck disable=SC2086
    for name in "${own[@]}"; do $run "$dir/test_$name$exe"; done
    loopback_stream "$dir" "$run" "$dir/llm-chat$exe"
}

# start_test_server <output file> <options...>: the gcc preset's build of llm_test_server (native) in the
# background, stopped by its PID when the step's subshell exits (it outlives the caller); its port in
# $test_server_port once it listens.
exit_pids=()
start_test_server() {
    local output="$1"
    shift
    "$work/gcc/tests/llm_test_server" "$@" >"$output" &
    exit_pids+=("$!")
    trap 'kill "${exit_pids[@]}" 2>/dev/null' EXIT
    for _ in $(seq 50); do grep -q PORT "$output" && break; sleep 0.1; done
    test_server_port="$(awk '/PORT/ {print $2}' "$output")"
    [[ -n "$test_server_port" ]] || { echo "llm_test_server $* did not start"; return 1; }
}

# loopback_stream <dir> <run> <llm-chat>: llm-chat, started through <run>, streams a recorded response
# from the loopback test server, at 127.0.0.1 or at the host named by $loopback_host (which the program
# then resolves itself).
loopback_stream() {
    local dir="$1" run="$2" chat="$3" host="${loopback_host:-127.0.0.1}" output
    start_test_server "$dir/server.out" --stream deepseek-chat.sse
    # shellcheck disable=SC2086
    output="$(LLM_BASE_URL="http://$host:$test_server_port/v1" $run "$chat" hi)"
    printf '%s\n' "$output"
    [[ "$output" == *"Hello! How can I assist you today?"* ]]
}

# Windows: mingw-w64 builds run under wine; llm-chat streams through Winsock from "localhost", which
# the system's resolver answers (GetAddrInfoExW, overlapped). What is Windows' own: sockets, waiting
# (WSAPoll, woken by cancel() at once) and name resolution (test_wait), the configuration from the
# environment and files, the stub, the corpus read from disk, the public API, the whole network suite
# (test_network: every framing, fault, retry, timeout, the deadline, cancel(), poll(), the pool, IPv6)
# and the proxy tests (test_proxy: the test server playing the proxy)
# against test servers run natively by llm_test_server --control, which the tests script through
# RemoteTestServer (LLM_TEST_REMOTE_SERVER), and HTTPS through SChannel: test_tls (it has its own main)
# and llm-chat against the nginx of the TLS tests, with --cacert and with the CA in the prefix's ROOT
# store (import_root); llm-relay.exe (built at -O2) through the relay's end-to-end checks, its
# StreamSet over WSAPoll and its CTRL_C handler included. The pure parsers (HTTP, SSE, JSON, the decoder) are the same code on every
# platform and run in every other step, 32-bit `long` (as on Windows) included: see cross_test.
windows_test() {
    export WINEDEBUG=-all WINEPREFIX="$work/mingw/wineprefix"
    local dir="$work/mingw" link="-lws2_32 -lsecur32 -lcrypt32" loopback_host=localhost
    local cxx=(x86_64-w64-mingw32-g++-posix -std=c++17 -O0 -Wall -Wextra -Wpedantic -Werror -static -DLLM_TEST_REMOTE_SERVER)
    mkdir -p "$dir"
    start_test_server "$dir/control.out" --control
    export LLM_TEST_SERVER_CONTROL="127.0.0.1:$test_server_port"
    foreign_test "$dir" /usr/lib/wine/wine64 "$link" "api config retry streams alloc reply stub_tools wait network proxy minimal" "${cxx[@]}"
    running=0
    # shellcheck disable=SC2086  # link is a list of flags
    background "${cxx[@]}" -I"$root" -I"$dir/include" tests/test_tls.cpp "$dir/llm_stream_implementation.o" \
        -o "$dir/test_tls.exe" $link
    # shellcheck disable=SC2086
    background "${cxx[@]}" -I"$root" tests/tls/import_root.cpp "$dir/llm_stream_implementation.o" -o "$dir/import_root.exe" $link
    # At -O2 (the rest is -O0): the optimizer's warnings (-Wnonnull, -Wstringop-*) over the whole header.
    # shellcheck disable=SC2086
    background "${cxx[@]}" -O2 -I"$root" examples/llm-relay.cpp -o "$dir/llm-relay.exe" $link
    drain
    bash tests/tls/wine_schannel.sh "$dir" "$work/gcc/tests/llm_test_server"
    LLM_RELAY_RUN=/usr/lib/wine/wine64 bash tests/e2e_relay.sh "$dir/llm-relay.exe" "$work/gcc/tests/llm_test_server"
}

# cross_test <triplet> <qemu>: Debian's cross compiler for <triplet> builds the layers (JSON, SSE, HTTP,
# NDJSON, the decoder), the recorded streams of every API, the stub, the request bodies (with a
# stream from a test server inside the emulated program) and llm-chat, which qemu-user runs. 32-bit
# ARM has a 32-bit size_t and long; s390x is big-endian. Neither has SSE2: the portable scanners run.
# Emulation is slow: the heavy split tests sample their split points (tests/support/random_cuts.hpp), and
# -Og (compiles a third faster than -O1) runs the tests' own code 4 times faster than -O0.
cross_test() {
    local triplet="$1"
    strict_header_check "$triplet-g++" -std=c++17 -Wno-psabi  # -Wconversion with a 32-bit size_t
    export LLM_STREAM_TEST_SPLITS=sample
    foreign_test "$work/$triplet" "$2 -L /usr/$triplet" -pthread \
        "json sse http ndjson decoder streams api stub_tools request" \
        "$triplet-g++" -std=c++17 -Og -Wall -Wextra -Wpedantic -Werror -Wno-psabi  # psabi: notes on GCC 7's ABI changes
}

meson_test() {
    local dir="$work/meson" file
    for file in tests/test_*.cpp; do  # Meson cannot glob: its list must keep up with the files
        grep -q "'${file#tests/}'" tests/meson.build || { echo "tests/meson.build does not list $file"; return 1; }
    done
    if [[ -f "$dir/build.ninja" ]]; then
        meson setup --reconfigure "$dir" -Dtests=enabled -Dexamples=true -Ddebug=false
    else
        meson setup "$dir" -Dtests=enabled -Dexamples=true -Ddebug=false  # no debug info: only the build files are new here
    fi
    # The CMake configurations build and run every test four times over: this step proves Meson's build
    # files with one program of each kind. The examples; a test that links the shared implementation and
    # doctest's runner, one that brings its own implementation, a fuzz replay; the end-to-end script
    # with llm-chat and the test server.
    local targets=(llm-chat agent llm_test_server test_api test_alloc fuzz_replay_pipeline llm_stream_c capi_test)
    if pkg-config --exists libcurl; then targets+=(llm-curl); fi
    meson compile -C "$dir" -j "$jobs" --ninja-args=-k0 "${targets[@]}"
    meson test -C "$dir" --no-rebuild --print-errorlogs --num-processes "$((jobs * 2))" \
        test_api test_alloc fuzz_replay_pipeline e2e_llm_chat c_abi_c
}

# The README's demo: a plain configure (default generator) on a machine without doctest.
demo() {
    local dir="$work/demo" output
    cmake -S "$root" -B "$dir" -DCMAKE_DISABLE_FIND_PACKAGE_doctest=ON
    cmake --build "$dir" -j "$jobs" --target llm-chat
    output="$(cd "$dir" && examples/llm-chat "请介绍运动鞋的特点")"
    printf '%s\n' "$output"
    [[ -n "$output" ]] || { echo "llm-chat printed nothing"; return 1; }
    (cd "$dir" && examples/llm-chat --version)
}

passed=0
failed=0
failures=()
failure_logs=()

# step <title> <command...>: runs the command with errexit in a subshell and records the outcome. Its
# output goes to a file, shown as it grows (tail --pid), so that a failed step's last lines can be
# repeated at the end, where a CI report that keeps only the log's tail sees them. A file, not a pipe
# through tee: a pipe would wait for every daemon a step starts that inherits its output.
step() {
    local title="$1" start="$SECONDS" status log pid
    shift
    log="$work/logs/step-$((passed + failed + 1)).log"
    printf '\n======== %s\n' "$title"
    set +e
    (set -e; "$@") >"$log" 2>&1 </dev/null &
    pid=$!
    tail -n +1 -f --pid="$pid" "$log" &
    wait "$pid"
    status=$?
    wait "$!"  # the tail, once it has shown the last lines
    set -e
    if ((status == 0)); then
        passed=$((passed + 1))
        printf '======== ok: %s (%ds)\n' "$title" $((SECONDS - start))
    else
        failed=$((failed + 1))
        failures+=("$title")
        failure_logs+=("$log")
        printf '======== FAILED: %s (exit %d, %ds)\n' "$title" "$status" $((SECONDS - start))
    fi
}

mkdir -p "$work/logs"
step "packages" install_packages
step "the header under strict warnings: g++ and clang++, C++17 and C++20, with and without exceptions, TLS and LLM_STREAM_MINIMAL" \
    strict_header
step "benchmarks: every program of bench/ compiles (g++ -fsyntax-only, warnings as errors)" bench_compiles
for preset in $(cmake --list-presets=workflow | sed -n 's/^ *"\([^"]*\)".*/\1/p'); do
    step "cmake preset $preset: $(preset_title "$preset")" preset_test "$preset"
done
step "fuzz: every libFuzzer target, ${LLM_STREAM_FUZZ_SECONDS:-10} s each, regressions replayed" \
    env LLM_STREAM_FUZZ_JOBS="$jobs" LLM_STREAM_FUZZ_DIR="$work/fuzz" bash scripts/fuzz.sh "${LLM_STREAM_FUZZ_SECONDS:-10}"
step "windows: mingw-w64 + wine, the API, config, stub, corpus, wait and network tests, llm-chat over Winsock, HTTPS through SChannel" \
    windows_test
step "32-bit ARM: arm-linux-gnueabihf under qemu-user, the layers, corpus, stub and a loopback stream" \
    cross_test arm-linux-gnueabihf qemu-arm
step "big-endian: s390x-linux-gnu under qemu-user, the layers, corpus, stub and a loopback stream" \
    cross_test s390x-linux-gnu qemu-s390x
step "meson (g++): the examples and one test of each kind built and run" meson_test
step "demo: README build of llm-chat without doctest, stub reply" demo

printf '\n'
for i in "${!failure_logs[@]}"; do
    printf '======== the last lines of the failed step "%s" (all of it: %s)\n' "${failures[i]}" "${failure_logs[i]#$root/}"
    tail -n 40 "${failure_logs[i]}"
    printf '\n'
done
for title in "${failures[@]+"${failures[@]}"}"; do
    printf 'FAILED: %s\n' "$title"
done
printf 'total time: %ds\n' "$SECONDS"
printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
