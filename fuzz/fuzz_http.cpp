// libFuzzer target: detail::HttpResponseReader on arbitrary bytes (an HTTP/1.1 response).
//
// The input is fed whole, byte by byte and in pieces whose sizes come from a PRNG seeded by the
// input; each piece lives in its own exactly-sized heap block so ASan sees any read past it.
// Checked on every step: consumed <= len, a body view lies inside the consumed part of the piece,
// need_more consumes everything, head/body steps make progress, the body never exceeds the bytes
// fed, Content-Length bodies have exactly that length, error and end are sticky. Then the
// outcome (head fields, concatenated body, end/error and where the message ended) must not depend
// on how the input was split.
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"

#include "fuzz_common.hpp"

#include <cstring>
#include <memory>

namespace {

using llm_stream::ErrorCode;
using llm_stream::detail::HttpLimits;
using llm_stream::detail::HttpResponseReader;
using Status = HttpResponseReader::Status;

struct Outcome {
    int heads = 0;  // final heads seen (1 at most)
    int status = 0;
    bool chunked = false;
    std::int64_t content_length = -1;
    bool keep_alive = false;
    std::string content_type;
    std::string headers;  // every header as name\0value\0
    std::string body;
    bool ended = false;
    bool failed = false;
    bool ended_by_finish = false;
    std::size_t end_position = 0;  // input offset just past the message, when ended during feed
    ErrorCode error = ErrorCode::none;
    std::string error_message;
};

void record_head(const HttpResponseReader& r, Outcome& o) {
    ++o.heads;
    o.status = r.status();
    o.chunked = r.chunked();
    o.content_length = r.content_length();
    o.keep_alive = r.keep_alive();
    o.content_type = std::string(r.content_type());
    r.for_each_header([&](std::string_view name, std::string_view value) {
        o.headers.append(name).push_back('\0');
        o.headers.append(value).push_back('\0');
    });
    FUZZ_CHECK(o.status >= 200 && o.status <= 999);  // 1xx heads are interim and never reported
    FUZZ_CHECK(!(o.chunked && o.content_length >= 0));
    FUZZ_CHECK(r.error().code == ErrorCode::none);
}

void check_sticky_error(HttpResponseReader& r) {
    const char junk[] = "HTTP/1.1 200 OK\r\n\r\n0\r\n\r\n";
    HttpResponseReader::Step again = r.feed({junk, sizeof junk - 1});
    FUZZ_CHECK(again.status == Status::error);
    FUZZ_CHECK(again.consumed == 0);
    FUZZ_CHECK(r.finish().status == Status::error);
    FUZZ_CHECK(r.error().code != ErrorCode::none);
}

void check_sticky_end(HttpResponseReader& r) {
    const char more[] = "x";
    HttpResponseReader::Step again = r.feed({more, 1});
    FUZZ_CHECK(again.status == Status::end);
    FUZZ_CHECK(again.consumed == 0);
    FUZZ_CHECK(r.finish().status == Status::end);
}

Outcome run(const std::uint8_t* data, std::size_t size, const std::vector<std::size_t>& cuts, HttpLimits limits) {
    HttpResponseReader reader(limits);
    Outcome o;
    std::size_t fed = 0;  // input bytes handed to the reader (consumed) so far
    std::size_t start = 0;
    for (std::size_t i = 0; i <= cuts.size() && !o.ended && !o.failed; ++i) {
        const std::size_t stop = i < cuts.size() ? cuts[i] : size;
        const std::size_t len = stop - start;
        // An exact-size copy: reading past it is a heap-buffer-overflow.
        std::unique_ptr<char[]> piece(new char[len ? len : 1]);
        if (len) std::memcpy(piece.get(), data + start, len);
        const char* p = piece.get();
        std::size_t n = len;
        while (n > 0) {
            const HttpResponseReader::Step step = reader.feed({p, n});
            FUZZ_CHECK(step.consumed <= n);
            if (step.status == Status::body) {
                FUZZ_CHECK(step.body.size() == 0 || step.body.data() >= p);
                FUZZ_CHECK(step.body.size() == 0 || step.body.data() + step.body.size() <= p + step.consumed);
                FUZZ_CHECK(step.body.size() > 0);  // a body step always carries bytes
                o.body.append(step.body.data(), step.body.size());
            } else {
                FUZZ_CHECK(step.body.empty());
            }
            p += step.consumed;
            n -= step.consumed;
            fed += step.consumed;
            FUZZ_CHECK(o.body.size() <= fed);
            switch (step.status) {
            case Status::need_more:
                FUZZ_CHECK(n == 0);  // need_more means everything was taken
                break;
            case Status::head:
                FUZZ_CHECK(step.consumed > 0);
                record_head(reader, o);
                FUZZ_CHECK(o.heads == 1);
                break;
            case Status::body:
                FUZZ_CHECK(step.consumed > 0);
                FUZZ_CHECK(o.heads == 1);
                break;
            case Status::end:
                FUZZ_CHECK(o.heads == 1);
                o.ended = true;
                o.end_position = start + (len - n);
                break;
            case Status::error:
                o.failed = true;
                o.error = reader.error().code;
                o.error_message = reader.error().message;
                FUZZ_CHECK(o.error != ErrorCode::none);
                FUZZ_CHECK(o.error == ErrorCode::protocol || o.error == ErrorCode::limit_exceeded);
                break;
            }
            if (o.ended || o.failed) break;
        }
        start = stop;
    }
    if (!o.ended && !o.failed) {
        const HttpResponseReader::Step step = reader.finish();
        FUZZ_CHECK(step.consumed == 0 && step.body.empty());
        FUZZ_CHECK(step.status == Status::end || step.status == Status::error);
        if (step.status == Status::end) {
            o.ended = true;
            o.ended_by_finish = true;
            o.end_position = size;
            // A chunked body ends with its last chunk, never at end of input; a 204 or 304 has no
            // body whatever its headers say, so it ends with its head.
            FUZZ_CHECK(o.heads == 1 && (!o.chunked || o.status == 204 || o.status == 304));
        } else {
            o.failed = true;
            o.error = reader.error().code;
            o.error_message = reader.error().message;
            FUZZ_CHECK(o.error == ErrorCode::protocol);
        }
    }
    if (o.failed) check_sticky_error(reader);
    if (o.ended) {
        check_sticky_end(reader);
        if (o.content_length >= 0 && o.status != 204 && o.status != 304)
            FUZZ_CHECK(o.body.size() == static_cast<std::uint64_t>(o.content_length));
        if (o.status == 204 || o.status == 304) FUZZ_CHECK(o.body.empty());
    }
    FUZZ_CHECK(o.ended != o.failed);
    return o;
}

void same(const Outcome& a, const Outcome& b) {
    FUZZ_CHECK(a.heads == b.heads);
    FUZZ_CHECK(a.status == b.status);
    FUZZ_CHECK(a.chunked == b.chunked);
    FUZZ_CHECK(a.content_length == b.content_length);
    FUZZ_CHECK(a.keep_alive == b.keep_alive);
    FUZZ_CHECK(a.content_type == b.content_type);
    FUZZ_CHECK(a.headers == b.headers);
    FUZZ_CHECK(a.body == b.body);
    FUZZ_CHECK(a.ended == b.ended);
    FUZZ_CHECK(a.failed == b.failed);
    FUZZ_CHECK(a.ended_by_finish == b.ended_by_finish);
    FUZZ_CHECK(a.end_position == b.end_position);
    FUZZ_CHECK(a.error == b.error);
    FUZZ_CHECK(a.error_message == b.error_message);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > fuzz::max_input) return 0;
    const std::uint64_t seed = fuzz::hash(data, size);
    fuzz::Rng rng(seed);
    // Small limits half of the time, so the limit paths are reached.
    HttpLimits limits;
    switch (rng.below(4)) {
    case 0: limits.max_header_bytes = 16 + rng.below(256); limits.max_chunk_line_bytes = 1 + rng.below(16); break;
    case 1: limits.max_header_bytes = 256 + rng.below(4096); break;
    default: break;
    }
    const Outcome whole = run(data, size, {}, limits);
    same(whole, run(data, size, fuzz::every_byte(size), limits));
    for (int style = 0; style < 4; ++style) same(whole, run(data, size, fuzz::random_cuts(rng, size, style), limits));
    return 0;
}
