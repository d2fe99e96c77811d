// The public sans-I/O core: build_request() and Decoder, with no transport at all.
#include "llm_stream.hpp"
#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

using llm_stream::DecodeStatus;
using llm_stream::DecodeStep;
using llm_stream::Decoder;
using llm_stream::ErrorCode;
using llm_stream::EventType;

namespace {

// What a decoder made of its input, copied out of the views.
struct Decoded {
    std::string content;
    std::string reasoning;
    std::string finish_reason;
    std::vector<std::string> warnings;
    std::optional<llm_stream::Usage> usage;
    int events = 0;
    bool done = false;
    llm_stream::Error error;
};

// Feeds `input` until the decoder wants more or stops; true when it stopped (done or failed).
bool feed_all(Decoder& decoder, std::string_view input, Decoded& out) {
    for (int guard = 0; guard < 100000; ++guard) {
        const DecodeStep step = decoder.feed(input);
        REQUIRE(step.consumed <= input.size());
        input.remove_prefix(step.consumed);
        switch (step.status) {
        case DecodeStatus::need_more:
            CHECK(input.empty());  // need_more means every byte was used
            return false;
        case DecodeStatus::event: {
            const llm_stream::Event& e = decoder.event();
            ++out.events;
            if (e.type == EventType::content) out.content += e.text;
            if (e.type == EventType::reasoning) out.reasoning += e.text;
            if (e.type == EventType::finish) out.finish_reason = std::string(e.text);
            if (e.type == EventType::usage) out.usage = e.usage;
            break;
        }
        case DecodeStatus::warning: out.warnings.emplace_back(decoder.warning()); break;
        case DecodeStatus::done: out.done = true; return true;
        case DecodeStatus::failed: out.error = decoder.error(); return true;
        }
    }
    FAIL("the decoder did not settle");
    return true;
}

// The end of input, after everything was fed.
void finish_all(Decoder& decoder, Decoded& out) {
    for (int guard = 0; guard < 1000 && !out.done && !out.error; ++guard) {
        const DecodeStep step = decoder.finish();
        if (step.status == DecodeStatus::event) {
            ++out.events;
            if (decoder.event().type == EventType::content) out.content += decoder.event().text;
        } else if (step.status == DecodeStatus::warning) {
            out.warnings.emplace_back(decoder.warning());
        } else if (step.status == DecodeStatus::failed) {
            out.error = decoder.error();
        } else {
            out.done = true;
        }
    }
}

// Whole input in pieces of `piece` bytes (0: one piece), then the end of input unless it stopped.
Decoded decode(std::string_view response, std::size_t piece = 0, bool end_of_input = true) {
    Decoder decoder;
    Decoded out;
    if (piece == 0) piece = response.size() + 1;
    for (std::size_t at = 0; at < response.size(); at += piece) {
        const std::string copy(response.substr(at, piece));  // each piece in its own buffer
        if (feed_all(decoder, copy, out)) return out;
    }
    if (end_of_input) finish_all(decoder, out);
    return out;
}

std::string chunk(std::string_view data) {
    char size[20];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    return size + std::string(data) + "\r\n";
}

const std::string kHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
const std::string kEvents =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"Think\"}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\u4f60\"},\"finish_reason\":\"stop\"}]}\n\n"
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n"
    "data: [DONE]\n\n";
const std::string kResponse = kHead + chunk(kEvents.substr(0, 100)) + chunk(kEvents.substr(100)) + "0\r\n\r\n";

}  // namespace

TEST_CASE("Decoder: a chunked SSE response, whole or one byte at a time, gives the same events") {
    for (std::size_t piece : {std::size_t(0), std::size_t(1), std::size_t(7), std::size_t(64)}) {
        CAPTURE(piece);
        const Decoded d = decode(kResponse, piece);
        CHECK(d.reasoning == "Think");
        CHECK(d.content == "Hello \xE4\xBD\xA0");
        CHECK(d.finish_reason == "stop");
        REQUIRE(d.usage);
        CHECK(d.usage->total_tokens == 5);
        CHECK(d.done);
        CHECK_FALSE(d.error);
        CHECK(d.warnings.empty());
    }
}

