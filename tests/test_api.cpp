// Public API tests: stub mode (no network), option validation, logging, cancellation, and recorded HTTP
// responses replayed through the whole pipeline with detail::replay_stream.
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "support/chunked.hpp"
#include "support/decode.hpp"
#include "support/random_cuts.hpp"

using namespace std::chrono_literals;
using llm_stream::ChatOptions;
using llm_stream::Client;
using llm_stream::Config;
using llm_stream::ErrorCode;
using llm_stream::Event;
using llm_stream::EventType;
using llm_stream::LogLevel;
using llm_stream::Message;
using llm_stream::PollStatus;
using llm_stream::Stream;

namespace {

constexpr const char* kApiKey = "sk-secret-123456";

// A stub-mode configuration that does not depend on the environment or a .env file.
Config stub_config() {
    Config c;
    c.base_url.clear();
    c.stub_chunk_delay = 0ms;
    c.log_level = LogLevel::warning;
    c.log = [](LogLevel, std::string_view) {};  // keep the test output clean
    return c;
}

struct LogLine {
    LogLevel level;
    std::string text;
};

// Installs a log callback on `config` that records every line.
std::shared_ptr<std::vector<LogLine>> capture_logs(Config& config, LogLevel level) {
    auto lines = std::make_shared<std::vector<LogLine>>();
    config.log_level = level;
    config.log = [lines](LogLevel l, std::string_view m) { lines->push_back({l, std::string(m)}); };
    return lines;
}

bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Independent UTF-8 checks (not the library's own helpers).
bool is_valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        std::size_t n = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) { ++i; continue; }
        if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; }
        else return false;
        if (i + n > s.size()) return false;
        for (std::size_t k = 1; k < n; ++k) {
            const unsigned char cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return false;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += n;
    }
    return true;
}

std::size_t code_points(std::string_view s) {
    std::size_t n = 0;
    for (unsigned char c : s)
        if ((c & 0xC0) != 0x80) ++n;
    return n;
}

bool has_non_ascii(std::string_view s) {
    for (unsigned char c : s)
        if (c >= 0x80) return true;
    return false;
}

bool has_ascii_letter(std::string_view s) {
    for (char c : s)
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return false;
}

// The first `n` code points of valid UTF-8 `s`.
std::string first_code_points(std::string_view s, std::size_t n) {
    std::size_t count = 0, i = 0;
    for (; i < s.size(); ++i) {
        if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
            if (count == n) break;
            ++count;
        }
    }
    return std::string(s.substr(0, i));
}

std::vector<std::string> drain_chunks(Stream& stream) {
    std::vector<std::string> out;
    while (auto chunk = stream.next_chunk()) out.emplace_back(*chunk);  // copy: views die on the next call
    return out;
}

std::string join(const std::vector<std::string>& parts) {
    std::string s;
    for (const std::string& p : parts) s += p;
    return s;
}

// ---- hand-made HTTP responses ------------------------------------------------------------------

std::string content_json(std::string_view text) {
    return "{\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" +
           std::string(text) + "\"},\"finish_reason\":null}]}";
}

std::string finish_json(std::string_view reason) {
    return "{\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},"
           "\"finish_reason\":\"" +
           std::string(reason) + "\"}]}";
}

const char* const kSseHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    "Transfer-Encoding: chunked\r\n\r\n";

// A chunked text/event-stream response, one HTTP chunk per SSE data payload. `terminate` adds the
// last chunk.
std::string sse_response(const std::vector<std::string>& payloads, bool terminate) {
    std::string body;
    std::vector<std::size_t> event_ends;
    for (const std::string& p : payloads) {
        body += "data: " + p + "\n\n";
        event_ends.push_back(body.size());
    }
    ChunkedStyle style;
    style.last_chunk = terminate;
    return kSseHead + chunked(body, event_ends, style);
}

std::string whole_response(std::string_view status_line, std::string_view content_type, std::string_view body) {
    return std::string(status_line) + "\r\nContent-Type: " + std::string(content_type) +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

}  // namespace

// =================================================================================================
// Stub reply
// =================================================================================================

TEST_CASE("stub: several chunks of Chinese and ASCII text that echo the prompt") {
    const Config defaults{};
    CHECK(defaults.stub_mode());  // a default Config has no base URL: stub mode
    CHECK(defaults.stub_chunk_delay == 0ms);
    Client client(stub_config());
    REQUIRE(client.config().stub_mode());
    const std::string prompt = "Tell me about running shoes";
    Stream stream = client.stream_chat(prompt);
    const std::vector<std::string> chunks = drain_chunks(stream);
    CHECK_FALSE(stream.error());
    CHECK(stream.finished());
    CHECK(chunks.size() >= 3);
    for (const std::string& c : chunks) {
        CHECK_FALSE(c.empty());
        CHECK(is_valid_utf8(c));  // a multi-byte character is never split between chunks
    }
    const std::string text = join(chunks);
    CHECK(has_non_ascii(text));
    CHECK(contains(text, "你好"));
    CHECK(has_ascii_letter(text));
    CHECK(contains(text, prompt));
}

