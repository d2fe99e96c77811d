#!/usr/bin/env bash
# The one test command:  bash scripts/test.sh
#
# On Debian/Ubuntu it first installs the packages below that are missing (LLM_STREAM_NO_INSTALL=1 skips
# that), then checks the amalgamation, builds and tests every configuration and the consumer projects.
# Build trees go to build-test/ (LLM_STREAM_TEST_DIR overrides it) and are reused on the next run.
# Every step runs even when an earlier one failed; the last line is "N passed, M failed".
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
)

# The tests must not depend on whoever runs them: no real server, no developer's settings.
unset LLM_API_KEY LLM_BASE_URL LLM_MODEL LLM_STUB_DELAY_MS

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

# cmake_test <build dir name> <cmake arguments...>: configure, build everything, run ctest.
cmake_test() {
    local dir="$work/$1"
    shift
    cmake -S "$root" -B "$dir" -G Ninja -DLLM_STREAM_WARNINGS_AS_ERRORS=ON "$@"
    cmake --build "$dir" -j "$jobs" -- -k 0  # keep going: every compile error in one run
    (cd "$dir" && ctest --output-on-failure --no-tests=error -j "$jobs")
}

# sanitized <command...>: runs it with the sanitizers' reports made fatal and readable.
sanitized() {
    export ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    "$@"
}

# The tests where threads meet (cancel from another thread, the shared connection pool, a shared
# client) under ThreadSanitizer.
tsan_test() {
    local dir="$work/clang-tsan"
    cmake -S "$root" -B "$dir" -G Ninja -DLLM_STREAM_WARNINGS_AS_ERRORS=ON -DCMAKE_CXX_COMPILER=clang++ \
        -DCMAKE_BUILD_TYPE=Debug -DLLM_STREAM_SANITIZE=thread
    cmake --build "$dir" -j "$jobs" --target test_network test_api llm_test_server
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
    "$dir/tests/test_api"
    "$dir/tests/test_network"
}

# Windows: mingw-w64 builds of the layer tests and llm-chat, run under wine; llm-chat then streams
# from our loopback server through Winsock.
windows_test() {
    local dir="$work/mingw" name port server_pid
    mkdir -p "$dir/include"
    ln -sfn /usr/include/doctest "$dir/include/doctest"  # the cross compiler does not search /usr/include
    export WINEDEBUG=-all WINEPREFIX="$dir/wineprefix"
    local cxx=(x86_64-w64-mingw32-g++-posix -std=c++17 -O1 -Wall -Wextra -Wpedantic -Werror -I"$root" -I"$dir/include"
               -DLLM_STREAM_TEST_DATA_DIR='"tests/data"' -static)
    for name in api config http sse json streams alloc; do
        "${cxx[@]}" "tests/test_$name.cpp" -o "$dir/test_$name.exe" -lws2_32
        /usr/lib/wine/wine64 "$dir/test_$name.exe"
    done
    "${cxx[@]}" examples/llm-chat.cpp -o "$dir/llm-chat.exe" -lws2_32
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
        meson setup --reconfigure "$dir" -Dtests=enabled -Dexamples=true
    else
        meson setup "$dir" -Dtests=enabled -Dexamples=true
    fi
    meson compile -C "$dir" -j "$jobs" --ninja-args=-k0
    meson test -C "$dir" --print-errorlogs --num-processes "$jobs"
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

consumer_add_subdirectory() {
    local dir="$work/consumer-add_subdirectory"
    rm -rf "$dir"
    cmake -S tests/consumers/add_subdirectory -B "$dir" -G Ninja -DLLM_STREAM_DIR="$root"
    cmake --build "$dir" -j "$jobs"
    "$dir/consumer"
}

consumer_find_package() {
    local dir="$work/consumer-find_package" prefix="$work/install-prefix"
    rm -rf "$dir" "$prefix"
    cmake -S "$root" -B "$work/install" -G Ninja -DLLM_STREAM_BUILD_TESTS=OFF -DLLM_STREAM_BUILD_EXAMPLES=OFF
    cmake --install "$work/install" --prefix "$prefix"
    cmake -S tests/consumers/find_package -B "$dir" -G Ninja \
        -DCMAKE_PREFIX_PATH="$prefix" -DLLM_STREAM_EXPECTED_VERSION="$version"
    cmake --build "$dir" -j "$jobs"
    "$dir/consumer"
}

# The consumer gets the repository as subprojects/llm_stream through a symlink made here, in the build tree.
consumer_meson_subproject() {
    local dir="$work/consumer-meson_subproject"
    rm -rf "$dir"
    mkdir -p "$dir/source/subprojects"
    cp tests/consumers/meson_subproject/* "$dir/source/"
    ln -s "$root" "$dir/source/subprojects/llm_stream"
    meson setup "$dir/build" "$dir/source" --force-fallback-for=llm_stream
    meson compile -C "$dir/build" -j "$jobs"
    rm "$dir/source/subprojects/llm_stream"  # leave no link back to the repository in the tree
    "$dir/build/consumer"
}

# The generated header dropped next to the sources, built with a bare compiler command.
consumer_single_header() {
    local dir="$work/consumer-single_header"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp single_include/llm_stream/llm_stream.hpp tests/consumers/single_header/*.cpp "$dir/"
    cd "$dir"
    c++ -std=c++17 main.cpp stub_reply.cpp -o consumer -pthread
    ./consumer
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
step "amalgamation is up to date" bash scripts/amalgamate.sh --check
step "cmake g++ C++17 -O2 with asserts (mbedTLS auto)" \
    cmake_test gcc -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_FLAGS=-O2
step "cmake clang++ C++20 (Debug, mbedTLS auto)" \
    cmake_test clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_STANDARD=20
step "cmake g++ -fno-exceptions -fno-rtti (Debug, no mbedTLS)" \
    cmake_test gcc-noexcept -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=Debug \
    -DLLM_STREAM_NO_EXCEPTIONS=ON -DLLM_STREAM_USE_MBEDTLS=OFF
step "cmake clang++ ASan+UBSan (Debug, mbedTLS auto)" \
    sanitized cmake_test clang-asan -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug \
    -DLLM_STREAM_SANITIZE=address,undefined
step "cmake clang++ TSan: cancel, pool and shared-client tests" tsan_test
step "fuzz: every libFuzzer target, ${LLM_STREAM_FUZZ_SECONDS:-15} s each, regressions replayed" \
    bash scripts/fuzz.sh "${LLM_STREAM_FUZZ_SECONDS:-15}"
step "windows: mingw-w64 + wine, layer tests and llm-chat over Winsock" windows_test
step "meson (g++, tests and examples)" meson_test
step "demo: README build of llm-chat without doctest, stub reply" demo
step "consumer: CMake add_subdirectory" consumer_add_subdirectory
step "consumer: CMake find_package after cmake --install" consumer_find_package
step "consumer: Meson subproject" consumer_meson_subproject
step "consumer: single_include header, bare c++" consumer_single_header

printf '\n'
for title in "${failures[@]+"${failures[@]}"}"; do
    printf 'FAILED: %s\n' "$title"
done
printf 'total time: %ds\n' "$SECONDS"
printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
