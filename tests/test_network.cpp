#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>
#include "support/ensure.hpp"
#include "support/manifest.hpp"
#include "support/loopback_server.hpp"

/* llm_stream over real sockets, against llm_test::TestServer on loopback (tests/support/test_server.hpp):
   the recorded streams in every framing, the request on the wire, every scripted fault and the retry
   policy, the deadline, cancel() from another thread, the non-blocking poll() loop, the keep-alive pool
   and IPv6. The invariant behind every fault test: text handed to the caller is never duplicated and
   never lost, whatever the server does after it.

   Timeouts in here are short (a few hundred milliseconds) so the whole file runs in seconds. No check
   depends on the machine's speed (the file also runs under wine, against a server in another process):
   elapsed times are only checked from below (a wait happened), and what ended a wait shows in the outcome
   (the error code, the attempts, the log's "retrying in"), with the other ways it could have ended made
   kLong. No REQUIRE: a failed precondition is a CHECK followed by a return (the tests also build with
   -fno-exceptions). */

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

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
using llm_stream::WaitInfo;
using llm_test::Chunking;
using llm_test::Framing;
using llm_test::Response;
using namespace std::chrono_literals;


#define START_SERVER(server)                                     \
    do {                                                         \
        const bool started_ = (server).start();                  \
        CHECK_MESSAGE(started_, "server: " << (server).error()); \
        if (!started_) return;                                   \
    } while (0)

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

/* Far longer than a test takes, however loaded the machine: a server stall or a client wait this long
   only ends by itself when the code under test is wrong, and then the outcome says so. */
constexpr int kLongMs = 30000;
constexpr std::chrono::milliseconds kLong{kLongMs};

const char* code_name(ErrorCode c) { return llm_stream::to_string(c); }

/* ---------------------------------------------------------------------------------------------
   Logs: every message of a client, captured (thread-safe: streams may run on other threads)
   --------------------------------------------------------------------------------------------- */

struct LogSink {
    mutable std::mutex mutex;
    std::vector<std::pair<LogLevel, std::string>> lines;

    void add(LogLevel level, std::string_view message) {
        std::lock_guard<std::mutex> lock(mutex);
        lines.emplace_back(level, std::string(message));
    }
    std::string all() const {
        std::lock_guard<std::mutex> lock(mutex);
        std::string out;
        for (const auto& l : lines) out += l.second + "\n";
        return out;
    }
    bool contains(std::string_view needle) const { return all().find(needle) != std::string::npos; }
};

/* A configuration for the test server: short timeouts, fast retries without jitter, logs captured. */
Config make_config(const std::string& base_url, const std::shared_ptr<LogSink>& sink = nullptr) {
    Config c;
    c.base_url = base_url;
    c.api_key.clear();
    c.connect_timeout = 800ms;
    c.read_timeout = 800ms;
    c.retry.max_retries = 3;
    c.retry.initial_backoff = 10ms;
    c.retry.max_backoff = 40ms;
    c.retry.jitter = 0;
    if (sink) {
        c.log_level = LogLevel::debug;
        c.log = [sink](LogLevel level, std::string_view message) { sink->add(level, message); };
    } else {
        c.log_level = LogLevel::off;
    }
    return c;
}

Config make_config(const TestServer& server, const std::shared_ptr<LogSink>& sink = nullptr) {
    return make_config(server.base_url(), sink);
}

/* ---------------------------------------------------------------------------------------------
   What a stream delivered
   --------------------------------------------------------------------------------------------- */

bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    const std::size_t n = s.size();
    while (i < n) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len;
        std::uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
        else return false;
        if (i + len > n) return false;
        for (std::size_t k = 1; k < len; ++k) {
            const unsigned char t = static_cast<unsigned char>(s[i + k]);
            if ((t & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (t & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
        if (cp >= 0xD800 && cp <= 0xDFFF) return false;
        i += len;
    }
    return true;
}

std::string describe(const Event& e) {
    switch (e.type) {
    case EventType::content: return "content[" + std::string(e.text) + "]";
    case EventType::reasoning: return "reasoning[" + std::string(e.text) + "]";
    case EventType::finish: return "finish[" + std::string(e.text) + "]";
    case EventType::usage:
        return "usage[" + std::to_string(e.usage.prompt_tokens) + "," + std::to_string(e.usage.completion_tokens) +
               "," + std::to_string(e.usage.total_tokens) + "]";
    case EventType::tool_call: {
        std::string s = "tool[" + std::to_string(e.tool_call.index);
        s += e.tool_call.id ? "|id=" + std::string(*e.tool_call.id) : "|-";
        s += e.tool_call.name ? "|name=" + std::string(*e.tool_call.name) : "|-";
        s += e.tool_call.arguments ? "|args=" + std::string(*e.tool_call.arguments) : "|-";
        return s + "]";
    }
    }
    return "?";
}

struct Run {
    std::vector<std::string> events;
    llm_test::Outcome outcome;  // the events gathered as manifest.json describes a stream
    std::string content;
    std::size_t chunks = 0;
    bool chunks_valid_utf8 = true;  // every content chunk on its own
    llm_stream::Error error;
    llm_stream::Stats stats;
    double ms = 0;
};

void record(Run& run, const Event& e) {
    run.events.push_back(describe(e));
    llm_test::add_event(run.outcome, e);
    if (e.type == EventType::content) {
        ++run.chunks;
        run.content.append(e.text.data(), e.text.size());
        if (!valid_utf8(e.text)) run.chunks_valid_utf8 = false;
    }
}

/* Drives a stream to its end with next_event() (bounded). */
Run drain(Stream& stream, std::size_t max_events = 1000000) {
    Run run;
    const Clock::time_point t0 = Clock::now();
    for (std::size_t i = 0; i < max_events; ++i) {
        const Event* e = stream.next_event();
        if (!e) break;
        record(run, *e);
    }
    run.ms = ms_since(t0);
    run.error = stream.error();
    run.stats = stream.stats();
    return run;
}

Run run_chat(Client& client, std::string_view prompt = "hi", const ChatOptions& options = {}) {
    Stream stream = client.stream_chat(prompt, options);
    return drain(stream);
}

/* The same body read from memory through the whole pipeline: what the network must reproduce. */
Run replay(const std::string& body, llm_stream::Api api = llm_stream::Api::openai,
           std::string_view content_type = "text/event-stream") {
    const std::string response = length_response(body, content_type);
    Config config;
    config.api = api;
    config.log_level = LogLevel::off;
    Stream stream = Client(config).replay(response);
    return drain(stream);
}

/* ---------------------------------------------------------------------------------------------
   An independent oracle for llm_test::generate_events bodies: each event is one "data: {json}" line
   whose delta content is the string after "content":" (escapes: \n \" \\ only), ended by "\n\n".
   --------------------------------------------------------------------------------------------- */

std::string unescape_generated(std::string_view ev) {
    std::string out;
    const std::size_t at = ev.find("\"content\":\"");
    if (at == std::string_view::npos) return out;
    for (std::size_t i = at + 11; i < ev.size(); ++i) {
        const char c = ev[i];
        if (c == '"') break;
        if (c == '\\' && i + 1 < ev.size()) {
            const char e = ev[++i];
            out += e == 'n' ? '\n' : e;
            continue;
        }
        out += c;
    }
    return out;
}

/* Content of the events wholly inside body[0, cut): an event counts once its blank line arrived. */
std::string generated_content_before(const std::string& body, std::size_t cut) {
    std::string out;
    std::size_t at = 0;
    for (;;) {
        const std::size_t end = body.find("\n\n", at);
        if (end == std::string::npos || end + 2 > cut) break;
        out += unescape_generated(std::string_view(body).substr(at, end - at));
        at = end + 2;
    }
    return out;
}

/* Offset just after the n-th (1-based) event of a generated body. */
std::size_t after_event(const std::string& body, std::size_t n) {
    std::size_t at = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t end = body.find("\n\n", at);
        if (end == std::string::npos) return body.size();
        at = end + 2;
    }
    return at;
}

bool is_prefix(const std::string& prefix, const std::string& of) {
    return prefix.size() <= of.size() && of.compare(0, prefix.size(), prefix) == 0;
}

std::string content_event(std::string_view json_escaped_text) {
    return "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" +
           std::string(json_escaped_text) + "\"},\"finish_reason\":null}]}\n\n";
}

const std::string kDoneTail =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},"
    "\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";

/* A small complete stream: "Hello, world!" in three chunks. */
std::string small_stream() {
    return content_event("Hello") + content_event(", ") + content_event("world!") + kDoneTail;
}
const std::string kSmallContent = "Hello, world!";