TEST_CASE("stub: a long prompt is echoed by a prefix") {
    Client client(stub_config());
    std::string prompt = "请用一句话介绍运动鞋的特点，";
    while (code_points(prompt) < 200) prompt += "and please be very detailed about every model. ";
    Stream stream = client.stream_chat(prompt);
    const std::string text = join(drain_chunks(stream));
    CHECK_FALSE(stream.error());
    CHECK(contains(text, first_code_points(prompt, 12)));
    CHECK_FALSE(contains(text, prompt));  // not the whole 200-character prompt
}

TEST_CASE("stub: the reply is deterministic") {
    Client client(stub_config());
    Stream a = client.stream_chat("请介绍运动鞋的特点");
    Stream b = client.stream_chat("请介绍运动鞋的特点");
    const std::vector<std::string> ca = drain_chunks(a);
    const std::vector<std::string> cb = drain_chunks(b);
    CHECK(ca == cb);
    CHECK_FALSE(ca.empty());
    // A separate client with the same configuration gives the same reply as well.
    Client other(stub_config());
    Stream c = other.stream_chat("请介绍运动鞋的特点");
    CHECK(drain_chunks(c) == ca);
}

TEST_CASE("stub: chunk views stay valid until the next call and can be copied") {
    Client client(stub_config());
    Stream stream = client.stream_chat("hello");
    auto first = stream.next_chunk();
    REQUIRE(first.has_value());
    if (!first) return;
    const std::string copy(*first);
    CHECK(copy == *first);  // still readable before the next call
    CHECK(is_valid_utf8(copy));
    auto second = stream.next_chunk();
    REQUIRE(second.has_value());
    CHECK(copy.size() > 0);
    CHECK(std::string(*second) != "");
}

// =================================================================================================
// Iteration: range-for, next_chunk, next_event
// =================================================================================================

TEST_CASE("range-for gives exactly the chunks of a next_chunk() loop") {
    Client client(stub_config());
    Stream by_loop = client.stream_chat("running shoes");
    const std::vector<std::string> expected = drain_chunks(by_loop);
    Stream by_range = client.stream_chat("running shoes");
    std::vector<std::string> got;
    for (std::string_view chunk : by_range) got.emplace_back(chunk);
    CHECK(got == expected);
    CHECK_FALSE(by_range.error());
    CHECK(by_range.finished());
    CHECK_FALSE(by_range.next_chunk().has_value());
}

TEST_CASE("next_event(): content events, then finish \"stop\", then usage") {
    Client client(stub_config());
    Stream reference = client.stream_chat("running shoes");
    const std::string expected = join(drain_chunks(reference));

    Stream stream = client.stream_chat("running shoes");
    std::string text;
    std::size_t content_events = 0, finish_events = 0, usage_events = 0;
    bool content_after_finish = false, usage_before_finish = false;
    std::string finish_reason;
    llm_stream::Usage usage;
    while (const Event* e = stream.next_event()) {
        switch (e->type) {
        case EventType::content:
            ++content_events;
            if (finish_events) content_after_finish = true;
            text.append(e->text.data(), e->text.size());
            break;
        case EventType::finish:
            ++finish_events;
            finish_reason.assign(e->text.data(), e->text.size());
            break;
        case EventType::usage:
            ++usage_events;
            if (!finish_events) usage_before_finish = true;
            usage = e->usage;
            break;
        default:
            break;
        }
    }
    CHECK_FALSE(stream.error());
    CHECK(text == expected);
    CHECK(content_events >= 3);
    CHECK(finish_events == 1);
    CHECK(finish_reason == "stop");
    CHECK_FALSE(content_after_finish);
    CHECK(usage_events == 1);
    CHECK_FALSE(usage_before_finish);
    CHECK(usage.prompt_tokens > 0);
    CHECK(usage.completion_tokens > 0);
    CHECK(usage.total_tokens == usage.prompt_tokens + usage.completion_tokens);
    const llm_stream::Stats s = stream.stats();
    CHECK(s.has_usage);
    CHECK(s.usage.total_tokens == usage.total_tokens);
    CHECK(s.usage.prompt_tokens == usage.prompt_tokens);
    CHECK(s.usage.completion_tokens == usage.completion_tokens);
    CHECK(s.chunks == content_events);
}

TEST_CASE("after the end: next_chunk() keeps returning nullopt and error() stays none") {
    Client client(stub_config());
    Stream stream = client.stream_chat("hi");
    drain_chunks(stream);
    for (int i = 0; i < 3; ++i) {
        CHECK_FALSE(stream.next_chunk().has_value());
        CHECK(stream.next_event() == nullptr);
        CHECK(stream.poll() == PollStatus::done);
    }
    CHECK(stream.finished());
    CHECK(stream.error().code == ErrorCode::none);
    CHECK_FALSE(static_cast<bool>(stream.error()));
    CHECK(stream.error().message.empty());
}

// =================================================================================================
// Stats
// =================================================================================================

