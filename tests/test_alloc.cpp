// Steady-state streaming allocates nothing: every heap allocation of this binary is counted (the
// library's own buffers through the LLM_STREAM_REALLOC hook, everything else through a
// replaced global operator new), and none may happen while events flow once buffers are warm.

#include "support/counting_allocator.hpp"
#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "support/chunked.hpp"
#include "support/decode.hpp"
#include "support/random_cuts.hpp"

namespace {

using llm_stream::Event;
using llm_stream::EventType;

// A varied stream: content with escapes and Chinese, reasoning, tool-call fragments, a second choice
// whose emoji is split between two events (a surrogate pair's halves), a usage chunk.
std::string make_body(int events) {
    std::string body;
    for (int i = 0; i < events; ++i) {
        switch (i % 4) {
        case 0:
            body += "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
                    "\"delta\":{\"content\":\"运动鞋 " + std::to_string(i) + "\"},\"finish_reason\":null}]}\n\n";
            break;
        case 1:
            body += "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\\n\\u4f60\\ud83d\\ude00\\\"\"}},"
                    "{\"index\":1,\"delta\":{\"content\":\"b\\ud83d\"}}]}\n\n";
            break;
        case 2:
            body += "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"\\ude00c\"}},{\"index\":0,\"delta\":"
                    "{\"reasoning_content\":\"think " + std::to_string(i) + "\"}}]}\n\n";
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

std::string close_delimited(const std::string& body) {
    return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + body;
}

struct Outcome {
    long steady_allocations = 0;
    std::size_t events = 0;
    bool ok = false;
};

// Counts allocations from event `warmup` until the end of the stream.
class SteadyCounter {
public:
    explicit SteadyCounter(std::size_t warmup) : warmup_(warmup) {}
    void on_event() {
        if (++events_ == warmup_) at_warmup_ = heap_allocations.load();
    }
    Outcome outcome(bool ok) const {
        return {heap_allocations.load() - at_warmup_, events_, ok && at_warmup_ >= 0};
    }

private:
    std::size_t warmup_;
    std::size_t events_ = 0;
    long at_warmup_ = -1;
};

// The Decoder over the response cut at `cuts`, fed in place (the harness copies nothing).
Outcome decode(const std::string& response, const std::vector<std::size_t>& cuts, std::size_t warmup = 200,
               llm_stream::Api api = llm_stream::Api::openai) {
    llm_stream::Decoder decoder(llm_stream::Limits{}, api);
    SteadyCounter counter(warmup);
    const Decoded d = decode_in_pieces(decoder, response, cuts, PieceMemory::borrowed,
                                       [&counter](const Event&) { counter.on_event(); });
    return counter.outcome(d.done && d.warnings.empty() && d.contract_broken.empty());
}

// A Stream replaying the response (the transport reads it in receive-buffer-sized pieces).
Outcome stream(const std::string& response, std::size_t warmup = 200) {
    llm_stream::Config config;
    config.log_level = llm_stream::LogLevel::off;
    llm_stream::Stream s = llm_stream::Client(config).replay(response);
    SteadyCounter counter(warmup);
    while (s.next_event()) counter.on_event();
    return counter.outcome(!s.error());
}

}  // namespace

TEST_CASE("no heap allocation per event once buffers are warm") {
    const std::string body = make_body(4000);
    struct Case {
        const char* name;
        std::string response;
    };
    const Case cases[] = {
        {"one chunk per 97 bytes", chunked_sse_response(body, 97)},
        {"one chunk per 4096 bytes", chunked_sse_response(body, 4096)},
        {"Content-Length", length_response(body)},
        {"close-delimited", close_delimited(body)},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        // Cuts are made before counting starts: the vector's own allocation is not the decoder's.
        const std::vector<std::size_t> cut_sets[] = {{}, random_cuts(c.response.size(), 6),
                                                     random_cuts(c.response.size(), 9),
                                                     random_cuts(c.response.size(), 11)};
        for (const auto& cuts : cut_sets) {
            CAPTURE(cuts.size());
            const Outcome o = decode(c.response, cuts);
            CHECK(o.ok);
            CHECK(o.events > 4000);  // 4000 events, tool-call events carry two fragments, plus usage
            CHECK(o.steady_allocations == 0);
        }
        const Outcome o = stream(c.response);
        CHECK(o.ok);
        CHECK(o.events > 4000);
        CHECK(o.steady_allocations == 0);
    }
}

namespace {

// Ollama's NDJSON: content with escapes and Chinese, thinking, a whole tool call with its arguments
// object compacted, then the done line.
std::string make_ollama_body(int lines) {
    std::string body;
    for (int i = 0; i < lines; ++i) {
        const std::string n = std::to_string(i);
        body += "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-08-28T09:14:00Z\",\"message\":{\"role\":\"assistant\",";
        switch (i % 3) {
        case 0: body += "\"content\":\"运动鞋 " + n + " a \\u003c b\\n\"}"; break;
        case 1: body += "\"content\":\"\",\"thinking\":\"think " + n + "\"}"; break;
        default:
            body += "\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"k\": " + n +
                    ", \"s\": \"R\\u0026D\"}}}]}";
        }
        body += ",\"done\":false}\n";
    }
    body += "{\"model\":\"qwen3:8b\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,"
            "\"done_reason\":\"stop\",\"prompt_eval_count\":1,\"eval_count\":2}\n";
    return body;
}

// Gemini's stream: text with escapes and Chinese, thoughts, whole function calls (arguments compacted),
// cumulative usage in every chunk (passed on with the finish), a finish at the end; CRLF CRLF between events, as Google sends them.
std::string make_gemini_body(int events) {
    std::string body;
    for (int i = 0; i < events; ++i) {
        const std::string n = std::to_string(i);
        std::string part;
        switch (i % 3) {
        case 0: part = "{\"text\": \"运动鞋 \\\"" + n + "\\\"\\n\"}"; break;
        case 1: part = "{\"text\": \"think " + n + "\", \"thought\": true}"; break;
        default: part = "{\"functionCall\": {\"name\": \"f\", \"args\": {\"n\": [" + n + ", 2]}}}";
        }
        body += "data: {\"candidates\": [{\"content\": {\"parts\": [" + part + "], \"role\": \"model\"}, \"index\": 0}], "
                "\"usageMetadata\": {\"promptTokenCount\": 5, \"candidatesTokenCount\": " + n + ", \"totalTokenCount\": " +
                std::to_string(i + 5) + "}}\r\n\r\n";
    }
    body += "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \".\"}], \"role\": \"model\"}, "
            "\"finishReason\": \"STOP\", \"index\": 0}]}\r\n\r\n";
    return body;
}

// An Anthropic stream: message_start, a thinking block, a text block with escapes and Chinese, three
// tool_use blocks opened early whose input then streams in turn, pings, message_delta, message_stop.
std::string make_anthropic_body(int events) {
    auto event = [](const char* name, const std::string& data) {
        return std::string("event: ") + name + "\ndata: " + data + "\n\n";
    };
    std::string body = event("message_start", R"({"type":"message_start","message":{"usage":{"input_tokens":9,"output_tokens":1}}})");
    for (int block = 2; block < 5; ++block)
        body += event("content_block_start", R"({"type":"content_block_start","index":)" + std::to_string(block) +
                                                 R"(,"content_block":{"type":"tool_use","id":"toolu_)" +
                                                 std::to_string(block) + R"(","name":"f","input":{}}})");
    for (int i = 0; i < events; ++i) {
        const std::string n = std::to_string(i);
        switch (i % 4) {
        case 0: body += event("content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"think )" + n + R"("}})"); break;
        case 1: body += event("content_block_delta", R"({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"运动鞋 \"a\"\n\u4f60 )" + n + R"("}})"); break;
        case 2: body += event("content_block_delta", R"({"type":"content_block_delta","index":)" + std::to_string(2 + i % 3) + R"(,"delta":{"type":"input_json_delta","partial_json":"[\")" + n + R"(\","}})"); break;
        default: body += event("ping", R"({"type":"ping"})") + event("message_delta", R"({"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":)" + n + "}}");
        }
    }
    body += event("message_delta", R"({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":5}})");
    return body + event("message_stop", R"({"type":"message_stop"})");
}

}  // namespace