TEST_CASE("Decoder: [DONE] ends the completion; the rest of the response is still read for reuse") {
    Decoder decoder;
    Decoded out;
    const std::size_t tail = kResponse.size() - 5;  // "0\r\n\r\n" not yet received
    std::string_view first = std::string_view(kResponse).substr(0, tail);
    CHECK(feed_all(decoder, first, out));
    CHECK(out.done);
    // What follows [DONE] in the same read is consumed without effect.
    const std::size_t at_done = first.find("[DONE]\n\n") + 8;
    DecodeStep step = decoder.feed(first.substr(at_done));
    CHECK(step.status == DecodeStatus::done);
    CHECK(step.consumed == first.size() - at_done);
    CHECK_FALSE(decoder.response_complete());
    CHECK(decoder.keep_alive());
    // The last bytes come later: they complete the response, and nothing else comes out of them.
    step = decoder.feed(std::string_view(kResponse).substr(tail));
    CHECK(step.status == DecodeStatus::done);
    CHECK(step.consumed == 5);
    CHECK(decoder.response_complete());
    CHECK(decoder.messages() == 5);
}

TEST_CASE("Decoder: body bytes from a transport that parses HTTP itself (start_body)") {
    Decoder decoder;
    decoder.start_body(200, "text/event-stream; charset=utf-8");
    Decoded out;
    for (std::size_t at = 0; at < kEvents.size(); at += 10)
        if (feed_all(decoder, std::string_view(kEvents).substr(at, 10), out)) break;
    CHECK(out.done);
    CHECK(out.content == "Hello \xE4\xBD\xA0");
    CHECK(decoder.http_status() == 200);
    CHECK(decoder.header("content-type").empty());  // the transport kept the headers

    Decoder failing;
    failing.start_body(503, "application/json");
    Decoded err;
    CHECK_FALSE(feed_all(failing, "{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}", err));
    finish_all(failing, err);
    CHECK(err.error.code == ErrorCode::http_status);
    CHECK(err.error.http_status == 503);
    CHECK(err.error.message.find("overloaded") != std::string::npos);
}

TEST_CASE("Decoder: an HTTP error status carries the server's message and its headers stay readable") {
    const std::string body = "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}";
    const std::string response = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 7\r\n"
                                 "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    for (std::size_t piece : {std::size_t(0), std::size_t(1)}) {
        Decoder decoder;
        Decoded out;
        for (std::size_t at = 0; at < response.size() && !out.error; at += piece ? piece : response.size())
            feed_all(decoder, std::string_view(response).substr(at, piece ? piece : response.size()), out);
        CHECK(out.error.code == ErrorCode::http_status);
        CHECK(out.error.http_status == 429);
        CHECK(out.error.message == "HTTP 429: Rate limit reached (type: requests, code: rate_limit_exceeded)");
        CHECK(decoder.header("retry-after") == "7");
        CHECK(out.events == 0);
    }
}

TEST_CASE("Decoder: a 2xx that is no completion, and a redirect, are errors that say so") {
    const Decoded page = decode("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 15\r\n\r\n"
                                "<html>UI</html>");
    CHECK(page.error.code == ErrorCode::protocol);
    CHECK(page.error.message.find("text/html") != std::string::npos);

    const Decoded empty = decode("HTTP/1.1 204 No Content\r\n\r\n");
    CHECK(empty.error.code == ErrorCode::protocol);
    CHECK(empty.error.message.find("204") != std::string::npos);

    const Decoded moved = decode("HTTP/1.1 301 Moved Permanently\r\nLocation: https://api.example.com/v1/chat/completions\r\n"
                                 "Content-Length: 0\r\n\r\n");
    CHECK(moved.error.code == ErrorCode::http_status);
    CHECK(moved.error.http_status == 301);
    CHECK(moved.error.message.find("not followed") != std::string::npos);
    CHECK(moved.error.message.find("https://api.example.com/v1/chat/completions") != std::string::npos);

    const Decoded nothing = decode("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 2\r\n\r\n\n\n");
    CHECK(nothing.error.code == ErrorCode::protocol);
    CHECK(nothing.error.message.find("without any completion") != std::string::npos);
}

