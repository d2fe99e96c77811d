// Steady-state streaming allocates nothing: every heap allocation of this binary is counted (the
// library's own buffers through the LLM_STREAM_REALLOC hook, everything else through a
// replaced global operator new), and none may happen while events flow once buffers are warm.

#include "support/counting_allocator.hpp"
#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

namespace {

using llm_stream::Event;
using llm_stream::EventType;

// A varied stream: content with escapes and Chinese, reasoning, tool-call fragments, a usage chunk.
std::string make_body(int events) {
    std::string body;
    for (int i = 0; i < events; ++i) {
        switch (i % 4) {
        case 0:
            body += "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
                    "\"delta\":{\"content\":\"运动鞋 " + std::to_string(i) + "\"},\"finish_reason\":null}]}\n\n";
            break;
        case 1:
            body += "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\\n\\u4f60\\ud83d\\ude00\\\"\"}}]}\n\n";
            break;
        case 2:
            body += "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"think " + std::to_string(i) +
                    "\"}}]}\n\n";
            break;
        default:
            body += "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
                    "{\"arguments\":\"{\\\"k\\\":" + std::to_string(i) + "\"}},{\"index\":1,\"id\":\"call_" +
                    std::to_string(i) + "\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n";
        }
    }
    body += "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n";
    body += "data: [DONE]\n\n";
    return body;
}

std::string chunked(const std::string& body, std::size_t piece) {
    std::string out = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (std::size_t at = 0; at < body.size(); at += piece) {
        const std::size_t n = std::min(piece, body.size() - at);
        char size[16];
        std::snprintf(size, sizeof size, "%zx\r\n", n);
        out += size;
        out.append(body, at, n);
        out += "\r\n";
    }
    return out + "0\r\n\r\n";
}

std::string with_length(const std::string& body) {
    return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body;
}

std::string close_delimited(const std::string& body) {
    return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + body;
}

struct Outcome {
    long steady_allocations = 0;
    std::size_t events = 0;
    bool ok = false;
};

// Streams the response; allocations are counted from event `warmup` until the end of the stream.
Outcome run(const std::string& response, std::vector<std::size_t> splits, std::size_t warmup = 200) {
    llm_stream::Config config;
    config.log_level = llm_stream::LogLevel::off;
    llm_stream::Stream stream = llm_stream::detail::replay_stream(config, response, std::move(splits));
    Outcome out;
    long at_warmup = -1;
    while (stream.next_event()) {
        if (++out.events == warmup) at_warmup = heap_allocations.load();
    }
    out.steady_allocations = heap_allocations.load() - at_warmup;
    out.ok = !stream.error() && at_warmup >= 0;
    return out;
}

std::vector<std::size_t> random_splits(std::size_t size, unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<std::size_t> ends;
    for (std::size_t at = 0; at < size;) {
        at += 1 + rng() % 600;
        ends.push_back(std::min(at, size));
    }
    return ends;
}

}  // namespace

TEST_CASE("no heap allocation per event once buffers are warm") {
    const std::string body = make_body(4000);
    struct Case {
        const char* name;
        std::string response;
    };
    const Case cases[] = {
        {"one chunk per 97 bytes", chunked(body, 97)},
        {"one chunk per 4096 bytes", chunked(body, 4096)},
        {"Content-Length", with_length(body)},
        {"close-delimited", close_delimited(body)},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        // Splits are built before counting starts: the vector's own allocation is not the stream's.
        const std::vector<std::size_t> split_sets[] = {{}, random_splits(c.response.size(), 7),
                                                       random_splits(c.response.size(), 8)};
        for (const auto& splits : split_sets) {
            const Outcome o = run(c.response, splits);
            CHECK(o.ok);
            CHECK(o.events > 4000);  // 4000 events, tool-call events carry two fragments, plus usage
            CHECK(o.steady_allocations == 0);
        }
    }
}

TEST_CASE("stub mode streams without allocating per chunk") {
    llm_stream::Config config;
    config.log_level = llm_stream::LogLevel::off;
    llm_stream::Client client(config);
    llm_stream::Stream stream = client.stream_chat("请介绍运动鞋的特点");
    long before = -1;
    std::size_t chunks = 0;
    while (auto chunk = stream.next_chunk()) {
        if (++chunks == 3) before = heap_allocations.load();
    }
    REQUIRE(before >= 0);
    CHECK(!stream.error());
    CHECK(chunks > 10);
    CHECK(heap_allocations.load() - before == 0);
}

TEST_CASE("the counter sees allocations (the test can fail)") {
    long before = heap_allocations.load();
    llm_stream::detail::ByteBuffer buffer;
    CHECK(buffer.append("x", 1));
    CHECK(heap_allocations.load() - before == 1);
    before = heap_allocations.load();
    std::string text(1000, 'x');
    CHECK(text.size() == 1000);
    CHECK(heap_allocations.load() - before >= 1);
}
