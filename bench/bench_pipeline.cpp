// Throughput of the whole sans-I/O pipeline (HTTP/1.1 chunked framing -> SSE or NDJSON -> JSON delta)
// over a large realistic stream per API (the same text events in each API's wire shape), next to a
// memchr floor and a baseline that parses each event with nlohmann::json. A program that prints
// figures, not a test.
//
//   bench_pipeline [events] [repeats]      (defaults: 200000 events, 5 repeats; prints medians)

#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_streams.hpp"

namespace {

using namespace bench;

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
    const auto [events, repeats] = run_of(argc, argv);
    const std::vector<std::string> texts = make_texts(events);
    const std::string expected = joined(texts);

    struct ApiStream {
        llm_stream::Api api;
        std::size_t body_bytes = 0;
        std::string response;
    };
    std::vector<ApiStream> streams;
    for (const Wire& wire : {openai_wire(), responses_wire(), anthropic_wire(), gemini_wire(), ollama_wire()}) {
        streams.push_back({wire.api, 0, {}});
        streams.back().response = make_stream(wire, texts, streams.back().body_bytes);
    }
    // The figures are of correct decoding: each stream decodes to exactly the text it carries.
    for (const ApiStream& s : streams) {
        std::string content;
        decode_content(s.response, s.api, &content);
        if (content != expected) {
            std::fprintf(stderr, "%s: decoded content differs from the generated text\n", llm_stream::api_name(s.api));
            return 1;
        }
    }

    const std::string& openai_response = streams.front().response;
    std::vector<Candidate> candidates;
    candidates.push_back({"memchr('\\n') floor (openai)", &openai_response, [&] { return memchr_lines(openai_response); },
                          false, {}});
    for (const ApiStream& s : streams)
        candidates.push_back({std::string("llm_stream Decoder, ") + llm_stream::api_name(s.api), &s.response, [&s, &expected] {
            const std::size_t bytes = decode_content(s.response, s.api, nullptr);
            if (bytes != expected.size()) std::exit(1);
            return bytes;
        }, true, {}});
    candidates.push_back({"chunked+lines+nlohmann (openai)", &openai_response, [&] {
        const std::size_t bytes = nlohmann_baseline(openai_response);
        if (bytes != expected.size()) std::exit(1);
        return bytes;
    }, false, {}});
    std::size_t sink = 0;
    time_interleaved(candidates, repeats, sink);

    std::printf("%zu text events per API (%zu content bytes), HTTP chunked, one chunk per message, fed in %zu-byte "
                "reads; median of %d interleaved runs\n", events, expected.size(), llm_stream::Limits().receive_buffer_bytes,
                repeats);
    print_results(candidates, events);
    std::printf("llm_stream (openai) is %.1fx faster than the nlohmann::json baseline\n",
                median(candidates.back().seconds) / median(candidates[1].seconds));
    return sink == 0;
}
