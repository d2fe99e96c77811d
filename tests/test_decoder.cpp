// The public sans-I/O core: build_request() and Decoder, with no transport at all.
#include "llm_stream.hpp"
#include <doctest/doctest.h>

#include "support/chunked.hpp"
#include "support/decode.hpp"
#include "support/random_cuts.hpp"
#include "support/test_data.hpp"

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

// What a decoder made of its input (through the shared split harness), the text copied out of the views.
struct Outcome {
    std::string content;
    std::string reasoning;
    std::string finish_reason;
    int finishes = 0;
    std::vector<std::string> warnings;
    std::optional<llm_stream::Usage> usage;
    std::size_t events = 0;
    bool done = false;
    llm_stream::Error error;
};

// Records each event's text into `out`, for decode_in_pieces().
auto record_into(Outcome& out) {
    return [&out](const llm_stream::Event& e) {
        if (e.type == EventType::content) out.content += e.text;
        if (e.type == EventType::reasoning) out.reasoning += e.text;
        if (e.type == EventType::finish) {
            out.finish_reason = std::string(e.text);
            ++out.finishes;
        }
        if (e.type == EventType::usage) out.usage = e.usage;
    };
}

// `input` in pieces of `piece` bytes (0: one piece) through `decoder`, then the end of input.
Outcome decode_with(Decoder& decoder, std::string_view input, std::size_t piece = 0) {
    Outcome out;
    const std::vector<std::size_t> cuts = piece ? even_cuts(piece, input.size()) : std::vector<std::size_t>{};
    const Decoded d = decode_in_pieces(decoder, input, cuts, PieceMemory::copied, record_into(out));
    CHECK_MESSAGE(d.contract_broken.empty(), d.contract_broken);
    out.warnings = d.warnings;
    out.events = d.events;
    out.done = d.done;
    out.error = d.error;
    return out;
}

Outcome decode(std::string_view response, std::size_t piece = 0) {
    Decoder decoder;
    return decode_with(decoder, response, piece);
}

std::string chunk(std::string_view data) { return chunk_size_line(data.size()) + std::string(data) + "\r\n"; }

const std::string kHead(kChunkedSseHead);
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
        const Outcome d = decode(kResponse, piece);
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
    const std::size_t tail = kResponse.size() - 5;  // "0\r\n\r\n" not yet received
    std::string_view first = std::string_view(kResponse).substr(0, tail);
    CHECK(decode_with(decoder, first).done);
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
    const Outcome out = decode_with(decoder, kEvents, 10);
    CHECK(out.done);
    CHECK(out.content == "Hello \xE4\xBD\xA0");
    CHECK(decoder.http_status() == 200);
    CHECK(decoder.header("content-type").empty());  // the transport kept the headers

    Decoder failing;
    failing.start_body(503, "application/json");
    const Outcome err = decode_with(failing, "{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}");
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
        const Outcome out = decode_with(decoder, response, piece);
        CHECK(out.error.code == ErrorCode::http_status);
        CHECK(out.error.http_status == 429);
        CHECK(out.error.message == "HTTP 429: Rate limit reached (type: requests, code: rate_limit_exceeded)");
        CHECK(decoder.header("retry-after") == "7");
        CHECK(out.events == 0);
    }
}

