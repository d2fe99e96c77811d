// The recorded test data under tests/data: where it is, and reading one of its files whole.
#ifndef LLM_STREAM_TEST_DATA_HPP
#define LLM_STREAM_TEST_DATA_HPP

#include <cstddef>
#include <cstdio>
#include <string>

// CMake and Meson pass the source tree's tests/data; this default serves a build run from the repository root.
#ifndef LLM_STREAM_TEST_DATA_DIR
#define LLM_STREAM_TEST_DATA_DIR "tests/data"
#endif

namespace llm_test {

// The whole file at `path`; false when it cannot be read.
inline bool read_file(const std::string& path, std::string& out) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    out.clear();
    char buf[65536];
    for (;;) {  // ends at EOF or on an error
        const std::size_t n = std::fread(buf, 1, sizeof buf, f);
        out.append(buf, n);
        if (n < sizeof buf) break;
    }
    const bool ok = std::ferror(f) == 0;
    std::fclose(f);
    return ok;
}

}  // namespace llm_test

#endif
