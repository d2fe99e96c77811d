// Running out of memory is an error, never a crash: allocation-failure injection. Every buffer a stream
// allocates goes through LLM_STREAM_REALLOC; here that hook fails the k-th allocation after arm(k), and
// each scenario is run for every k from 1 until a run makes fewer than k allocations (so the last run is
// a clean success). Each run must end exactly as the clean run does (same events, same warnings, same
// result) or in ErrorCode::out_of_memory after a correct prefix of those events; every block the hook
// handed out must be freed again. Build under ASan/UBSan to see crashes, null writes and leaks.
//
// BUILD NOTE: this file redefines the allocation macros, so it needs its OWN implementation instance
// (LLM_STREAM_IMPLEMENTATION below) and must stay a separate executable: never link it with the shared
// implementation object the other tests use.

#include <cstddef>
#include <cstdlib>

namespace oom_test {
// The allocation hook's state. Only the test's thread runs library code (the loopback server's threads
// never call the hook), so plain variables do.
long allocations = 0;    // since arm()
long fail_at = 0;        // this allocation (counted from 1) fails; 0: none does
bool fail_later = false; // every allocation after it fails too (memory stays short)
bool injected = false;   // a failure happened in this run
long live_blocks = 0;    // blocks handed out and not yet freed

void arm(long k, bool and_later = false) {
    allocations = 0;
    fail_at = k;
    fail_later = and_later;
    injected = false;
}

void* realloc_hook(void* block, std::size_t size) {
    ++allocations;
    if (fail_at > 0 && (allocations == fail_at || (fail_later && allocations > fail_at))) {
        injected = true;
        return nullptr;  // like realloc: the old block stays valid
    }
    void* grown = std::realloc(block, size);
    if (grown && !block) ++live_blocks;
    return grown;
}

void free_hook(void* block) {
    if (block) --live_blocks;
    std::free(block);
}
}  // namespace oom_test

#define LLM_STREAM_REALLOC(ptr, size) oom_test::realloc_hook(ptr, size)
#define LLM_STREAM_FREE(ptr) oom_test::free_hook(ptr)
#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"
#include <doctest/doctest.h>
#include "support/test_server.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using llm_stream::Client;
using llm_stream::Config;
using llm_stream::DecodeStatus;
using llm_stream::Decoder;
using llm_stream::ErrorCode;
using llm_stream::Event;
using llm_stream::EventType;
using llm_stream::LogLevel;
using llm_stream::Stream;
using llm_test::Response;
using llm_test::TestServer;
using namespace std::chrono_literals;