TEST_CASE("stats(): chunks, chars in code points, bytes, timings, attempts, events, usage") {
    Client client(stub_config());
    Stream stream = client.stream_chat("运动鞋 and sneakers");
    const llm_stream::Stats before = stream.stats();
    CHECK(before.first_chunk_ms < 0);
    CHECK(before.first_byte_ms < 0);
    CHECK(before.chunks == 0);

    const std::vector<std::string> chunks = drain_chunks(stream);
    const std::string text = join(chunks);
    const llm_stream::Stats s = stream.stats();
    CHECK(s.chunks == chunks.size());
    CHECK(s.chars == code_points(text));
    CHECK(s.content_bytes == text.size());
    CHECK(s.chars < s.content_bytes);  // the reply has multi-byte characters
    CHECK(s.first_byte_ms >= 0);
    CHECK(s.first_chunk_ms >= s.first_byte_ms);  // the response's first byte comes before its content
    CHECK(s.total_ms >= s.first_chunk_ms);
    CHECK(s.attempts == 1);
    CHECK(s.events > s.chunks);  // plus the role, finish, usage and [DONE] events
    CHECK(s.received_bytes > s.content_bytes);
    CHECK(s.skipped_events == 0);
    CHECK(s.has_usage);
    CHECK(s.usage.total_tokens == s.usage.prompt_tokens + s.usage.completion_tokens);
    CHECK(s.finish_reason == "stop");

    // The totals are frozen once the stream has finished.
    const llm_stream::Stats again = stream.stats();
    CHECK(again.total_ms == s.total_ms);
    CHECK(again.chunks == s.chunks);
}

// =================================================================================================
// poll()
// =================================================================================================

TEST_CASE("poll() drives a stream to the same result as next_chunk()") {
    Client client(stub_config());
    Stream reference = client.stream_chat("poll me");
    const std::vector<std::string> expected = drain_chunks(reference);

    Stream stream = client.stream_chat("poll me");
    std::vector<std::string> got;
    std::string finish_reason;
    PollStatus status = PollStatus::pending;
    for (int guard = 0; guard < 100000; ++guard) {
        status = stream.poll();
        if (status == PollStatus::event) {
            const Event& e = stream.current_event();
            if (e.type == EventType::content) got.emplace_back(e.text);
            if (e.type == EventType::finish) finish_reason.assign(e.text.data(), e.text.size());
            continue;
        }
        if (status == PollStatus::done || status == PollStatus::failed) break;
    }
    CHECK(status == PollStatus::done);
    CHECK(got == expected);
    CHECK(finish_reason == "stop");
    CHECK(stream.finished());
    CHECK_FALSE(stream.error());
    CHECK(stream.poll() == PollStatus::done);  // and stays there
    CHECK(stream.stats().chunks == expected.size());
}

TEST_CASE("poll() with a slow stub: pending, a bounded wait_info() timeout, then the same text") {
    Config config = stub_config();
    config.stub_chunk_delay = 20ms;
    Client client(config);
    Stream reference(Client(stub_config()).stream_chat("slow"));
    const std::vector<std::string> expected = drain_chunks(reference);

    Stream stream = client.stream_chat("slow");
    std::vector<std::string> got;
    std::size_t pendings = 0, positive_timeouts = 0, bad_timeouts = 0;
    PollStatus status = PollStatus::pending;
    const auto started = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - started < 30s) {
        status = stream.poll();
        if (status == PollStatus::event) {
            if (stream.current_event().type == EventType::content) got.emplace_back(stream.current_event().text);
            continue;
        }
        if (status != PollStatus::pending) break;
        ++pendings;
        const llm_stream::WaitInfo w = stream.wait_info();
        if (w.timeout > 0ms) ++positive_timeouts;
        if (w.timeout > 20ms || w.timeout < 0ms) ++bad_timeouts;
        std::this_thread::sleep_for(w.timeout > 0ms ? w.timeout : 1ms);  // what an event loop would do
    }
    CHECK(status == PollStatus::done);
    CHECK(pendings >= 1);
    CHECK(positive_timeouts >= 1);
    CHECK(bad_timeouts == 0);
    CHECK(got == expected);
}

TEST_CASE("next_chunk() with a slow stub waits and delivers everything") {
    Config config = stub_config();
    config.stub_chunk_delay = 20ms;
    Stream reference(Client(stub_config()).stream_chat("slow chunks"));
    const std::vector<std::string> expected = drain_chunks(reference);

    Stream stream = Client(config).stream_chat("slow chunks");
    const auto started = std::chrono::steady_clock::now();
    const std::vector<std::string> got = drain_chunks(stream);
    const auto elapsed = std::chrono::steady_clock::now() - started;
    CHECK_FALSE(stream.error());
    CHECK(got == expected);
    // At least one pause per content chunk really happened.
    CHECK(elapsed >= 20ms * static_cast<int>(expected.size()));
    CHECK(stream.stats().first_chunk_ms >= 20.0);
}

// =================================================================================================
// cancel()
// =================================================================================================

