// The consumer projects' program, the same for every route (CMake add_subdirectory, FetchContent,
// find_package after cmake --install, pkg-config, Meson subproject, the file dropped next to the
// sources): each spells the include the same way. This file holds the implementation; stub_reply.cpp includes the header for declarations only.
#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"

#include <cstdio>
#include <string>

std::string stub_reply(const char* prompt);

int main() {
    const std::string text = stub_reply("请介绍运动鞋的特点");
    if (text.empty()) {
        std::fprintf(stderr, "consumer: no text streamed\n");
        return 1;
    }
    std::printf("consumer: %zu bytes streamed by %s\n", text.size(), llm_stream::version_string());
    return 0;
}
