#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"
#include "support/printable.hpp"
#include "support/random_cuts.hpp"
#include <doctest/doctest.h>
#include "support/ensure.hpp"
#include "support/split_check.hpp"  // after doctest: it uses its macros

/* Tests of detail::HttpResponseReader (RFC 9112 response framing, sans-I/O) and detail::parse_http_date.

   Every response is fed through check_http(): whole, one byte at a time, split once at every position
   (short inputs) and at random positions for 200 fixed seeds. Each piece is copied into its own heap
   block that is freed as soon as the reader has consumed it, so a body view that outlives its input or a
   read past the end of a piece is caught by AddressSanitizer. The outcome (head fields, concatenated
   body, how the message ended and where) must be the same in every mode. */

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

using llm_stream::ErrorCode;
using llm_stream::detail::HttpLimits;
using llm_stream::detail::HttpResponseReader;
using llm_stream::detail::parse_http_date;
using HttpStatus = HttpResponseReader::Status;

namespace {

// doctest prints a const char* as a pointer: capture C strings through this.
#define CAPTURE_STR(x) INFO(#x " := " << escape(std::string(x)))


const char* code_name(ErrorCode c) { return llm_stream::to_string(c); }

struct HttpOptions {
    HttpLimits limits{};
    bool finish = true;  // call finish() when the input runs out before the end of the message
    std::vector<std::string> probes{"content-type", "connection", "x-a", "link"};
};

struct HttpOutcome {
    std::string final_status = "need_more";  // end, error, need_more
    ErrorCode code = ErrorCode::none;
    std::string message;
    int heads = 0;
    int status = 0;
    bool chunked = false;
    std::int64_t content_length = -2;
    bool keep_alive = false;
    std::vector<std::pair<std::string, std::string>> headers;  // for_each_header, in order
    std::vector<std::string> probes;                            // header(name) for each probe name
    std::string body;
    std::size_t end_offset = 0;  // input offset just past the message when Status::end was reported
    bool ended_by_finish = false;
    std::string anomalies;  // protocol-of-use violations by the reader (must stay empty)

    std::string describe() const {
        std::string d = "final=" + final_status + " code=" + code_name(code) + " msg='" + message + "'";
        d += " heads=" + std::to_string(heads) + " status=" + std::to_string(status);
        d += " chunked=" + std::to_string(chunked) + " cl=" + std::to_string(content_length);
        d += " keep_alive=" + std::to_string(keep_alive) + " end_offset=" + std::to_string(end_offset);
        d += " by_finish=" + std::to_string(ended_by_finish) + " headers=[";
        for (const auto& h : headers) d += escape(h.first) + ":" + escape(h.second) + ";";
        d += "] probes=[";
        for (const auto& p : probes) d += escape(p) + ";";
        d += "] body='" + escape(body) + "'";
        if (!anomalies.empty()) d += " ANOMALIES: " + anomalies;
        return d;
    }
};

/* Feeds input split at the given cut positions (sorted, inside (0, size)). */
HttpOutcome run_http(const std::string& input, const std::vector<std::size_t>& cuts, const HttpOptions& opt) {
    HttpResponseReader reader(opt.limits);
    HttpOutcome out;
    bool done = false;
    auto record_head = [&] {
        ++out.heads;
        out.status = reader.status();
        out.chunked = reader.chunked();
        out.content_length = reader.content_length();
        out.keep_alive = reader.keep_alive();
        out.headers.clear();
        reader.for_each_header([&](std::string_view n, std::string_view v) {
            out.headers.emplace_back(std::string(n), std::string(v));
        });
        out.probes.clear();
        for (const auto& name : opt.probes) out.probes.emplace_back(reader.header(name));
        if (out.heads > 1) out.anomalies += "more than one head;";
    };
    auto handle = [&](const HttpResponseReader::Step& step, std::size_t offset, const char* base, std::size_t len) {
        switch (step.status) {
        case HttpStatus::need_more:
            if (step.consumed != len) out.anomalies += "need_more without consuming everything;";
            break;
        case HttpStatus::head:
            record_head();
            break;
        case HttpStatus::body:
            if (out.heads == 0) out.anomalies += "body before head;";
            if (step.body.empty()) out.anomalies += "empty body step;";
            if (step.body.data() < base || step.body.data() + step.body.size() > base + len)
                out.anomalies += "body view outside the input;";
            else if (static_cast<std::size_t>(step.body.data() + step.body.size() - base) != step.consumed)
                out.anomalies += "body view does not end at consumed;";
            out.body.append(step.body.data(), step.body.size());  // copy before the input goes away
            break;
        case HttpStatus::end:
            out.final_status = "end";
            out.end_offset = offset + step.consumed;
            done = true;
            break;
        case HttpStatus::error:
            out.final_status = "error";
            out.code = reader.error().code;
            out.message = reader.error().message;
            done = true;
            break;
        }
        if (step.consumed > len) out.anomalies += "consumed more than given;";
    };

    std::size_t start = 0;
    std::vector<std::size_t> bounds(cuts);
    bounds.push_back(input.size());
    for (std::size_t i = 0; i < bounds.size() && !done; ++i) {
        const std::size_t stop = bounds[i];
        if (stop <= start) continue;
        const std::size_t n = stop - start;
        std::unique_ptr<char[]> piece(new char[n]);  // exactly sized: ASan sees any read past it
        std::memcpy(piece.get(), input.data() + start, n);
        std::size_t pos = 0;
        int guard = 0;
        while (pos < n && !done) {
            const HttpResponseReader::Step step = reader.feed({piece.get() + pos, n - pos});
            handle(step, start + pos, piece.get() + pos, n - pos);
            if (!done && step.consumed == 0) {
                out.anomalies += "no progress;";
                done = true;
                break;
            }
            pos += step.consumed;
            if (++guard > 1000000) {
                out.anomalies += "loop;";
                done = true;
            }
        }
        std::memset(piece.get(), 0x5a, n);  // clobber: a stale view would show it
        start = stop;
    }
    if (!done) {
        // The message may have ended exactly at the end of the input.
        static const char nothing[1] = {0};
        const HttpResponseReader::Step step = reader.feed({nothing, 0});
        if (step.status == HttpStatus::end || step.status == HttpStatus::error)
            handle(step, input.size(), nothing, 0);
        else if (step.status != HttpStatus::need_more)
            out.anomalies += "empty feed returned head/body;";
    }
    if (!done && opt.finish) {
        const HttpResponseReader::Step step = reader.finish();
        if (step.status == HttpStatus::end || step.status == HttpStatus::error) {
            out.ended_by_finish = true;
            handle(step, input.size(), nullptr, 0);
        } else {
            out.anomalies += "finish() returned neither end nor error;";
        }
    }
    return out;
}


/* Runs every split mode, checks they agree, returns the outcome of the whole input. */
HttpOutcome check_http(const std::string& input, const HttpOptions& opt = {}) {
    INFO("input: " << escape(input));
    auto run = [&](const std::vector<std::size_t>& cuts) { return run_http(input, cuts, opt); };
    return check_every_split(input.size(), run, 4096, 200);
}

void check_error(const std::string& input, ErrorCode code, const HttpOptions& opt = {}) {
    const HttpOutcome o = check_http(input, opt);
    INFO("input: " << escape(input) << "\n outcome: " << o.describe());
    CHECK(o.final_status == "error");
    CHECK(o.code == code);
    CHECK(!o.message.empty());
}

/* Feeds the whole input once, one feed() per remaining part, and returns the steps. */
std::vector<HttpResponseReader::Step> steps_of(HttpResponseReader& reader, const std::string& input) {
    std::vector<HttpResponseReader::Step> steps;
    std::size_t pos = 0;
    for (int i = 0; i < 100; ++i) {
        HttpResponseReader::Step s = reader.feed({input.data() + pos, input.size() - pos});
        steps.push_back(s);
        pos += s.consumed;
        if (s.status == HttpStatus::end || s.status == HttpStatus::error || pos >= input.size()) break;
    }
    return steps;
}

}  // namespace

