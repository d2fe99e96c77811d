// Split points for feeding a parser an input in pieces (or for cutting a body into chunks): evenly
// spaced, or seeded and random (one cut, a few, or many).
#ifndef LLM_STREAM_TEST_RANDOM_CUTS_HPP
#define LLM_STREAM_TEST_RANDOM_CUTS_HPP

#include <algorithm>
#include <cstddef>
#include <random>
#include <vector>

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