namespace {

/* What a run produced: one line per event or warning, in order, then how it ended. */
struct Outcome {
    std::vector<std::string> lines;
    llm_stream::Error error;
    std::size_t skipped_events = 0;
};

std::string describe(const Event& e) {
    switch (e.type) {
    case EventType::content: return "content:" + std::string(e.text);
    case EventType::reasoning: return "reasoning:" + std::string(e.text);
    case EventType::finish: return "finish:" + std::string(e.text);
    case EventType::usage:
        return "usage:" + std::to_string(e.usage.prompt_tokens) + "/" + std::to_string(e.usage.completion_tokens) +
               "/" + std::to_string(e.usage.total_tokens);
    case EventType::tool_call: break;
    }
    const llm_stream::ToolCallDelta& t = e.tool_call;
    return "tool:" + std::to_string(t.index) + "|" + std::string(t.id.value_or("")) + "|" +
           std::string(t.name.value_or("")) + "|" + std::string(t.arguments.value_or(""));
}

/* The tool calls of the "tool:" lines, fragments merged by index: "index id name arguments;" each. */
std::string tool_calls(const Outcome& o) {
    struct ToolCall {
        std::string id, name, arguments;
    };
    std::map<std::string, ToolCall> calls;  // by index
    for (const std::string& line : o.lines) {
        if (line.compare(0, 5, "tool:") != 0) continue;
        const std::size_t id_at = line.find('|') + 1, name_at = line.find('|', id_at) + 1;
        const std::size_t arguments_at = line.find('|', name_at) + 1;
        ToolCall& call = calls[line.substr(5, id_at - 6)];
        call.id += line.substr(id_at, name_at - 1 - id_at);
        call.name += line.substr(name_at, arguments_at - 1 - name_at);
        call.arguments += line.substr(arguments_at);
    }
    std::string out;
    for (const auto& [index, call] : calls) out += index + " " + call.id + " " + call.name + " " + call.arguments + ";";
    return out;
}

/* The text of every line starting with `prefix`, concatenated. */
std::string joined(const Outcome& o, std::string_view prefix) {
    std::string out;
    for (const std::string& line : o.lines)
        if (line.compare(0, prefix.size(), prefix) == 0) out += line.substr(prefix.size());
    return out;
}

/* The lines as one text, for failure messages. */
std::string rendered(const std::vector<std::string>& lines) {
    std::string out;
    for (const std::string& line : lines) out += "[" + line + "]";
    return out;
}

bool is_prefix(const std::vector<std::string>& part, const std::vector<std::string>& whole) {
    if (part.size() > whole.size()) return false;
    for (std::size_t i = 0; i < part.size(); ++i)
        if (part[i] != whole[i]) return false;
    return true;
}

/* A stream gives its receive buffer back to its thread, which keeps it for the next stream; dropped
   after each run, so that every run allocates it anew (and can fail to) and leaves nothing live. */
void drop_thread_buffers() {
    if (llm_stream::detail::ReceiveBuffers* shared = llm_stream::detail::ReceiveBuffers::of_this_thread())
        *shared = llm_stream::detail::ReceiveBuffers();
}

/* A run with the k-th allocation failed ended acceptably: as the clean run did, or out of memory
   after part of what the clean run delivered (and nothing else: no skipped event, no other error). */
void check_run(const Outcome& run, const Outcome& clean) {
    if (run.error.code == ErrorCode::out_of_memory) {
        CHECK(oom_test::injected);
        CHECK_MESSAGE(is_prefix(run.lines, clean.lines), rendered(run.lines));
        CHECK(run.skipped_events <= clean.skipped_events);
        return;
    }
    CHECK_MESSAGE(run.lines == clean.lines, rendered(run.lines));
    CHECK(run.error.code == clean.error.code);
    CHECK(run.error.message == clean.error.message);
    CHECK(run.error.http_status == clean.error.http_status);
    CHECK(run.skipped_events == clean.skipped_events);
}

/* Runs `scenario` with the k-th allocation failing (and every later one too when `and_later`), for
   k = 1, 2, ... until a run makes fewer than k allocations. */
void fail_each_allocation(const std::function<Outcome()>& scenario, const Outcome& clean, long clean_allocations,
                          bool and_later) {
    CAPTURE(and_later);
    int out_of_memory_runs = 0;
    bool ran_past_the_last = false;
    // A loopback run may allocate a little more than the clean one (reads split differently): the
    // bound is generous; the loop ends at the first run that made fewer than k allocations.
    for (long k = 1; k <= 4 * clean_allocations + 16 && !ran_past_the_last; ++k) {
        CAPTURE(k);
        oom_test::arm(k, and_later);
        const Outcome run = scenario();
        drop_thread_buffers();
        CAPTURE(run.error.message);
        CHECK(oom_test::live_blocks == 0);
        check_run(run, clean);
        if (run.error.code == ErrorCode::out_of_memory) ++out_of_memory_runs;
        ran_past_the_last = !oom_test::injected;
    }
    CHECK(ran_past_the_last);
    CHECK(out_of_memory_runs > 0);
    oom_test::arm(0);
}

/* Runs `scenario` clean, lets `check_clean` judge that run against the scenario's expectations, then
   fails each allocation in turn: alone, and with every one after it. */
void inject_every_allocation(const std::function<Outcome()>& scenario,
                             const std::function<void(const Outcome&)>& check_clean) {
    oom_test::arm(0);
    drop_thread_buffers();
    const Outcome clean = scenario();
    const long clean_allocations = oom_test::allocations;
    drop_thread_buffers();
    CHECK(oom_test::live_blocks == 0);
    check_clean(clean);
    CHECK(clean_allocations > 0);
    fail_each_allocation(scenario, clean, clean_allocations, false);
    fail_each_allocation(scenario, clean, clean_allocations, true);
}

Config quiet_config(std::vector<std::string>* warnings, std::string base_url = {}) {
    Config config;
    config.base_url = std::move(base_url);
    config.log_level = LogLevel::warning;
    config.log = [warnings](LogLevel level, std::string_view message) {
        if (level >= LogLevel::warning) warnings->emplace_back("warning:" + std::string(message));
    };
    config.connect_timeout = 5000ms;
    config.read_timeout = 5000ms;
    config.deadline = 20000ms;  // a hang fails the run (timeout) instead of the whole test
    config.retry.max_retries = 0;
    return config;
}

/* Reads a stream to its end; warnings the client logs are lines too, so a skipped event shows. */
Outcome read_stream(Client& client, const std::function<Stream(Client&)>& open, std::vector<std::string>& warnings) {
    Outcome out;
    Stream stream = open(client);
    for (int guard = 0; guard < 100000; ++guard) {
        const std::size_t warned = warnings.size();
        const Event* e = stream.next_event();
        out.lines.insert(out.lines.end(), warnings.begin() + static_cast<std::ptrdiff_t>(warned), warnings.end());
        if (!e) break;
        out.lines.push_back(describe(*e));
    }
    out.error = stream.error();
    out.skipped_events = stream.stats().skipped_events;
    return out;
}

Outcome one_stream(Config config, std::vector<std::string>& warnings) {
    Client client(std::move(config));
    return read_stream(client, [](Client& c) { return c.stream_chat("hi"); }, warnings);
}

}  // namespace