/* ------------------------------------------------------------------------------------------------
   Status line
   ------------------------------------------------------------------------------------------------ */

TEST_CASE("status line: HTTP/1.1 200 OK with a Content-Length body") {
    const HttpOutcome o = check_http("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 5\r\n\r\nhello");
    CHECK(o.final_status == "end");
    CHECK(o.heads == 1);
    CHECK(o.status == 200);
    CHECK_FALSE(o.chunked);
    CHECK(o.content_length == 5);
    CHECK(o.keep_alive);
    CHECK(o.body == "hello");
    ENSURE(o.probes.size() == 4);
    CHECK(o.probes[0] == "text/event-stream");
    CHECK_FALSE(o.ended_by_finish);
}

TEST_CASE("status line: no reason phrase, empty reason phrase, long reason phrase, other codes") {
    SUBCASE("HTTP/1.1 200 without reason") {
        const HttpOutcome o = check_http("HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi");
        CHECK(o.final_status == "end");
        CHECK(o.status == 200);
        CHECK(o.body == "hi");
    }
    SUBCASE("HTTP/1.1 200 followed by a space and nothing") {
        const HttpOutcome o = check_http("HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nhi");
        CHECK(o.final_status == "end");
        CHECK(o.status == 200);
        CHECK(o.body == "hi");
    }
    SUBCASE("reason phrase with spaces and obs-text") {
        const HttpOutcome o = check_http("HTTP/1.1 429 Too Many \xC3\xA9 Requests\r\nContent-Length: 0\r\n\r\n");
        CHECK(o.final_status == "end");
        CHECK(o.status == 429);
    }
    SUBCASE("non-2xx status is reported, not an error of the reader") {
        const HttpOutcome o = check_http("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy");
        CHECK(o.final_status == "end");
        CHECK(o.status == 503);
        CHECK(o.body == "busy");
    }
}

TEST_CASE("status line: HTTP/1.0") {
    const HttpOutcome o = check_http("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc");
    CHECK(o.final_status == "end");
    CHECK(o.status == 200);
    CHECK(o.body == "abc");
    CHECK_FALSE(o.keep_alive);

    const HttpOutcome close = check_http("HTTP/1.0 404 Not Found\r\n\r\nmissing");
    CHECK(close.final_status == "end");
    CHECK(close.ended_by_finish);
    CHECK(close.status == 404);
    CHECK(close.body == "missing");
    CHECK_FALSE(close.keep_alive);
}

TEST_CASE("status line: malformed forms are protocol errors") {
    const char* const lines[] = {
        "garbage",
        "HTTP/2 200",
        "HTTP/2 200 OK",
        "HTTP/2.0 200 OK",
        "HTTP/1.1 20 OK",
        "HTTP/1.1 20",
        "HTTP/1.1 2000 OK",
        "ICY 200 OK",
        "http/1.1 200 OK",
        "HTTP/1.1  200 OK",
        "HTTP/1.1 OK 200",
        "HTTP/1.1 -20 OK",
        "HTTP/1.1 099 Low",
        "HTTP/1.1 2x0 OK",
        "HTTP/1.10 200 OK",
        "HTTP/11 200 OK",
        "HTTP/1.1\t200 OK",
        " HTTP/1.1 200 OK",
        "HTTP/1.1",
        "HTTP/1.1 ",
        "HTTP/ 1.1 200 OK",
        "200 OK",
    };
    for (const char* line : lines) {
        CAPTURE_STR(line);
        const HttpOutcome o = check_http(std::string(line) + "\r\nContent-Length: 0\r\n\r\n");
        CHECK(o.final_status == "error");
        CHECK(o.code == ErrorCode::protocol);
        CHECK(o.heads == 0);
    }
    // Same with bare LF line ends and no header at all.
    const HttpOutcome bare = check_http("ICY 200 OK\n\n");
    CHECK(bare.final_status == "error");
    CHECK(bare.code == ErrorCode::protocol);
}

/* ------------------------------------------------------------------------------------------------
   Header fields
   ------------------------------------------------------------------------------------------------ */