TEST_CASE("cancel() from another thread wakes a blocked next_chunk()") {
    Config config = stub_config();
    config.stub_chunk_delay = 200ms;
    Client client(config);
    Stream reference(Client(stub_config()).stream_chat("cancel me"));
    const std::vector<std::string> expected = drain_chunks(reference);
    REQUIRE(expected.size() >= 2);
    if (expected.size() < 2) return;
    Stream stream = client.stream_chat("cancel me");
    auto first = stream.next_chunk();  // ~2 pauses: after the head, after the role event
    REQUIRE(first.has_value());
    if (!first) return;
    const std::string delivered(*first);
    const llm_stream::Stats before = stream.stats();

    std::atomic<bool> cancel_called{false};
    std::thread canceller([&] {
        std::this_thread::sleep_for(20ms);
        stream.cancel();
        cancel_called = true;
    });
    const auto blocked_at = std::chrono::steady_clock::now();
    auto next = stream.next_chunk();  // the next chunk is ~200 ms away
    const auto waited = std::chrono::steady_clock::now() - blocked_at;
    canceller.join();

    CHECK(cancel_called.load());
    CHECK_FALSE(next.has_value());
    CHECK(stream.error().code == ErrorCode::cancelled);
    CHECK_FALSE(stream.error().message.empty());
    CHECK(stream.finished());
    // Woken by cancel(), not by the next chunk arriving ~200 ms later.
    CHECK(waited < 150ms);
    // What was delivered before stays as it was.
    CHECK(delivered == expected[0]);
    const llm_stream::Stats after = stream.stats();
    CHECK(after.chunks == before.chunks);
    CHECK(after.content_bytes == delivered.size());
    CHECK_FALSE(stream.next_chunk().has_value());
    CHECK(stream.error().code == ErrorCode::cancelled);
}

TEST_CASE("cancel() before reading, and after the end") {
    Client client(stub_config());
    SUBCASE("before the first call") {
        Stream stream = client.stream_chat("x");
        stream.cancel();
        CHECK_FALSE(stream.next_chunk().has_value());
        CHECK(stream.error().code == ErrorCode::cancelled);
        CHECK(stream.poll() == PollStatus::failed);
        CHECK(stream.stats().chunks == 0);
    }
    SUBCASE("from the same thread between poll() calls") {
        Stream stream = client.stream_chat("x");
        PollStatus s = stream.poll();
        CHECK(s == PollStatus::event);
        stream.cancel();
        stream.cancel();  // idempotent
        CHECK(stream.poll() == PollStatus::failed);
        CHECK(stream.error().code == ErrorCode::cancelled);
    }
    SUBCASE("after a normal end it changes nothing") {
        Stream stream = client.stream_chat("x");
        drain_chunks(stream);
        stream.cancel();
        CHECK_FALSE(stream.error());
        CHECK(stream.poll() == PollStatus::done);
    }
}

// =================================================================================================
// Bad options
// =================================================================================================

namespace {
void check_invalid(const Config& config, const ChatOptions& options, std::string_view mention,
                   std::vector<Message> messages = {}) {
    Client client(config);
    Stream stream = messages.empty() ? client.stream_chat("hello", options) : client.stream_chat(messages, options);
    CHECK(stream.finished());  // fails before any I/O
    CHECK_FALSE(stream.next_chunk().has_value());
    CHECK(stream.error().code == ErrorCode::invalid_argument);
    INFO("message: ", stream.error().message);
    CHECK(contains(stream.error().message, mention));
    CHECK(stream.poll() == PollStatus::failed);
    CHECK(stream.stats().chunks == 0);
}
}  // namespace

TEST_CASE("bad options fail the stream at once with a clear invalid_argument error") {
    const Config config = stub_config();
    ChatOptions o;
    SUBCASE("temperature -1") { o.temperature = -1.0; check_invalid(config, o, "temperature"); }
    SUBCASE("temperature 2.5") { o.temperature = 2.5; check_invalid(config, o, "temperature"); }
    SUBCASE("temperature NaN") { o.temperature = std::nan(""); check_invalid(config, o, "temperature"); }
    SUBCASE("max_tokens 0") { o.max_tokens = 0; check_invalid(config, o, "max_tokens"); }
    SUBCASE("max_tokens negative") { o.max_tokens = -5; check_invalid(config, o, "max_tokens"); }
    SUBCASE("extra_json not JSON") { o.extra_json = "{top_p: 0.9}"; check_invalid(config, o, "JSON"); }
    SUBCASE("extra_json truncated") { o.extra_json = "{\"top_p\": 0.9"; check_invalid(config, o, "JSON"); }
    SUBCASE("extra_json an array") { o.extra_json = "[1,2]"; check_invalid(config, o, "object"); }
    SUBCASE("extra_json a number") { o.extra_json = "42"; check_invalid(config, o, "object"); }
    SUBCASE("extra_json setting stream") {
        o.extra_json = "{\"stream\":false}";
        check_invalid(config, o, "stream");
    }
    SUBCASE("extra_json setting messages") {
        o.extra_json = "{\"messages\":[]}";
        check_invalid(config, o, "messages");
    }
    SUBCASE("empty message list") {
        Client client(config);
        Stream stream = client.stream_chat(std::vector<Message>{}, o);
        CHECK_FALSE(stream.next_chunk().has_value());
        CHECK(stream.error().code == ErrorCode::invalid_argument);
        CHECK(contains(stream.error().message, "messages"));
    }
    SUBCASE("empty model") {
        Config no_model = config;
        no_model.model.clear();
        check_invalid(no_model, o, "model");
    }
}