TEST_CASE("stub mode: every allocation failure ends in out_of_memory or the whole reply") {
    const std::string reply =
        "你好！这是 llm_stream 的模拟回复（stub mode）。You asked: \u201chi\u201d。运动鞋轻便、透气、缓震，"
        "适合日常穿着。Set LLM_BASE_URL to stream from a real server.";
    inject_every_allocation(
        [] {
            std::vector<std::string> warnings;
            return one_stream(quiet_config(&warnings), warnings);
        },
        [&](const Outcome& clean) {
            CHECK(!clean.error);
            CHECK(joined(clean, "content:") == reply);
            CHECK(joined(clean, "finish:") == "stop");
        });
}

namespace {

/* A streamed reply with escapes, reasoning, a tool call split in two, a finish reason and usage. */
std::string sse_reply_body() {
    return "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"think \\u00e9\"}}]}\n\n"
           "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\\n\\\"world\\\" \\ud83d\\ude00\"}}]}\n\n"
           ": a comment line\n\n"
           "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"运动鞋\"}}]}\n\n"
           "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\","
           "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"k\\\":\"}}]}}]}\n\n"
           "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
           "{\"arguments\":\"1}\"}}]}}]}\n\n"
           "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
           "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n"
           "data: [DONE]\n\n";
}

void check_sse_reply(const Outcome& clean) {
    CHECK(!clean.error);
    CHECK(joined(clean, "reasoning:") == "think \u00e9");
    CHECK(joined(clean, "content:") == "Hello\n\"world\" \U0001F600运动鞋");
    CHECK(tool_calls(clean) == "0 call_1 f {\"k\":1};");
    CHECK(joined(clean, "finish:") == "stop");
    CHECK(joined(clean, "usage:") == "3/4/7");
}

/* An error message of about 1,000 bytes made only of \u00e9 and \n escapes, and its decoded text. */
void escaped_error_message(std::string& escaped, std::string& decoded) {
    for (int i = 0; i < 125; ++i) {
        escaped += "\\u00e9\\n";
        decoded += "\u00e9\n";
    }
}

std::string error_body(const std::string& escaped_message) {
    return "{\"error\":{\"message\":\"" + escaped_message + "\",\"type\":\"server_error\",\"code\":\"boom\"}}";
}

/* A TestServer started for one test case, answering every request with `response`. */
bool start_server(TestServer& server, Response response) {
    server.set_default(std::move(response));
    const bool started = server.start();
    CHECK_MESSAGE(started, server.error());
    return started;
}

}  // namespace

TEST_CASE("loopback SSE stream: every allocation failure ends in out_of_memory or the whole reply") {
    TestServer server;
    if (!start_server(server, Response::sse(sse_reply_body()))) return;
    inject_every_allocation(
        [&] {
            std::vector<std::string> warnings;
            Config config = quiet_config(&warnings, server.base_url());
            return one_stream(std::move(config), warnings);
        },
        check_sse_reply);
}

