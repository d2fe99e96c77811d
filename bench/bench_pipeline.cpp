// Throughput of the whole sans-I/O pipeline (HTTP/1.1 chunked framing -> SSE -> JSON delta) over a
// large realistic stream, next to a memchr floor and a baseline that parses each event with
// nlohmann::json. A program that prints figures, not a test.
//
//   bench_pipeline [events] [repeats]      (defaults: 200000 events, 5 repeats; prints medians)

#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../tests/support/chunked.hpp"
#include "../tests/support/decode.hpp"
#include "../tests/support/random_cuts.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// One HTTP chunk per SSE event, as OpenAI-style servers send them; deltas of 2-8 characters mixing
// ASCII words and Chinese; a usage chunk and [DONE] at the end.
std::string make_stream(std::size_t events, std::size_t& body_bytes) {
    static const char* const ascii[] = {"the", " shoe", " is", " light", ",", " and", " breathes", " well", "."};
    static const char* const chinese[] = {"运动", "鞋", "轻便", "透气", "，", "适合", "日常", "穿着", "。"};
    std::mt19937 rng(42);
    std::string body, delta;
    std::vector<std::size_t> event_ends;
    auto emit = [&](const std::string& data) {
        body += "data: " + data + "\n\n";
        event_ends.push_back(body.size());
    };
    for (std::size_t i = 0; i < events; ++i) {
        delta.clear();
        const int pieces = 1 + static_cast<int>(rng() % 3);
        for (int k = 0; k < pieces; ++k) delta += (rng() % 2) ? ascii[rng() % 9] : chinese[rng() % 9];
        emit("{\"id\":\"chatcmpl-9709rQdvMSIASrvcWGVsJMQouP2UV\",\"object\":\"chat.completion.chunk\","
             "\"created\":1764678937,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_3bc1b5746c\","
             "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + delta +
             "\"},\"logprobs\":null,\"finish_reason\":null}]}");
    }
    emit("{\"id\":\"chatcmpl-9709rQdvMSIASrvcWGVsJMQouP2UV\",\"object\":\"chat.completion.chunk\","
         "\"created\":1764678937,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[],"
         "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":200000,\"total_tokens\":200012}}");
    emit("[DONE]");
    body_bytes = body.size();
    return std::string(kChunkedSseHead) + chunked(body, event_ends);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

template <class Run>
double time_best_of(int repeats, Run run, std::size_t& sink) {
    std::vector<double> seconds;
    for (int r = 0; r < repeats; ++r) {
        const auto t0 = Clock::now();
        sink += run();
        seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    return median(seconds);
}

// Lines of a chunked SSE body, for the baseline: framing removed with the simplest correct loop.
std::size_t nlohmann_baseline(const std::string& response) {
    std::size_t pos = response.find("\r\n\r\n") + 4;
    std::string body;
    for (;;) {
        const std::size_t line_end = response.find("\r\n", pos);
        const std::size_t size = std::strtoul(response.c_str() + pos, nullptr, 16);
        pos = line_end + 2;
        if (size == 0) break;
        body.append(response, pos, size);
        pos += size + 2;
    }
    std::size_t content = 0;
    std::size_t start = 0;
    while (start < body.size()) {
        std::size_t nl = body.find('\n', start);
        if (nl == std::string::npos) nl = body.size();
        if (nl - start > 6 && body.compare(start, 6, "data: ") == 0) {
            const char* b = body.data() + start + 6;
            const char* e = body.data() + nl;
            if (std::string_view(b, static_cast<std::size_t>(e - b)) != "[DONE]") {
                const nlohmann::json j = nlohmann::json::parse(b, e, nullptr, false);
                if (!j.is_discarded()) {
                    auto it = j.find("choices");
                    if (it != j.end() && it->is_array() && !it->empty()) {
                        const auto& delta = (*it)[0]["delta"];
                        auto c = delta.find("content");
                        if (c != delta.end() && c->is_string()) content += c->get_ref<const std::string&>().size();
                    }
                }
            }
        }
        start = nl + 1;
    }
    return content;
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t events = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 200000;
    const int repeats = argc > 2 ? std::atoi(argv[2]) : 5;
    std::size_t body_bytes = 0;
    const std::string response = make_stream(events, body_bytes);
    const double mb = static_cast<double>(response.size()) / 1e6;
    std::size_t sink = 0;

    const double t_memchr = time_best_of(repeats, [&] {
        std::size_t lines = 0;
        const char* p = response.data();
        const char* const end = p + response.size();
        while ((p = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p))))) { ++lines; ++p; }
        return lines;
    }, sink);

    // The Decoder over the response in place, fed one receive buffer at a time as a transport would.
    const std::vector<std::size_t> reads = even_cuts(llm_stream::Limits().receive_buffer_bytes, response.size());
    std::size_t content_bytes = 0, delivered = 0;
    const double t_pipeline = time_best_of(repeats, [&] {
        llm_stream::Decoder decoder;
        content_bytes = 0;
        const Decoded d = decode_in_pieces(decoder, response, reads, PieceMemory::borrowed, [&](const llm_stream::Event& e) {
            if (e.type == llm_stream::EventType::content) content_bytes += e.text.size();
        });
        if (!d.done) {
            std::fprintf(stderr, "pipeline error: %s%s\n", d.error.message.c_str(), d.contract_broken.c_str());
            std::exit(1);
        }
        delivered = d.events;
        return d.events;
    }, sink);

    std::size_t baseline_content = 0;
    const double t_nlohmann = time_best_of(repeats, [&] { return baseline_content = nlohmann_baseline(response); }, sink);
    if (baseline_content != content_bytes) {
        std::fprintf(stderr, "content mismatch: pipeline %zu bytes, baseline %zu\n", content_bytes, baseline_content);
        return 1;
    }

    std::printf("stream: %zu events, %.1f MB (HTTP chunked; SSE body %.1f MB), median of %d runs\n", events, mb,
                static_cast<double>(body_bytes) / 1e6, repeats);
    std::printf("%-34s %10s %14s %10s\n", "", "MB/s", "events/s", "vs memchr");
    auto row = [&](const char* name, double t) {
        std::printf("%-34s %10.0f %14.0f %9.2fx\n", name, mb / t, static_cast<double>(events) / t, t / t_memchr);
    };
    row("memchr('\\n') floor", t_memchr);
    row("llm_stream pipeline (Decoder)", t_pipeline);
    row("chunked+lines+nlohmann::json", t_nlohmann);
    std::printf("llm_stream is %.1fx faster than the nlohmann::json baseline (%zu events delivered)\n",
                t_nlohmann / t_pipeline, delivered);
    return sink == 0;
}