/* getsockopt answers for an open socket only (POSIX and Winsock alike). */
bool socket_is_open(llm_stream::socket_handle s) {
    int type = 0;
    socklen_t size = sizeof type;
    return s != static_cast<llm_stream::socket_handle>(-1) &&
           ::getsockopt(s, SOL_SOCKET, SO_TYPE, reinterpret_cast<char*>(&type), &size) == 0;
}

/* Waits at most `ms` for wait_info()'s socket to be ready as it asks; true when it is. */
bool socket_ready(const WaitInfo& w, int ms) {
#ifdef _WIN32
    WSAPOLLFD fd{};
#else
    pollfd fd{};
#endif
    fd.fd = w.socket;
    fd.events = static_cast<short>((w.want_read ? POLLIN : 0) | (w.want_write ? POLLOUT : 0));
#ifdef _WIN32
    return ::WSAPoll(&fd, 1, ms) > 0;
#else
    return ::poll(&fd, 1, ms) > 0;
#endif
}

}  // namespace

/* =============================================================================================
   The recorded corpus over real sockets
   ============================================================================================= */

namespace {

/* One way of serving a recorded stream. */
struct Variant {
    const char* name;
    Framing framing;
    std::optional<Chunking> chunking;  // none: one piece per event (per line for NDJSON)
    int delay_ms;                      // before each piece
    bool piecewise;                    // written piece by piece instead of in a few large writes
    bool slow;                         // one byte per send
};

const Variant kVariants[] = {
    {"chunked, one chunk per event", Framing::chunked, std::nullopt, 0, false, false},
    {"chunked, 7-byte chunks", Framing::chunked, Chunking::fixed(7), 0, false, false},
    {"chunked, 1-byte chunks", Framing::chunked, Chunking::fixed(1), 0, false, false},
    {"chunked, odd chunk sizes written one by one", Framing::chunked, Chunking::list({1, 3, 64, 5, 1000, 2, 13}), 0,
     true, false},
    {"chunked, per event with a delay", Framing::chunked, std::nullopt, 1, false, false},
    {"Content-Length", Framing::content_length, Chunking::whole(), 0, false, false},
    {"Content-Length, 11-byte writes", Framing::content_length, Chunking::fixed(11), 0, true, false},
    {"close-delimited", Framing::close, Chunking::whole(), 0, false, false},
    {"close-delimited, per event with a delay", Framing::close, std::nullopt, 1, false, false},
    {"slow: chunked, one byte per send", Framing::chunked, std::nullopt, 0, false, true},
    {"slow: Content-Length, one byte per send", Framing::content_length, Chunking::whole(), 0, false, true},
};

Response serve(const Variant& v, const std::string& file, const std::string& body) {
    Response r = Response::recorded(file, body, v.framing);
    if (v.chunking) r.chunking = *v.chunking;
    r.write_delay_ms = v.delay_ms;
    if (v.piecewise) r.stall_after_body_bytes = body.size() + 1;  // never fires, but makes the server write piece by piece
    r.slow = v.slow;
    r.slow_delay_ms = 0;
    return r;
}

/* A run of a recorded stream against manifest.json: the same outcome, and a mid-stream error ends it as
   server_error with the provider's message after the text that came before it. */
void check_outcome(const llm_test::Entry& entry, const Run& got) {
    CHECK(got.outcome == entry.expected);
    if (!entry.expected.error) {
        CHECK_MESSAGE(!got.error, code_name(got.error.code) << ": " << got.error.message);
        return;
    }
    CAPTURE(got.error.message);
    CHECK(got.error.code == ErrorCode::server_error);
    CHECK(got.error.message.find(*entry.expected.error) != std::string::npos);
}

}  // namespace

TEST_CASE("every recorded stream of every API arrives identically in every framing and in slow 1-byte mode") {
    const std::vector<llm_test::Entry>& entries = llm_test::manifest();
    CHECK(entries.size() >= 37);
    TestServer server;
    START_SERVER(server);

    std::size_t runs = 0;
    for (const llm_test::Entry& entry : entries) {
        CAPTURE(entry.file);
        const std::string body = llm_test::read_stream_file(entry.file);
        CHECK(!body.empty());
        const std::string content_type = Response::recorded(entry.file, {}).headers.front().second;
        const Run expected = replay(body, entry.api, content_type);
        check_outcome(entry, expected);
        CHECK(!expected.events.empty());
        Config config = make_config(server);
        config.api = entry.api;
        Client client(config);
        for (const Variant& v : kVariants) {
            const std::string variant = v.name;
            CAPTURE(variant);
            server.push(serve(v, entry.file, body));
            const Run got = run_chat(client);
            check_outcome(entry, got);
            CHECK(got.events == expected.events);
            CHECK(got.chunks_valid_utf8);
            CHECK(valid_utf8(got.content));
            CHECK(got.stats.attempts == 1);
            if (!entry.expected.error) CHECK(got.stats.received_bytes >= body.size());  // an error ends the reading
            CHECK(got.stats.finish_reason == expected.stats.finish_reason);
            CHECK(got.stats.has_usage == expected.stats.has_usage);
            CHECK(got.stats.usage.total_tokens == expected.stats.usage.total_tokens);
            CHECK(got.stats.chunks == expected.stats.chunks);
            ++runs;
        }
        // Really slow (1 ms after every byte) for the small streams only, to keep the file fast.
        if (body.size() <= 600) {
            Response r = Response::recorded(entry.file, body);
            r.slow = true;
            r.slow_delay_ms = 1;
            server.push(std::move(r));
            const Run got = run_chat(client);
            check_outcome(entry, got);
            CHECK(got.events == expected.events);
            CHECK(got.chunks_valid_utf8);
            ++runs;
        }
    }
    CHECK(server.request_count() == runs);
    MESSAGE("streamed " << runs << " responses over loopback");
}

TEST_CASE("a large generated stream arrives whole, split at every kind of boundary") {
    std::string content;
    const std::string body = llm_test::generate_events(2000, &content);
    CHECK(generated_content_before(body, body.size()) == content);  // the oracle agrees with the generator
    TestServer server;
    START_SERVER(server);
    Client client(make_config(server));
    const Response responses[] = {
        Response::sse(body),
        Response::sse(body, Framing::chunked, Chunking::fixed(4093)),
        Response::sse(body, Framing::content_length, Chunking::whole()),
        Response::sse(body, Framing::close, Chunking::whole()),
    };
    for (const Response& r : responses) {
        server.push(r);
        const Run got = run_chat(client);
        CHECK(!got.error);
        CHECK(got.content == content);
        CHECK(got.chunks == 2000);
        CHECK(got.chunks_valid_utf8);
        CHECK(got.stats.has_usage);
        CHECK(got.stats.usage.completion_tokens == 2000);
    }
}

/* =============================================================================================
   The request on the wire
   ============================================================================================= */

