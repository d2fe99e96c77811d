// The readers' known-shape path (detail::KnownShape): after a message read in full, one with the same
// bytes around its text is read without the general walk. Whatever the next message is — the same shape
// with other text, another ending, or a mutation anywhere (most of them from the text onwards) — a
// reader that has learned the shape must say exactly what a fresh reader says: the same result, the
// same events field by field, the same error. Used by each API's reader test.
#ifndef LLM_TEST_KNOWN_SHAPE_HPP
#define LLM_TEST_KNOWN_SHAPE_HPP

#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "llm_stream.hpp"

namespace llm_test {

/* A message of the shape a reader learns: head, the text's string token, the rest of the member that
   holds the text (the middle), then the members after it (the tail, with the closing brace). */
struct ShapeSeed {
    std::string head, text, middle, tail;
    std::string whole() const { return head + text + middle + tail; }
};

/* Everything a reader said about its last message, as text to compare. */
inline std::string reader_outcome(const llm_stream::detail::WireReader& reader, llm_stream::detail::WireReader::Result r) {
    using Result = llm_stream::detail::WireReader::Result;
    std::string out = "result " + std::to_string(static_cast<int>(r)) + "\n";
    if (r == Result::invalid || r == Result::error_event) out += "error " + reader.error().message + "\n";
    for (const llm_stream::Event& e : reader.events()) {
        out += std::to_string(static_cast<int>(e.type)) + "/" + std::to_string(e.choice) + " [" + std::string(e.text) +
               "] sig[" + std::string(e.signature) + "] raw[" + std::string(e.raw_reason) + "] call " +
               std::to_string(e.tool_call.index) + " " + std::string(e.tool_call.id.value_or("-")) + " " +
               std::string(e.tool_call.name.value_or("-")) + " " + std::string(e.tool_call.arguments.value_or("-")) +
               " usage " + std::to_string(e.usage.prompt_tokens) + "," + std::to_string(e.usage.completion_tokens) +
               "," + std::to_string(e.usage.total_tokens) + "\n";
    }
    return out;
}

/* `rounds` variations of the seeds, each read by a reader that has just read its seed and by one that
   has not (both having read `preamble` first: messages that give the seeds a context, such as an open
   call); returns how many were read the quick way (the head unchanged and accepted), which the caller
   checks is a good share. */
inline int check_known_shape(const std::function<std::unique_ptr<llm_stream::detail::WireReader>()>& make_reader,
                             const std::vector<ShapeSeed>& seeds, const std::vector<std::string>& texts,
                             const std::vector<std::string>& tails, int rounds,
                             const std::vector<std::string>& preamble = {}) {
    using Result = llm_stream::detail::WireReader::Result;
    const std::string alphabet = "{}[]:,\"\\/ untrfals0123456789-+.eE\t\n\x01\x7F\xC3\xA9\xFF";
    std::mt19937 rng(20261130u);
    int quick = 0;
    for (int round = 0; round < rounds; ++round) {
        const ShapeSeed& seed = seeds[rng() % seeds.size()];
        std::string message = seed.whole();
        if (rng() % 3 == 0) {  // other text, and maybe another tail
            message = seed.head + texts[rng() % texts.size()] + seed.middle + (rng() % 2 ? seed.tail : tails[rng() % tails.size()]);
        } else {  // byte edits, most of them from the text onwards
            for (int e = 1 + static_cast<int>(rng() % 3); e > 0; --e) {
                const std::size_t from = rng() % 4 ? seed.head.size() : 0;
                const std::size_t at = from + rng() % (message.size() + 1 - from);
                const char c = alphabet[rng() % alphabet.size()];
                if (rng() % 2 && at < message.size()) message[at] = c;
                else message.insert(message.begin() + static_cast<std::ptrdiff_t>(at), c);
            }
        }
        const std::unique_ptr<llm_stream::detail::WireReader> learned = make_reader(), fresh = make_reader();
        for (const std::string& m : preamble) {
            REQUIRE(learned->read("", m) == Result::ok);
            REQUIRE(fresh->read("", m) == Result::ok);
        }
        const std::string base = seed.whole();
        REQUIRE(learned->read("", base) == Result::ok);
        const Result a = learned->read("", message);
        const Result b = fresh->read("", message);
        CAPTURE(base);
        CAPTURE(message);
        CHECK(reader_outcome(*learned, a) == reader_outcome(*fresh, b));
        quick += a == Result::ok && message.compare(0, seed.head.size(), seed.head) == 0;
    }
    return quick;
}

}  // namespace llm_test

#endif  // LLM_TEST_KNOWN_SHAPE_HPP
