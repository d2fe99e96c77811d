// Split points for feeding a parser an input in pieces (or for cutting a body into chunks): evenly
// spaced, or seeded and random (one cut, a few, or many); and how many of them the heavy tests try.
#ifndef LLM_STREAM_TEST_RANDOM_CUTS_HPP
#define LLM_STREAM_TEST_RANDOM_CUTS_HPP

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string_view>
#include <vector>

/* LLM_STREAM_TEST_SPLITS=sample: the heavy split tests (the corpus in every framing, split_check.hpp)
   try a sample of their split points instead of all of them, on the same inputs in the same framings
   with the same checks. For emulated targets, where every split point is slow (the corpus test: 17 s
   under qemu-s390x, 4 s sampled; scripts/test.sh sets it for the qemu runs only); unset or "all",
   every split point. Any other value stops the test rather than quietly test something else. */
inline bool sampled_splits() {
    const char* value = std::getenv("LLM_STREAM_TEST_SPLITS");
    if (value == nullptr || std::string_view(value) == "all") return false;
    if (std::string_view(value) == "sample") return true;
    std::fprintf(stderr, "LLM_STREAM_TEST_SPLITS=%s: expected all or sample\n", value);
    std::exit(2);
}

/* How many seeds of random_cuts() to try out of `all`: all of them, or a sample. */
inline unsigned random_cut_seeds(unsigned all) {
    return sampled_splits() ? std::min(all, 8u) : all;
}

/* The distance between the single cuts to try in `size` bytes: 1 (every one), or about 64 cuts in all. */
inline std::size_t single_cut_stride(std::size_t size) {
    return sampled_splits() ? std::max<std::size_t>(1, size / 64) : 1;
}

/* A cut every `step` bytes of `size`: pieces of that size, the last one shorter; step 1: every byte. */
inline std::vector<std::size_t> even_cuts(std::size_t step, std::size_t size) {
    std::vector<std::size_t> cuts;
    for (std::size_t at = step; at < size; at += step) cuts.push_back(at);
    return cuts;
}

inline std::vector<std::size_t> random_cuts(std::size_t size, unsigned seed) {
    std::vector<std::size_t> cuts;
    if (size < 2) return cuts;
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::size_t> pos(1, size - 1);
    std::size_t count = 0;
    switch (seed % 4) {
    case 0: count = 1; break;
    case 1: count = 2 + rng() % 4; break;
    case 2: count = 1 + size / 10; break;
    default: count = 1 + size / 2; break;
    }
    for (std::size_t i = 0; i < count; ++i) cuts.push_back(pos(rng));
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    return cuts;
}

#endif