TEST_CASE("the request: method, path, headers and JSON body") {
    TestServer server;
    START_SERVER(server);
    auto sink = std::make_shared<LogSink>();
    const std::string key = "sk-test-abcdefghijklmnop0123456789";

    SUBCASE("a base URL ending in /v1, with a key, options and extra headers") {
        server.push(Response::sse(small_stream()));
        Config config = make_config(server.base_url() + "/v1", sink);
        config.api_key = key;
        config.model = "gpt-4o-mini";
        config.headers = {{"X-Custom-Thing", "value 1"}, {"HTTP-Referer", "https://example.org/app"}};
        Client client(config);
        ChatOptions options;
        options.system = "Be \"brief\".\nAlways.";
        options.temperature = 0.5;
        options.max_tokens = 64;
        options.model = "my-model";
        options.extra_json = "{\"top_p\":0.9,\"stream_options\":{\"include_usage\":true}}";
        const Run got = run_chat(client, "运动鞋 \\ 😀 tab\there", options);
        CHECK(!got.error);
        CHECK(got.content == kSmallContent);

        const auto requests = server.requests();
        ENSURE(requests.size() == 1);
        const llm_test::Request& r = requests[0];
        CHECK(r.method == "POST");
        CHECK(r.target == "/v1/chat/completions");
        CHECK(r.version == "HTTP/1.1");
        CHECK(r.header("Host") == "127.0.0.1:" + std::to_string(server.port()));
        CHECK(r.header_count("Host") == 1);
        CHECK(r.header("Content-Type") == "application/json");
        CHECK(r.header("Accept") == "text/event-stream");
        CHECK(r.header("User-Agent").find("llm_stream/" LLM_STREAM_VERSION_STRING) != std::string::npos);
        CHECK(r.header("Authorization") == "Bearer " + key);
        CHECK(r.header_count("Authorization") == 1);
        CHECK(r.header("X-Custom-Thing") == "value 1");
        CHECK(r.header("HTTP-Referer") == "https://example.org/app");
        CHECK(r.header("Content-Length") == std::to_string(r.body.size()));
        CHECK(!r.has_header("Transfer-Encoding"));

        const std::string& b = r.body;
        CAPTURE(b);
        CHECK(b.front() == '{');
        CHECK(b.back() == '}');
        CHECK(valid_utf8(b));
        CHECK(b.find("\"model\":\"my-model\"") != std::string::npos);
        CHECK(b.find("gpt-4o-mini") == std::string::npos);
        CHECK(b.find("\"stream\":true") != std::string::npos);
        CHECK(b.find("\"temperature\":0.5") != std::string::npos);
        CHECK(b.find("\"max_tokens\":64") != std::string::npos);
        CHECK(b.find("\"top_p\":0.9") != std::string::npos);
        CHECK(b.find("\"stream_options\":{\"include_usage\":true}") != std::string::npos);
        CHECK(b.find("\"messages\":[{\"role\":\"system\",\"content\":\"Be \\\"brief\\\".\\nAlways.\"},"
                     "{\"role\":\"user\",\"content\":\"运动鞋 \\\\ 😀 tab") != std::string::npos);
        // A tab may be written \t or \u0009; never raw.
        CHECK((b.find("tab\\there\"}]") != std::string::npos || b.find("tab\\u0009here\"}]") != std::string::npos));
        CHECK(b.find('\t') == std::string::npos);
        CHECK(b.find('\n') == std::string::npos);
        // The key is on the wire once, in the header, and nowhere in the logs.
        CHECK(b.find(key) == std::string::npos);
        CHECK(!sink->contains(key));
    }

    SUBCASE("no key: no Authorization header; a full .../chat/completions URL is used as is") {
        server.push(Response::sse(small_stream()));
        Config config = make_config(server.base_url() + "/compatible-mode/v1/chat/completions", sink);
        Client client(config);
        std::vector<Message> messages = {Message::system("s"), Message::user("first"), Message::assistant("reply"), Message::user("second")};
        Stream stream = client.stream_chat(messages);
        const Run got = drain(stream);
        CHECK(!got.error);
        const auto requests = server.requests();
        ENSURE(requests.size() == 1);
        CHECK(requests[0].target == "/compatible-mode/v1/chat/completions");
        CHECK(!requests[0].has_header("Authorization"));
        CHECK(requests[0].body.find("\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":"
                                    "\"first\"},{\"role\":\"assistant\",\"content\":\"reply\"},{\"role\":\"user\","
                                    "\"content\":\"second\"}]") != std::string::npos);
        CHECK(requests[0].body.find("temperature") == std::string::npos);
        CHECK(requests[0].body.find("max_tokens") == std::string::npos);
        CHECK(requests[0].body.find("\"model\":\"gpt-4o-mini\"") != std::string::npos);
    }

    SUBCASE("a bare base URL gets /chat/completions") {
        server.push(Response::sse(small_stream()));
        Client client(make_config(server.base_url() + "/", sink));
        CHECK(!run_chat(client).error);
        const auto requests = server.requests();
        ENSURE(requests.size() == 1);
        CHECK(requests[0].target == "/chat/completions");
    }

    SUBCASE("a header value with CR or LF is refused without connecting") {
        const std::vector<std::pair<std::string, std::string>> bad_headers[] = {
            {{"X-Bad", "a\r\nX-Injected: 1"}},
            {{"X-Bad", "line\nbreak"}},
            {{"X-Bad", "carriage\rreturn"}},
        };
        for (const auto& headers : bad_headers) {
            Config config = make_config(server, sink);
            config.api_key = key;
            config.headers = headers;
            Client client(config);
            const Run got = run_chat(client);
            CHECK(got.error.code == ErrorCode::invalid_config);
            CHECK(got.events.empty());
            CHECK(got.error.message.find(key) == std::string::npos);
        }
        {
            Config config = make_config(server, sink);
            config.api_key = "sk-bad\r\nX-Injected: 1";
            Client client(config);
            const Run got = run_chat(client);
            CHECK(got.error.code == ErrorCode::invalid_config);
            CHECK(got.error.message.find("X-Injected") == std::string::npos);
        }
        std::this_thread::sleep_for(50ms);
        CHECK(server.connection_count() == 0);
        CHECK(server.request_count() == 0);
    }
}

TEST_CASE("the API key never appears in a log line or an error message") {
    TestServer server;
    START_SERVER(server);
    auto sink = std::make_shared<LogSink>();
    const std::string key = "sk-proj-LEAKCHECK-0123456789abcdef";
    Config config = make_config(server, sink);
    config.api_key = key;
    config.retry.max_retries = 1;
    Client client(config);
    std::vector<std::string> messages;

    // A normal stream (info lines), a retried 503 and a 401 whose bodies quote the key, an error event
    // quoting it, a refused connection.
    server.push(Response::sse(small_stream()));
    messages.push_back(run_chat(client).error.message);
    const std::string quoting = "{\"error\":{\"message\":\"Incorrect API key provided: " + key +
                                ". You can find your API key at https://platform.openai.com/account/api-keys.\","
                                "\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}";
    server.push(Response::status(503, quoting));
    server.push(Response::status(401, quoting));
    Run got = run_chat(client);
    CHECK(got.error.code == ErrorCode::http_status);
    CHECK(got.error.http_status == 401);
    CHECK(got.error.message.find("Incorrect API key provided") != std::string::npos);
    messages.push_back(got.error.message);
    server.push(Response::sse(content_event("x") + "data: " + quoting + "\n\n"));
    got = run_chat(client);
    CHECK(got.error.code == ErrorCode::server_error);
    messages.push_back(got.error.message);
    server.push(Response::status(400, "bad request for key " + key));
    messages.push_back(run_chat(client).error.message);

    const RefusedPort gone;
    CHECK(gone.port() != 0);
    const std::uint16_t port = gone.port();
    Config refused = config;
    refused.base_url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
    Client refused_client(refused);
    messages.push_back(run_chat(refused_client).error.message);

    CHECK(sink->contains("First chunk received: "));
    CHECK(sink->contains("LLM stream completed: "));
    CHECK(sink->contains("attempt 1 failed"));
    for (const std::string& m : messages) {
        CAPTURE(m);
        CHECK(m.find(key) == std::string::npos);
        CHECK(m.find("LEAKCHECK") == std::string::npos);
    }
    CHECK(!sink->contains(key));
    CHECK(!sink->contains("LEAKCHECK"));
}

/* =============================================================================================
   Faults, one at a time
   ============================================================================================= */

TEST_CASE("connection refused: ErrorCode::connect after 1 + max_retries attempts") {
    const RefusedPort gone;
    CHECK(gone.port() != 0);
    const std::uint16_t port = gone.port();
    auto sink = std::make_shared<LogSink>();
    Config config = make_config("http://127.0.0.1:" + std::to_string(port), sink);
    config.retry.max_retries = 2;
    config.retry.initial_backoff = 5ms;
    config.connect_timeout = kLong;  // the refusal itself ends each attempt (a timeout would say timeout)
    Client client(config);
    const Run got = run_chat(client);
    CHECK(got.error.code == ErrorCode::connect);
    CHECK(got.error.http_status == 0);
    CHECK(got.stats.attempts == 3);
    CHECK(got.events.empty());
    // Each failed attempt is logged.
    CHECK(sink->contains("attempt 1 failed"));
    CHECK(sink->contains("attempt 2 failed"));
    CHECK(sink->contains("after 3 attempts"));
}

TEST_CASE("reset before the headers, then success: retried, attempts == 2") {
    TestServer server;
    START_SERVER(server);
    Response reset = Response::sse(small_stream());
    reset.reset_before_headers = true;
    server.push(reset);
    server.push(Response::sse(small_stream()));
    Client client(make_config(server));
    const Run got = run_chat(client);
    CHECK_MESSAGE(!got.error, got.error.message);
    CHECK(got.content == kSmallContent);
    CHECK(got.stats.attempts == 2);
    CHECK(server.request_count() == 2);
}

