// The benchmark streams: the same text events in each API's wire shape, a whole chunked HTTP response
// per API, and the harness that times candidates over them interleaved. Shared by the benchmarks that
// compare llm_stream with other parsers on the same bytes; the including file defines
// LLM_STREAM_IMPLEMENTATION before including it.
#ifndef LLM_STREAM_BENCH_STREAMS_HPP
#define LLM_STREAM_BENCH_STREAMS_HPP

#include "llm_stream.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../tests/support/chunked.hpp"
#include "../tests/support/decode.hpp"
#include "../tests/support/random_cuts.hpp"

namespace bench {

using Clock = std::chrono::steady_clock;

// The wire shape of one API: the messages before the text, one message carrying each piece of text
// (its sequence number lets envelopes vary as servers' do), and the messages after it, each framed
// as that API frames it (SSE with or without `event:` lines, or NDJSON lines).
struct Wire {
    llm_stream::Api api;
    std::string_view content_type;
    std::vector<std::string> opening;
    std::string (*text_message)(const std::string& text, std::size_t seq);
    std::vector<std::string> closing;
};

inline std::string sse(const std::string& data) { return "data: " + data + "\n\n"; }
inline std::string sse(const char* event, const std::string& data) { return std::string("event: ") + event + "\n" + sse(data); }
inline std::string ndjson(const std::string& line) { return line + "\n"; }

inline const std::string kChatChunk = "{\"id\":\"chatcmpl-9709rQdvMSIASrvcWGVsJMQouP2UV\",\"object\":\"chat.completion.chunk\","
                               "\"created\":1764678937,\"model\":\"gpt-4o-2024-08-06\",";
inline const std::string kResponsesText = "{\"type\":\"response.output_text.delta\",\"item_id\":"
                                   "\"msg_68af4e0a1f4c8193a0d2a4f4c1e0e9b1\",\"output_index\":0,\"content_index\":0,\"delta\":\"";
inline const std::string kResponse = "{\"id\":\"resp_68af4e09a5d08193b1a1e8c3f0d6b7a2\",\"object\":\"response\",\"created_at\":"
                              "1756315657,\"model\":\"gpt-5-mini-2025-08-07\",";
inline const std::string kGeminiTail = "\"modelVersion\": \"gemini-2.5-flash\", \"responseId\": \"mL2vaMnGJZqW1MkP0Z3q4AI\"}";
inline const std::string kOllamaHead = "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-08-28T09:14:";

inline std::string gemini_usage(std::size_t candidates) {
    return "\"usageMetadata\": {\"promptTokenCount\": 8, \"candidatesTokenCount\": " + std::to_string(candidates) +
           ", \"totalTokenCount\": " + std::to_string(8 + candidates) +
           ", \"promptTokensDetails\": [{\"modality\": \"TEXT\", \"tokenCount\": 8}]}, ";
}

inline std::string ollama_time(std::size_t seq) {
    char stamp[16];
    std::snprintf(stamp, sizeof stamp, "%02zu.%06zu", seq / 1000000 % 60, seq % 1000000);
    return kOllamaHead + stamp + "Z\",";
}

inline Wire openai_wire() {
    return {llm_stream::Api::openai, "text/event-stream", {},
            [](const std::string& text, std::size_t) {
                return sse(kChatChunk + "\"system_fingerprint\":\"fp_3bc1b5746c\",\"choices\":[{\"index\":0,"
                           "\"delta\":{\"content\":\"" + text + "\"},\"logprobs\":null,\"finish_reason\":null}]}");
            },
            {sse(kChatChunk + "\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":200000,"
                 "\"total_tokens\":200012}}"),
             sse("[DONE]")}};
}

inline Wire responses_wire() {
    return {llm_stream::Api::responses, "text/event-stream",
            {sse("response.created", "{\"type\":\"response.created\",\"response\":" + kResponse +
                                         "\"status\":\"in_progress\",\"output\":[],\"usage\":null},\"sequence_number\":0}"),
             sse("response.output_item.added",
                 "{\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"id\":"
                 "\"msg_68af4e0a1f4c8193a0d2a4f4c1e0e9b1\",\"type\":\"message\",\"status\":\"in_progress\","
                 "\"content\":[],\"role\":\"assistant\"},\"sequence_number\":1}")},
            [](const std::string& text, std::size_t seq) {
                return sse("response.output_text.delta", kResponsesText + text + "\",\"logprobs\":[],\"sequence_number\":" +
                                                             std::to_string(seq + 2) + "}");
            },
            {sse("response.completed", "{\"type\":\"response.completed\",\"response\":" + kResponse +
                                           "\"status\":\"completed\",\"usage\":{\"input_tokens\":12,\"output_tokens\":"
                                           "200000,\"total_tokens\":200012}},\"sequence_number\":999999}")}};
}

inline Wire anthropic_wire() {
    return {llm_stream::Api::anthropic, "text/event-stream",
            {sse("message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\","
                                  "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\","
                                  "\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,"
                                  "\"output_tokens\":1}}}"),
             sse("content_block_start",
                 "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}")},
            [](const std::string& text, std::size_t) {
                return sse("content_block_delta",
                           "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"" +
                               text + "\"}}");
            },
            {sse("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}"),
             sse("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
                                  "\"stop_sequence\":null},\"usage\":{\"output_tokens\":200000}}"),
             sse("message_stop", "{\"type\":\"message_stop\"}")}};
}

inline Wire gemini_wire() {
    return {llm_stream::Api::gemini, "text/event-stream", {},
            [](const std::string& text, std::size_t seq) {
                return sse("{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"" + text +
                           "\"}], \"role\": \"model\"}, \"index\": 0}], " + gemini_usage(seq + 1) + kGeminiTail);
            },
            {sse("{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\"}], \"role\": \"model\"}, "
                 "\"finishReason\": \"STOP\", \"index\": 0}], " + gemini_usage(200000) + kGeminiTail)}};
}

inline Wire ollama_wire() {
    return {llm_stream::Api::ollama, "application/x-ndjson", {},
            [](const std::string& text, std::size_t seq) {
                return ndjson(ollama_time(seq) + "\"message\":{\"role\":\"assistant\",\"content\":\"" + text +
                              "\"},\"done\":false}");
            },
            {ndjson(ollama_time(999999) + "\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,"
                    "\"done_reason\":\"stop\",\"total_duration\":2146318291,\"load_duration\":31554708,"
                    "\"prompt_eval_count\":12,\"prompt_eval_duration\":187023125,\"eval_count\":200000,"
                    "\"eval_duration\":1926394458}")}};
}

// The pieces of text every API's stream carries, one per event: 2-8 characters mixing ASCII words
// and Chinese.
inline std::vector<std::string> make_texts(std::size_t events) {
    static const char* const ascii[] = {"the", " shoe", " is", " light", ",", " and", " breathes", " well", "."};
    static const char* const chinese[] = {"运动", "鞋", "轻便", "透气", "，", "适合", "日常", "穿着", "。"};
    std::mt19937 rng(42);
    std::vector<std::string> texts(events);
    for (std::string& text : texts) {
        const int pieces = 1 + static_cast<int>(rng() % 3);
        for (int k = 0; k < pieces; ++k) text += (rng() % 2) ? ascii[rng() % 9] : chinese[rng() % 9];
    }
    return texts;
}

// A benchmark's command line: [events] [repeats] (defaults: 200000 events, 5 repeats).
struct Run {
    std::size_t events = 200000;
    int repeats = 5;
};

inline Run run_of(int argc, char** argv) {
    Run run;
    if (argc > 1) run.events = std::strtoul(argv[1], nullptr, 10);
    if (argc > 2) run.repeats = std::atoi(argv[2]);
    return run;
}

// The text a stream of `texts` carries, which each candidate must extract exactly.
inline std::string joined(const std::vector<std::string>& texts) {
    std::string all;
    for (const std::string& text : texts) all += text;
    return all;
}

// A whole 200 response in `wire`'s shape carrying `texts`, one HTTP chunk per message as servers send them.
inline std::string make_stream(const Wire& wire, const std::vector<std::string>& texts, std::size_t& body_bytes) {
    std::string body;
    std::vector<std::size_t> message_ends;
    auto emit = [&](const std::string& message) {
        body += message;
        message_ends.push_back(body.size());
    };
    for (const std::string& message : wire.opening) emit(message);
    for (std::size_t i = 0; i < texts.size(); ++i) emit(wire.text_message(texts[i], i));
    for (const std::string& message : wire.closing) emit(message);
    body_bytes = body.size();
    return "HTTP/1.1 200 OK\r\nContent-Type: " + std::string(wire.content_type) +
           "\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(body, message_ends);
}

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// A candidate's median time; runs alternate between candidates so that a loaded machine slows them alike.
struct Candidate {
    std::string name;
    const std::string* response;  // what it reads, for MB/s
    std::function<std::size_t()> run;
    bool pipeline;  // held to the 1 GB/s bar
    std::vector<double> seconds;
};

inline void time_interleaved(std::vector<Candidate>& candidates, int repeats, std::size_t& sink) {
    for (int r = 0; r < repeats; ++r)
        for (Candidate& c : candidates) {
            const auto t0 = Clock::now();
            sink += c.run();
            c.seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
        }
}

// The Decoder for `api` over the response in place, fed one receive buffer at a time as a transport
// would; the bytes of content it delivered, appended to `content` when given. Exits on a failure.
inline std::size_t decode_content(const std::string& response, llm_stream::Api api, std::string* content) {
    const std::vector<std::size_t> reads = even_cuts(llm_stream::Limits().receive_buffer_bytes, response.size());
    llm_stream::Decoder decoder(llm_stream::Limits{}, api);
    std::size_t content_bytes = 0;
    const Decoded d = decode_in_pieces(decoder, response, reads, PieceMemory::borrowed, [&](const llm_stream::Event& e) {
        if (e.type != llm_stream::EventType::content) return;
        content_bytes += e.text.size();
        if (content) content->append(e.text);
    });
    if (!d.done || !d.warnings.empty()) {
        std::fprintf(stderr, "%s pipeline: %s%s%s\n", llm_stream::api_name(api), d.error.message.c_str(),
                     d.contract_broken.c_str(), d.warnings.empty() ? "" : d.warnings.front().c_str());
        std::exit(1);
    }
    return content_bytes;
}

// The floor every candidate is measured against: one memchr per line of `response`, nothing parsed.
inline std::size_t memchr_lines(const std::string& response) {
    std::size_t lines = 0;
    const char* p = response.data();
    const char* const end = p + response.size();
    while ((p = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p))))) {
        ++lines;
        ++p;
    }
    return lines;
}

// One row per candidate: size, MB/s, events/s, ns per event, and for the pipelines the 1 GB/s bar.
inline void print_results(const std::vector<Candidate>& candidates, std::size_t events) {
    std::printf("%-34s %8s %10s %14s %10s %9s\n", "", "MB", "MB/s", "events/s", "ns/event", ">=1 GB/s");
    for (const Candidate& c : candidates) {
        const double t = median(c.seconds), mb = static_cast<double>(c.response->size()) / 1e6;
        std::printf("%-34s %8.1f %10.0f %14.0f %10.1f %9s\n", c.name.c_str(), mb, mb / t,
                    static_cast<double>(events) / t, t * 1e9 / static_cast<double>(events),
                    c.pipeline ? (mb / t >= 1000 ? "yes" : "NO") : "");
    }
}

}  // namespace bench

#endif