TEST_CASE("ollama: no heap allocation per event once buffers are warm") {
    const std::string body = make_ollama_body(4000);
    for (const std::string& response : {chunked_sse_response(body, 97), length_response(body, "application/x-ndjson")}) {
        // Cut sets that split lines from the start: the buffer of a line split between reads warms up
        // at the first such line (a handful of cuts could put that after the warm-up events).
        const std::vector<std::size_t> cut_sets[] = {{}, random_cuts(response.size(), 6), random_cuts(response.size(), 11)};
        for (const auto& cuts : cut_sets) {
            CAPTURE(cuts.size());
            const Outcome o = decode(response, cuts, 200, llm_stream::Api::ollama);
            CHECK(o.ok);
            CHECK(o.events == 4002);  // a line each, then finish and usage
            CHECK(o.steady_allocations == 0);
        }
    }
}

TEST_CASE("the Anthropic reader allocates nothing per event once buffers are warm") {
    const std::string body = make_anthropic_body(4000);
    for (const std::string& response : {chunked_sse_response(body, 97), close_delimited(body)}) {
        const std::vector<std::size_t> cut_sets[] = {{}, random_cuts(response.size(), 6)};
        for (const auto& cuts : cut_sets) {
            const Outcome o = decode(response, cuts, 200, llm_stream::Api::anthropic);
            CHECK(o.ok);
            CHECK(o.events > 4000);  // 3000 deltas, 1000 usage events, the calls opened, the finish
            CHECK(o.steady_allocations == 0);
        }
    }
}

