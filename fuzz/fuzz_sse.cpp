// libFuzzer target: detail::SseParser on arbitrary bytes (an SSE body).
//
// The input is parsed whole, byte by byte and split at PRNG-chosen points (seeded by the input),
// each piece in its own exactly-sized heap block. All runs must give the same events (type and
// data) and the same final status; every event's data fits max_event_bytes. An independent
// WHATWG "event stream interpretation" written here is the reference: the parser's events are
// always a prefix of the reference's, and all of them when the parser reports no error.
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"

#include "fuzz_common.hpp"

#include <cstring>
#include <memory>

namespace {

using llm_stream::ErrorCode;
using llm_stream::detail::SseLimits;
using llm_stream::detail::SseParser;

struct SseEvent {
    std::string type;
    std::string data;
    bool operator==(const SseEvent& o) const { return type == o.type && data == o.data; }
};

// The parser's feed() over the (position, end) pairs these tests walk with.
SseParser::Status sse_next(SseParser& parser, const char*& p, const char* end) {
    const SseParser::Step step = parser.feed({p, static_cast<std::size_t>(end - p)});
    p += step.consumed;
    return step.status;
}

struct Outcome {
    std::vector<SseEvent> events;
    ErrorCode error = ErrorCode::none;
    std::string error_message;
    bool partial = false;
};

Outcome run(const std::uint8_t* input, std::size_t size, const std::vector<std::size_t>& cuts, SseLimits limits) {
    SseParser parser(limits);
    Outcome o;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= cuts.size() && o.error == ErrorCode::none; ++i) {
        const std::size_t stop = i < cuts.size() ? cuts[i] : size;
        const std::size_t len = stop - start;
        std::unique_ptr<char[]> piece(new char[len ? len : 1]);
        if (len) std::memcpy(piece.get(), input + start, len);
        const char* p = piece.get();
        const char* const end = p + len;
        for (;;) {
            const char* const before = p;
            const SseParser::Status s = sse_next(parser, p, end);
            FUZZ_CHECK(p >= before && p <= end);
            if (s == SseParser::Status::error) {
                o.error = parser.error().code;
                o.error_message = parser.error().message;
                FUZZ_CHECK(o.error == ErrorCode::limit_exceeded || o.error == ErrorCode::io);
                // Sticky: nothing more comes out of a failed parser.
                const char more[] = "data: x\n\n";
                const char* q = more;
                FUZZ_CHECK(sse_next(parser, q, more + sizeof more - 1) == SseParser::Status::error);
                break;
            }
            if (s == SseParser::Status::need_more) {
                FUZZ_CHECK(p == end);  // need_more takes the whole input
                break;
            }
            const std::string_view data = parser.data();
            FUZZ_CHECK(data.size() <= limits.max_event_bytes);
            FUZZ_CHECK(parser.event_type().size() <= 64);
            o.events.push_back({std::string(parser.event_type()), std::string(data)});
        }
        start = stop;
    }
    if (o.error == ErrorCode::none) o.partial = parser.has_partial_event();
    return o;
}

// The WHATWG algorithm, straight from the text, with the library's one documented deviation:
// an event type longer than 64 bytes is kept cut to 64.
std::vector<SseEvent> reference(const std::uint8_t* input, std::size_t size, bool& partial) {
    std::string_view s(reinterpret_cast<const char*>(input), size);
    if (s.size() >= 3 && s.substr(0, 3) == "\xEF\xBB\xBF") s.remove_prefix(3);
    // Input that is only the start of a BOM: the parser is still waiting to know; nothing is partial.
    else if (s.size() < 3 && std::string_view("\xEF\xBB\xBF").substr(0, s.size()) == s) s = {};
    std::vector<SseEvent> out;
    std::string data, type;
    bool has_data = false;
    std::size_t i = 0;
    for (;;) {
        std::size_t eol = s.find_first_of("\r\n", i);
        if (eol == std::string_view::npos) {
            partial = has_data || i < s.size();
            return out;
        }
        std::string_view line = s.substr(i, eol - i);
        i = eol + 1;
        if (s[eol] == '\r' && i < s.size() && s[i] == '\n') ++i;
        if (line.empty()) {
            if (has_data) out.push_back({type, data});
            data.clear();
            type.clear();
            has_data = false;
            continue;
        }
        if (line[0] == ':') continue;
        const std::size_t colon = line.find(':');
        std::string_view field = line.substr(0, colon);
        std::string_view value;
        if (colon != std::string_view::npos) {
            value = line.substr(colon + 1);
            if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
        }
        if (field == "data") {
            if (has_data) data.push_back('\n');
            data.append(value);
            has_data = true;
        } else if (field == "event") {
            type.assign(value.substr(0, 64));
        }
    }
}

void same(const Outcome& a, const Outcome& b) {
    FUZZ_CHECK(a.events.size() == b.events.size());
    for (std::size_t i = 0; i < a.events.size(); ++i) FUZZ_CHECK(a.events[i] == b.events[i]);
    FUZZ_CHECK(a.error == b.error);
    FUZZ_CHECK(a.error_message == b.error_message);
    FUZZ_CHECK(a.partial == b.partial);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > fuzz::max_input || fuzz::skip_known(data, size)) return 0;
    fuzz::Rng rng(fuzz::hash(data, size));
    SseLimits limits;  // defaults (2 MiB) are never reached by a 64 KiB input
    switch (rng.below(4)) {
    case 0: limits.max_line_bytes = 1 + rng.below(64); limits.max_event_bytes = 1 + rng.below(64); break;
    case 1: limits.max_line_bytes = 16 + rng.below(1024); limits.max_event_bytes = rng.below(2048); break;
    default: break;
    }
    const Outcome whole = run(data, size, {}, limits);
    same(whole, run(data, size, fuzz::every_byte(size), limits));
    for (int style = 0; style < 4; ++style) same(whole, run(data, size, fuzz::random_cuts(rng, size, style), limits));

    bool partial = false;
    const std::vector<SseEvent> expected = reference(data, size, partial);
    FUZZ_CHECK(whole.events.size() <= expected.size());
    for (std::size_t i = 0; i < whole.events.size(); ++i) FUZZ_CHECK(whole.events[i] == expected[i]);
    if (whole.error == ErrorCode::none) {
        FUZZ_CHECK(whole.events.size() == expected.size());
        FUZZ_CHECK(whole.partial == partial);
    }
    return 0;
}