TEST_CASE("good options are accepted in stub mode") {
    Config config = stub_config();
    ChatOptions o;
    SUBCASE("temperature bounds and max_tokens") {
        o.temperature = 0.0;
        o.max_tokens = 1;
        Stream a = Client(config).stream_chat("x", o);
        CHECK_FALSE(drain_chunks(a).empty());
        CHECK_FALSE(a.error());
        o.temperature = 2.0;
        Stream b = Client(config).stream_chat("x", o);
        CHECK_FALSE(drain_chunks(b).empty());
        CHECK_FALSE(b.error());
    }
    SUBCASE("extra JSON members") {
        o.extra_json = " {\"top_p\":0.9,\"stop\":[\"\\n\"],\"stream_options\":{\"include_usage\":true}} ";
        Stream s = Client(config).stream_chat("x", o);
        CHECK_FALSE(drain_chunks(s).empty());
        CHECK_FALSE(s.error());
    }
    SUBCASE("blank extra JSON is no extra JSON") {
        o.extra_json = "  \n ";
        Stream s = Client(config).stream_chat("x", o);
        CHECK_FALSE(drain_chunks(s).empty());
        CHECK_FALSE(s.error());
    }
    SUBCASE("the model can come from the options alone") {
        config.model.clear();
        o.model = "qwen-max";
        Stream s = Client(config).stream_chat("x", o);
        CHECK_FALSE(drain_chunks(s).empty());
        CHECK_FALSE(s.error());
    }
    SUBCASE("no system message") {
        o.system.clear();
        Stream s = Client(config).stream_chat("x", o);
        CHECK_FALSE(drain_chunks(s).empty());
        CHECK_FALSE(s.error());
    }
}

// =================================================================================================
// Message list (multi-turn)
// =================================================================================================

TEST_CASE("the message-list overload streams a multi-turn conversation") {
    Client client(stub_config());
    const std::vector<Message> conversation = {
        Message::system("你是一个专业的鞋类销售顾问。"),
        Message::user("What shoes do you sell?"),
        Message::assistant("Running shoes and sneakers."),
        Message::user("Which are lightest?"),
    };
    Stream stream = client.stream_chat(conversation);
    const std::vector<std::string> chunks = drain_chunks(stream);
    const std::string text = join(chunks);
    CHECK_FALSE(stream.error());
    CHECK(chunks.size() >= 3);
    CHECK(contains(text, "Which are lightest?"));  // the last user turn is the one answered
    CHECK_FALSE(contains(text, "What shoes do you sell?"));
    const llm_stream::Stats s = stream.stats();
    CHECK(s.finish_reason == "stop");
    CHECK(s.has_usage);

    // Same conversation, same reply.
    Stream again = client.stream_chat(conversation);
    CHECK(drain_chunks(again) == chunks);
}

// =================================================================================================
// Logging
// =================================================================================================

TEST_CASE("info logging: the seed's first-chunk and completion lines") {
    Config config = stub_config();
    auto lines = capture_logs(config, LogLevel::info);
    Stream stream = Client(config).stream_chat("运动鞋");
    const std::vector<std::string> chunks = drain_chunks(stream);
    REQUIRE_FALSE(chunks.empty());
    if (chunks.empty()) return;
    const llm_stream::Stats s = stream.stats();

    std::vector<std::string> first_lines, completed_lines;
    for (const LogLine& l : *lines) {
        if (starts_with(l.text, "First chunk received: ")) {
            CHECK(l.level == LogLevel::info);
            first_lines.push_back(l.text);
        }
        if (starts_with(l.text, "LLM stream completed: ")) {
            CHECK(l.level == LogLevel::info);
            completed_lines.push_back(l.text);
        }
    }
    REQUIRE(first_lines.size() == 1);
    REQUIRE(completed_lines.size() == 1);
    if (first_lines.size() != 1 || completed_lines.size() != 1) return;

    // "First chunk received: <start of the text>... (245.32ms)"
    const std::string& first = first_lines[0];
    INFO(first);
    CHECK(starts_with(first, "First chunk received: " + first_code_points(chunks[0], 20) + "... ("));
    CHECK(ends_with(first, "ms)"));
    const std::size_t open = first.rfind('(');
    REQUIRE(open != std::string::npos);
    if (open != std::string::npos) {
        const std::string number = first.substr(open + 1, first.size() - open - 1 - 3);
        char* end = nullptr;
        const double ms = std::strtod(number.c_str(), &end);
        CHECK(end == number.c_str() + number.size());
        CHECK(ms >= 0.0);
    }

    // "LLM stream completed: 15 chunks, 128 chars, 1234.56 ms"
    const std::string& done = completed_lines[0];
    INFO(done);
    const std::string expected_start = "LLM stream completed: " + std::to_string(s.chunks) + " chunks, " +
                                       std::to_string(s.chars) + " chars, ";
    CHECK(starts_with(done, expected_start));
    CHECK(ends_with(done, " ms"));
    if (starts_with(done, expected_start) && ends_with(done, " ms")) {
        const std::string number = done.substr(expected_start.size(), done.size() - expected_start.size() - 3);
        char* end = nullptr;
        const double ms = std::strtod(number.c_str(), &end);
        CHECK(end == number.c_str() + number.size());
        CHECK(ms >= 0.0);
    }
    CHECK(s.chunks == chunks.size());
    CHECK(s.chars == code_points(join(chunks)));

    // Nothing at warning level for a clean stream.
    for (const LogLine& l : *lines) CHECK(l.level < LogLevel::warning);
}