TEST_CASE("loopback non-streamed JSON reply: every allocation failure ends in out_of_memory or the reply") {
    TestServer server;
    const std::string reply = "{\"id\":\"c\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":"
                              "{\"role\":\"assistant\",\"content\":\"whole \\u00e9 reply\"},\"finish_reason\":\"stop\"}]}";
    if (!start_server(server, Response::json(200, reply))) return;
    inject_every_allocation(
        [&] {
            std::vector<std::string> warnings;
            Config config = quiet_config(&warnings, server.base_url());
            return one_stream(std::move(config), warnings);
        },
        [](const Outcome& clean) {
            CHECK(!clean.error);
            CHECK(joined(clean, "content:") == "whole \u00e9 reply");
            CHECK(joined(clean, "finish:") == "stop");
        });
}

TEST_CASE("HTTP 500 whose error message is 1,000 bytes of escapes: http_status with the message, or out_of_memory") {
    std::string escaped, decoded;
    escaped_error_message(escaped, decoded);
    CHECK(escaped.size() == 1000);
    TestServer server;
    if (!start_server(server, Response::status(500, error_body(escaped)))) return;
    inject_every_allocation(
        [&] {
            std::vector<std::string> warnings;
            Config config = quiet_config(&warnings, server.base_url());
            return one_stream(std::move(config), warnings);
        },
        [&](const Outcome& clean) {
            CHECK(clean.lines.empty());
            CHECK(clean.error.code == ErrorCode::http_status);
            CHECK(clean.error.http_status == 500);
            CHECK(clean.error.message == "HTTP 500: " + decoded + " (type: server_error, code: boom)");
        });
}

TEST_CASE("pooled reuse: two streams on one client, the second on the kept-alive connection") {
    TestServer server;
    if (!start_server(server, Response::sse(sse_reply_body()))) return;
    inject_every_allocation(
        [&] {
            std::vector<std::string> warnings;
            Config config = quiet_config(&warnings, server.base_url());
            Client client(std::move(config));
            const auto open = [](Client& c) { return c.stream_chat("hi"); };
            Outcome first = read_stream(client, open, warnings);
            if (first.error) return first;  // the second stream would only repeat the first's lines
            server.clear_records();
            Outcome second = read_stream(client, open, warnings);
            // One outcome for both: the second stream's lines after the first's, and its result.
            second.lines.insert(second.lines.begin(), first.lines.begin(), first.lines.end());
            if (!second.error)
                second.lines.push_back("connections for the second stream: " + std::to_string(server.connection_count()));
            return second;
        },
        [](const Outcome& clean) {
            CHECK(!clean.error);
            CHECK(joined(clean, "content:") == "Hello\n\"world\" \U0001F600运动鞋Hello\n\"world\" \U0001F600运动鞋");
            CHECK(clean.lines.back() == "connections for the second stream: 0");  // the kept-alive one
        });
}

namespace {

/* One feed() or finish() result noted; true when decoding is over (done or failed). */
bool note(const Decoder& decoder, DecodeStatus status, Outcome& out) {
    if (status == DecodeStatus::event) out.lines.push_back(describe(decoder.event()));
    if (status == DecodeStatus::warning) out.lines.push_back("warning:" + std::string(decoder.warning()));
    return status == DecodeStatus::done || status == DecodeStatus::failed;
}

/* A whole HTTP response fed to a Decoder in `pieces` roughly equal pieces, then the end of input. */
Outcome decode_in_equal_pieces(const std::string& response, std::size_t pieces) {
    Outcome out;
    Decoder decoder;
    const std::size_t piece = response.size() / pieces + 1;
    bool over = false;
    for (std::size_t at = 0; at < response.size() && !over; at += piece) {
        std::string_view input = std::string_view(response).substr(at, piece);
        for (int guard = 0; guard < 10000 && !over; ++guard) {
            const llm_stream::DecodeStep step = decoder.feed(input);
            input.remove_prefix(step.consumed);
            over = note(decoder, step.status, out);
            if (step.status == DecodeStatus::need_more) break;
        }
    }
    for (int guard = 0; guard < 100 && !over; ++guard) {
        const llm_stream::DecodeStep step = decoder.finish();
        over = note(decoder, step.status, out) || step.status == DecodeStatus::need_more;
    }
    out.error = decoder.error();
    out.skipped_events = decoder.skipped_messages();
    return out;
}

}  // namespace

