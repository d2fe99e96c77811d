#!/usr/bin/env bash
# The one test command:  bash scripts/test.sh
#
# On Debian/Ubuntu it first installs the packages below that are missing (LLM_STREAM_NO_INSTALL=1 skips
# that), then runs each step of the matrix: every configuration of CMakePresets.json (each also runnable
# alone: cmake --workflow --preset NAME; gcc's includes the consumer projects), fuzzing, Windows under
# wine, Meson, the README's demo. Build trees go to build-test/ (LLM_STREAM_TEST_DIR overrides it) and are reused on the
# next run. Every step runs even when an earlier one failed; the last line is "N passed, M failed".
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="${LLM_STREAM_TEST_DIR:-$root/build-test}"
jobs="${LLM_STREAM_JOBS:-2}"
version="$(sed -n 's/^#define LLM_STREAM_VERSION_STRING "\(.*\)"$/\1/p' llm_stream.hpp)"

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
    nginx-light
    g++-mingw-w64-x86-64-posix  # the Windows build (Winsock), run under wine
    wine64      # the HTTPS end-to-end test (tests/tls/nginx_tls.sh)
    openssl          # its certificates
    libcurl4-openssl-dev  # examples/llm-curl: the sans-I/O core over libcurl
    jq               # tests/e2e_apis.sh compares what llm-chat prints and sends as JSON
    tinyproxy        # tests/proxy/proxy_e2e.sh: llm-chat through real HTTP proxies; each runs on its own
    squid            # config and free port there, so the packaged services (if started) never get in the way
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