TEST_CASE("a hang-up before the headers on a new connection is retried") {
    TestServer server;
    START_SERVER(server);
    server.push(Response::hang_up());
    server.push(Response::sse(small_stream()));
    Client client(make_config(server));
    const Run got = run_chat(client);
    CHECK(!got.error);
    CHECK(got.content == kSmallContent);
    CHECK(got.stats.attempts == 2);
}

TEST_CASE("reset mid-body after content was delivered: an error, no retry, the text intact") {
    std::string content;
    const std::string body = llm_test::generate_events(400, &content);
    const std::size_t stall_at = after_event(body, 100);
    const std::size_t reset_at = after_event(body, 200) + 37;  // inside event 201
    TestServer server;
    START_SERVER(server);
    Response r = Response::sse(body);
    r.stall_after_body_bytes = stall_at;  // the client surely has the first 100 events before the reset
    r.stall_ms = 150;
    r.reset_after_body_bytes = reset_at;
    server.push(r);
    server.set_default(Response::sse(body));  // a retry would be answered, and would duplicate text
    Client client(make_config(server));
    const Run got = run_chat(client);
    CHECK(got.error);
    CHECK_MESSAGE((got.error.code == ErrorCode::io || got.error.code == ErrorCode::protocol ||
                   got.error.code == ErrorCode::connect),
                  code_name(got.error.code) << ": " << got.error.message);
    CHECK(got.stats.attempts == 1);
    CHECK(is_prefix(got.content, content));
    CHECK(got.content.size() >= generated_content_before(body, stall_at).size());
    CHECK(got.content == generated_content_before(body, reset_at));  // nothing received was lost
    std::this_thread::sleep_for(50ms);
    CHECK(server.request_count() == 1);
}

TEST_CASE("stall before the headers: read timeout, then the retry succeeds") {
    TestServer server;
    START_SERVER(server);
    Response stall = Response::sse(small_stream());
    stall.stall_before_headers_ms = kLongMs;  // only the read timeout ends attempt 1
    server.push(stall);
    server.push(Response::sse(small_stream()));
    auto sink = std::make_shared<LogSink>();
    Config config = make_config(server, sink);
    config.read_timeout = 300ms;
    Client client(config);
    const Run got = run_chat(client);
    CHECK_MESSAGE(!got.error, got.error.message);
    CHECK(got.content == kSmallContent);
    CHECK(got.stats.attempts == 2);
    CHECK(got.ms >= 290);
    CHECK(sink->contains("attempt 1 failed: no response from the server within 0.3 s"));
}

TEST_CASE("stall mid-body after content: a timeout error, no retry") {
    std::string content;
    const std::string body = llm_test::generate_events(100, &content);
    const std::size_t stall_at = after_event(body, 40) + 5;
    TestServer server;
    START_SERVER(server);
    Response r = Response::sse(body);
    r.stall_after_body_bytes = stall_at;
    r.stall_ms = kLongMs;
    server.push(r);
    server.set_default(Response::sse(body));
    Config config = make_config(server);
    config.read_timeout = 300ms;
    Client client(config);
    const Run got = run_chat(client);
    CHECK(got.error.code == ErrorCode::timeout);
    CHECK(got.stats.attempts == 1);
    CHECK(got.content == generated_content_before(body, stall_at));
    CHECK(got.ms >= 290);
    CHECK(server.request_count() == 1);
}

TEST_CASE("429 with Retry-After, then success") {
    TestServer server;
    START_SERVER(server);
    auto sink = std::make_shared<LogSink>();  // the wait chosen: "retrying in <seconds>"
    SUBCASE("Retry-After: 1 waits about a second") {
        server.push(Response::status(429, "{\"error\":{\"message\":\"Rate limit\"}}", {{"Retry-After", "1"}}));
        server.push(Response::sse(small_stream()));
        Client client(make_config(server, sink));  // 10 ms backoff: the wait can only come from the header
        const Run got = run_chat(client);
        CHECK(!got.error);
        CHECK(got.content == kSmallContent);
        CHECK(got.stats.attempts == 2);
        CHECK(got.ms >= 950);
        CHECK(got.stats.first_byte_ms >= 950);  // the last attempt's first byte, after the wait
        CHECK(sink->contains("retrying in 1.00 s"));
    }
    SUBCASE("retry-after-ms: 50 wins over the backoff and over Retry-After") {
        server.push(Response::status(429, "{}", {{"retry-after-ms", "50"}, {"Retry-After", "30"}}));
        server.push(Response::sse(small_stream()));
        Config config = make_config(server, sink);
        config.retry.initial_backoff = 3000ms;
        config.retry.max_backoff = 3000ms;
        Client client(config);
        const Run got = run_chat(client);
        CHECK(!got.error);
        CHECK(got.stats.attempts == 2);
        CHECK(got.ms >= 45);
        CHECK(sink->contains("retrying in 0.05 s"));
    }
    SUBCASE("Retry-After as an HTTP date in the past: retry at once") {
        char date[64];
        const std::time_t past = std::time(nullptr) - 30;
        std::tm tm{};
#ifdef _WIN32
        gmtime_s(&tm, &past);
#else
        gmtime_r(&past, &tm);
#endif
        std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        server.push(Response::status(429, "{}", {{"Retry-After", date}}));
        server.push(Response::sse(small_stream()));
        Config config = make_config(server, sink);
        config.retry.initial_backoff = 3000ms;
        config.retry.max_backoff = 3000ms;
        Client client(config);
        const Run got = run_chat(client);
        CHECK(!got.error);
        CHECK(got.stats.attempts == 2);
        CHECK(sink->contains("retrying in 0.00 s"));
    }
    SUBCASE("Retry-After is capped by max_retry_after") {
        server.push(Response::status(429, "{}", {{"Retry-After", "100"}}));
        server.push(Response::sse(small_stream()));
        Config config = make_config(server, sink);
        config.retry.max_retry_after = 200ms;
        Client client(config);
        const Run got = run_chat(client);
        CHECK(!got.error);
        CHECK(got.stats.attempts == 2);
        CHECK(got.ms >= 190);
        CHECK(sink->contains("retrying in 0.20 s"));
    }
}

TEST_CASE("x-should-retry overrides the status") {
    TestServer server;
    START_SERVER(server);
    SUBCASE("false on a 503: no retry") {
        server.push(Response::status(503, "{\"error\":{\"message\":\"overloaded\"}}", {{"x-should-retry", "false"}}));
        server.set_default(Response::sse(small_stream()));
        Client client(make_config(server));
        const Run got = run_chat(client);
        CHECK(got.error.code == ErrorCode::http_status);
        CHECK(got.error.http_status == 503);
        CHECK(got.stats.attempts == 1);
        std::this_thread::sleep_for(50ms);
        CHECK(server.request_count() == 1);
    }
    SUBCASE("true on a 400: retried") {
        server.push(Response::status(400, "{}", {{"x-should-retry", "true"}}));
        server.push(Response::sse(small_stream()));
        Client client(make_config(server));
        const Run got = run_chat(client);
        CHECK(!got.error);
        CHECK(got.stats.attempts == 2);
    }
}

TEST_CASE("retryable statuses are retried, others are not") {
    TestServer server;
    START_SERVER(server);
    for (int status : {408, 409, 429, 500, 502, 503, 504}) {
        CAPTURE(status);
        server.clear_queue();
        server.clear_records();
        server.push(Response::status(status, "{\"error\":{\"message\":\"try again\"}}"));
        server.push(Response::sse(small_stream()));
        Client client(make_config(server));
        const Run got = run_chat(client);
        CHECK(!got.error);
        CHECK(got.content == kSmallContent);
        CHECK(got.stats.attempts == 2);
    }
    for (int status : {400, 401, 403, 404, 422}) {
        CAPTURE(status);
        server.clear_queue();
        server.clear_records();
        server.push(Response::status(status, "{\"error\":{\"message\":\"nope " + std::to_string(status) + "\"}}"));
        server.push(Response::sse(small_stream()));
        Client client(make_config(server));
        const Run got = run_chat(client);
        CHECK(got.error.code == ErrorCode::http_status);
        CHECK(got.error.http_status == status);
        CHECK(got.error.message.find("nope " + std::to_string(status)) != std::string::npos);
        CHECK(got.stats.attempts == 1);
        CHECK(server.request_count() == 1);
    }
}

