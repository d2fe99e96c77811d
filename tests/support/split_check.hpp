// The layer tests' split check: a parser must reach the same outcome however its input is cut.
// Include after doctest.
#ifndef LLM_STREAM_TEST_SPLIT_CHECK_HPP
#define LLM_STREAM_TEST_SPLIT_CHECK_HPP

#include "random_cuts.hpp"

#include <cstddef>
#include <string>
#include <vector>

/* `run(cuts)` feeds the input cut at those offsets and returns an outcome with describe() and
   anomalies (broken call contracts). The whole input, byte by byte, every single cut (for inputs of
   at most `single_cut_limit` bytes) and `seeds` random cuttings (fewer of both when sampled_splits())
   must all describe the same outcome, which is returned. */
template <class Run>
auto check_every_split(std::size_t size, Run run, std::size_t single_cut_limit, unsigned seeds) {
    const auto whole = run(std::vector<std::size_t>{});
    const std::string expected = whole.describe();
    CHECK_MESSAGE(whole.anomalies.empty(), expected);
    const auto bytes = run(even_cuts(1, size));
    CHECK_MESSAGE(bytes.describe() == expected, "byte by byte: " << bytes.describe());

    std::size_t bad = 0;
    std::string first_bad;
    auto compare = [&](const std::string& how, const auto& outcome) {
        if (outcome.describe() != expected && bad++ == 0) first_bad = how + ": " + outcome.describe();
    };
    const std::size_t stride = single_cut_stride(size);
    if (size <= single_cut_limit)
        for (std::size_t i = 1; i < size; i += stride) compare("split at " + std::to_string(i), run(std::vector<std::size_t>{i}));
    const unsigned tried_seeds = random_cut_seeds(seeds);
    for (unsigned seed = 1; seed <= tried_seeds; ++seed)
        compare("seed " + std::to_string(seed), run(random_cuts(size, seed)));
    CHECK_MESSAGE(bad == 0, "expected " << expected << "\n first mismatch " << first_bad);
    return whole;
}

#endif