namespace {

/* A long stream: two calls opened, then text, reasoning and both calls' arguments in turn. */
std::string make_responses_body(int events) {
    std::string body;
    for (int call = 0; call < 2; ++call)
        body += R"(data: {"type":"response.output_item.added","output_index":)" + std::to_string(call) +
                R"(,"item":{"type":"function_call","call_id":"call_)" + std::to_string(call) + R"(","name":"f"}})" "\n\n";
    const char* const kinds[] = {"response.output_text.delta", "response.reasoning_summary_text.delta",
                                 "response.function_call_arguments.delta"};
    for (int i = 0; i < events; ++i)
        body += std::string(R"(data: {"type":")") + kinds[i % 3] + R"(","output_index":)" + std::to_string(i % 2) +
                R"(,"delta":"piece \u00e9 )" + std::to_string(i) + "\"}\n\n";
    body += R"(data: {"type":"response.completed","response":{"status":"completed","usage":{"input_tokens":1,)"
            R"("output_tokens":2,"total_tokens":3}}})" "\n\n";
    return body;
}

}  // namespace

TEST_CASE("responses: no heap allocation per event once buffers are warm") {
    const std::string response = chunked_sse_response(make_responses_body(4000), 97);
    const std::vector<std::size_t> cut_sets[] = {{}, random_cuts(response.size(), 6)};
    for (const auto& cuts : cut_sets) {
        CAPTURE(cuts.size());
        const Outcome o = decode(response, cuts, 200, llm_stream::Api::responses);
        CHECK(o.ok);
        CHECK(o.events == 4000 + 2 + 2);  // the calls' openings, the finish and the usage
        CHECK(o.steady_allocations == 0);
    }
}

TEST_CASE("Gemini: no heap allocation per event once buffers are warm") {
    const std::string response = chunked_sse_response(make_gemini_body(3000), 97);
    const std::vector<std::size_t> cut_sets[] = {{}, random_cuts(response.size(), 6), random_cuts(response.size(), 11)};
    for (const auto& cuts : cut_sets) {
        CAPTURE(cuts.size());
        const Outcome o = decode(response, cuts, 200, llm_stream::Api::gemini);
        CHECK(o.ok);
        CHECK(o.events > 3000);  // each chunk's part, then the finish and the usage
        CHECK(o.steady_allocations == 0);
    }
}

