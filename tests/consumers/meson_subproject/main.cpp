// Consumer check: a Meson project with llm_stream in subprojects/.
// This file holds the implementation; stub_reply.cpp includes the header for declarations only.
#define LLM_STREAM_IMPLEMENTATION
#include <llm_stream.hpp>

#include <cstdio>
#include <string>

std::string stub_reply(const char* prompt);

int main() {
    const std::string text = stub_reply("请介绍运动鞋的特点");
    if (text.empty()) {
        std::fprintf(stderr, "meson_subproject: no text streamed\n");
        return 1;
    }
    std::printf("meson_subproject: %zu bytes streamed by %s\n", text.size(), llm_stream::version_string());
    return 0;
}