TEST_CASE("warning logging: no info lines") {
    Config config = stub_config();
    auto lines = capture_logs(config, LogLevel::warning);
    Stream stream = Client(config).stream_chat("运动鞋");
    CHECK_FALSE(drain_chunks(stream).empty());
    for (const LogLine& l : *lines) {
        INFO(l.text);
        CHECK(l.level >= LogLevel::warning);
        CHECK_FALSE(starts_with(l.text, "First chunk received"));
        CHECK_FALSE(starts_with(l.text, "LLM stream completed"));
    }
    CHECK(lines->empty());
}

TEST_CASE("the API key never appears in a log line or an error message") {
    Config config = stub_config();
    config.api_key = kApiKey;
    auto lines = capture_logs(config, LogLevel::debug);
    std::vector<std::string> errors;

    SUBCASE("stub stream") {
        Stream s = Client(config).stream_chat("hello");
        CHECK_FALSE(drain_chunks(s).empty());
        CHECK_FALSE(s.error());
        CHECK_FALSE(lines->empty());  // the info lines were produced
    }
    SUBCASE("invalid options") {
        ChatOptions o;
        o.temperature = 9;
        Stream a = Client(config).stream_chat("hello", o);
        CHECK_FALSE(a.next_chunk().has_value());
        errors.push_back(a.error().message);
        ChatOptions x;
        x.extra_json = std::string("{\"key\":\"") + kApiKey;  // not JSON, and carries the key
        Stream b = Client(config).stream_chat("hello", x);
        CHECK_FALSE(b.next_chunk().has_value());
        CHECK(b.error().code == ErrorCode::invalid_argument);
        errors.push_back(b.error().message);
    }
    SUBCASE("a 401 whose body echoes the key") {
        const std::string body = std::string("{\"error\":{\"message\":\"Incorrect API key provided: ") + kApiKey +
                                 "\",\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}";
        Stream s = Client(config).replay(whole_response("HTTP/1.1 401 Unauthorized", "application/json", body));
        CHECK_FALSE(s.next_chunk().has_value());
        CHECK(s.error().code == ErrorCode::http_status);
        CHECK(contains(s.error().message, "Incorrect API key provided"));
        errors.push_back(s.error().message);
    }
    SUBCASE("a stream error event and a skipped event that carry the key") {
        const std::string response = sse_response(
            {content_json("a"), std::string("{oops ") + kApiKey,
             std::string("{\"error\":{\"message\":\"bad key ") + kApiKey + "\"}}"},
            true);
        Stream s = Client(config).replay(response);
        CHECK(drain_chunks(s) == std::vector<std::string>{"a"});
        CHECK(s.error().code == ErrorCode::server_error);
        CHECK(s.stats().skipped_events == 1);
        errors.push_back(s.error().message);
    }
    for (const LogLine& l : *lines) {
        INFO(l.text);
        CHECK_FALSE(contains(l.text, kApiKey));
    }
    for (const std::string& e : errors) {
        INFO(e);
        CHECK_FALSE(e.empty());
        CHECK_FALSE(contains(e, kApiKey));
    }
}

// =================================================================================================
// Recorded HTTP responses through the whole Stream (Client::replay)
// =================================================================================================

TEST_CASE("replay: a 401 with an OpenAI error body") {
    Config config = stub_config();
    const std::string response =
        whole_response("HTTP/1.1 401 Unauthorized", "application/json",
                       R"({"error":{"message":"Invalid API key","type":"invalid_request_error"}})");
    Stream s = Client(config).replay(response);
    CHECK_FALSE(s.next_chunk().has_value());
    CHECK(s.finished());
    CHECK(s.error().code == ErrorCode::http_status);
    CHECK(s.error().http_status == 401);
    INFO(s.error().message);
    CHECK(contains(s.error().message, "Invalid API key"));
    CHECK(contains(s.error().message, "401"));
    CHECK(s.stats().chunks == 0);
}

TEST_CASE("replay: a 500 with a plain-text body is reported at once: replay() never retries") {
    Config config = stub_config();
    config.retry.max_retries = 3;  // retries of a live request (tests/test_network.cpp) do not apply
    const std::string response = whole_response("HTTP/1.1 500 Internal Server Error", "text/plain",
                                                 "upstream model server is overloaded\n");
    Stream s = Client(config).replay(response);
    CHECK_FALSE(s.next_chunk().has_value());
    CHECK(s.error().code == ErrorCode::http_status);
    CHECK(s.error().http_status == 500);
    INFO(s.error().message);
    CHECK(contains(s.error().message, "upstream model server is overloaded"));
    CHECK_FALSE(contains(s.error().message, "attempts"));
    CHECK(s.stats().attempts == 1);
}