TEST_CASE("headers: names are case-insensitive for header() and for framing") {
    HttpOptions opt;
    opt.probes = {"Content-Type", "CONTENT-TYPE", "content-type", "X-Request-Id", "x-request-id"};
    const HttpOutcome o = check_http(
        "HTTP/1.1 200 OK\r\ncontent-TYPE: text/event-stream; charset=utf-8\r\nx-REQUEST-id: abc123\r\n"
        "TRANSFER-ENCODING: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        opt);
    CHECK(o.final_status == "end");
    CHECK(o.chunked);
    CHECK(o.body == "abc");
    ENSURE(o.probes.size() == 5);
    CHECK(o.probes[0] == "text/event-stream; charset=utf-8");
    CHECK(o.probes[1] == o.probes[0]);
    CHECK(o.probes[2] == o.probes[0]);
    CHECK(o.probes[3] == "abc123");
    CHECK(o.probes[4] == "abc123");

    const HttpOutcome cl = check_http("HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh: 4\r\n\r\nbodyEXTRA");
    CHECK(cl.content_length == 4);
    CHECK(cl.body == "body");
    CHECK(cl.final_status == "end");

    HttpResponseReader reader;
    const std::string input = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n";
    const auto steps = steps_of(reader, input);
    ENSURE(!steps.empty());
    CHECK(steps[0].status == HttpStatus::head);
    CHECK(reader.content_type() == "application/json");
    CHECK(reader.header("CONTENT-type") == "application/json");
    CHECK(reader.header("content-typ").empty());
    CHECK(reader.header("content-type-x").empty());
}

TEST_CASE("headers: values are trimmed of spaces and tabs; absent and empty headers are empty") {
    HttpOptions opt;
    opt.probes = {"x-a", "x-empty", "x-absent", "x-inner"};
    const HttpOutcome o = check_http(
        "HTTP/1.1 200 OK\r\nX-A: \t value with  inner  space \t \r\nX-Empty:\r\nX-Inner:a b\r\nContent-Length: 0\r\n\r\n",
        opt);
    CHECK(o.final_status == "end");
    ENSURE(o.probes.size() == 4);
    CHECK(o.probes[0] == "value with  inner  space");
    CHECK(o.probes[1] == "");
    CHECK(o.probes[2] == "");
    CHECK(o.probes[3] == "a b");
}

TEST_CASE("headers: a repeated header returns the first value; for_each_header visits all in order") {
    HttpOptions opt;
    opt.probes = {"x-a", "set-cookie"};
    const HttpOutcome o = check_http(
        "HTTP/1.1 200 OK\r\nX-A: one\r\nSet-Cookie: a=1\r\nx-a: two\r\nSet-Cookie: b=2\r\nX-A: three\r\n"
        "Content-Length: 0\r\n\r\n",
        opt);
    CHECK(o.final_status == "end");
    ENSURE(o.probes.size() == 2);
    CHECK(o.probes[0] == "one");
    CHECK(o.probes[1] == "a=1");
    ENSURE(o.headers.size() == 6);
    CHECK(o.headers[0] == std::make_pair(std::string("X-A"), std::string("one")));
    CHECK(o.headers[1] == std::make_pair(std::string("Set-Cookie"), std::string("a=1")));
    CHECK(o.headers[2] == std::make_pair(std::string("x-a"), std::string("two")));
    CHECK(o.headers[3] == std::make_pair(std::string("Set-Cookie"), std::string("b=2")));
    CHECK(o.headers[4] == std::make_pair(std::string("X-A"), std::string("three")));
    CHECK(o.headers[5] == std::make_pair(std::string("Content-Length"), std::string("0")));
}

TEST_CASE("headers: a line without a colon or with an empty name is a protocol error") {
    check_error("HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 0\r\n\r\n", ErrorCode::protocol);
    check_error("HTTP/1.1 200 OK\r\n: empty-name\r\nContent-Length: 0\r\n\r\n", ErrorCode::protocol);
}

TEST_CASE("headers: obs-fold continuation is replaced by spaces (RFC 9112 5.2)") {
    // "A user agent that receives an obs-fold in a response message ... MUST replace each received
    // obs-fold with one or more SP octets prior to interpreting the field value."
    HttpOptions opt;
    opt.probes = {"x-folded"};
    const HttpOutcome o = check_http("HTTP/1.1 200 OK\r\nX-Folded: foo\r\n  bar\r\nContent-Length: 0\r\n\r\n", opt);
    CHECK(o.final_status == "end");
    ENSURE(o.probes.size() == 1);
    const std::string v = o.probes[0];
    CAPTURE_STR(v);
    ENSURE(v.size() >= 7);  // "foo" SP "bar" at least
    CHECK(v.compare(0, 3, "foo") == 0);
    CHECK(v.compare(v.size() - 3, 3, "bar") == 0);
    CHECK(v.find_first_not_of(' ', 3) == v.size() - 3);  // only spaces in between
}

TEST_CASE("headers: a bare CR or a NUL inside a field value is rejected or replaced by SP (RFC 9112 2.2, RFC 9110 5.5)") {
    // RFC 9112 2.2: "A recipient of such a bare CR MUST consider that element to be invalid or replace each
    // bare CR with SP before processing that element". RFC 9110 5.5: "a recipient of CR, LF, or NUL within
    // a field value MUST either reject the message or replace each of those characters with SP".
    HttpOptions opt;
    opt.probes = {"x-a"};
    for (const std::string& value : {std::string("a\rb"), std::string("a\0b", 3)}) {
        CAPTURE_STR(value);
        const HttpOutcome o = check_http("HTTP/1.1 200 OK\r\nX-A: " + value + "\r\nContent-Length: 0\r\n\r\n", opt);
        ENSURE(o.probes.size() == 1);
        const bool rejected = o.final_status == "error" && o.code == ErrorCode::protocol;
        const bool replaced = o.final_status == "end" && o.probes[0] == "a b";
        CAPTURE(o.describe());
        CHECK((rejected || replaced));
    }
}

TEST_CASE("head: stray CRLF or LF before the status line is skipped") {
    for (const char* prefix : {"\r\n", "\n", "\r\n\r\n", "\n\r\n\n"}) {
        CAPTURE_STR(prefix);
        const HttpOutcome o = check_http(std::string(prefix) + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        CHECK(o.final_status == "end");
        CHECK(o.status == 200);
        CHECK(o.body == "ok");
    }
}

TEST_CASE("head: bare LF line endings") {
    const HttpOutcome o = check_http("HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 3\n\nabc");
    CHECK(o.final_status == "end");
    CHECK(o.status == 200);
    CHECK(o.content_length == 3);
    CHECK(o.body == "abc");
    ENSURE(!o.probes.empty());
    CHECK(o.probes[0] == "text/plain");

    const HttpOutcome mixed = check_http("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\n\r\n2\r\nab\n0\n\n");
    CHECK(mixed.final_status == "end");
    CHECK(mixed.chunked);
    CHECK(mixed.body == "ab");
}

/* ------------------------------------------------------------------------------------------------
   Interim responses, no-body statuses
   ------------------------------------------------------------------------------------------------ */

TEST_CASE("1xx: 100 Continue and 103 Early Hints are skipped; the final head is reported once") {
    SUBCASE("100 Continue") {
        const HttpOutcome o =
            check_http("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        CHECK(o.final_status == "end");
        CHECK(o.heads == 1);
        CHECK(o.status == 200);
        CHECK(o.body == "hi");
    }
    SUBCASE("103 Early Hints with headers, which are not the final response's headers") {
        const HttpOutcome o = check_http(
            "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nLink: </a.js>; rel=preload\r\n\r\n"
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 3\r\n\r\nabc");
        CHECK(o.final_status == "end");
        CHECK(o.heads == 1);
        CHECK(o.status == 200);
        CHECK(o.body == "abc");
        ENSURE(o.probes.size() == 4);
        CHECK(o.probes[0] == "text/event-stream");
        CHECK(o.probes[3] == "");  // Link belonged to the 103
        CHECK(o.headers.size() == 2);
    }
    SUBCASE("several interim responses, bare LF, a framing header on the interim one does not leak") {
        const HttpOutcome o = check_http(
            "HTTP/1.1 100 Continue\nContent-Length: 99\n\nHTTP/1.1 103 Early Hints\r\nTransfer-Encoding: chunked\r\n\r\n"
            "HTTP/1.1 200 OK\r\n\r\nclose-delimited");
        CHECK(o.final_status == "end");
        CHECK(o.heads == 1);
        CHECK(o.status == 200);
        CHECK_FALSE(o.chunked);
        CHECK(o.content_length == -1);
        CHECK(o.body == "close-delimited");
        CHECK(o.ended_by_finish);
    }
}

TEST_CASE("1xx: 101 Switching Protocols is a protocol error") {
    check_error("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                ErrorCode::protocol);
    const HttpOutcome o = check_http("HTTP/1.1 101 Switching Protocols\r\n\r\nHTTP/1.1 200 OK\r\n\r\n");
    CHECK(o.final_status == "error");
    CHECK(o.heads == 0);
}

TEST_CASE("204 and 304 end right after the head, whatever framing headers say") {
    for (const char* status : {"204 No Content", "304 Not Modified"}) {
        for (const char* headers : {"", "Content-Length: 10\r\n", "Transfer-Encoding: chunked\r\n"}) {
            CAPTURE_STR(status);
            CAPTURE_STR(headers);
            const std::string head = std::string("HTTP/1.1 ") + status + "\r\n" + headers + "\r\n";
            const HttpOutcome o = check_http(head + "HTTP/1.1 200 OK\r\n");  // the next response follows
            CHECK(o.final_status == "end");
            CHECK(o.heads == 1);
            CHECK(o.body.empty());
            CHECK(o.end_offset == head.size());
            CHECK_FALSE(o.ended_by_finish);
        }
    }
    HttpResponseReader reader;
    const std::string head = "HTTP/1.1 204 No Content\r\n\r\n";
    HttpResponseReader::Step s = reader.feed({head.data(), head.size()});
    CHECK(s.status == HttpStatus::head);
    CHECK(s.consumed == head.size());
    CHECK(reader.status() == 204);
    CHECK(reader.keep_alive());
    s = reader.feed({head.data(), 0});
    CHECK(s.status == HttpStatus::end);
    CHECK(s.consumed == 0);
}

/* ------------------------------------------------------------------------------------------------
   Content-Length and close-delimited bodies
   ------------------------------------------------------------------------------------------------ */

TEST_CASE("Content-Length: exact body, zero body, binary body") {
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n";
    const HttpOutcome o = check_http(head + "hello world");
    CHECK(o.final_status == "end");
    CHECK(o.body == "hello world");
    CHECK(o.end_offset == head.size() + 11);

    const HttpOutcome zero = check_http("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    CHECK(zero.final_status == "end");
    CHECK(zero.body.empty());
    CHECK(zero.content_length == 0);
    CHECK_FALSE(zero.ended_by_finish);

    std::string binary("\0\r\n\r\n0\r\n\xff", 8);
    const HttpOutcome bin = check_http("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + binary);
    CHECK(bin.final_status == "end");
    CHECK(bin.body == binary);
}

TEST_CASE("Content-Length: a body longer than Content-Length consumes only Content-Length bytes") {
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    const std::string input = head + "helloHTTP/1.1 200 OK\r\n\r\n";
    const HttpOutcome o = check_http(input);
    CHECK(o.final_status == "end");
    CHECK(o.body == "hello");
    CHECK(o.end_offset == head.size() + 5);

    HttpResponseReader reader;
    const auto steps = steps_of(reader, input);
    ENSURE(steps.size() == 3);
    CHECK(steps[0].status == HttpStatus::head);
    CHECK(steps[0].consumed == head.size());
    CHECK(steps[1].status == HttpStatus::body);
    CHECK(steps[1].consumed == 5);
    CHECK(steps[1].body == "hello");
    CHECK(steps[1].body.data() == input.data() + head.size());  // points into the input, no copy
    CHECK(steps[2].status == HttpStatus::end);
    CHECK(steps[2].consumed == 0);
}

TEST_CASE("Content-Length: equal repeated values are accepted, others are rejected") {
    SUBCASE("5, 5 in one field") {
        const HttpOutcome o = check_http("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello!");
        CHECK(o.final_status == "end");
        CHECK(o.content_length == 5);
        CHECK(o.body == "hello");
    }
    SUBCASE("two fields with the same value") {
        const HttpOutcome o = check_http("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello");
        CHECK(o.final_status == "end");
        CHECK(o.body == "hello");
    }
    SUBCASE("leading zeros are digits") {
        const HttpOutcome o = check_http("HTTP/1.1 200 OK\r\nContent-Length: 005\r\n\r\nhello");
        CHECK(o.final_status == "end");
        CHECK(o.content_length == 5);
        CHECK(o.body == "hello");
    }
    SUBCASE("5, 6 in one field") {
        check_error("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!", ErrorCode::protocol);
    }
    SUBCASE("two fields with different values") {
        check_error("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", ErrorCode::protocol);
    }
    SUBCASE("not a decimal number") {
        for (const char* v : {"abc", "5a", "a5", "-5", "+5", "0x5", "5.0", "5 5", "", "1e3",
                              "99999999999999999999999"}) {
            CAPTURE_STR(v);
            check_error(std::string("HTTP/1.1 200 OK\r\nContent-Length: ") + v + "\r\n\r\nhello", ErrorCode::protocol);
        }
    }
}

TEST_CASE("close-delimited body ends with finish()") {
    const HttpOutcome o = check_http("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: x\n\ndata: y\n\n");
    CHECK(o.final_status == "end");
    CHECK(o.ended_by_finish);
    CHECK(o.content_length == -1);
    CHECK_FALSE(o.chunked);
    CHECK_FALSE(o.keep_alive);
    CHECK(o.body == "data: x\n\ndata: y\n\n");

    HttpOptions no_finish;
    no_finish.finish = false;
    const HttpOutcome open = check_http("HTTP/1.1 200 OK\r\n\r\nstill coming", no_finish);
    CHECK(open.final_status == "need_more");
    CHECK(open.body == "still coming");

    const HttpOutcome empty = check_http("HTTP/1.1 200 OK\r\n\r\n");
    CHECK(empty.final_status == "end");
    CHECK(empty.body.empty());
}

/* ------------------------------------------------------------------------------------------------
   Chunked bodies
   ------------------------------------------------------------------------------------------------ */

namespace {
const std::string chunked_head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

HttpOutcome check_chunked(const std::string& body, const HttpOptions& opt = {}) {
    return check_http(chunked_head + body, opt);
}
}  // namespace

TEST_CASE("chunked: basic body, and the end is where the last CRLF is") {
    const std::string framed = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    const HttpOutcome o = check_chunked(framed + "NEXT");
    CHECK(o.final_status == "end");
    CHECK(o.chunked);
    CHECK(o.content_length == -1);
    CHECK(o.keep_alive);
    CHECK(o.body == "hello world");
    CHECK(o.end_offset == chunked_head.size() + framed.size());
}

TEST_CASE("chunked: upper and lower case hex, leading zeros") {
    const std::string ten = "0123456789";
    const std::string thirty_one = "abcdefghijklmnopqrstuvwxyzABCDE";
    const HttpOutcome o = check_chunked("a\r\n" + ten + "\r\nA\r\n" + ten + "\r\n1f\r\n" + thirty_one + "\r\n1F\r\n" +
                                        thirty_one + "\r\n000a\r\n" + ten + "\r\n00000000000000000000001\r\nZ\r\n000\r\n\r\n");
    CHECK(o.final_status == "end");
    CHECK(o.body == ten + ten + thirty_one + thirty_one + ten + "Z");
}

TEST_CASE("chunked: extensions and whitespace before the line end are ignored") {
    const HttpOutcome o = check_chunked(
        "5;name=value\r\nhello\r\n"
        "1 ; ext\r\n \r\n"
        "5;a=\"quoted;still\";b\r\nworld\r\n"
        "3 \r\nabc\r\n"
        "3\t \t\r\ndef\r\n"
        "2 ;x=1;y=2\r\nGH\r\n"
        "0;last=yes\r\n\r\n");
    CHECK(o.final_status == "end");
    CHECK(o.body == "hello world" "abcdefGH");
}

TEST_CASE("chunked: trailers after the last chunk are read and ignored") {
    HttpOptions opt;
    opt.probes = {"x-trailer", "content-type"};
    const std::string framed = "3\r\nabc\r\n0\r\nX-Trailer: one\r\nX-Other: two\r\n\r\n";
    const HttpOutcome o = check_chunked(framed + "garbage after", opt);
    CHECK(o.final_status == "end");
    CHECK(o.body == "abc");
    CHECK(o.end_offset == chunked_head.size() + framed.size());
    ENSURE(o.probes.size() == 2);
    CHECK(o.probes[0] == "");  // trailers are not head fields

    const HttpOutcome bare = check_chunked("3\nabc\n0\nX-Trailer: one\n\n");
    CHECK(bare.final_status == "end");
    CHECK(bare.body == "abc");
}

TEST_CASE("chunked: bare LF line ends everywhere") {
    const HttpOutcome o = check_http("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5\nhello\n1;x\n!\n0\n\n");
    CHECK(o.final_status == "end");
    CHECK(o.body == "hello!");
}

TEST_CASE("chunked: body bytes that look like framing are data") {
    const std::string tricky = "0\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    ENSURE(tricky.size() == 0x14);
    const HttpOutcome o = check_chunked("14\r\n" + tricky + "\r\n0\r\n\r\n");
    CHECK(o.final_status == "end");
    CHECK(o.body == tricky);
}

TEST_CASE("chunked: a size that overflows is a protocol error") {
    for (const char* size : {"fffffffffffffffffff", "10000000000000000", "FFFFFFFFFFFFFFFF",
                             "100000000000000000000000000000001"}) {
        CAPTURE_STR(size);
        const HttpOutcome o = check_chunked(std::string(size) + "\r\nabc\r\n0\r\n\r\n");
        CHECK(o.final_status == "error");
        CHECK(o.code == ErrorCode::protocol);
        CHECK(o.body.empty());
    }
    // A large size that fits is not an error: the reader waits for the data.
    HttpOptions no_finish;
    no_finish.finish = false;
    const HttpOutcome big = check_chunked("fffffffffffffff\r\nabc", no_finish);
    CHECK(big.final_status == "need_more");
    CHECK(big.body == "abc");
    // 16 digits are read a byte at a time (15 at once cannot overflow), to the same size.
    const HttpOutcome sixteen = check_chunked("0000000000000003\r\nabc\r\n0\r\n\r\n");
    CHECK(sixteen.final_status == "end");
    CHECK(sixteen.body == "abc");
}

TEST_CASE("chunked: malformed sizes are protocol errors") {
    for (const char* size : {"xyz", "", "-1", "0x5", " 5", "5 5", "g", "+5", ";ext", "5\r"}) {
        CAPTURE_STR(size);
        const HttpOutcome o = check_chunked(std::string(size) + "\r\nhello\r\n0\r\n\r\n");
        CHECK(o.final_status == "error");
        CHECK(o.code == ErrorCode::protocol);
        CHECK(o.body.empty());
    }
    // A second malformed size after a good chunk: the first chunk's data was delivered.
    const HttpOutcome later = check_chunked("3\r\nabc\r\nzz\r\n");
    CHECK(later.final_status == "error");
    CHECK(later.code == ErrorCode::protocol);
    CHECK(later.body == "abc");
}

TEST_CASE("chunked: missing CRLF after chunk data is a protocol error") {
    for (const char* rest : {"5\r\nhelloX\r\n0\r\n\r\n", "5\r\nhello\rX\n0\r\n\r\n", "5\r\nhello0\r\n\r\n",
                             "5\r\nhello world\r\n0\r\n\r\n"}) {
        CAPTURE_STR(rest);
        const HttpOutcome o = check_chunked(rest);
        CHECK(o.final_status == "error");
        CHECK(o.code == ErrorCode::protocol);
        CHECK(o.body == "hello");
    }
}

TEST_CASE("chunked: a body truncated by the end of input is a protocol error at finish()") {
    const char* const cuts[] = {"",           "5",           "5\r",         "5;ext",        "5\r\n",
                                "5\r\nhel",   "5\r\nhello",  "5\r\nhello\r", "5\r\nhello\r\n",
                                "5\r\nhello\r\n0", "5\r\nhello\r\n0\r\n", "5\r\nhello\r\n0\r\nX-T: 1\r\n",
                                "5\r\nhello\r\n0\r\n\r"};
    for (const char* cut : cuts) {
        CAPTURE_STR(cut);
        const HttpOutcome o = check_chunked(cut);
        CHECK(o.final_status == "error");
        CHECK(o.ended_by_finish);
        CHECK(o.code == ErrorCode::protocol);
        CHECK(o.message.find("truncated") != std::string::npos);
        const std::string c(cut);
        const std::string expected_body = c.compare(0, 3, "5\r\n") == 0 ? c.substr(3, 5) : std::string();
        CHECK(o.body == expected_body);
    }
}

TEST_CASE("Content-Length: a body truncated by the end of input is a protocol error at finish()") {
    const HttpOutcome o = check_http("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
    CHECK(o.final_status == "error");
    CHECK(o.ended_by_finish);
    CHECK(o.code == ErrorCode::protocol);
    CHECK(o.body == "hello");
    CHECK(!o.message.empty());

    const HttpOutcome nothing = check_http("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n");
    CHECK(nothing.final_status == "error");
    CHECK(nothing.code == ErrorCode::protocol);
}

TEST_CASE("finish() inside or before the head is a protocol error") {
    for (const char* input : {"", "\r\n", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
                              "HTTP/1.1 100 Continue\r\n\r\n"}) {
        CAPTURE_STR(input);
        const HttpOutcome o = check_http(input);
        CHECK(o.final_status == "error");
        CHECK(o.code == ErrorCode::protocol);
        CHECK(o.heads == 0);
    }
}

TEST_CASE("chunked: random chunkings of random bodies decode back to the body") {
    for (unsigned seed = 1; seed <= 40; ++seed) {
        std::mt19937 rng(seed * 7919u);
        std::string body(rng() % 300, '\0');
        for (char& c : body) c = static_cast<char>(rng() % 256);
        std::string framed;
        std::size_t pos = 0;
        const char* eol = (seed % 3 == 0) ? "\n" : "\r\n";
        while (pos < body.size()) {
            const std::size_t n = std::min<std::size_t>(body.size() - pos, 1 + rng() % 40);
            const char* digits = (rng() % 2) ? "0123456789abcdef" : "0123456789ABCDEF";
            std::string size;
            for (std::size_t v = n; v != 0; v /= 16) size.insert(size.begin(), digits[v % 16]);
            if (rng() % 4 == 0) framed += "00";
            framed += size;
            if (rng() % 4 == 0) framed += " ";
            if (rng() % 3 == 0) framed += ";k=v";
            framed += eol;
            framed += body.substr(pos, n);
            framed += eol;
            pos += n;
        }
        framed += "0";
        framed += eol;
        if (rng() % 2) framed += std::string("T: x") + eol;
        framed += eol;
        CAPTURE(seed);
        const HttpOutcome o = check_chunked(framed + "EXTRA");
        CHECK(o.final_status == "end");
        CHECK(o.body == body);
        CHECK(o.end_offset == chunked_head.size() + framed.size());
    }
}

/* ------------------------------------------------------------------------------------------------
   Transfer-Encoding, Content-Encoding
   ------------------------------------------------------------------------------------------------ */

TEST_CASE("Transfer-Encoding other than chunked is unsupported") {
    for (const char* te : {"gzip, chunked", "gzip", "chunked, gzip", "deflate,chunked", "chunked, chunked"}) {
        CAPTURE_STR(te);
        check_error(std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: ") + te + "\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                    ErrorCode::protocol);
    }
    // Split over two fields: the codings list is "gzip, chunked".
    check_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                ErrorCode::protocol);
}

TEST_CASE("Content-Encoding other than identity is an error") {
    for (const char* ce : {"gzip", "br", "deflate", "identity, gzip", "zstd"}) {
        CAPTURE_STR(ce);
        check_error(std::string("HTTP/1.1 200 OK\r\nContent-Encoding: ") + ce + "\r\nContent-Length: 5\r\n\r\nhello",
                    ErrorCode::protocol);
    }
    const HttpOutcome id = check_http("HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello");
    CHECK(id.final_status == "end");
    CHECK(id.body == "hello");
}

TEST_CASE("Transfer-Encoding with Content-Length: chunked wins and the connection is not reused") {
    const std::string framed = "5\r\nhello\r\n0\r\n\r\n";
    const HttpOutcome o =
        check_http("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" + framed + "tail");
    CHECK(o.final_status == "end");
    CHECK(o.chunked);
    CHECK(o.content_length == -1);
    CHECK(o.body == "hello");
    CHECK_FALSE(o.keep_alive);

    const HttpOutcome after = check_http("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n" + framed);
    CHECK(after.final_status == "end");
    CHECK(after.body == "hello");
    CHECK_FALSE(after.keep_alive);

    // Transfer-Encoding overrides Content-Length entirely, even an unparsable one (RFC 9112 6.3 item 3).
    const HttpOutcome invalid = check_http("HTTP/1.1 200 OK\r\nContent-Length: abc\r\nTransfer-Encoding: chunked\r\n\r\n" + framed);
    CHECK(invalid.final_status == "end");
    CHECK(invalid.body == "hello");
    CHECK_FALSE(invalid.keep_alive);
}

/* ------------------------------------------------------------------------------------------------
   Connection reuse
   ------------------------------------------------------------------------------------------------ */

TEST_CASE("keep_alive rules") {
    struct Case {
        const char* input;
        bool keep_alive;
    };
    const Case cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: CLOSE\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive, close\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nConnection: Upgrade\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n", true},
        {"HTTP/1.1 200 OK\r\n\r\n", false},  // close-delimited
        {"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n", false},
        {"HTTP/1.1 204 No Content\r\n\r\n", true},
        {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n", true},
        {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n", true},
        {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive, close\r\n\r\n", false},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false},  // close-delimited
    };
    for (const Case& c : cases) {
        CAPTURE_STR(c.input);
        const HttpOutcome o = check_http(c.input);
        CHECK(o.final_status == "end");
        CHECK(o.keep_alive == c.keep_alive);
    }
}

TEST_CASE("keep_alive: an HTTP/1.0 message with Transfer-Encoding has faulty framing (RFC 9112 6.1)") {
    // "A server or client that receives an HTTP/1.0 message containing a Transfer-Encoding header field
    // MUST treat the message as if the framing is faulty, even if a Content-Length is present, and close
    // the connection after processing the message."
    const HttpOutcome o =
        check_http("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    CHECK(o.final_status == "end");
    CHECK(o.body == "abc");
    CHECK_FALSE(o.keep_alive);
}

/* ------------------------------------------------------------------------------------------------
   Limits
   ------------------------------------------------------------------------------------------------ */

TEST_CASE("limits: a header block over max_header_bytes is limit_exceeded, without reading past it") {
    const std::string head = "HTTP/1.1 200 OK\r\nX-Padding: " + std::string(100, 'p') + "\r\nContent-Length: 2\r\n\r\n";
    HttpOptions exact;
    exact.limits.max_header_bytes = head.size();
    const HttpOutcome fits = check_http(head + "ok", exact);
    CHECK(fits.final_status == "end");
    CHECK(fits.body == "ok");

    HttpOptions tight;
    tight.limits.max_header_bytes = head.size() - 1;
    const HttpOutcome over = check_http(head + "ok", tight);
    CHECK(over.final_status == "error");
    CHECK(over.code == ErrorCode::limit_exceeded);
    CHECK(over.heads == 0);

    // An endless header block: the error comes as soon as the limit is crossed.
    HttpOptions small;
    small.limits.max_header_bytes = 64;
    const std::string endless = "HTTP/1.1 200 OK\r\n" + std::string(100000, 'h');
    HttpResponseReader reader(small.limits);
    const HttpResponseReader::Step s = reader.feed({endless.data(), endless.size()});
    CHECK(s.status == HttpStatus::error);
    CHECK(reader.error().code == ErrorCode::limit_exceeded);
    CHECK(s.consumed <= 65);
    std::size_t total = 0;
    HttpResponseReader bytewise(small.limits);
    for (std::size_t i = 0; i < endless.size(); ++i) {
        const HttpResponseReader::Step b = bytewise.feed({endless.data() + i, 1});
        total += b.consumed;
        if (b.status == HttpStatus::error) break;
    }
    CHECK(bytewise.error().code == ErrorCode::limit_exceeded);
    CHECK(total <= 65);
    // Endless stray line ends before a head do not grow anything, and are not an error by themselves.
    const HttpOutcome crlf = check_http(std::string(1000, '\n') + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", small);
    CHECK(crlf.final_status == "end");
}

TEST_CASE("limits: a chunk-size line over max_chunk_line_bytes is limit_exceeded") {
    HttpOptions opt;
    opt.limits.max_chunk_line_bytes = 16;
    for (const std::string& line : {std::string("1;") + std::string(100, 'x'), std::string(100, '0') + "1",
                                    std::string("1") + std::string(100, ' ')}) {
        CAPTURE_STR(line);
        const HttpOutcome o = check_chunked(line + "\r\nZ\r\n0\r\n\r\n", opt);
        CHECK(o.final_status == "error");
        CHECK(o.code == ErrorCode::limit_exceeded);
        CHECK(o.body.empty());
    }
    // Within the limit it is fine, and the limit applies to each line separately.
    const HttpOutcome ok = check_chunked("1;abcdefghij\r\nZ\r\n0000000001\r\nY\r\n0;abcdefghijk\r\n\r\n", opt);
    CHECK(ok.final_status == "end");
    CHECK(ok.body == "ZY");
    // Default limit: an endless extension is cut off well before it is read in full.
    HttpResponseReader reader;
    const std::string endless = chunked_head + "1;" + std::string(100000, 'e');
    const auto steps = steps_of(reader, endless);
    ENSURE(!steps.empty());
    CHECK(steps.back().status == HttpStatus::error);
    CHECK(reader.error().code == ErrorCode::limit_exceeded);
}

TEST_CASE("limits: a trailer section over max_header_bytes is limit_exceeded") {
    HttpOptions opt;
    opt.limits.max_header_bytes = 100;
    const HttpOutcome over =
        check_chunked("3\r\nabc\r\n0\r\nX-Trailer: " + std::string(200, 't') + "\r\n\r\n", opt);
    CHECK(over.final_status == "error");
    CHECK(over.code == ErrorCode::limit_exceeded);
    CHECK(over.body == "abc");

    // Many short trailer lines add up.
    std::string many;
    for (int i = 0; i < 30; ++i) many += "T: 1\r\n";
    const HttpOutcome lines = check_chunked("3\r\nabc\r\n0\r\n" + many + "\r\n", opt);
    CHECK(lines.final_status == "error");
    CHECK(lines.code == ErrorCode::limit_exceeded);

    const HttpOutcome fits = check_chunked("3\r\nabc\r\n0\r\nX-Trailer: " + std::string(50, 't') + "\r\n\r\n", opt);
    CHECK(fits.final_status == "end");
    CHECK(fits.body == "abc");
}

/* ------------------------------------------------------------------------------------------------
   Terminal states, reuse
   ------------------------------------------------------------------------------------------------ */

TEST_CASE("after end, feed() and finish() keep returning end and consume nothing") {
    HttpResponseReader reader;
    const std::string input = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    const auto steps = steps_of(reader, input);
    ENSURE(steps.size() == 2);
    CHECK(steps[0].status == HttpStatus::head);
    CHECK(steps[1].status == HttpStatus::body);
    HttpResponseReader::Step s = reader.feed({input.data(), 0});
    CHECK(s.status == HttpStatus::end);
    const std::string more = "HTTP/1.1 200 OK\r\n\r\n";
    for (int i = 0; i < 3; ++i) {
        s = reader.feed({more.data(), more.size()});
        CHECK(s.status == HttpStatus::end);
        CHECK(s.consumed == 0);
    }
    s = reader.finish();
    CHECK(s.status == HttpStatus::end);
    s = reader.feed({more.data(), more.size()});
    CHECK(s.status == HttpStatus::end);
    CHECK(reader.status() == 200);
    CHECK(reader.error().code == ErrorCode::none);

    // A close-delimited body ended by finish(): then feed() returns end as well.
    HttpResponseReader close;
    const std::string head = "HTTP/1.1 200 OK\r\n\r\n";
    CHECK(close.feed({head.data(), head.size()}).status == HttpStatus::head);
    CHECK(close.finish().status == HttpStatus::end);
    s = close.feed({more.data(), more.size()});
    CHECK(s.status == HttpStatus::end);
    CHECK(s.consumed == 0);
}

TEST_CASE("after an error, feed() and finish() keep returning error") {
    HttpResponseReader reader;
    const std::string bad = "HTTP/9 200 OK\r\n\r\n";
    HttpResponseReader::Step s = reader.feed({bad.data(), bad.size()});
    CHECK(s.status == HttpStatus::error);
    CHECK(reader.error().code == ErrorCode::protocol);
    const std::string message = reader.error().message;
    CHECK(!message.empty());
    const std::string good = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for (int i = 0; i < 3; ++i) {
        s = reader.feed({good.data(), good.size()});
        CHECK(s.status == HttpStatus::error);
        CHECK(s.consumed == 0);
    }
    s = reader.feed({good.data(), 0});
    CHECK(s.status == HttpStatus::error);
    s = reader.finish();
    CHECK(s.status == HttpStatus::error);
    CHECK(reader.error().code == ErrorCode::protocol);
    CHECK(message == reader.error().message);

    // An error found by finish() sticks as well.
    HttpResponseReader cut;
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab";
    (void)steps_of(cut, head);
    CHECK(cut.finish().status == HttpStatus::error);
    s = cut.feed({"cde", 3});
    CHECK(s.status == HttpStatus::error);
    CHECK(s.consumed == 0);
    CHECK(cut.error().code == ErrorCode::protocol);
}

TEST_CASE("reset() makes a reader ready for the next response") {
    HttpResponseReader reader;
    const std::string first = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n2\r\nab\r\n0\r\n\r\n";
    auto steps = steps_of(reader, first);
    ENSURE(!steps.empty());
    CHECK(steps.back().status == HttpStatus::end);
    reader.reset(HttpLimits{});
    CHECK(reader.header("x-a").empty());
    const std::string second = "HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nx";
    steps = steps_of(reader, second);
    ENSURE(steps.size() >= 2);
    CHECK(steps[0].status == HttpStatus::head);
    CHECK(reader.status() == 404);
    CHECK_FALSE(reader.chunked());
    CHECK(reader.content_length() == 1);
    CHECK(steps[1].status == HttpStatus::body);
    CHECK(steps[1].body == "x");

    // And after an error.
    reader.reset(HttpLimits{});
    const std::string bad = "nope\r\n\r\n";
    steps = steps_of(reader, bad);
    CHECK(steps.back().status == HttpStatus::error);
    reader.reset(HttpLimits{});
    CHECK(reader.error().code == ErrorCode::none);
    steps = steps_of(reader, second);
    CHECK(steps[0].status == HttpStatus::head);
}

/* ------------------------------------------------------------------------------------------------
   parse_http_date (RFC 9110 5.6.7)
   ------------------------------------------------------------------------------------------------ */

TEST_CASE("parse_http_date: the three forms of RFC 9110") {
    const auto imf = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT");
    ENSURE(imf.has_value());
    CHECK(*imf == 784111777);
    const auto rfc850 = parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT");
    ENSURE(rfc850.has_value());
    CHECK(*rfc850 == 784111777);
    const auto asctime = parse_http_date("Sun Nov  6 08:49:37 1994");
    ENSURE(asctime.has_value());
    CHECK(*asctime == 784111777);
}

TEST_CASE("parse_http_date: known instants") {
    struct Case {
        const char* text;
        std::int64_t seconds;
    };
    const Case cases[] = {
        {"Thu, 01 Jan 1970 00:00:00 GMT", 0},
        {"Tue, 29 Feb 2000 12:00:00 GMT", 951825600},
        {"Sat, 01 Jan 2000 00:00:00 GMT", 946684800},
        {"Tue, 19 Jan 2038 03:14:08 GMT", 2147483648LL},  // past 32-bit time_t
        {"Fri, 31 Dec 9999 23:59:59 GMT", 253402300799LL},
        {"Wed, 21 Oct 2015 07:28:00 GMT", 1445412480},
        {"Wednesday, 21-Oct-15 07:28:00 GMT", 1445412480},
        {"Wed Oct 21 07:28:00 2015", 1445412480},
        {"Thu Feb 29 23:59:59 2024", 1709251199},
        {"Thursday, 01-Jan-70 00:00:00 GMT", 0},
    };
    for (const Case& c : cases) {
        CAPTURE_STR(c.text);
        const auto v = parse_http_date(c.text);
        ENSURE(v.has_value());
        CHECK(*v == c.seconds);
    }
}

TEST_CASE("parse_http_date: garbage, bad months, out-of-range fields are rejected") {
    const char* const bad[] = {
        "",
        "garbage",
        "120",
        "1994-11-06T08:49:37Z",
        "Sun, 06 Nov 1994 08:49:37",      // no zone
        "Sun, 06 Nov 1994 08:49:37 PST",  // not GMT
        "Sun, 06 Nox 1994 08:49:37 GMT",  // bad month
        "Sun, 06 November 1994 08:49:37 GMT",
        "Sun, 06 13 1994 08:49:37 GMT",
        "Sun Foo  6 08:49:37 1994",
        "Sun, 06 Nov 1994 24:00:00 GMT",  // hour
        "Sun, 06 Nov 1994 08:60:00 GMT",  // minute
        "Sun, 06 Nov 1994 08:49:61 GMT",  // second (60 is a leap second)
        "Sun, 32 Nov 1994 08:49:37 GMT",  // day
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",   // time must be hh:mm:ss
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun, 06 Nov 1994 08-49-37 GMT",
        "Sun, 06 Nov 1994 08:4x:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT extra",
        "Sun, xx Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 19x4 08:49:37 GMT",
        "Sun, 06 Nov 1969 23:59:59 GMT",  // before the epoch
        "Sun, 06 Nov 10000 08:49:37 GMT",
        "Sun Nov  6 25:49:37 1994",
        "Sun Nov 6 08:49:37",
        "Sunday, 06-Nov-94 08:49:37",
        "a b c d e f g h i j k",
    };
    for (const char* text : bad) {
        CAPTURE_STR(text);
        CHECK_FALSE(parse_http_date(text).has_value());
    }
}

TEST_CASE("parse_http_date: days that do not exist in their month are rejected") {
    // RFC 9110 5.6.7 describes a calendar date; 30 February or 31 November is not one (a lenient parser
    // silently turns them into 2 March / 1 December).
    for (const char* text : {"Wed, 30 Feb 2000 00:00:00 GMT", "Thu, 31 Nov 1994 08:49:37 GMT",
                             "Sun, 29 Feb 1998 00:00:00 GMT", "Sun Apr 31 08:49:37 1994"}) {
        CAPTURE_STR(text);
        CHECK_FALSE(parse_http_date(text).has_value());
    }
}
