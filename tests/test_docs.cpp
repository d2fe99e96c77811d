// The code of the docs/ pages, compiled and run: each block of C++ in a page that is marked
// `<!-- compiled: tests/docs/NAME.inc -->` must be that file, byte for byte, and the file is included
// here and exercised (stub mode; on Linux also sockets, through the loopback test server).
#include "llm_stream.hpp"
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "support/test_data.hpp"

#if defined(__linux__)
#include <poll.h>

#include "support/test_server.hpp"
#endif

namespace {

#include "docs/frame_loop.inc"
#if defined(__linux__)
#include "docs/wait_loop.inc"
#endif

using namespace std::chrono_literals;

const std::string kRoot = std::string(LLM_STREAM_TEST_DATA_DIR) + "/../..";
constexpr std::string_view kMarker = "<!-- compiled: ";

// The text of the ```cpp block that follows `at` in `page`; empty when there is none.
std::string_view block_after(std::string_view page, std::size_t at) {
    constexpr std::string_view open = "```cpp\n", close = "```\n";
    const std::size_t begin = page.find(open, at);
    if (begin == std::string_view::npos) return {};
    const std::size_t end = page.find(close, begin + open.size());
    if (end == std::string_view::npos) return {};
    return page.substr(begin + open.size(), end - begin - open.size());
}

// Every block of `page` marked as compiled equals its file; how many there were.
int check_compiled_blocks(const std::string& page_path) {
    std::string page;
    REQUIRE_MESSAGE(llm_test::read_file(kRoot + "/" + page_path, page), page_path);
    int blocks = 0;
    for (std::size_t at = page.find(kMarker); at != std::string::npos; at = page.find(kMarker, at + 1)) {
        const std::size_t name_begin = at + kMarker.size();
        const std::string name = page.substr(name_begin, page.find(" -->", name_begin) - name_begin);
        std::string code;
        CAPTURE(name);
        REQUIRE(llm_test::read_file(kRoot + "/" + name, code));
        CHECK(block_after(page, at) == code);
        ++blocks;
    }
    return blocks;
}

// What a blocking stream of the same prompt says: the text every NPC must end up with.
std::string blocking_text(llm_stream::Client& client, const char* prompt) {
    llm_stream::Stream stream = client.stream_chat(prompt);
    std::string text;
    for (std::string_view chunk : stream) text += chunk;
    return text;
}

llm_stream::Config quiet_config(std::string base_url) {
    llm_stream::Config config;
    config.base_url = std::move(base_url);
    config.api_key.clear();
    config.log_level = llm_stream::LogLevel::off;
    return config;
}

}  // namespace

TEST_CASE("docs/non-blocking.md: its C++ blocks are the files compiled here") {
    CHECK(check_compiled_blocks("docs/non-blocking.md") == 2);
}

TEST_CASE("docs/non-blocking.md: the frame loop streams every NPC's line to the end") {
    llm_stream::Config config = quiet_config("");  // stub mode
    config.stub_chunk_delay = 2ms;                 // chunks arrive between frames, as from a server
    llm_stream::Client client(config);
    const char* const prompts[] = {"guard", "merchant", "innkeeper"};
    std::vector<NpcLine> npcs;
    for (const char* prompt : prompts) npcs.emplace_back(client.stream_chat(prompt));

    run_frames(npcs, 2000);  // a bound: the stub's few dozen chunks need far fewer frames
    for (std::size_t i = 0; i < npcs.size(); ++i) {
        CAPTURE(prompts[i]);
        CHECK(npcs[i].finished);
        CHECK_FALSE(npcs[i].stream.error());
        CHECK(npcs[i].text == blocking_text(client, prompts[i]));
        CHECK_FALSE(npcs[i].text.empty());
    }
}

#if defined(__linux__)
TEST_CASE("docs/non-blocking.md: waiting on every stream's socket and timer until all have streamed") {
    std::string content;
    const std::string body = llm_test::generate_events(200, &content);
    llm_test::TestServer server;
    for (int i = 0; i < 3; ++i) {
        llm_test::Response response = llm_test::Response::sse(body);
        response.stall_after_body_bytes = body.size() / 2;  // a pause mid-body: the streams wait on their sockets
        response.stall_ms = 100;
        server.push(response);
    }
    REQUIRE_MESSAGE(server.start(), server.error());
    llm_stream::Client client(quiet_config(server.base_url()));
    std::vector<NpcLine> npcs;
    for (int i = 0; i < 3; ++i) npcs.emplace_back(client.stream_chat("hi"));

    const auto all_finished = [&] {
        return std::all_of(npcs.begin(), npcs.end(), [](const NpcLine& npc) { return npc.finished; });
    };
    for (int round = 0; round < 100000 && !all_finished(); ++round) {  // a bound, far above the need
        wait_for_progress(npcs, 100ms);
        for (NpcLine& npc : npcs) npc.update(64);
    }
    for (const NpcLine& npc : npcs) {
        CHECK(npc.finished);
        CHECK_MESSAGE(!npc.stream.error(), npc.stream.error().message);
        CHECK(npc.text == content);
    }
}
#endif
