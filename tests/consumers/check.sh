#!/usr/bin/env bash
# Builds and runs the consumer program (common/) the way a user of one route would:
#   bash tests/consumers/check.sh ROUTE WORK_DIR
#
#   add_subdirectory   a CMake project that vendors the repository (add_subdirectory/CMakeLists.txt)
#   find_package       a CMake project that uses an installed copy (cmake --install, then find_package)
#   fetch_content      a CMake project that fetches it with FetchContent (fetch_content/CMakeLists.txt) from
#                      a git repository of the working tree made here, through a file:// URL (no network)
#   pkg_config         one compiler command with `pkg-config --cflags --libs llm_stream` (or
#                      llm_stream-mbedtls when installed) against an installed copy (cmake --install)
#   meson_subproject   a Meson project with the repository in subprojects/ (meson_subproject/meson.build)
#   drop_in            llm_stream.hpp copied next to the sources, one bare compiler command
#   c_abi              a C program against the installed C ABI library (cmake --install with it built):
#                      a CMake project (find_package COMPONENTS c) and `pkg-config --libs llm_stream_c`
#
# Everything goes to WORK_DIR/ROUTE, made afresh. Exits 77 (a skip for CTest) when the route's tool is
# not installed. The compiler is the system's default (CXX, else c++), with no flags of ours.
set -euo pipefail

route="${1:?usage: check.sh ROUTE WORK_DIR}"
work="$(mkdir -p "${2:?usage: check.sh ROUTE WORK_DIR}" && cd "$2" && pwd)/$route"
consumers="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$consumers/../.." && pwd)"
jobs="${LLM_STREAM_JOBS:-2}"
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi

require() {
    command -v "$1" >/dev/null || { echo "check.sh: $route skipped: $1 is not installed"; exit 77; }
}

add_subdirectory() {
    require cmake
    cmake -S "$consumers/add_subdirectory" -B "$work" "${generator[@]}" -DLLM_STREAM_DIR="$root"
    cmake --build "$work" -j "$jobs"
}

version="$(sed -n 's/^#define LLM_STREAM_VERSION_STRING "\(.*\)"$/\1/p' "$root/llm_stream.hpp")"

# cmake --install of the repository into WORK/prefix, as a user or a package build would: the
# header-only library alone (no shared C ABI library), or with c_abi=ON the C ABI library built as well.
install_prefix() {
    local c_abi="${1:-OFF}"
    cmake -S "$root" -B "$work/install-build" "${generator[@]}" \
        -DLLM_STREAM_BUILD_TESTS=OFF -DLLM_STREAM_BUILD_EXAMPLES=OFF -DLLM_STREAM_INSTALL=ON \
        -DLLM_STREAM_C_ABI="$c_abi" -DCMAKE_BUILD_TYPE=Release
    if [[ "$c_abi" == ON ]]; then cmake --build "$work/install-build" -j "$jobs"; fi
    cmake --install "$work/install-build" --prefix "$work/prefix"
}

find_package() {
    require cmake
    install_prefix
    cmake -S "$consumers/find_package" -B "$work" "${generator[@]}" \
        -DCMAKE_PREFIX_PATH="$work/prefix" -DLLM_STREAM_EXPECTED_VERSION="$version"
    cmake --build "$work" -j "$jobs"
}

# The repository as FetchContent gets it from a git server: the working tree (uncommitted edits
# included, ignored files left out) committed to a fresh repository, fetched by commit over file://.
fetch_content() {
    require cmake
    require git
    local origin="$work/origin"
    git init --quiet "$origin"  # not --bare: git refuses a work tree to a bare repository
    git --git-dir="$origin/.git" --work-tree="$root" add --all
    git --git-dir="$origin/.git" -c user.name=check.sh -c user.email=check.sh@localhost \
        commit --quiet --message "working tree of $root"
    cmake -S "$consumers/fetch_content" -B "$work" "${generator[@]}" \
        -DLLM_STREAM_GIT_URL="file://$origin" -DLLM_STREAM_GIT_TAG="$(git --git-dir="$origin/.git" rev-parse HEAD)"
    cmake --build "$work" -j "$jobs"
}