TEST_CASE("Decoder: an undecodable event is a warning, decoding goes on; an error event fails") {
    const std::string body =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"A\"}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"LOST\"}}],}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"B\"}}]}\n\n"
        "data: {\"error\":{\"message\":\"The engine is overloaded\",\"code\":529}}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"NEVER\"}}]}\n\n";
    const Decoded d = decode("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + body, 3);
    CHECK(d.content == "AB");
    REQUIRE(d.warnings.size() == 1);
    CHECK(d.warnings[0].find("skipped an event") != std::string::npos);
    CHECK(d.error.code == ErrorCode::server_error);
    CHECK(d.error.message == "server error: The engine is overloaded (code: 529)");
}

TEST_CASE("Decoder: end of input: a close-delimited body ends; a cut chunked body fails unless [DONE] came") {
    const Decoded closed = decode("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + kEvents);
    CHECK(closed.done);
    CHECK(closed.content == "Hello \xE4\xBD\xA0");

    const std::string cut = kHead + chunk(kEvents.substr(0, 100));
    const Decoded truncated = decode(cut);
    CHECK(truncated.error.code == ErrorCode::protocol);
    CHECK(truncated.content == "");  // the first 100 bytes hold only the reasoning event
    CHECK(truncated.reasoning == "Think");

    const Decoded after_done = decode(kHead + chunk(kEvents), 0);
    CHECK(after_done.done);
    CHECK_FALSE(after_done.error);
}

TEST_CASE("Decoder: a server that ignored \"stream\" answers with one JSON document") {
    const std::string body = "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Whole\"},"
                             "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}";
    const Decoded d = decode("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n" + body, 5);
    CHECK(d.content == "Whole");
    CHECK(d.finish_reason == "stop");
    CHECK(d.done);
}

TEST_CASE("Decoder: the stream ending without [DONE] or a finish reason is a warning, not an error") {
    const std::string body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
    const Decoded d = decode("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n" + body);
    CHECK(d.content == "x");
    CHECK(d.done);
    REQUIRE(d.warnings.size() == 1);
    CHECK(d.warnings[0].find("without [DONE]") != std::string::npos);
}

TEST_CASE("build_request: what to send, for any transport") {
    llm_stream::Config config;
    config.base_url = "https://api.example.com/v1";
    config.api_key = "sk-test";
    config.model = "m1";
    config.headers = {{"X-Route", "blue"}};
    llm_stream::ChatOptions options;
    options.temperature = 0.5;
    options.extra_json = "{\"top_p\":0.9,\"model\":\"m2\"}";
    llm_stream::Request request;
    REQUIRE_FALSE(llm_stream::build_request(config, {{"user", "hi \"there\""}}, options, request));
    CHECK(request.method == "POST");
    CHECK(request.url == "https://api.example.com/v1/chat/completions");
    auto header = [&](std::string_view name) -> std::string {
        for (const auto& h : request.headers)
            if (h.first == name) return h.second;
        return "(absent)";
    };
    CHECK(header("Authorization") == "Bearer sk-test");
    CHECK(header("Accept") == "text/event-stream");
    CHECK(header("Content-Type") == "application/json");
    CHECK(header("X-Route") == "blue");
    CHECK(request.body == "{\"messages\":[{\"role\":\"user\",\"content\":\"hi \\\"there\\\"\"}],\"stream\":true,"
                         "\"temperature\":0.5,\"top_p\":0.9,\"model\":\"m2\"}");

    config.api_key.clear();
    REQUIRE_FALSE(llm_stream::build_request(config, {{"user", "hi"}}, {}, request));
    CHECK(header("Authorization") == "(absent)");

    options.extra_json = "[1]";
    const llm_stream::Error bad_extra = llm_stream::build_request(config, {{"user", "hi"}}, options, request);
    CHECK(bad_extra.code == ErrorCode::invalid_argument);
    CHECK(bad_extra.message.find("object") != std::string::npos);

    config.headers = {{"Bad Name", "x"}};
    const llm_stream::Error bad_header = llm_stream::build_request(config, {{"user", "hi"}}, {}, request);
    CHECK(bad_header.code == ErrorCode::invalid_config);
    CHECK(bad_header.message.find("Bad Name") != std::string::npos);
}

#if __cplusplus >= 202002L
#include <algorithm>
#include <iterator>
#include <ranges>
// Range-for is not all: C++20 range algorithms take a Stream as they take any input range.
static_assert(std::input_iterator<llm_stream::Stream::iterator>);
static_assert(std::sentinel_for<llm_stream::Stream::iterator, llm_stream::Stream::iterator>);
static_assert(std::ranges::input_range<llm_stream::Stream>);

TEST_CASE("Stream is a C++20 input range") {
    llm_stream::Config config;
    config.base_url.clear();  // stub mode
    config.log_level = llm_stream::LogLevel::off;
    llm_stream::Stream stream = llm_stream::Client(config).stream_chat("range");
    // Range algorithms take it as they take any input range (one pass: the chunks are consumed).
    const auto chunks = std::ranges::count_if(stream, [](std::string_view chunk) { return !chunk.empty(); });
    CHECK(chunks > 3);
    CHECK_FALSE(stream.error());
    CHECK(stream.finished());
}
#endif
