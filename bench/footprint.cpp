// The heap one stream needs in the small-footprint configuration (README, "Small targets"): the peak of
// live heap bytes (every operator new and every allocation of the library through LLM_STREAM_REALLOC,
// less what was freed) from creating the Client to the end of the stream, and the number of
// allocations. A program that prints figures, not a test.
//
//   footprint            a stream in stub mode
//   footprint URL        a stream from URL, e.g. llm_test_server's: http://127.0.0.1:PORT/v1

#include <cstdio>

#include "tracked_heap.hpp"

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
