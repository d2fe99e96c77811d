// Shared helpers for the libFuzzer targets in fuzz/: a deterministic PRNG seeded from the input,
// split-point generation, and a hard failure that prints why before aborting.
#ifndef LLM_STREAM_FUZZ_COMMON_HPP
#define LLM_STREAM_FUZZ_COMMON_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "llm_stream.hpp"  // the targets include it first, with LLM_STREAM_INTERNALS

namespace fuzz {

// Inputs larger than this are ignored: every target stays fast and deterministic.
constexpr std::size_t max_input = 64 * 1024;

[[noreturn]] inline void fail(const char* what, const char* file, int line) {
    std::fprintf(stderr, "\nFUZZ INVARIANT BROKEN: %s (%s:%d)\n", what, file, line);
    std::fflush(stderr);
    std::abort();
}

#define FUZZ_CHECK(cond)                                         \
    do {                                                         \
        if (!(cond)) ::fuzz::fail(#cond, __FILE__, __LINE__);    \
    } while (0)

// FNV-1a: the seed of everything random in a run, so a run depends only on its input.
inline std::uint64_t hash(const std::uint8_t* data, std::size_t size, std::uint64_t salt = 0) {
    std::uint64_t h = 14695981039346656037ull ^ (salt * 0x9E3779B97F4A7C15ull);
    for (std::size_t i = 0; i < size; ++i) {
        h ^= data[i];
        h *= 1099511628211ull;
    }
    return h;
}

// SplitMix64.
class Rng {
public:
    explicit Rng(std::uint64_t seed) : state_(seed) {}
    std::uint64_t next() {
        std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // Uniform-ish in [0, n); n > 0.
    std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }

private:
    std::uint64_t state_;
};

// Strictly increasing cut positions in (0, size): where one piece ends and the next begins.
// `style` picks the flavour: 0 tiny pieces (1..3 bytes), 1 small (1..16), 2 mixed (1..size/2),
// 3 a handful of random cuts.
inline std::vector<std::size_t> random_cuts(Rng& rng, std::size_t size, int style) {
    std::vector<std::size_t> cuts;
    if (size < 2) return cuts;
    if (style == 3) {
        const std::size_t count = 1 + rng.below(8);
        for (std::size_t i = 0; i < count; ++i) cuts.push_back(1 + rng.below(size - 1));
        std::sort(cuts.begin(), cuts.end());
        cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
        return cuts;
    }
    std::size_t max_piece = style == 0 ? 3 : style == 1 ? 16 : std::max<std::size_t>(1, size / 2);
    std::size_t at = 0;
    for (;;) {
        at += 1 + rng.below(max_piece);
        if (at >= size) break;
        cuts.push_back(at);
    }
    return cuts;
}

// Every position: byte-by-byte feeding.
inline std::vector<std::size_t> every_byte(std::size_t size) {
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < size; ++i) cuts.push_back(i);
    return cuts;
}

// Known library bugs, reproduced under fuzz/regressions/. Built with -DLLM_STREAM_FUZZ_SKIP_KNOWN=1
// (scripts/fuzz.sh does so when LLM_STREAM_FUZZ_SKIP_KNOWN=1), the targets skip inputs that would
// trigger them, so a long run can look for other bugs while one is open. The bugs listed below
// were fixed in 11a9eaa; the filter stays as the place to list the next one.
#ifndef LLM_STREAM_FUZZ_SKIP_KNOWN
#define LLM_STREAM_FUZZ_SKIP_KNOWN 0
#endif

// An SSE line that is exactly a field name without a colon ("data" or "event"): the parser's
// value is then a default std::string_view (data() == nullptr), and
//   fuzz/regressions/sse-bare-data-line-*:  "data" makes the event reuse the previous event's data;
//   fuzz/regressions/sse-bare-event-line-*: "event" passes nullptr to memcpy (UBSan).
inline bool has_bare_field_line(const std::uint8_t* data, std::size_t size, std::string_view field) {
    std::string_view s(reinterpret_cast<const char*>(data), size);
    for (std::size_t at = s.find(field); at != std::string_view::npos; at = s.find(field, at + 1)) {
        const std::size_t after = at + field.size();
        const bool starts_line = at == 0 || s[at - 1] == '\n' || s[at - 1] == '\r' ||
                                 (at == 3 && s.substr(0, 3) == "\xEF\xBB\xBF");
        const bool ends_line = after == s.size() || s[after] == '\n' || s[after] == '\r';
        if (starts_line && ends_line) return true;
    }
    return false;
}

inline bool skip_known(const std::uint8_t* data, std::size_t size) {
    return LLM_STREAM_FUZZ_SKIP_KNOWN && (has_bare_field_line(data, size, "data") || has_bare_field_line(data, size, "event"));
}

// An exact-size heap copy of the input: any read past its end is caught by the sanitizers.
inline std::unique_ptr<char[]> exact_copy(const std::uint8_t* data, std::size_t size) {
    std::unique_ptr<char[]> copy(new char[size ? size : 1]);
    if (size) std::memcpy(copy.get(), data, size);
    return copy;
}

// Whether text the library handed out is valid UTF-8; an absent optional field is.
inline bool utf8(std::string_view s) { return llm_stream::detail::utf8_valid(s.data(), s.data() + s.size()); }
inline bool utf8_or_absent(const std::optional<std::string_view>& s) { return !s || utf8(*s); }

}  // namespace fuzz

#endif
