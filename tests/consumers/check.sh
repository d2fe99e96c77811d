#!/usr/bin/env bash
# Builds and runs the consumer program (common/) the way a user of one route would:
#   bash tests/consumers/check.sh ROUTE WORK_DIR
#
#   add_subdirectory   a CMake project that vendors the repository (add_subdirectory/CMakeLists.txt)
#   find_package       a CMake project that uses an installed copy (cmake --install, then find_package)
#   meson_subproject   a Meson project with the repository in subprojects/ (meson_subproject/meson.build)
#   drop_in            llm_stream.hpp copied next to the sources, one bare compiler command
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

find_package() {
    require cmake
    local version
    version="$(sed -n 's/^#define LLM_STREAM_VERSION_STRING "\(.*\)"$/\1/p' "$root/llm_stream.hpp")"
    cmake -S "$root" -B "$work/install-build" "${generator[@]}" \
        -DLLM_STREAM_BUILD_TESTS=OFF -DLLM_STREAM_BUILD_EXAMPLES=OFF -DLLM_STREAM_INSTALL=ON \
        -DLLM_STREAM_C_ABI=OFF  # installed unbuilt: the header-only library alone, no shared C ABI library
    cmake --install "$work/install-build" --prefix "$work/prefix"
    cmake -S "$consumers/find_package" -B "$work" "${generator[@]}" \
        -DCMAKE_PREFIX_PATH="$work/prefix" -DLLM_STREAM_EXPECTED_VERSION="$version"
    cmake --build "$work" -j "$jobs"
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

drop_in() {
    local cxx="${CXX:-c++}"
    require "$cxx"
    cp "$root/llm_stream.hpp" "$consumers"/common/*.cpp "$work/"
    (cd "$work" && "$cxx" -std=c++17 main.cpp stub_reply.cpp -o consumer -pthread)
}

case "$route" in
    add_subdirectory | find_package | meson_subproject | drop_in) ;;
    *) echo "check.sh: unknown route: $route" >&2; exit 2 ;;
esac
rm -rf "$work"
mkdir -p "$work"
"$route"
"$work/consumer"