TEST_CASE("503 then success; 503 every time exhausts the retries with exponential backoff") {
    TestServer server;
    START_SERVER(server);
    SUBCASE("503 then success") {
        server.push(Response::status(503, "{\"error\":{\"message\":\"busy\"}}"));
        server.push(Response::sse(small_stream()));
        Client client(make_config(server));
        const Run got = run_chat(client);
        CHECK(!got.error);
        CHECK(got.content == kSmallContent);
        CHECK(got.stats.attempts == 2);
    }
    SUBCASE("always 503") {
        server.set_default(Response::status(503, "{\"error\":{\"message\":\"The engine is currently overloaded\"}}"));
        auto sink = std::make_shared<LogSink>();
        Config config = make_config(server, sink);
        config.retry.max_retries = 2;
        config.retry.initial_backoff = 100ms;  // waits 100 ms, then 200 ms
        config.retry.max_backoff = 1000ms;
        Client client(config);
        const Run got = run_chat(client);
        CHECK(got.error.code == ErrorCode::http_status);
        CHECK(got.error.http_status == 503);
        CHECK(got.error.message.find("The engine is currently overloaded") != std::string::npos);
        CHECK(got.error.message.find("(after 3 attempts)") != std::string::npos);
        CHECK(got.stats.attempts == 3);
        CHECK(server.request_count() == 3);
        CHECK(got.ms >= 290);
        CHECK(sink->contains("retrying in 0.10 s"));
        CHECK(sink->contains("retrying in 0.20 s"));
    }
}

TEST_CASE("500 with a plain-text body every time: retried, then reported with the body and the attempts") {
    TestServer server;
    START_SERVER(server);
    server.set_default(Response::status(500, "upstream model server is overloaded\n"));
    Client client(make_config(server));  // 3 retries
    const Run got = run_chat(client);
    CHECK(got.error.code == ErrorCode::http_status);
    CHECK(got.error.http_status == 500);
    INFO(got.error.message);
    CHECK(got.error.message.find("upstream model server is overloaded") != std::string::npos);
    CHECK(got.error.message.find("(after 4 attempts)") != std::string::npos);
    CHECK(got.events.empty());
    CHECK(got.stats.attempts == 4);
    CHECK(server.request_count() == 4);
}

TEST_CASE("401 with an OpenAI error body: http_status, the server's message, one request") {
    TestServer server;
    START_SERVER(server);
    const std::string error_body =
        "{\"error\":{\"message\":\"Incorrect API key provided: sk-abc***xyz.\",\"type\":\"invalid_request_error\","
        "\"param\":null,\"code\":\"invalid_api_key\"}}";
    for (bool chunked : {false, true}) {
        CAPTURE(chunked);
        server.clear_records();
        Response r = Response::status(401, error_body);  // Content-Length framed, connection kept open
        if (chunked) r.framing = Framing::chunked;
        server.push(r);
        server.set_default(Response::sse(small_stream()));
        Config config = make_config(server);
        config.read_timeout = kLong;  // the body can only end when its length says so
        Client client(config);
        const Run got = run_chat(client);
        CHECK(got.error.code == ErrorCode::http_status);
        CHECK(got.error.http_status == 401);
        CHECK(got.error.message.find("Incorrect API key provided: sk-abc***xyz.") != std::string::npos);
        CHECK(got.events.empty());
        CHECK(got.stats.attempts == 1);
        CHECK(got.ms < kLongMs);
        std::this_thread::sleep_for(50ms);
        CHECK(server.request_count() == 1);
    }
}

TEST_CASE("garbage instead of a status line: a protocol error") {
    TestServer server;
    START_SERVER(server);
    for (const char* garbage : {"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", "HTTP/1.1 2OO OK\r\n\r\n", "\x16\x03\x01\x02\x00\x01"}) {
        CAPTURE(garbage);
        server.set_default(Response::garbage(garbage));  // a retry, if any, gets the same
        Client client(make_config(server));
        const Run got = run_chat(client);
        CHECK_MESSAGE(got.error.code == ErrorCode::protocol, code_name(got.error.code) << ": " << got.error.message);
        CHECK(got.events.empty());
    }
}

TEST_CASE("a truncated chunked body after content: a protocol error, the text intact") {
    std::string content;
    const std::string full = llm_test::generate_events(60, &content);
    const std::string body = full.substr(0, after_event(full, 50));  // no [DONE]
    TestServer server;
    START_SERVER(server);
    Response r = Response::sse(body);
    r.truncate_chunked = true;
    server.push(r);
    server.set_default(Response::sse(full));
    Client client(make_config(server));
    const Run got = run_chat(client);
    CHECK_MESSAGE(got.error.code == ErrorCode::protocol, code_name(got.error.code) << ": " << got.error.message);
    CHECK(got.content == generated_content_before(full, body.size()));
    CHECK(got.chunks == 50);
    CHECK(got.stats.attempts == 1);
}

TEST_CASE("a Content-Length body cut short: a protocol error, the text intact") {
    std::string content;
    const std::string full = llm_test::generate_events(60, &content);
    const std::string body = full.substr(0, after_event(full, 30) + 20);
    TestServer server;
    START_SERVER(server);
    Response r = Response::sse(body, Framing::content_length, Chunking::whole());
    r.headers.emplace_back("Content-Length", std::to_string(full.size()));
    r.keep_alive = false;
    server.push(r);
    server.set_default(Response::sse(full));
    Client client(make_config(server));
    const Run got = run_chat(client);
    CHECK_MESSAGE(got.error.code == ErrorCode::protocol, code_name(got.error.code) << ": " << got.error.message);
    CHECK(got.content == generated_content_before(full, body.size()));
    CHECK(got.stats.attempts == 1);
}

TEST_CASE("an over-long header block: limit_exceeded") {
    TestServer server;
    START_SERVER(server);
    SUBCASE("a configured limit") {
        Response r = Response::sse(small_stream());
        r.long_header_bytes = 4000;
        server.set_default(r);
        Config config = make_config(server);
        config.limits.max_header_bytes = 1024;
        Client client(config);
        const Run got = run_chat(client);
        CHECK_MESSAGE(got.error.code == ErrorCode::limit_exceeded, code_name(got.error.code) << ": " << got.error.message);
        CHECK(got.events.empty());
    }
    SUBCASE("the default 64 KiB") {
        Response r = Response::sse(small_stream());
        r.long_header_bytes = 70 * 1024;
        server.set_default(r);
        Client client(make_config(server));
        const Run got = run_chat(client);
        CHECK_MESSAGE(got.error.code == ErrorCode::limit_exceeded, code_name(got.error.code) << ": " << got.error.message);
    }
    SUBCASE("just under the limit passes") {
        Response r = Response::sse(small_stream());
        r.long_header_bytes = 500;
        server.set_default(r);
        Config config = make_config(server);
        config.limits.max_header_bytes = 1024;
        Client client(config);
        const Run got = run_chat(client);
        CHECK(!got.error);
        CHECK(got.content == kSmallContent);
    }
}

TEST_CASE("an over-long SSE line: limit_exceeded, earlier text intact") {
    TestServer server;
    START_SERVER(server);
    const std::string body =
        content_event("Hello") + content_event(" world") + content_event(std::string(1000, 'x')) + kDoneTail;
    for (bool slow : {false, true}) {
        CAPTURE(slow);
        Response r = Response::sse(body);
        r.slow = slow;
        r.slow_delay_ms = 0;
        server.push(r);
        server.set_default(Response::sse(body));
        Config config = make_config(server);
        config.limits.max_line_bytes = 256;
        Client client(config);
        const Run got = run_chat(client);
        CHECK_MESSAGE(got.error.code == ErrorCode::limit_exceeded, code_name(got.error.code) << ": " << got.error.message);
        CHECK(got.content == "Hello world");
        CHECK(got.stats.attempts == 1);
    }
}

TEST_CASE("an {\"error\":...} event mid-stream: server_error with its message, earlier text intact") {
    TestServer server;
    START_SERVER(server);
    const std::string body = content_event("Hello") + content_event(" world") +
                             "data: {\"error\":{\"message\":\"Rate limit reached for gpt-4o in organization org-x\","
                             "\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n" +
                             content_event("never shown") + kDoneTail;
    server.push(Response::sse(body));
    server.set_default(Response::sse(small_stream()));
    Client client(make_config(server));
    const Run got = run_chat(client);
    CHECK(got.error.code == ErrorCode::server_error);
    CHECK(got.error.message.find("Rate limit reached for gpt-4o in organization org-x") != std::string::npos);
    CHECK(got.content == "Hello world");
    CHECK(got.stats.attempts == 1);
    std::this_thread::sleep_for(50ms);
    CHECK(server.request_count() == 1);
}

