// Includes the header without LLM_STREAM_IMPLEMENTATION: declarations only, defined in main.cpp.
#include "llm_stream.hpp"

#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

std::string stub_reply(const char* prompt) {
    llm_stream::Client client{llm_stream::Config{}};  // empty base_url: stub mode, no network
    llm_stream::Stream stream = client.stream_chat(prompt);
    std::string text;
    while (std::optional<std::string_view> chunk = stream.next_chunk()) text.append(*chunk);
    if (stream.error()) {
        std::fprintf(stderr, "stub stream failed: %s\n", stream.error().message.c_str());
        return {};
    }
    return text;
}
