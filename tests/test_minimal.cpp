// The smallest build, LLM_STREAM_MINIMAL (OpenAI's chat completions over the network, nothing else)
// with LLM_STREAM_NO_DNS (the system's blocking resolver instead of the built-in one): what it keeps
// works, through the Decoder and over loopback, and each feature it leaves out, chosen at run time, is
// an invalid_config error naming its macro, before any byte is sent. This file compiles the
// implementation itself with the macros, so it links no other.
#define LLM_STREAM_MINIMAL
#define LLM_STREAM_NO_DNS
#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "support/decode.hpp"
#include "support/loopback_server.hpp"

namespace {

using llm_stream::Api;
using llm_stream::ErrorCode;

// The recorded stream and what it says (tests/data/streams/manifest.json).
constexpr const char* stream_file = "openai-gpt4o-content.sse";
constexpr std::string_view stream_text = "The image shows a computer contains no visible actual images.";

struct CompiledOut {
    Api api;
    const char* message;
};

const CompiledOut compiled_out_apis[] = {
    {Api::responses, "api 'responses' is not compiled in: LLM_STREAM_NO_RESPONSES"},
    {Api::anthropic, "api 'anthropic' is not compiled in: LLM_STREAM_NO_ANTHROPIC"},
    {Api::gemini, "api 'gemini' is not compiled in: LLM_STREAM_NO_GEMINI"},
    {Api::ollama, "api 'ollama' is not compiled in: LLM_STREAM_NO_OLLAMA"},
};

std::vector<llm_stream::Message> one_prompt() { return {llm_stream::Message::user("Hi")}; }

// The server's base URL with its host as a name, which only a resolver turns into 127.0.0.1.
std::string localhost_url(const TestServer& server) {
    const std::string url = server.base_url();
    return "http://localhost" + url.substr(url.rfind(':')) + "/v1";
}

}  // namespace

TEST_CASE("minimal build: the Decoder decodes an OpenAI stream, cut anywhere") {
    const std::string response =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + llm_test::read_stream_file(stream_file);
    for (std::size_t cut : {std::size_t{1}, std::size_t{7}, std::size_t{100}}) {
        std::vector<std::size_t> cuts;
        for (std::size_t at = cut; at < response.size(); at += cut) cuts.push_back(at);
        std::string text;
        std::string finish;
        const Decoded d = decode_in_pieces(response, cuts, [&](const llm_stream::Event& e) {
            if (e.type == llm_stream::EventType::content) text += e.text;
            if (e.type == llm_stream::EventType::finish) finish = e.text;
        });
        CHECK(d.contract_broken.empty());
        CHECK_FALSE(d.failed);
        CHECK(text == stream_text);
        CHECK(finish == "stop");
    }
}

TEST_CASE("minimal build: a Decoder for a compiled-out API fails at once, naming the macro") {
    for (const CompiledOut& out : compiled_out_apis) {
        CAPTURE(out.message);
        llm_stream::Decoder decoder({}, out.api);
        const llm_stream::DecodeStep step = decoder.feed("HTTP/1.1 200 OK\r\n");
        CHECK(step.status == llm_stream::DecodeStatus::failed);
        CHECK(decoder.error().code == ErrorCode::invalid_config);
        CHECK(decoder.error().message == out.message);
        CHECK(decoder.finish().status == llm_stream::DecodeStatus::failed);
    }
}

TEST_CASE("minimal build: build_request and parse_api refuse a compiled-out API") {
    for (const CompiledOut& out : compiled_out_apis) {
        CAPTURE(out.message);
        llm_stream::Config config;
        config.api = out.api;
        config.base_url = "http://127.0.0.1:9/v1";
        llm_stream::Request request;
        const llm_stream::Error e = llm_stream::build_request(config, one_prompt(), {}, request);
        CHECK(e.code == ErrorCode::invalid_config);
        CHECK(e.message == out.message);

        Api parsed = Api::openai;
        const llm_stream::Error p = llm_stream::parse_api(llm_stream::api_name(out.api), parsed);
        CHECK(p.message == out.message);
        CHECK(parsed == Api::openai);  // unchanged on failure
    }
    Api parsed = Api::responses;
    CHECK_FALSE(llm_stream::parse_api("openai", parsed));
    CHECK(parsed == Api::openai);
}

TEST_CASE("minimal build: a stream over loopback, to an IP address and to localhost (the system's resolver)") {
    TestServer server;
    server.push(llm_test::Response::sse(llm_test::read_stream_file(stream_file)));
    server.push(llm_test::Response::sse(llm_test::read_stream_file(stream_file)));
    const bool started = server.start();
    CHECK_MESSAGE(started, "server: " << server.error());
    if (!started) return;
    for (const std::string& url : {server.base_url() + "/v1", localhost_url(server)}) {
        CAPTURE(url);
        llm_stream::Config config;
        config.base_url = url;
        llm_stream::Client client(config);
        llm_stream::Stream stream = client.stream_chat("Hi");
        std::string text;
        for (std::string_view chunk : stream) text += chunk;
        CHECK_MESSAGE(!stream.error(), stream.error().message);
        CHECK(text == stream_text);
    }
    CHECK(server.requests().size() == 2);
    server.stop();
    CHECK(std::string_view(llm_stream::version_string()).find("dns: the system's, blocking") != std::string_view::npos);
}

TEST_CASE("minimal build without DNS: each DnsOptions member set fails the stream, naming the macro") {
    TestServer server;
    const bool started = server.start();
    CHECK_MESSAGE(started, "server: " << server.error());
    if (!started) return;
    for (int member = 0; member < 4; ++member) {
        CAPTURE(member);
        llm_stream::Config config;
        config.base_url = localhost_url(server);
        if (member == 0) config.dns.servers = {"127.0.0.1"};
        if (member == 1) config.dns.hosts_file = "";
        if (member == 2) config.dns.timeout = std::chrono::milliseconds(100);
        if (member == 3) config.dns.attempts = 1;
        llm_stream::Client client(config);
        llm_stream::Stream stream = client.stream_chat("Hi");
        CHECK_FALSE(stream.next_chunk());
        CHECK(stream.error().code == ErrorCode::invalid_config);
        CHECK(stream.error().message == "the built-in resolver (Config::dns) is not compiled in: LLM_STREAM_NO_DNS");
    }
    CHECK(server.requests().empty());
    server.stop();
}

TEST_CASE("minimal build: a compiled-out API or stub mode fails the stream before anything is sent") {
    TestServer server;
    const bool started = server.start();
    CHECK_MESSAGE(started, "server: " << server.error());
    if (!started) return;
    for (const CompiledOut& out : compiled_out_apis) {
        CAPTURE(out.message);
        llm_stream::Config config;
        config.api = out.api;
        config.base_url = server.base_url() + "/v1";
        llm_stream::Client client(config);
        llm_stream::Stream stream = client.stream_chat("Hi");
        CHECK_FALSE(stream.next_chunk());
        CHECK(stream.error().code == ErrorCode::invalid_config);
        CHECK(stream.error().message == out.message);
    }
    CHECK(server.requests().empty());
    server.stop();

    llm_stream::Client stub_client{llm_stream::Config{}};  // no base URL: stub mode
    llm_stream::Stream stream = stub_client.stream_chat("Hi");
    CHECK_FALSE(stream.next_chunk());
    CHECK(stream.error().code == ErrorCode::invalid_config);
    CHECK(stream.error().message == "stub mode (no base URL) is not compiled in: LLM_STREAM_NO_STUB");
}