TEST_CASE("Decoder: recorded streams in pieces, every allocation failure ends in out_of_memory or the whole stream") {
    struct Recorded {
        const char* file;
        const char* content;
        const char* reasoning;
        const char* tools;
    };
    const Recorded recorded[] = {
        {"openai-tool-calls-parallel.sse", "", "",
         "0 call_8wSWhuzOhClEzH8c2pYjRIiz get_current_weather {\"format\": \"celsius\", \"location\": \"北京\"};"
         "1 call_RbImHA6tBOwuzwIAvsQKFOox get_history_weather {\"format\": \"celsius\", \"location\": \"洛阳\"};"},
        {"dashscope-qwen3-thinking.sse", "运动鞋轻便、透气，适合日常穿着。", "好的，用户在问运动鞋。", ""},
        {"json-edge-cases.sse", "你好 😀 \"q\" \\ / \b\f\n\r\tspaced!", "", ""},
        {"sse-edge-cases.sse", "no-space multi-line after blank events two spaces", "", ""},
        {"openrouter-comments-crlf.sse", "Hi there! 👋", "", ""},
    };
    for (const Recorded& r : recorded) {
        CAPTURE(r.file);
        const std::string body = llm_test::read_stream_file(r.file);
        CHECK(!body.empty());
        const std::string response = chunked_sse_response(body, 333);
        inject_every_allocation([&] { return decode_in_equal_pieces(response, 5); },
                                [&](const Outcome& clean) {
                                    CHECK(!clean.error);
                                    CHECK(joined(clean, "content:") == r.content);
                                    CHECK(joined(clean, "reasoning:") == r.reasoning);
                                    CHECK(tool_calls(clean) == r.tools);
                                });
    }
}

TEST_CASE("Decoder: an error event and an error body full of escapes") {
    std::string escaped, decoded;
    escaped_error_message(escaped, decoded);
    const std::string in_stream =
        chunked_sse_response("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: " +
                                 error_body(escaped) + "\n\n",
                             97);
    inject_every_allocation([&] { return decode_in_equal_pieces(in_stream, 4); },
                            [&](const Outcome& clean) {
                                CHECK(joined(clean, "content:") == "a");
                                CHECK(clean.error.code == ErrorCode::server_error);
                                CHECK(clean.error.message ==
                                      "server error: " + decoded + " (type: server_error, code: boom)");
                            });
    const std::string body = error_body(escaped);
    const std::string status_500 = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                                   "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    inject_every_allocation([&] { return decode_in_equal_pieces(status_500, 3); },
                            [&](const Outcome& clean) {
                                CHECK(clean.lines.empty());
                                CHECK(clean.error.code == ErrorCode::http_status);
                                CHECK(clean.error.message == "HTTP 500: " + decoded + " (type: server_error, code: boom)");
                            });
}

/* TLS. Debian's mbedTLS 2.28 is built without MBEDTLS_PLATFORM_MEMORY: it calls the C library's calloc
   directly, so mbedtls_platform_set_calloc_free() does not exist and its allocations cannot be failed
   from here (interposing calloc itself would fight the sanitizers' allocator). What is ours is covered:
   an https stream over the TLS hook, with a pass-through session that allocates through the same
   failing hook in its handshake and on its first read, as a real TLS stack does; and the mapping of
   mbedTLS's own allocation-failure codes. */
namespace {

/* "TLS" that passes bytes through unchanged over the non-blocking socket: the https code path of the
   transport without cryptography, against the plain loopback server. */
class PassThroughSession final : public llm_stream::TlsSession {
public:
    explicit PassThroughSession(llm_stream::socket_handle socket) : socket_(socket) {}
    ~PassThroughSession() override {
        oom_test::free_hook(handshake_state_);
        oom_test::free_hook(record_buffer_);
    }
    PassThroughSession(const PassThroughSession&) = delete;
    PassThroughSession& operator=(const PassThroughSession&) = delete;

