// A main for a fuzz target built as a plain executable (no libFuzzer; any compiler):
//   fuzz_replay_<target> FILE...
// runs each file through LLVMFuzzerTestOneInput once. A broken invariant aborts, so the process fails;
// under the sanitizers a memory error does too. CTest runs fuzz/regressions/* this way in every build.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; ++i) {
        std::ifstream file(argv[i], std::ios::binary);
        if (!file) {
            std::fprintf(stderr, "cannot read %s\n", argv[i]);
            return 1;
        }
        const std::vector<std::uint8_t> input{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
        LLVMFuzzerTestOneInput(input.data(), input.size());
        std::printf("ok: %s (%zu bytes)\n", argv[i], input.size());
    }
    return 0;
}
