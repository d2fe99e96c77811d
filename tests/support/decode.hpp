// Feeds a whole HTTP response to an llm_stream::Decoder in pieces, as a transport hands over what
// each read returned, and checks the feed()/finish() contract on the way. Include after llm_stream.hpp.
#ifndef LLM_STREAM_TEST_DECODE_HPP
#define LLM_STREAM_TEST_DECODE_HPP

#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

enum class PieceMemory {
    copied,    // each piece in its own exactly-sized heap buffer, freed as soon as the decoder has used it
               // all: AddressSanitizer sees a read past a piece, or through a view kept into an old one
    borrowed,  // views of the response itself: no allocation (for allocation counts and benchmarks)
};

struct Decoded {
    bool done = false;       // DecodeStatus::done: the completion is over
    bool failed = false;     // DecodeStatus::failed: error says why
    llm_stream::Error error;
    std::vector<std::string> warnings;
    std::size_t events = 0;
    std::size_t messages = 0;          // decoder.messages() at the end
    std::size_t skipped_messages = 0;  // decoder.skipped_messages() at the end
    std::string contract_broken;       // empty unless feed() or finish() broke their contract: how
};

namespace decode_detail {

inline bool broken(Decoded& out, const char* what) {
    if (out.contract_broken.empty()) out.contract_broken = what;
    return false;
}

/* Acts on one step that is not need_more; false when the decoding is over. */
template <class OnEvent>
bool take_step(llm_stream::Decoder& decoder, llm_stream::DecodeStatus status, OnEvent& on_event, Decoded& out) {
    switch (status) {
    case llm_stream::DecodeStatus::event:
        ++out.events;
        on_event(decoder.event());
        return true;
    case llm_stream::DecodeStatus::warning:
        if (decoder.warning().empty()) return broken(out, "a warning without text");
        out.warnings.emplace_back(decoder.warning());
        return true;
    case llm_stream::DecodeStatus::done:
        out.done = true;
        return false;
    case llm_stream::DecodeStatus::failed:
        out.failed = true;
        out.error = decoder.error();
        if (!out.error || out.error.message.empty()) return broken(out, "failed without an error code and message");
        return false;
    case llm_stream::DecodeStatus::need_more:
        break;
    }
    return broken(out, "need_more where the decoder had to say how the input ended");
}

/* Hands `piece` over until the decoder has used all of it (true) or the decoding is over (false). */
template <class OnEvent>
bool feed_piece(llm_stream::Decoder& decoder, std::string_view piece, OnEvent& on_event, Decoded& out,
                std::size_t& steps_left) {
    for (;;) {
        if (steps_left-- == 0) return broken(out, "more steps than the input can explain: a loop");
        const llm_stream::DecodeStep step = decoder.feed(piece);
        if (step.consumed > piece.size()) return broken(out, "consumed more bytes than it was given");
        piece.remove_prefix(step.consumed);
        if (step.status == llm_stream::DecodeStatus::need_more)
            return piece.empty() || broken(out, "need_more with bytes left over");
        if (!take_step(decoder, step.status, on_event, out)) return false;
    }
}

/* The end of the input: finish() until it says how the response ended. */
template <class OnEvent>
void finish_input(llm_stream::Decoder& decoder, OnEvent& on_event, Decoded& out, std::size_t& steps_left) {
    for (;;) {
        if (steps_left-- == 0) {
            broken(out, "more steps than the input can explain: a loop");
            return;
        }
        if (!take_step(decoder, decoder.finish().status, on_event, out)) return;
    }
}

/* Once over, it stays over: finish() says so again, without events. */
inline void check_sticky_end(llm_stream::Decoder& decoder, Decoded& out) {
    const llm_stream::DecodeStatus again = decoder.finish().status;
    if (out.done && again != llm_stream::DecodeStatus::done) broken(out, "finish() after done did not say done");
    if (out.failed && again != llm_stream::DecodeStatus::failed) broken(out, "finish() after failed did not say failed");
}

}  // namespace decode_detail

/* Feeds `response` cut at `cuts` (increasing offsets inside it), calls on_event(const Event&) for each
   event, stops at done or failed, and calls finish() when the input ran out first. */
template <class OnEvent>
Decoded decode_in_pieces(llm_stream::Decoder& decoder, std::string_view response, const std::vector<std::size_t>& cuts,
                         PieceMemory memory, OnEvent on_event) {
    Decoded out;
    // Each step uses a byte or hands out one of a message's events: far fewer than this.
    std::size_t steps_left = 2 * response.size() + 64;
    bool over = false;
    std::size_t at = 0;
    for (std::size_t i = 0; i <= cuts.size() && !over; ++i) {
        const std::size_t end = i < cuts.size() ? cuts[i] : response.size();
        if (end <= at) continue;
        std::string_view piece = response.substr(at, end - at);
        std::unique_ptr<char[]> copy;
        if (memory == PieceMemory::copied) {
            copy.reset(new char[piece.size()]);
            std::memcpy(copy.get(), piece.data(), piece.size());
            piece = std::string_view(copy.get(), piece.size());
        }
        over = !decode_detail::feed_piece(decoder, piece, on_event, out, steps_left);
        at = end;
    }
    if (!over) decode_detail::finish_input(decoder, on_event, out, steps_left);
    if (out.contract_broken.empty()) decode_detail::check_sticky_end(decoder, out);
    out.messages = decoder.messages();
    out.skipped_messages = decoder.skipped_messages();
    return out;
}

/* The same with a decoder made from `limits`. */
template <class OnEvent>
Decoded decode_in_pieces(std::string_view response, const std::vector<std::size_t>& cuts, OnEvent on_event,
                         const llm_stream::Limits& limits = {}, PieceMemory memory = PieceMemory::copied) {
    llm_stream::Decoder decoder(limits);
    return decode_in_pieces(decoder, response, cuts, memory, std::move(on_event));
}

#endif