# The consumer compiled from tests/consumers/common itself, so the header can only come from the
# prefix; with llm_stream-mbedtls.pc installed (mbedTLS found), through it, and the program must say so.
pkg_config() {
    local cxx="${CXX:-c++}" module=llm_stream
    require cmake
    require pkg-config
    require "$cxx"
    install_prefix
    local pc_file flags_text flags
    pc_file="$(find "$work/prefix" -name llm_stream.pc)"
    PKG_CONFIG_PATH="$(dirname "$pc_file")"
    export PKG_CONFIG_PATH
    [[ ! -f "$PKG_CONFIG_PATH/llm_stream-mbedtls.pc" ]] || module=llm_stream-mbedtls
    pkg-config --exact-version="$version" "$module"
    flags_text="$(pkg-config --cflags --libs "$module")"
    echo "pkg-config --cflags --libs $module: $flags_text"
    read -r -a flags <<< "$flags_text"
    "$cxx" -std=c++17 "$consumers/common/main.cpp" "$consumers/common/stub_reply.cpp" "${flags[@]}" \
        -o "$work/consumer" -pthread
    [[ "$module" != llm_stream-mbedtls ]] || "$work/consumer" | grep -q 'tls: mbedtls'
}

# Meson takes subprojects/ from the project's own source tree, so the project is copied here and the
# repository linked in as subprojects/llm_stream; the link is removed once the build is configured.
meson_subproject() {
    require meson
    local source="$work/source"
    mkdir -p "$source"
    cp -r "$consumers/common" "$consumers/meson_subproject" "$source/"
    mkdir -p "$source/meson_subproject/subprojects"
    ln -s "$root" "$source/meson_subproject/subprojects/llm_stream"
    meson setup "$work/build" "$source/meson_subproject" --force-fallback-for=llm_stream
    meson compile -C "$work/build" -j "$jobs"
    rm "$source/meson_subproject/subprojects/llm_stream"
    ln -s build/consumer "$work/consumer"
}

# The CMake project's program runs last (its imported library's directory is in its RPATH); the
# pkg-config one here, with the prefix's library directory given to the loader.
c_abi() {
    local cc="${CC:-cc}"
    require cmake
    require pkg-config
    require "$cc"
    install_prefix ON
    cmake -S "$consumers/c_abi" -B "$work" "${generator[@]}" -DCMAKE_PREFIX_PATH="$work/prefix"
    cmake --build "$work" -j "$jobs"
    local pc_file flags_text flags
    pc_file="$(find "$work/prefix" -name llm_stream_c.pc)"
    PKG_CONFIG_PATH="$(dirname "$pc_file")" pkg-config --exact-version="$version" llm_stream_c
    flags_text="$(PKG_CONFIG_PATH="$(dirname "$pc_file")" pkg-config --cflags --libs llm_stream_c)"
    echo "pkg-config --cflags --libs llm_stream_c: $flags_text"
    read -r -a flags <<< "$flags_text"
    "$cc" -std=c99 "$consumers/c_abi/main.c" "${flags[@]}" -o "$work/consumer_pkg_config"
    LD_LIBRARY_PATH="$(dirname "$(find "$work/prefix" -name 'libllm_stream_c.so' | head -n 1)")" \
        "$work/consumer_pkg_config"
}

drop_in() {
    local cxx="${CXX:-c++}"
    require "$cxx"
    cp "$root/llm_stream.hpp" "$consumers"/common/*.cpp "$work/"
    (cd "$work" && "$cxx" -std=c++17 main.cpp stub_reply.cpp -o consumer -pthread)
}

case "$route" in
    add_subdirectory | find_package | fetch_content | pkg_config | meson_subproject | drop_in | c_abi) ;;
    *) echo "check.sh: unknown route: $route" >&2; exit 2 ;;
esac
rm -rf "$work"
mkdir -p "$work"
"$route"
"$work/consumer"