TEST_CASE("Decoder: a 2xx that is no completion, and a redirect, are errors that say so") {
    const Outcome page = decode("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 15\r\n\r\n"
                                "<html>UI</html>");
    CHECK(page.error.code == ErrorCode::protocol);
    CHECK(page.error.message.find("text/html") != std::string::npos);

    const Outcome empty = decode("HTTP/1.1 204 No Content\r\n\r\n");
    CHECK(empty.error.code == ErrorCode::protocol);
    CHECK(empty.error.message.find("204") != std::string::npos);

    const Outcome moved = decode("HTTP/1.1 301 Moved Permanently\r\nLocation: https://api.example.com/v1/chat/completions\r\n"
                                 "Content-Length: 0\r\n\r\n");
    CHECK(moved.error.code == ErrorCode::http_status);
    CHECK(moved.error.http_status == 301);
    CHECK(moved.error.message.find("not followed") != std::string::npos);
    CHECK(moved.error.message.find("https://api.example.com/v1/chat/completions") != std::string::npos);

    const Outcome nothing = decode("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 2\r\n\r\n\n\n");
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
    const Outcome d = decode("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + body, 3);
    CHECK(d.content == "AB");
    REQUIRE(d.warnings.size() == 1);
    CHECK(d.warnings[0].find("skipped an event") != std::string::npos);
    CHECK(d.error.code == ErrorCode::server_error);
    CHECK(d.error.message == "server error: The engine is overloaded (code: 529)");
}

TEST_CASE("Decoder: end of input: a close-delimited body ends; a cut chunked body fails unless [DONE] came") {
    const Outcome closed = decode("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + kEvents);
    CHECK(closed.done);
    CHECK(closed.content == "Hello \xE4\xBD\xA0");

    const std::string cut = kHead + chunk(kEvents.substr(0, 100));
    const Outcome truncated = decode(cut);
    CHECK(truncated.error.code == ErrorCode::protocol);
    CHECK(truncated.content == "");  // the first 100 bytes hold only the reasoning event
    CHECK(truncated.reasoning == "Think");

    const Outcome after_done = decode(kHead + chunk(kEvents), 0);
    CHECK(after_done.done);
    CHECK_FALSE(after_done.error);
}

TEST_CASE("Decoder: a server that ignored \"stream\" answers with one JSON document") {
    const std::string body = "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Whole\"},"
                             "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}";
    const Outcome d = decode(length_response(body, "application/json"), 5);
    CHECK(d.content == "Whole");
    CHECK(d.finish_reason == "stop");
    CHECK(d.done);
}

TEST_CASE("Decoder: the stream ending without [DONE] or a finish reason is a warning, not an error") {
    const std::string body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
    const Outcome d = decode(length_response(body));
    CHECK(d.content == "x");
    CHECK(d.done);
    REQUIRE(d.warnings.size() == 1);
    CHECK(d.warnings[0].find("without [DONE]") != std::string::npos);
}

// Ollama's /v1 endpoint in 2024 (ollama issue 4357) and sglang 0.4.3 (sglang issue 3912) sent
// "finish_reason":"" on every chunk: that is no finish, only the last chunk's "stop" is.
TEST_CASE("Decoder: an empty finish_reason on every chunk is no finish") {
    std::string body;
    for (const char* text : {"Hel", "lo", "!"})
        body += std::string("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
                            "\"delta\":{\"role\":\"assistant\",\"content\":\"") + text + "\"},\"finish_reason\":\"\"}]}\n\n";
    body += "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
            "\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    for (std::size_t piece : {std::size_t(0), std::size_t(1), std::size_t(13)}) {
        CAPTURE(piece);
        const Outcome d = decode(length_response(body), piece);
        CHECK(d.content == "Hello!");
        CHECK(d.events == 4);
        CHECK(d.finishes == 1);
        CHECK(d.finish_reason == "stop");
        CHECK(d.warnings.empty());
        CHECK_FALSE(d.error);
    }
}

// A decoder kept with a pooled connection is reset between responses: whatever the last response
// left (its end, a cut, a failure, a message far bigger than usual, start_body()), the next one decodes
// as on a new decoder.
TEST_CASE("Decoder::reset(): the next response decodes as on a new decoder") {
    const std::string big_event =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + std::string(100000, 'x') + "\"}}]}\n\n";
    const std::string leftovers[] = {
        kResponse,
        kHead + chunk(big_event),                  // cut after a message that grew the buffers
        kResponse.substr(0, kResponse.size() / 2),  // cut inside a message
        "HTTP/1.1 500 Oops\r\nContent-Length: 5\r\n\r\nwhat?",
    };
    const Outcome fresh = decode(kResponse, 7);
    Decoder decoder;
    for (const std::string& leftover : leftovers) {
        CAPTURE(leftover.substr(0, 40));
        decode_with(decoder, leftover, 13);
        decoder.reset();
        CHECK(decoder.http_status() == 0);
        CHECK(decoder.messages() == 0);
        const Outcome again = decode_with(decoder, kResponse, 7);
        CHECK(again.content == fresh.content);
        CHECK(again.reasoning == fresh.reasoning);
        CHECK(again.finish_reason == fresh.finish_reason);
        CHECK(again.events == fresh.events);
        CHECK(again.done);
        CHECK_FALSE(again.error);
        CHECK(again.warnings.empty());
        decoder.reset();
    }
    decoder.start_body(200, "text/event-stream");
    decoder.reset();
    CHECK(decode_with(decoder, kResponse).content == fresh.content);  // the head is read again
}

TEST_CASE("Decoder::reset(): every API's reader starts again") {
    const std::pair<llm_stream::Api, const char*> streams[] = {
        {llm_stream::Api::openai, "openai-gpt4o-content.sse"},
        {llm_stream::Api::responses, "responses-text-unicode.sse"},
        {llm_stream::Api::anthropic, "anthropic-text-unicode.sse"},
        {llm_stream::Api::gemini, "gemini-text-unicode.sse"},
        {llm_stream::Api::ollama, "ollama-text-unicode.ndjson"},
    };
    for (const auto& stream : streams) {
        const llm_stream::Api api = stream.first;
        const char* const file = stream.second;  // not a structured binding: CAPTURE's lambda takes it (clang 14)
        CAPTURE(file);
        std::string body;
        REQUIRE(llm_test::read_file(std::string(LLM_STREAM_TEST_DATA_DIR) + "/streams/" + file, body));
        const std::string response = chunked_sse_response(body, 100);
        Decoder decoder({}, api);
        decode_with(decoder, response.substr(0, response.size() / 2), 5);  // cut: the reader is mid-stream
        decoder.reset();
        const Outcome again = decode_with(decoder, response, 5);
        Decoder made({}, api);
        const Outcome fresh = decode_with(made, response, 5);
        CHECK_FALSE(fresh.content.empty());
        CHECK(again.content == fresh.content);
        CHECK(again.events == fresh.events);
        CHECK(again.done == fresh.done);
        CHECK(again.warnings == fresh.warnings);
        CHECK_FALSE(again.error);
    }
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
    REQUIRE_FALSE(llm_stream::build_request(config, {llm_stream::Message::user("hi \"there\"")}, options, request));
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
                         "\"stream_options\":{\"include_usage\":true},\"temperature\":0.5,\"top_p\":0.9,\"model\":\"m2\"}");

    config.api_key.clear();
    REQUIRE_FALSE(llm_stream::build_request(config, {llm_stream::Message::user("hi")}, {}, request));
    CHECK(header("Authorization") == "(absent)");

    options.extra_json = "[1]";
    const llm_stream::Error bad_extra = llm_stream::build_request(config, {llm_stream::Message::user("hi")}, options, request);
    CHECK(bad_extra.code == ErrorCode::invalid_argument);
    CHECK(bad_extra.message.find("object") != std::string::npos);

    config.headers = {{"Bad Name", "x"}};
    const llm_stream::Error bad_header = llm_stream::build_request(config, {llm_stream::Message::user("hi")}, {}, request);
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
