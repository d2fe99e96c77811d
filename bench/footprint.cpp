// The heap one stream needs in the small-footprint configuration (README, "Small targets"): the peak of
// live heap bytes (every operator new and every allocation of the library through LLM_STREAM_REALLOC,
// less what was freed) from creating the Client to the end of the stream, and the number of
// allocations. A program that prints figures, not a test.
//
//   footprint            a stream in stub mode
//   footprint URL        a stream from URL, e.g. llm_test_server's: http://127.0.0.1:PORT/v1

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <new>

namespace {

// Each block carries its size in front, so a free knows how much stops being live.
constexpr std::size_t kHeader = alignof(std::max_align_t);
std::size_t live_bytes = 0;
std::size_t peak_bytes = 0;
std::size_t allocations = 0;

void* tracked_realloc(void* p, std::size_t size) {
    char* block = p ? static_cast<char*>(p) - kHeader : nullptr;
    const std::size_t old_size = block ? *reinterpret_cast<std::size_t*>(block) : 0;
    char* grown = static_cast<char*>(std::realloc(block, kHeader + size));
    if (grown == nullptr) return nullptr;
    *reinterpret_cast<std::size_t*>(grown) = size;
    live_bytes = live_bytes - old_size + size;
    if (live_bytes > peak_bytes) peak_bytes = live_bytes;
    ++allocations;
    return grown + kHeader;
}

void tracked_free(void* p) {
    if (p == nullptr) return;
    char* block = static_cast<char*>(p) - kHeader;
    live_bytes -= *reinterpret_cast<std::size_t*>(block);
    std::free(block);
}

}  // namespace

void* operator new(std::size_t size) {
    if (void* p = tracked_realloc(nullptr, size ? size : 1)) return p;
    std::abort();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { tracked_free(p); }
void operator delete[](void* p) noexcept { tracked_free(p); }
void operator delete(void* p, std::size_t) noexcept { tracked_free(p); }
void operator delete[](void* p, std::size_t) noexcept { tracked_free(p); }

#define LLM_STREAM_REALLOC(ptr, size) tracked_realloc(ptr, size)
#define LLM_STREAM_FREE(ptr) tracked_free(ptr)
#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"

/* The small-footprint configuration of the README: 4 KB reads, events and lines up to 16 KB (a chat
   completion's are a few hundred bytes), no idle connections kept. */
llm_stream::Config small_config() {
    llm_stream::Config config;
    config.limits.receive_buffer_bytes = 4 * 1024;
    config.limits.max_header_bytes = 8 * 1024;
    config.limits.max_line_bytes = 16 * 1024;
    config.limits.max_event_bytes = 16 * 1024;
    config.limits.max_error_body_bytes = 2 * 1024;
    config.max_idle_connections = 0;
    return config;
}

int main(int argc, char** argv) {
    const std::size_t before = live_bytes;
    peak_bytes = live_bytes;
    allocations = 0;
    std::size_t content_bytes = 0;
    bool failed = false;
    {
        llm_stream::Config config = small_config();
        if (argc > 1) config.base_url = argv[1];
        llm_stream::Client client(config);
        llm_stream::Stream stream = client.stream_chat("Tell me about running shoes");
        while (auto chunk = stream.next_chunk()) content_bytes += chunk->size();
        failed = bool(stream.error());
        if (failed) std::fprintf(stderr, "stream failed: %s\n", stream.error().message.c_str());
    }
    std::printf("%s stream: %zu content bytes, peak live heap %zu bytes, %zu allocations, %zu bytes left\n",
                argc > 1 ? "loopback" : "stub", content_bytes, peak_bytes - before, allocations, live_bytes - before);
    return failed || content_bytes == 0 ? 1 : 0;
}