TEST_CASE("replay: answers that are no completion fail the same whole and split at every byte") {
    struct Case {
        const char* name;
        std::string response;
        ErrorCode code;
        int http_status;
        const char* says;
    };
    const Case cases[] = {
        {"an empty event stream", whole_response("HTTP/1.1 200 OK", "text/event-stream", ""), ErrorCode::protocol, 200,
         "the response ended without any completion data"},
        {"only SSE comments", whole_response("HTTP/1.1 200 OK", "text/event-stream", ": ping\n\n: ping\n\n"),
         ErrorCode::protocol, 200, "without any completion data"},
        {"a web page", whole_response("HTTP/1.1 200 OK", "text/html; charset=utf-8", "<html>hi</html>"),
         ErrorCode::protocol, 200, "a web page, not a completion stream"},
        {"204", "HTTP/1.1 204 No Content\r\n\r\n", ErrorCode::protocol, 204, "no content"},
        {"a redirect", "HTTP/1.1 301 Moved Permanently\r\nLocation: https://api.example.com/v1/chat/completions\r\n"
                       "Content-Length: 0\r\n\r\n",
         ErrorCode::http_status, 301, "Location: https://api.example.com/v1/chat/completions"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        Stream s = Client(stub_config()).replay(c.response);
        CHECK_FALSE(s.next_event());
        CHECK(s.error().code == c.code);
        CHECK(s.error().http_status == c.http_status);
        INFO(s.error().message);
        CHECK(contains(s.error().message, c.says));
        CHECK(s.stats().attempts == 1);
        std::size_t events = 0;
        const Decoded split =
            decode_in_pieces(c.response, even_cuts(1, c.response.size()), [&events](const Event&) { ++events; });
        CHECK(split.contract_broken == "");
        CHECK(split.failed);
        CHECK(events == 0);
        CHECK(split.error.code == s.error().code);
        CHECK(split.error.message == s.error().message);
    }
}

TEST_CASE("replay: an error event after some content") {
    Config config = stub_config();
    const std::string response =
        sse_response({content_json("Hello"), content_json(", 世界"),
                      R"({"error":{"message":"The model is overloaded","type":"server_error"}})",
                      content_json("never")},
                     true);
    Stream s = Client(config).replay(response);
    const std::vector<std::string> chunks = drain_chunks(s);
    CHECK(chunks == std::vector<std::string>{"Hello", ", 世界"});
    CHECK(s.error().code == ErrorCode::server_error);
    INFO(s.error().message);
    CHECK(contains(s.error().message, "The model is overloaded"));
    CHECK(s.finished());
    const llm_stream::Stats st = s.stats();
    CHECK(st.chunks == 2);
    CHECK(st.content_bytes == std::string("Hello, 世界").size());
    CHECK(st.chars == 9);
    CHECK_FALSE(s.next_chunk().has_value());
    CHECK(s.error().code == ErrorCode::server_error);
}

TEST_CASE("replay: an event that is not JSON is skipped with a warning") {
    Config config = stub_config();
    auto lines = capture_logs(config, LogLevel::warning);
    const std::string response = sse_response(
        {content_json("one "), "this is {not json", content_json("two"), finish_json("stop"), "[DONE]"}, true);
    Stream s = Client(config).replay(response);
    const std::vector<std::string> chunks = drain_chunks(s);
    CHECK_FALSE(s.error());
    CHECK(chunks == std::vector<std::string>{"one ", "two"});
    const llm_stream::Stats st = s.stats();
    CHECK(st.skipped_events == 1);
    CHECK(st.finish_reason == "stop");
    std::size_t warnings = 0;
    for (const LogLine& l : *lines) {
        INFO(l.text);
        CHECK(l.level == LogLevel::warning);
        if (l.level == LogLevel::warning) ++warnings;
    }
    CHECK(warnings == 1);
}

TEST_CASE("replay: a 200 application/json reply (not streamed) gives its content as one chunk") {
    Config config = stub_config();
    const std::string response = whole_response(
        "HTTP/1.1 200 OK", "application/json; charset=utf-8",
        R"({"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"whole"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}})");
    Stream s = Client(config).replay(response);
    const std::vector<std::string> chunks = drain_chunks(s);
    CHECK_FALSE(s.error());
    CHECK(chunks == std::vector<std::string>{"whole"});
    const llm_stream::Stats st = s.stats();
    CHECK(st.finish_reason == "stop");
    CHECK(st.has_usage);
    CHECK(st.usage.total_tokens == 4);
}

TEST_CASE("replay: a chunked body cut short after some content is a protocol error") {
    Config config = stub_config();
    std::string response = sse_response({content_json("partial "), content_json("text")}, false);
    response += "40\r\ndata: {\"choi";  // a chunk that never completes, then the connection closes
    Stream s = Client(config).replay(response);
    const std::vector<std::string> chunks = drain_chunks(s);
    CHECK(chunks == std::vector<std::string>{"partial ", "text"});
    CHECK(s.error().code == ErrorCode::protocol);
    CHECK_FALSE(s.error().message.empty());
    CHECK(s.stats().chunks == 2);
}