namespace {

// A thinking model's stream of `events` events in each API with signatures: Anthropic's thinking,
// signature_delta and redacted_thinking blocks; Gemini's thoughtSignature on thoughts, text and
// calls; the Responses API's summary deltas and done reasoning items with their encrypted content.
std::string make_signed_body(llm_stream::Api api, int events) {
    std::string body;
    for (int i = 0; i < events; ++i) {
        const std::string n = std::to_string(i);
        const std::string sig = "EqQBCkgIARAB" + n + "+/sig==";
        if (api == llm_stream::Api::anthropic) {
            body += i % 2 ? "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":" + n +
                                ",\"delta\":{\"type\":\"signature_delta\",\"signature\":\"" + sig + "\"}}\n\n"
                          : "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":" + n +
                                ",\"content_block\":{\"type\":\"redacted_thinking\",\"data\":\"" + sig + "\"}}\n\n";
        } else if (api == llm_stream::Api::gemini) {
            const std::string part = i % 2 ? "{\"text\": \"运动鞋 " + n + "\", \"thoughtSignature\": \"" + sig + "\"}"
                                           : "{\"functionCall\": {\"name\": \"f\", \"args\": {\"n\": " + n +
                                                 "}}, \"thoughtSignature\": \"" + sig + "\"}";
            body += "data: {\"candidates\": [{\"content\": {\"parts\": [" + part + "], \"role\": \"model\"}, \"index\": 0}]}\r\n\r\n";
        } else {
            body += i % 2 ? "data: {\"type\":\"response.reasoning_summary_text.delta\",\"output_index\":" + n +
                                ",\"delta\":\"think \\u00e9 " + n + "\"}\n\n"
                          : "data: {\"type\":\"response.output_item.done\",\"output_index\":" + n + ",\"item\":{\"id\":\"rs_" + n +
                                "\",\"type\":\"reasoning\",\"summary\":[],\"encrypted_content\":\"" + sig + "\"}}\n\n";
        }
    }
    if (api == llm_stream::Api::anthropic) return body + "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    if (api == llm_stream::Api::gemini)
        return body + "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \".\"}], \"role\": \"model\"}, "
                      "\"finishReason\": \"STOP\", \"index\": 0}]}\r\n\r\n";
    return body + "data: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\"}}\n\n";
}

}  // namespace

TEST_CASE("signatures of every API allocate nothing per event once buffers are warm") {
    for (const llm_stream::Api api : {llm_stream::Api::anthropic, llm_stream::Api::gemini, llm_stream::Api::responses}) {
        CAPTURE(llm_stream::api_name(api));
        const std::string response = chunked_sse_response(make_signed_body(api, 3000), 97);
        const std::vector<std::size_t> cut_sets[] = {{}, random_cuts(response.size(), 6)};
        for (const auto& cuts : cut_sets) {
            CAPTURE(cuts.size());
            const Outcome o = decode(response, cuts, 200, api);
            CHECK(o.ok);
            CHECK(o.events >= 3000);  // a signature or text each (Gemini's text: two), then the end
            CHECK(o.steady_allocations == 0);
        }
    }
}

namespace {

/* Each API's varied stream (the bodies above), in 97-byte chunks. */
std::string varied_response(llm_stream::Api api, int events) {
    switch (api) {
    case llm_stream::Api::responses: return chunked_sse_response(make_responses_body(events), 97);
    case llm_stream::Api::anthropic: return chunked_sse_response(make_anthropic_body(events), 97);
    case llm_stream::Api::gemini: return chunked_sse_response(make_gemini_body(events), 97);
    case llm_stream::Api::ollama: return chunked_sse_response(make_ollama_body(events), 97);
    default: return chunked_sse_response(make_body(events), 97);
    }
}

/* One text delta of `api` whose JSON string is `text`: a message far bigger than usual. */
std::string huge_message(llm_stream::Api api, const std::string& text) {
    switch (api) {
    case llm_stream::Api::responses:
        return "data: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"delta\":\"" + text + "\"}\n\n";
    case llm_stream::Api::anthropic:
        return "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"" +
               text + "\"}}\n\n";
    case llm_stream::Api::gemini:
        return "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"" + text + "\"}],\"role\":\"model\"},\"index\":0}]}\n\n";
    case llm_stream::Api::ollama:
        return "{\"message\":{\"role\":\"assistant\",\"content\":\"" + text + "\"},\"done\":false}\n";
    default: return "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + text + "\"}}]}\n\n";
    }
}

/* The allocations `decoder` makes for `response` (in 1000-byte pieces: an event split between reads is
   copied); `longest` is the longest text of an event. */
long allocations_decoding(llm_stream::Decoder& decoder, const std::string& response, std::size_t& longest) {
    const std::vector<std::size_t> cuts = even_cuts(1000, response.size());
    longest = 0;
    const long before = heap_allocations.load();
    const Decoded d = decode_in_pieces(decoder, response, cuts, PieceMemory::borrowed,
                                       [&longest](const Event& e) { longest = std::max(longest, e.text.size()); });
    const long made = heap_allocations.load() - before;
    CHECK(d.contract_broken.empty());
    CHECK_FALSE(d.failed);
    return made;
}

}  // namespace

