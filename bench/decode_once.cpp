// Decodes one API's benchmark stream (bench_streams.hpp) once, for counting the instructions the
// Decoder spends per event where timings are too noisy (a busy machine):
//
//   g++ -std=c++17 -O2 -DNDEBUG -g -I. -Itests bench/decode_once.cpp -o decode_once -pthread
//   valgrind --tool=callgrind --toggle-collect='bench::decode_content*' ./decode_once openai 20000
//
// then divide callgrind's "Collected" by the events. Exits 1 when the decoded text is not the stream's.

#define LLM_STREAM_IMPLEMENTATION
#include "bench_streams.hpp"

#include <cstdio>
#include <cstdlib>
#include <string_view>

int main(int argc, char** argv) {
    using namespace bench;
    const std::string_view api = argc > 1 ? argv[1] : "openai";
    const std::size_t events = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 20000;
    const std::vector<std::string> texts = make_texts(events);
    for (const Wire& wire : {openai_wire(), responses_wire(), anthropic_wire(), gemini_wire(), ollama_wire()}) {
        if (api != llm_stream::api_name(wire.api)) continue;
        std::size_t body_bytes = 0;
        const std::string response = make_stream(wire, texts, body_bytes);
        return decode_content(response, wire.api, nullptr) == joined(texts).size() ? 0 : 1;
    }
    std::fprintf(stderr, "unknown API %.*s\n", static_cast<int>(api.size()), api.data());
    return 2;
}