TEST_CASE("replay: a chunked body without the final chunk but cut between chunks is a protocol error") {
    Config config = stub_config();
    const std::string response = sse_response({content_json("a"), content_json("b")}, false);
    Stream s = Client(config).replay(response);
    CHECK(drain_chunks(s) == std::vector<std::string>{"a", "b"});
    CHECK(s.error().code == ErrorCode::protocol);
}

TEST_CASE("replay: a stream that closes after [DONE] without the terminating chunk succeeds") {
    Config config = stub_config();
    auto lines = capture_logs(config, LogLevel::warning);
    const std::string response =
        sse_response({content_json("done "), content_json("right"), finish_json("stop"), "[DONE]"}, false);
    Stream s = Client(config).replay(response);
    CHECK(drain_chunks(s) == std::vector<std::string>{"done ", "right"});
    CHECK_FALSE(s.error());
    CHECK(s.error().code == ErrorCode::none);
    CHECK(s.stats().finish_reason == "stop");
    CHECK(lines->empty());
}

TEST_CASE("replay: the same response split at every byte gives the same chunks") {
    Config config = stub_config();
    const std::string response = sse_response(
        {content_json("你好"), content_json("，世界"), content_json(" and \\u4e16\\u754c"), finish_json("stop"),
         "[DONE]"},
        true);
    Stream whole = Client(config).replay(response);
    const std::vector<std::string> expected = drain_chunks(whole);
    CHECK(expected == std::vector<std::string>{"你好", "，世界", " and 世界"});
    CHECK(whole.stats().received_bytes == response.size());

    std::vector<std::string> split;
    const Decoded decoded = decode_in_pieces(response, even_cuts(1, response.size()), [&split](const Event& e) {
        if (e.type == EventType::content) split.emplace_back(e.text);
    });
    CHECK(split == expected);
    CHECK(decoded.done);
    CHECK_FALSE(decoded.failed);
    CHECK(decoded.contract_broken == "");
}

// =================================================================================================
// get_llm_client, default and moved streams
// =================================================================================================

TEST_CASE("get_llm_client() returns the same object every time, from any thread") {
    Client* a = &llm_stream::get_llm_client();
    Client* b = &llm_stream::get_llm_client();
    CHECK(a == b);
    Client* c = nullptr;
    std::thread t([&] { c = &llm_stream::get_llm_client(); });
    t.join();
    CHECK(c == a);
}

TEST_CASE("a default-constructed Stream is finished and empty") {
    Stream s;
    CHECK(s.finished());
    CHECK_FALSE(s.next_chunk().has_value());
    CHECK(s.next_event() == nullptr);
    CHECK(s.poll() == PollStatus::done);
    CHECK_FALSE(s.error());
    CHECK(s.stats().chunks == 0);
    s.cancel();  // harmless
    int iterations = 0;
    for (std::string_view chunk : s) {
        (void)chunk;
        ++iterations;
    }
    CHECK(iterations == 0);
}

TEST_CASE("moved-from and moved-to streams") {
    Client client(stub_config());
    Stream reference = client.stream_chat("move me");
    const std::vector<std::string> expected = drain_chunks(reference);
    REQUIRE(expected.size() >= 3);
    if (expected.size() < 3) return;

    SUBCASE("move construction in the middle of a stream") {
        Stream a = client.stream_chat("move me");
        std::vector<std::string> got;
        if (auto c = a.next_chunk()) got.emplace_back(*c);
        Stream b(std::move(a));
        CHECK(a.finished());                    // NOLINT(bugprone-use-after-move): moved-from is empty
        CHECK_FALSE(a.next_chunk().has_value());  // NOLINT(bugprone-use-after-move)
        CHECK_FALSE(a.error());                 // NOLINT(bugprone-use-after-move)
        CHECK_FALSE(b.finished());
        while (auto c = b.next_chunk()) got.emplace_back(*c);
        CHECK(got == expected);
        CHECK_FALSE(b.error());
        CHECK(b.stats().chunks == expected.size());
    }
    SUBCASE("move assignment replaces a running stream") {
        Stream a = client.stream_chat("move me");
        Stream b = client.stream_chat("something else");
        CHECK(b.next_chunk().has_value());
        b = std::move(a);
        CHECK(drain_chunks(b) == expected);
        CHECK_FALSE(b.error());
        CHECK(a.finished());  // NOLINT(bugprone-use-after-move)
    }
    SUBCASE("a moved-to default stream works and the stream can move back") {
        Stream a = client.stream_chat("move me");
        Stream b;
        b = std::move(a);
        std::vector<std::string> got;
        if (auto c = b.next_chunk()) got.emplace_back(*c);
        a = std::move(b);
        while (auto c = a.next_chunk()) got.emplace_back(*c);
        CHECK(got == expected);
        CHECK(b.finished());  // NOLINT(bugprone-use-after-move)
    }
}