// A decoder kept with a pooled connection is reset for the next response: its API's reader with it,
// keeping the room of its buffers, so that the next stream like the last one allocates nothing; but a
// buffer that one huge message grew is given back, so that an idle connection does not hold it.
TEST_CASE("a reset decoder of every API allocates nothing for a stream like its last, and keeps no huge message") {
    const std::string escaped_text = [] {
        std::string t;
        for (int i = 0; i < 50000; ++i) t += "\\u00e9";  // decoded into the reader's own buffer
        return t;
    }();
    for (const llm_stream::Api api : {llm_stream::Api::openai, llm_stream::Api::responses, llm_stream::Api::anthropic,
                                      llm_stream::Api::gemini, llm_stream::Api::ollama}) {
        const std::string name = llm_stream::api_name(api);
        CAPTURE(name);
        const std::string response = varied_response(api, 300);
        const std::string huge = chunked_sse_response(huge_message(api, escaped_text), 4096);
        llm_stream::Decoder decoder(llm_stream::Limits{}, api);
        std::size_t longest = 0;
        CHECK(allocations_decoding(decoder, response, longest) > 0);  // the first stream grows the buffers
        decoder.reset();
        CHECK(allocations_decoding(decoder, response, longest) == 0);
        decoder.reset();
        HeapMeasure measure;
        allocations_decoding(decoder, huge, longest);
        CHECK(longest == 100000);  // 50,000 é
        CHECK(measure.peak_bytes() > 200000);  // the message and its text, held on the way
        decoder.reset();
        // Given back: what is left is the usual room (the SSE parser reserves its 2 x 2 KiB again) and the
        // warning's text (the stream ended without its end), nothing of the message.
        CHECK(measure.live_bytes() <= 8192);
    }
}

namespace {

// `events` events for an assembler: content, reasoning and two calls' arguments in turn, n=2.
std::string make_assembly_body(int events) {
    std::string body =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"function\":"
        "{\"name\":\"f\",\"arguments\":\"\"}},{\"index\":1,\"id\":\"call_b\",\"function\":{\"name\":\"g\"}}]}}]}\n\n";
    for (int i = 0; i < events; ++i) {
        const std::string n = std::to_string(i);
        switch (i % 4) {
        case 0: body += "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"运动鞋 " + n + "\"}}]}\n\n"; break;
        case 1: body += "data: {\"choices\":[{\"index\":1,\"delta\":{\"reasoning_content\":\"think " + n + "\"}}]}\n\n"; break;
        default:
            body += "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":" + std::to_string(i % 2) +
                    ",\"function\":{\"arguments\":\"[" + n + "]\"}}]}}]}\n\n";
        }
    }
    body += "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}],"
            "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n";
    body += "data: [DONE]\n\n";
    return body;
}

// Every allocation of decoding `response` into a ReplyAssembler, from the first byte to finish().
long assembly_allocations(const std::string& response, std::size_t& texts_bytes) {
    llm_stream::Decoder decoder;
    llm_stream::ReplyAssembler assembler;
    long failures = 0;
    const long before = heap_allocations.load();
    const Decoded d = decode_in_pieces(decoder, response, {}, PieceMemory::borrowed, [&](const Event& e) {
        if (assembler.add(e)) ++failures;
    });
    assembler.finish();
    const long allocations = heap_allocations.load() - before;
    CHECK(d.done);
    CHECK(failures == 0);
    const llm_stream::Reply& reply = assembler.reply();
    REQUIRE(reply.choices.size() == 2);
    REQUIRE(reply.choices[0].message.tool_calls.size() == 2);
    texts_bytes = reply.choices[0].message.content.size() + reply.choices[1].message.reasoning.size() +
                  reply.choices[0].message.tool_calls[0].arguments.size() +
                  reply.choices[0].message.tool_calls[1].arguments.size();
    return allocations;
}

}  // namespace

TEST_CASE("assembling a reply allocates O(log n) times for n events") {
    // Each growing text (content, reasoning, two calls' arguments) reallocates about log2(its size)
    // times; everything else is a constant: the decoder's buffers, two choices, two calls.
    for (int events : {1000, 100000}) {
        CAPTURE(events);
        const std::string response = length_response(make_assembly_body(events));
        std::size_t texts_bytes = 0;
        const long allocations = assembly_allocations(response, texts_bytes);
        CAPTURE(allocations);
        CHECK(texts_bytes > static_cast<std::size_t>(events) * 4);  // the text really grew with n
        const double log2_events = std::log2(static_cast<double>(events));
        CHECK(static_cast<double>(allocations) <= 20 + 5 * log2_events);  // 49 and 77 with libstdc++
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