# The header alone under the strict warnings users compile with (SPEC 4), in every combination of
# compiler, standard, exceptions and TLS: the presets build only some of them. One compiler per core.
strict_header_with() {
    local cxx="$1" std mode tls
    local flags=(-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast
                 -Wnon-virtual-dtor -Werror -fsyntax-only -x c++ -I"$root")
    for std in c++17 c++20; do
        for mode in "" "-fno-exceptions -fno-rtti"; do
            for tls in "" -DLLM_STREAM_MBEDTLS; do
                echo "$cxx -std=$std $mode $tls"
                # shellcheck disable=SC2086  # mode and tls are lists of flags, or nothing
                printf '#define LLM_STREAM_IMPLEMENTATION\n#include "llm_stream.hpp"\nint main() { return 0; }\n' |
                    "$cxx" -std="$std" $mode $tls "${flags[@]}" - || return 1
            done
        done
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

# Windows: mingw-w64 builds of the layer tests and llm-chat, run under wine; llm-chat then streams
# from our loopback server through Winsock. As in CMake, the implementation and doctest's runner are
# compiled once and linked into every test that does not bring its own.
windows_test() {
    local dir="$work/mingw" name port server_pid source
    mkdir -p "$dir/include"
    ln -sfn /usr/include/doctest "$dir/include/doctest"  # the cross compiler does not search /usr/include
    export WINEDEBUG=-all WINEPREFIX="$dir/wineprefix"
    local cxx=(x86_64-w64-mingw32-g++-posix -std=c++17 -O0 -Wall -Wextra -Wpedantic -Werror -I"$root" -I"$dir/include"
               -DLLM_STREAM_TEST_DATA_DIR='"tests/data"' -static)
    # Compiles run $jobs at a time; `wait -n` reports the first one that fails.
    local running=0
    background() {
        "$@" &
        running=$((running + 1))
        if ((running >= jobs)); then wait -n; running=$((running - 1)); fi
    }
    drain() { while ((running > 0)); do wait -n; running=$((running - 1)); done; }
    background "${cxx[@]}" -c tests/support/llm_stream_implementation.cpp -o "$dir/llm_stream_implementation.o"
    background "${cxx[@]}" -c tests/support/doctest_main.cpp -o "$dir/doctest_main.o"
    background "${cxx[@]}" examples/llm-chat.cpp -o "$dir/llm-chat.exe" -lws2_32
    # The tests that share the implementation go into one program (one link, one start under wine);
    # one that brings its own implementation (the counting allocator) is a program of its own.
    local shared=("$dir/doctest_main.o" "$dir/llm_stream_implementation.o") own=()
    for name in api config decoder retry http sse json streams alloc reply stub_tools; do
        source="tests/test_$name.cpp"
        background "${cxx[@]}" -c "$source" -o "$dir/test_$name.o"
        if grep -q '^#define LLM_STREAM_IMPLEMENTATION$' "$source"; then own+=("$name"); else shared+=("$dir/test_$name.o"); fi
    done
    drain
    background "${cxx[@]}" "${shared[@]}" -o "$dir/tests.exe" -lws2_32
    for name in "${own[@]}"; do
        background "${cxx[@]}" "$dir/test_$name.o" "$dir/doctest_main.o" -o "$dir/test_$name.exe" -lws2_32
    done
    drain
    /usr/lib/wine/wine64 "$dir/tests.exe"
    for name in "${own[@]}"; do /usr/lib/wine/wine64 "$dir/test_$name.exe"; done
    "$work/gcc/tests/llm_test_server" --stream deepseek-chat.sse >"$dir/server.out" &
    server_pid=$!
    trap "kill $server_pid 2>/dev/null" EXIT  # expanded now: the step's subshell outlives this function
    for _ in $(seq 50); do grep -q PORT "$dir/server.out" && break; sleep 0.1; done
    port="$(awk '/PORT/ {print $2}' "$dir/server.out")"
    output="$(LLM_BASE_URL="http://127.0.0.1:$port/v1" /usr/lib/wine/wine64 "$dir/llm-chat.exe" hi)"
    printf '%s\n' "$output"
    [[ "$output" == *"Hello! How can I assist you today?"* ]]
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
    meson compile -C "$dir" -j "$jobs" --ninja-args=-k0
    # Every test is built; the network suite, which ran in every CMake configuration and is about
    # sockets rather than the build, is not run again.
    meson test -C "$dir" --print-errorlogs --num-processes "$((jobs * 2))" --no-suite network
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

# step <title> <command...>: runs the command with errexit in a subshell and records the outcome.
step() {
    local title="$1" start="$SECONDS" status
    shift
    printf '\n======== %s\n' "$title"
    set +e
    (set -e; "$@")
    status=$?
    set -e
    if ((status == 0)); then
        passed=$((passed + 1))
        printf '======== ok: %s (%ds)\n' "$title" $((SECONDS - start))
    else
        failed=$((failed + 1))
        failures+=("$title")
        printf '======== FAILED: %s (exit %d, %ds)\n' "$title" "$status" $((SECONDS - start))
    fi
}

mkdir -p "$work"
step "packages" install_packages
step "the header under strict warnings: g++ and clang++, C++17 and C++20, with and without exceptions and TLS" \
    strict_header
for preset in $(cmake --list-presets=workflow | sed -n 's/^ *"\([^"]*\)".*/\1/p'); do
    step "cmake preset $preset: $(preset_title "$preset")" preset_test "$preset"
done
step "fuzz: every libFuzzer target, ${LLM_STREAM_FUZZ_SECONDS:-10} s each, regressions replayed" \
    env LLM_STREAM_FUZZ_JOBS="$jobs" LLM_STREAM_FUZZ_DIR="$work/fuzz" bash scripts/fuzz.sh "${LLM_STREAM_FUZZ_SECONDS:-10}"
step "windows: mingw-w64 + wine, layer tests and llm-chat over Winsock" windows_test
step "meson (g++): every test built, all but the network suite run" meson_test
step "demo: README build of llm-chat without doctest, stub reply" demo

printf '\n'
for title in "${failures[@]+"${failures[@]}"}"; do
    printf 'FAILED: %s\n' "$title"
done
printf 'total time: %ds\n' "$SECONDS"
printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