    llm_stream::TlsResult handshake() override {
        if (!handshake_state_ && !(handshake_state_ = oom_test::realloc_hook(nullptr, 4096)))
            return out_of_memory("no memory for the handshake");
        if (!handshake_round_done_) {  // one round back through the stream's state machine
            handshake_round_done_ = true;
            return {llm_stream::TlsStatus::want_write, 0};
        }
        return {llm_stream::TlsStatus::ok, 0};
    }
    llm_stream::TlsResult read(char* buffer, std::size_t capacity) override {
        if (!record_buffer_ && !(record_buffer_ = oom_test::realloc_hook(nullptr, 16384)))
            return out_of_memory("no memory for the record buffer");
        const ssize_t n = ::recv(socket_, buffer, capacity, 0);
        if (n > 0) return {llm_stream::TlsStatus::ok, static_cast<std::size_t>(n)};
        if (n == 0) return {llm_stream::TlsStatus::closed, 0};
        return would_block_or_failed("recv");
    }
    llm_stream::TlsResult write(const char* data, std::size_t size) override {
        const ssize_t n = ::send(socket_, data, size, MSG_NOSIGNAL);
        if (n >= 0) return {llm_stream::TlsStatus::ok, static_cast<std::size_t>(n)};
        return would_block_or_failed("send");
    }
    const llm_stream::Error& error() const override { return error_; }

private:
    llm_stream::TlsResult out_of_memory(const char* why) {
        error_.code = ErrorCode::out_of_memory;
        error_.message = why;
        return {llm_stream::TlsStatus::failed, 0};
    }
    llm_stream::TlsResult would_block_or_failed(const char* call) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return {llm_stream::TlsStatus::want_read, 0};
        error_.code = ErrorCode::tls;
        error_.message = std::string(call) + " failed";
        return {llm_stream::TlsStatus::failed, 0};
    }

    llm_stream::socket_handle socket_;
    void* handshake_state_ = nullptr;
    void* record_buffer_ = nullptr;
    bool handshake_round_done_ = false;
    llm_stream::Error error_;
};

class PassThroughBackend final : public llm_stream::TlsBackend {
public:
    std::string name() const override { return "pass-through"; }
    llm_stream::Error start(llm_stream::socket_handle socket, const std::string&,
                            std::unique_ptr<llm_stream::TlsSession>& session) override {
        session = std::make_unique<PassThroughSession>(socket);
        return {};
    }
};

}  // namespace

TEST_CASE("https through the TLS hook: a failed allocation in the handshake or the record layer is out_of_memory") {
    TestServer server;
    if (!start_server(server, Response::sse(sse_reply_body()))) return;
    inject_every_allocation(
        [&] {
            std::vector<std::string> warnings;
            Config config = quiet_config(&warnings, "https://127.0.0.1:" + std::to_string(server.port()));
            config.tls.backend = std::make_shared<PassThroughBackend>();
            return one_stream(std::move(config), warnings);
        },
        check_sse_reply);
}

#if defined(LLM_STREAM_MBEDTLS)
TEST_CASE("mbedTLS allocation failures are out_of_memory, its other failures tls") {
    using llm_stream::detail::mbedtls_failure;
    CHECK(mbedtls_failure(MBEDTLS_ERR_SSL_ALLOC_FAILED, "setup: ").code == ErrorCode::out_of_memory);
    CHECK(mbedtls_failure(MBEDTLS_ERR_X509_ALLOC_FAILED, "parse: ").code == ErrorCode::out_of_memory);
    // A high-level code plus a low-level one, as a failed bignum allocation inside a key exchange.
    CHECK(mbedtls_failure(MBEDTLS_ERR_PK_INVALID_PUBKEY + MBEDTLS_ERR_MPI_ALLOC_FAILED, "").code ==
          ErrorCode::out_of_memory);
    CHECK(mbedtls_failure(MBEDTLS_ERR_X509_INVALID_FORMAT + MBEDTLS_ERR_ASN1_ALLOC_FAILED, "").code ==
          ErrorCode::out_of_memory);
    const llm_stream::Error other = mbedtls_failure(MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE, "TLS handshake failed: ");
    CHECK(other.code == ErrorCode::tls);
    CHECK(other.message.rfind("TLS handshake failed: ", 0) == 0);
}
#endif