TEST_CASE("invalid UTF-8 in content is dropped; the output is valid UTF-8") {
    TestServer server;
    START_SERVER(server);
    const std::string body = content_event("ok \xff\xfe done") + content_event("\xc0\xaf!") +
                             content_event("\xed\xa0\x80-\xe4\xbd") + content_event("运动\xf8鞋") + kDoneTail;
    for (bool slow : {false, true}) {
        CAPTURE(slow);
        Response r = Response::sse(body);
        r.slow = slow;
        r.slow_delay_ms = 0;
        server.push(r);
        Client client(make_config(server));
        const Run got = run_chat(client);
        CHECK(!got.error);
        CHECK(valid_utf8(got.content));
        CHECK(got.chunks_valid_utf8);
        CHECK(got.content == "ok  done!-运动鞋");
    }
}

/* =============================================================================================
   The invariant: whatever fault strikes after content started, the delivered text is a prefix of
   the content (never duplicated), and nothing that arrived whole before the fault is lost.
   ============================================================================================= */

TEST_CASE("random faults after content started: delivered text is always an intact prefix") {
    std::string content;
    const std::string body = llm_test::generate_events(2000, &content);
    const std::size_t first_event_end = after_event(body, 1);
    TestServer server;
    START_SERVER(server);
    // A retry (which must not happen) would get the whole stream again and duplicate text.
    server.set_default(Response::sse(body));
    Config config = make_config(server);
    config.read_timeout = 300ms;
    Client client(config);
    std::mt19937 rng(20240611);
    enum Fault { reset, stall, truncate_chunked, short_content_length, close_early, fault_count };
    const char* const fault_names[] = {"reset", "stall", "truncated chunked", "short Content-Length", "early close"};
    std::size_t completed = 0;
    for (int i = 0; i < 30; ++i) {
        const Fault fault = static_cast<Fault>(i % fault_count);
        const std::size_t cut = first_event_end + rng() % (body.size() - first_event_end);
        const std::size_t piece = 1 + rng() % 3000;
        CAPTURE(i);
        CAPTURE(fault_names[fault]);
        CAPTURE(cut);
        CAPTURE(piece);
        Response r;
        switch (fault) {
        case reset:
            r = Response::sse(body, Framing::chunked, Chunking::fixed(piece));
            r.stall_after_body_bytes = cut > 5000 ? cut - 5000 : 0;  // let most of it arrive first
            r.stall_ms = 50;
            r.reset_after_body_bytes = cut;
            break;
        case stall:
            r = Response::sse(body, Framing::chunked, Chunking::fixed(piece));
            r.stall_after_body_bytes = cut;
            r.stall_ms = 2000;
            break;
        case truncate_chunked:
            r = Response::sse(body.substr(0, cut), Framing::chunked, Chunking::fixed(piece));
            r.truncate_chunked = true;
            break;
        case short_content_length:
            r = Response::sse(body.substr(0, cut), Framing::content_length, Chunking::whole());
            r.headers.emplace_back("Content-Length", std::to_string(body.size()));
            r.keep_alive = false;
            break;
        case close_early:
        case fault_count:
            r = Response::sse(body.substr(0, cut), Framing::close, Chunking::whole());
            break;
        }
        const std::size_t requests_before = server.request_count();
        server.push(r);
        const Run got = run_chat(client);
        const std::string expected = generated_content_before(body, cut);
        CHECK(is_prefix(got.content, content));
        CHECK(got.content == expected);
        CHECK(got.chunks_valid_utf8);
        CHECK(got.stats.attempts == 1);
        if (fault == close_early) {
            // A close-delimited body has no other end marker: without [DONE] it may end quietly.
            completed += got.error ? 0 : 1;
        } else {
            CHECK_MESSAGE(got.error, "the stream did not report the fault");
            if (fault == stall) CHECK(got.error.code == ErrorCode::timeout);
            if (fault == truncate_chunked || fault == short_content_length) CHECK(got.error.code == ErrorCode::protocol);
        }
        CHECK(server.request_count() == requests_before + 1);
        server.clear_queue();
    }
    MESSAGE(completed << " early-closed streams ended without an error");
}

/* =============================================================================================
   Deadline
   ============================================================================================= */

TEST_CASE("the total deadline ends the request, retries included") {
    TestServer server;
    START_SERVER(server);
    Response stalled = Response::sse(small_stream());
    stalled.stall_before_headers_ms = kLongMs;
    auto sink = std::make_shared<LogSink>();
    SUBCASE("one long wait for the headers") {
        server.set_default(stalled);
        Config config = make_config(server, sink);
        config.read_timeout = kLong;
        config.deadline = 400ms;
        Client client(config);
        const Run got = run_chat(client);
        CHECK(got.error.code == ErrorCode::timeout);
        CHECK(got.error.message.find("deadline") != std::string::npos);
        CHECK(got.ms >= 390);
        CHECK(got.stats.attempts == 1);
    }
    SUBCASE("several attempts that each time out") {
        server.set_default(stalled);
        Config config = make_config(server);
        config.read_timeout = 120ms;
        config.deadline = 400ms;
        config.retry.max_retries = 10;
        Client client(config);
        const Run got = run_chat(client);
        CHECK(got.error.code == ErrorCode::timeout);
        CHECK(got.stats.attempts >= 2);
        CHECK(got.stats.attempts <= 4);  // each lasts its 120 ms read timeout: no more fit in 400 ms
        CHECK(got.ms >= 390);
    }
    SUBCASE("a Retry-After longer than the deadline is not waited for") {
        server.set_default(Response::status(429, "{\"error\":{\"message\":\"slow down\"}}", {{"Retry-After", "5"}}));
        Config config = make_config(server, sink);
        config.deadline = 400ms;
        Client client(config);
        const Run got = run_chat(client);
        CHECK(got.error);
        CHECK((got.error.code == ErrorCode::timeout || got.error.code == ErrorCode::http_status));
        CHECK(got.stats.attempts == 1);
        CHECK(!sink->contains("retrying in"));
    }
    SUBCASE("content flowing too slowly") {
        std::string content;
        const std::string body = llm_test::generate_events(100, &content);
        server.set_default(Response::sse(body).with_delay(20));  // ~2 s in all
        Config config = make_config(server);
        config.deadline = 400ms;
        Client client(config);
        const Run got = run_chat(client);
        CHECK(got.error.code == ErrorCode::timeout);
        CHECK(got.chunks > 0);
        CHECK(is_prefix(got.content, content));
        CHECK(got.content.size() < content.size());
        CHECK(got.stats.attempts == 1);
        CHECK(got.ms >= 390);
    }
}

/* =============================================================================================
   cancel() from another thread
   ============================================================================================= */

namespace {

struct CancelOutcome {
    double returned_after_cancel_ms = -1;  // < 0: returned before cancel() was called
    Run run;
};

/* Streams on a thread (next_chunk() until the end); once `ready` says so, waits `settle`, then
   cancels from this thread and measures how long the blocked thread takes to return. The stalls and
   waits it is blocked in are kLong: a run shorter than that was ended by the cancel. */
template <class Ready>
CancelOutcome cancel_while_blocked(Stream& stream, Ready ready, std::chrono::milliseconds settle) {
    CancelOutcome out;
    std::atomic<bool> returned{false};
    std::atomic<std::size_t> chunks{0};
    Clock::time_point returned_at{};
    std::thread reader([&] {
        Run run;
        const Clock::time_point t0 = Clock::now();
        for (int i = 0; i < 1000000; ++i) {
            const std::optional<std::string_view> chunk = stream.next_chunk();
            if (!chunk) break;
            run.content.append(chunk->data(), chunk->size());
            ++run.chunks;
            chunks.fetch_add(1);
        }
        run.ms = ms_since(t0);
        returned_at = Clock::now();
        out.run = std::move(run);
        returned.store(true);
    });
    for (int i = 0; i < 400 && !ready(chunks.load()); ++i) std::this_thread::sleep_for(5ms);
    std::this_thread::sleep_for(settle);
    const bool early = returned.load();
    const Clock::time_point cancelled_at = Clock::now();
    stream.cancel();
    reader.join();
    out.run.error = stream.error();
    out.run.stats = stream.stats();
    if (!early) out.returned_after_cancel_ms = std::chrono::duration<double, std::milli>(returned_at - cancelled_at).count();
    return out;
}

}  // namespace

TEST_CASE("cancel() wakes a next_chunk() blocked on a stalled server") {
    TestServer server;
    START_SERVER(server);
    SUBCASE("waiting for the headers") {
        Response r = Response::sse(small_stream());
        r.stall_before_headers_ms = kLongMs;
        server.push(r);
        Config config = make_config(server);
        config.read_timeout = kLong;
        Client client(config);
        Stream stream = client.stream_chat("hi");
        const CancelOutcome o =
            cancel_while_blocked(stream, [&](std::size_t) { return server.request_count() >= 1; }, 100ms);
        CHECK(o.returned_after_cancel_ms >= 0);  // it was blocked until the cancel
        CHECK(o.run.ms < kLongMs);               // and did not wait out the stall
        CHECK(o.run.error.code == ErrorCode::cancelled);
        CHECK(o.run.chunks == 0);
        CHECK(o.run.stats.attempts == 1);
    }
    SUBCASE("in the middle of the body") {
        std::string content;
        const std::string body = llm_test::generate_events(100, &content);
        Response r = Response::sse(body);
        r.stall_after_body_bytes = after_event(body, 30);
        r.stall_ms = kLongMs;
        server.push(r);
        server.set_default(Response::sse(body));
        Config config = make_config(server);
        config.read_timeout = kLong;
        Client client(config);
        Stream stream = client.stream_chat("hi");
        const CancelOutcome o = cancel_while_blocked(stream, [](std::size_t chunks) { return chunks >= 30; }, 100ms);
        CHECK(o.returned_after_cancel_ms >= 0);
        CHECK(o.run.ms < kLongMs);
        CHECK(o.run.error.code == ErrorCode::cancelled);
        CHECK(o.run.content == generated_content_before(body, after_event(body, 30)));
        CHECK(o.run.stats.attempts == 1);
        CHECK(server.request_count() == 1);
    }
    SUBCASE("during a retry backoff") {
        server.set_default(Response::status(503, "{\"error\":{\"message\":\"busy\"}}"));
        Config config = make_config(server);
        config.retry.initial_backoff = kLong;
        config.retry.max_backoff = kLong;
        Client client(config);
        Stream stream = client.stream_chat("hi");
        const CancelOutcome o =
            cancel_while_blocked(stream, [&](std::size_t) { return server.responses_completed() >= 1; }, 100ms);
        CHECK(o.returned_after_cancel_ms >= 0);
        CHECK(o.run.ms < kLongMs);
        CHECK(o.run.error.code == ErrorCode::cancelled);
        std::this_thread::sleep_for(50ms);
        CHECK(server.request_count() == 1);  // no attempt after the cancel
    }
    SUBCASE("before the first call, and poll() after it") {
        server.push(Response::sse(small_stream()));
        Client client(make_config(server));
        Stream stream = client.stream_chat("hi");
        stream.cancel();
        CHECK(!stream.next_chunk());
        CHECK(stream.error().code == ErrorCode::cancelled);
        CHECK(stream.finished());
        CHECK(stream.poll() == PollStatus::failed);
        CHECK(stream.wait_info().socket == static_cast<llm_stream::socket_handle>(-1));
    }
}

/* =============================================================================================
   Non-blocking poll()
   ============================================================================================= */

namespace {

struct PollRun {
    Run run;
    std::size_t pending = 0;
    std::size_t quiet = 0;  // pending in a row with the socket found not ready: poll() returned, nothing came
    std::size_t pending_with_socket = 0;
    std::size_t pending_without_socket = 0;
    std::size_t bad_sockets = 0;       // a socket that is not an open descriptor, or no direction
    std::size_t zero_timeouts_without_socket = 0;
    bool bounded = true;
};

/* An event loop: poll(); on pending, ::poll() on wait_info()'s socket and direction for at most its
   timeout (or sleep when there is no socket). Ends with the stream, or once `quiet_enough` > 0 pending
   polls in a row found nothing to read. */
PollRun poll_loop(Stream& stream, std::size_t quiet_enough = 0) {
    PollRun p;
    const Clock::time_point t0 = Clock::now();
    int iterations = 0;
    for (;; ++iterations) {
        if (iterations > 2000000 || ms_since(t0) > 15000) {
            p.bounded = false;
            break;
        }
        const PollStatus s = stream.poll();
        if (s == PollStatus::event) {
            record(p.run, stream.current_event());
            p.quiet = 0;
            continue;
        }
        if (s == PollStatus::done || s == PollStatus::failed) break;
        ++p.pending;
        if (quiet_enough > 0 && p.quiet >= quiet_enough) break;
        const WaitInfo w = stream.wait_info();
        if (w.socket != static_cast<llm_stream::socket_handle>(-1)) {
            ++p.pending_with_socket;
            if (!socket_is_open(w.socket) || (!w.want_read && !w.want_write)) ++p.bad_sockets;
            const bool ready = socket_ready(w, static_cast<int>(std::min<long long>(w.timeout.count(), 100)));
            p.quiet = ready ? 0 : p.quiet + 1;
        } else {
            ++p.pending_without_socket;
            if (w.timeout.count() == 0) ++p.zero_timeouts_without_socket;
            std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(w.timeout, 20ms) + 1ms);
        }
    }
    p.run.ms = ms_since(t0);
    p.run.error = stream.error();
    p.run.stats = stream.stats();
    return p;
}

}  // namespace

TEST_CASE("poll() drives a whole stream without ever blocking") {
    std::string content;
    const std::string body = llm_test::generate_events(300, &content);
    const Run expected = replay(body);
    TestServer server;
    START_SERVER(server);
    Config config = make_config(server);
    config.read_timeout = 2000ms;

    SUBCASE("a server that stalls before the headers and mid-body") {
        Response r = Response::sse(body, Framing::chunked, Chunking::fixed(333));
        r.stall_before_headers_ms = 150;
        r.stall_after_body_bytes = body.size() / 2;
        r.stall_ms = 200;
        server.push(r);
        Client client(config);
        Stream stream = client.stream_chat("hi");
        CHECK(!stream.finished());
        const PollRun p = poll_loop(stream);
        CHECK(p.bounded);
        CHECK_MESSAGE(!p.run.error, p.run.error.message);
        CHECK(p.run.events == expected.events);
        CHECK(p.run.content == content);
        CHECK(p.pending > 0);
        CHECK(p.pending_with_socket == p.pending);  // connecting or reading: always a socket to wait on
        CHECK(p.bad_sockets == 0);
        CHECK(p.run.ms >= 340);  // it did wait for the server's stalls
        CHECK(stream.stats().first_byte_ms >= 150);  // the head came after the first stall
        CHECK(stream.stats().first_chunk_ms >= stream.stats().first_byte_ms);
    }
    SUBCASE("slow bytes") {
        Response r = Response::sse(small_stream());
        r.slow = true;
        r.slow_delay_ms = 1;
        server.push(r);
        Client client(config);
        Stream stream = client.stream_chat("hi");
        const PollRun p = poll_loop(stream);
        CHECK(p.bounded);
        CHECK(!p.run.error);
        CHECK(p.run.content == kSmallContent);
        CHECK(p.bad_sockets == 0);
    }
    SUBCASE("through a retry wait: no socket, a timeout to sleep for") {
        server.push(Response::status(503, "{}", {{"retry-after-ms", "150"}}));
        server.push(Response::sse(body));
        Client client(config);
        Stream stream = client.stream_chat("hi");
        const PollRun p = poll_loop(stream);
        CHECK(p.bounded);
        CHECK(!p.run.error);
        CHECK(p.run.events == expected.events);
        CHECK(p.run.stats.attempts == 2);
        CHECK(p.pending_without_socket > 0);
        CHECK(p.pending_without_socket < 50);  // it slept for the timeout, it did not spin
        CHECK(p.bad_sockets == 0);
        CHECK(p.run.ms >= 145);
    }
    SUBCASE("an idle-read timeout is reported by poll() too") {
        Response r = Response::sse(body);
        r.stall_after_body_bytes = after_event(body, 10);
        r.stall_ms = kLongMs;
        server.push(r);
        server.set_default(Response::sse(body));
        Config short_read = config;
        short_read.read_timeout = 250ms;
        Client client(short_read);
        Stream stream = client.stream_chat("hi");
        const PollRun p = poll_loop(stream);
        CHECK(p.bounded);
        CHECK(p.run.error.code == ErrorCode::timeout);
        CHECK(p.run.content == generated_content_before(body, after_event(body, 10)));
        CHECK(p.run.ms >= 240);
    }
    SUBCASE("a server that says nothing, before the headers and mid-body: poll() keeps returning") {
        Response silent = Response::sse(body);
        silent.stall_before_headers_ms = kLongMs;
        Response silent_mid_body = Response::sse(body);
        silent_mid_body.stall_after_body_bytes = after_event(body, 10);
        silent_mid_body.stall_ms = kLongMs;
        Config patient = config;
        patient.read_timeout = kLong;  // a poll() that blocked would return only after it, failed
        Client client(patient);
        for (const Response& r : {silent, silent_mid_body}) {
            const std::size_t events_before = r.stall_after_body_bytes == Response::never ? 0 : 10;
            CAPTURE(events_before);
            server.push(r);
            Stream stream = client.stream_chat("hi");
            const PollRun p = poll_loop(stream, 3);
            CHECK(p.bounded);
            CHECK(p.quiet == 3);
            CHECK(!stream.finished());
            CHECK(p.run.content == generated_content_before(body, after_event(body, events_before)));
            CHECK(p.bad_sockets == 0);
        }
    }
}

/* =============================================================================================
   Keep-alive
   ============================================================================================= */

TEST_CASE("keep-alive: the pool reuses connections, and only good ones") {
    TestServer server;
    START_SERVER(server);
    std::string content;
    const std::string body = llm_test::generate_events(50, &content);

    SUBCASE("two sequential streams share one connection") {
        server.set_default(Response::sse(body));
        Client client(make_config(server));
        const Run a = run_chat(client);
        const Run b = run_chat(client);
        CHECK(!a.error);
        CHECK(!b.error);
        CHECK(a.content == content);
        CHECK(b.content == content);
        CHECK(b.stats.attempts == 1);
        const auto requests = server.requests();
        ENSURE(requests.size() == 2);
        CHECK(requests[0].connection_id == requests[1].connection_id);
        CHECK(requests[1].index_on_connection == 1);
        CHECK(server.connection_count() == 1);
    }
    SUBCASE("a response whose end comes after [DONE] is read to it by the next stream, which counts only its own") {
        Response late = Response::sse(body);
        late.stall_after_body_bytes = body.size();  // the chunked terminator comes 100 ms after [DONE]
        late.stall_ms = 100;
        server.push(late);
        server.push(Response::sse(body));
        Client client(make_config(server));
        const Run a = run_chat(client);
        const Run b = run_chat(client);
        CHECK_MESSAGE(!a.error, a.error.message);
        CHECK_MESSAGE(!b.error, b.error.message);
        CHECK(b.content == content);
        CHECK(a.stats.events > 0);
        CHECK(b.stats.events == a.stats.events);
        CHECK(b.stats.attempts == 1);
        CHECK(server.connection_count() == 1);  // the pooled connection was read to the end, then reused
    }
    SUBCASE("a copy of the client shares the pool; Content-Length responses are reused too") {
        server.set_default(Response::sse(body, Framing::content_length, Chunking::whole()));
        Client client(make_config(server));
        Client copy = client;
        CHECK(!run_chat(client).error);
        CHECK(!run_chat(copy).error);
        CHECK(!run_chat(client).error);
        CHECK(server.connection_count() == 1);
    }
    SUBCASE("Connection: close and close-delimited responses are not reused") {
        server.push(Response::sse(body).closing());
        server.push(Response::sse(body, Framing::close, Chunking::whole()));
        server.push(Response::sse(body));
        Client client(make_config(server));
        for (int i = 0; i < 3; ++i) {
            const Run r = run_chat(client);
            CHECK(!r.error);
            CHECK(r.content == content);
        }
        const auto requests = server.requests();
        ENSURE(requests.size() == 3);
        CHECK(requests[0].connection_id != requests[1].connection_id);
        CHECK(requests[1].connection_id != requests[2].connection_id);
        CHECK(server.connection_count() == 3);
    }
    SUBCASE("a stale pooled connection is retried once for free on a new one") {
        server.push(Response::sse(body));
        server.push(Response::hang_up());
        server.push(Response::sse(body));
        Client client(make_config(server));
        const Run a = run_chat(client);
        const Run b = run_chat(client);
        CHECK(!a.error);
        CHECK_MESSAGE(!b.error, b.error.message);
        CHECK(b.content == content);
        CHECK(b.stats.attempts == 1);
        const auto requests = server.requests();
        ENSURE(requests.size() == 3);
        CHECK(requests[1].connection_id == requests[0].connection_id);  // the pooled one, hung up
        CHECK(requests[2].connection_id != requests[0].connection_id);
    }
    SUBCASE("a stale connection with no retries left is still retried for free") {
        server.push(Response::sse(body));
        server.push(Response::hang_up());
        server.push(Response::sse(body));
        Config config = make_config(server);
        config.retry.max_retries = 0;
        Client client(config);
        CHECK(!run_chat(client).error);
        const Run b = run_chat(client);
        CHECK_MESSAGE(!b.error, b.error.message);
        CHECK(b.stats.attempts == 1);
    }
    SUBCASE("a pooled connection the server closed while idle is not used") {
        TestServer::Options options;
        options.idle_timeout_ms = 100;
        TestServer closing(options);
        START_SERVER(closing);
        closing.set_default(Response::sse(body));
        Client client(make_config(closing));
        CHECK(!run_chat(client).error);
        for (int i = 0; i < 1000 && closing.open_connection_count() > 0; ++i) std::this_thread::sleep_for(10ms);
        CHECK(closing.open_connection_count() == 0);  // the server closed the idle connection
        const Run b = run_chat(client);
        CHECK(!b.error);
        CHECK(b.content == content);
        CHECK(b.stats.attempts == 1);
        CHECK(closing.connection_count() == 2);
    }
    SUBCASE("a stream abandoned mid-body does not give its connection back") {
        std::string big_content;
        const std::string big = llm_test::generate_events(2000, &big_content);
        server.push(Response::sse(big).with_delay(0));
        server.push(Response::sse(body));
        Client client(make_config(server));
        {
            Stream stream = client.stream_chat("hi");
            for (int i = 0; i < 5; ++i) CHECK(stream.next_chunk());
        }  // destroyed here, mid-body
        const Run b = run_chat(client);
        CHECK(!b.error);
        CHECK(b.content == content);
        const auto requests = server.requests();
        ENSURE(requests.size() == 2);
        CHECK(requests[0].connection_id != requests[1].connection_id);
    }
    SUBCASE("an error response does not poison the next request") {
        server.push(Response::status(400, "{\"error\":{\"message\":\"bad\"}}"));
        server.push(Response::sse(body));
        Client client(make_config(server));
        CHECK(run_chat(client).error.code == ErrorCode::http_status);
        const Run b = run_chat(client);
        CHECK(!b.error);
        CHECK(b.content == content);
    }
}

TEST_CASE("two threads stream on one Client at the same time") {
    TestServer server;
    START_SERVER(server);
    std::string content;
    const std::string body = llm_test::generate_events(300, &content);
    server.set_default(Response::sse(body, Framing::chunked, Chunking::fixed(700)).with_delay(0));
    Config config = make_config(server);
    config.max_idle_connections = 2;
    Client client(config);
    constexpr int kThreads = 2, kStreams = 6;
    std::atomic<int> ok{0};
    std::vector<std::string> failures(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kStreams; ++i) {
                Stream stream = client.stream_chat("hi");
                Run r = drain(stream);
                if (!r.error && r.content == content && r.stats.attempts == 1) ok.fetch_add(1);
                else failures[static_cast<std::size_t>(t)] += r.error.message + "; ";
            }
        });
    }
    for (auto& th : threads) th.join();
    for (const auto& f : failures) CHECK_MESSAGE(f.empty(), f);
    CHECK(ok.load() == kThreads * kStreams);
    CHECK(server.request_count() == static_cast<std::size_t>(kThreads * kStreams));
    CHECK(server.connection_count() <= static_cast<std::size_t>(kThreads * kStreams));
    MESSAGE("connections used: " << server.connection_count());
}

/* =============================================================================================
   IPv6
   ============================================================================================= */

TEST_CASE("IPv6 loopback [::1]") {
    TestServer::Options options;
    options.ipv6 = true;
    TestServer server(options);
    if (!server.start()) {
        MESSAGE("skipped: cannot listen on [::1]: " << server.error());
        return;
    }
    server.set_default(Response::sse(small_stream()));
    Client client(make_config(server));
    const Run a = run_chat(client);
    const Run b = run_chat(client);
    CHECK_MESSAGE(!a.error, a.error.message);
    CHECK(a.content == kSmallContent);
    CHECK(!b.error);
    const auto requests = server.requests();
    ENSURE(requests.size() == 2);
    CHECK(requests[0].header("Host") == "[::1]:" + std::to_string(server.port()));
    CHECK(requests[0].connection_id == requests[1].connection_id);
}
