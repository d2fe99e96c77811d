#include "llm_stream.hpp"
#include <doctest/doctest.h>
#include "support/test_server.hpp"

/* llm_stream against hostile and surprising servers on loopback (tests/support/test_server.hpp):
   a server that sends faster than the client parses (endless SSE comments, endless 100 Continue
   interim responses, endless content or empty events) must not keep one poll() call busy, nor outlast
   Config::deadline or cancel(); a 2xx reply that carries no completion is an error; a redirect says it
   is not followed; a TLS handshake that stalls says so.

   Every flood is bounded by the server too (kFloodMs, or the client going away), so a client that
   ignores its deadline fails these tests in seconds rather than hanging. The time bounds are generous
   (CI runs on a busy 2-core machine) and still far from what a client that ignores the flood shows
   (the whole kFloodMs). No REQUIRE: a failed precondition is a CHECK and a return (the tests also
   build with -fno-exceptions). */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>

using llm_stream::Client;
using llm_stream::Config;
using llm_stream::Error;
using llm_stream::ErrorCode;
using llm_stream::LogLevel;
using llm_stream::PollStatus;
using llm_stream::Stream;
using llm_stream::WaitInfo;
using llm_test::Flood;
using llm_test::Response;
using llm_test::TestServer;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// How long the server floods at most: far beyond every bound asserted below.
constexpr int kFloodMs = 8000;

constexpr Flood kFloods[] = {Flood::comments, Flood::continues, Flood::content, Flood::empty_deltas};

std::string flood_name(Flood kind) {
    switch (kind) {
    case Flood::comments: return "SSE comments and empty lines";
    case Flood::continues: return "100 Continue interim responses";
    case Flood::content: return "content events";
    case Flood::empty_deltas: return "events with an empty delta";
    }
    return "?";
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

bool contains(std::string_view haystack, std::string_view needle) { return haystack.find(needle) != std::string_view::npos; }

bool started(TestServer& server) {
    const bool ok = server.start();
    CHECK_MESSAGE(ok, "server: " << server.error());
    return ok;
}

/* A started server whose every answer is a flood of `kind`. */
bool flooding(TestServer& server, Flood kind) {
    if (!started(server)) return false;
    server.set_default(Response::flooding(kind, kFloodMs));
    return true;
}

/* No retries (a retried flood would only repeat the measurement), nothing logged. */
Config hostile_config(const std::string& base_url) {
    Config c;
    c.base_url = base_url;
    c.api_key.clear();
    c.retry.max_retries = 0;
    c.log_level = LogLevel::off;
    return c;
}

/* A configuration that would retry, quickly: to show that an outcome is not retried. */
Config retrying_config(const std::string& base_url) {
    Config c = hostile_config(base_url);
    c.retry.max_retries = 3;
    c.retry.initial_backoff = 10ms;
    c.retry.max_backoff = 20ms;
    c.retry.jitter = 0;
    return c;
}

struct Outcome {
    Error error;
    double ms = 0;
    std::size_t events = 0;
};

/* next_event() until the end; the server's own limits end a flood the client does not. `ms` counts
   from `t0`, taken before the stream was made, so that it is never less than the time the stream ran. */
Outcome drain(Stream& stream, Clock::time_point t0) {
    Outcome out;
    while (stream.next_event()) ++out.events;
    out.ms = ms_since(t0);
    out.error = stream.error();
    return out;
}

Outcome chat(const Config& config) {
    const Clock::time_point t0 = Clock::now();
    Client client(config);
    Stream stream = client.stream_chat("hi");
    return drain(stream, t0);
}

}  // namespace

/* =============================================================================================
   A flooding server
   ============================================================================================= */

namespace {

struct PollMeasure {
    double longest_ms = 0;  // the longest single poll() call
    std::size_t polls = 0;
    std::size_t received_bytes = 0;
    PollStatus last = PollStatus::pending;
    Error error;
};

/* An event loop that calls poll() for `how_long` (or until the stream ends), waiting on wait_info()'s
   socket between pending results, and times every call. */
PollMeasure poll_for(Stream& stream, std::chrono::milliseconds how_long) {
    PollMeasure m;
    const Clock::time_point t0 = Clock::now();
    while (ms_since(t0) < static_cast<double>(how_long.count())) {  // each pass is one poll() call
        const Clock::time_point before = Clock::now();
        m.last = stream.poll();
        m.longest_ms = std::max(m.longest_ms, ms_since(before));
        ++m.polls;
        if (m.last == PollStatus::done || m.last == PollStatus::failed) break;
        if (m.last == PollStatus::event) continue;
        const WaitInfo w = stream.wait_info();
        if (w.socket == static_cast<llm_stream::socket_handle>(-1)) {
            std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(w.timeout, 10ms));
            continue;
        }
        pollfd fd{};
        fd.fd = w.socket;
        fd.events = static_cast<short>((w.want_read ? POLLIN : 0) | (w.want_write ? POLLOUT : 0));
        ::poll(&fd, 1, static_cast<int>(std::min<long long>(w.timeout.count(), 10)));
    }
    m.received_bytes = stream.stats().received_bytes;
    m.error = stream.error();
    return m;
}

}  // namespace

TEST_CASE("one poll() call does bounded work while the server floods") {
    for (const Flood kind : kFloods) {
        INFO("flood: " << flood_name(kind));
        TestServer server;
        if (!flooding(server, kind)) return;
        Client client(hostile_config(server.base_url()));
        Stream stream = client.stream_chat("hi");
        const PollMeasure m = poll_for(stream, 2000ms);
        INFO("polls: " << m.polls << ", bytes received: " << m.received_bytes << ", error: " << m.error.message);
        CHECK(m.longest_ms < 500);
        // The flood really was read: the measurement is not of a client that gave up early.
        CHECK(m.received_bytes >= (1u << 20));
    }
}

TEST_CASE("Config::deadline holds while the server floods") {
    for (const Flood kind : kFloods) {
        INFO("flood: " << flood_name(kind));
        TestServer server;
        if (!flooding(server, kind)) return;
        Config config = hostile_config(server.base_url());
        config.deadline = 1000ms;  // the read timeout stays at 30 s: bytes keep coming anyway
        const Outcome got = chat(config);
        INFO("error: " << got.error.message);
        CHECK(got.error.code == ErrorCode::timeout);
        CHECK(got.ms >= 950);
        CHECK(got.ms < 5000);
    }
}

TEST_CASE("cancel() from another thread holds while the server floods") {
    for (const Flood kind : kFloods) {
        INFO("flood: " << flood_name(kind));
        TestServer server;
        if (!flooding(server, kind)) return;
        Client client(hostile_config(server.base_url()));
        Stream stream = client.stream_chat("hi");
        std::atomic<bool> returned{false};
        Clock::time_point returned_at{};
        std::thread reader([&] {
            while (stream.next_event()) {
            }
            returned_at = Clock::now();
            returned.store(true);
        });
        CHECK(server.wait_for_requests(1, 5000));
        std::this_thread::sleep_for(300ms);  // well into the flood
        const bool returned_early = returned.load();
        const Clock::time_point cancelled_at = Clock::now();
        stream.cancel();
        reader.join();
        const double after_cancel_ms = std::chrono::duration<double, std::milli>(returned_at - cancelled_at).count();
        INFO("returned " << after_cancel_ms << " ms after cancel(); error: " << stream.error().message);
        CHECK_FALSE(returned_early);
        CHECK(stream.error().code == ErrorCode::cancelled);
        CHECK(after_cancel_ms < 2000);
    }
}

/* A bounded poll() may stop with bytes already received but not yet parsed. Those must not wait for
   the socket: here a burst of bytes that give the caller nothing (more events than a poll() might
   handle at once, or interim responses) and then one content event arrive together, and the server goes
   quiet (kQuietMs) for longer than the bounds below; the event must come out at once. */

namespace {

constexpr int kQuietMs = 5000;

/* The burst as an SSE body: 9,000 empty events (63,000 bytes, one read), the event, then quiet. */
Response empty_events_then(const std::string& event) {
    std::string empty_events;
    for (int i = 0; i < 9000; ++i) empty_events += "data:\n\n";
    Response r = Response::sse(empty_events + event + "data: [DONE]\n\n", llm_test::Framing::chunked,
                               llm_test::Chunking::whole());
    r.stall_after_body_bytes = empty_events.size() + event.size();
    r.stall_ms = kQuietMs;
    return r;
}

/* The burst as 2,000 interim responses (52,000 bytes), then the head and the event, then quiet. */
Response continues_then(const std::string& event) {
    std::string bytes;
    for (int i = 0; i < 2000; ++i) bytes += "HTTP/1.1 100 Continue\r\n\r\n";
    bytes += std::string(kChunkedSseHead) + chunk_size_line(event.size()) + event + "\r\n";
    Response r = Response::garbage(bytes);
    r.stall_after_body_bytes = bytes.size();
    r.stall_ms = kQuietMs;
    return r;
}

/* poll() without ever waiting, until the first event: counts the times poll() returned pending with
   wait_info() asking to wait (a timeout > 0) and yet the next call decoded more, with no new bytes. */
std::size_t waits_asked_with_work_left(Stream& stream) {
    std::size_t wrong = 0;
    bool asked_to_wait = false;
    llm_stream::Stats before = stream.stats();
    const Clock::time_point t0 = Clock::now();
    while (ms_since(t0) < kQuietMs - 1000) {  // ends at the event, at the end, or before the quiet ends
        const PollStatus s = stream.poll();
        const llm_stream::Stats now = stream.stats();
        const bool progress = s == PollStatus::event || now.events > before.events;
        if (asked_to_wait && progress && now.received_bytes == before.received_bytes) ++wrong;
        if (s != PollStatus::pending) break;
        asked_to_wait = stream.wait_info().timeout.count() > 0;
        before = now;
    }
    return wrong;
}

}  // namespace

TEST_CASE("bytes already received are parsed at once, even when the socket then goes quiet") {
    const std::string event = Response::flood_event(Flood::content);
    for (const bool interim : {false, true}) {
        INFO("burst: " << std::string(interim ? "2,000 100 Continue responses" : "9,000 empty events"));
        TestServer server;
        if (!started(server)) return;
        server.set_default(interim ? continues_then(event) : empty_events_then(event));
        Config config = hostile_config(server.base_url());
        config.read_timeout = 10000ms;
        Client client(config);

        const Clock::time_point t0 = Clock::now();
        Stream blocking = client.stream_chat("hi");
        const llm_stream::Event* first = blocking.next_event();
        const double ms = ms_since(t0);
        INFO("error: " << blocking.error().message);
        CHECK((first && first->text == "x"));
        CHECK(ms < 2500);  // not after the server's silence

        Stream polled = client.stream_chat("hi");
        CHECK(waits_asked_with_work_left(polled) == 0);
        CHECK(polled.current_event().text == "x");
    }
}

/* =============================================================================================
   A 2xx that carries no completion; redirects
   ============================================================================================= */

TEST_CASE("a 200 text/html page (a web UI at the base URL) is a protocol error, not an empty success") {
    TestServer server;
    if (!started(server)) return;
    server.set_default(Response::status(200, "<!doctype html><html><head><title>Chat UI</title></head><body></body></html>",
                                        {{"Content-Type", "text/html; charset=utf-8"}}));
    const Outcome got = chat(retrying_config(server.base_url()));
    INFO("error: " << got.error.message);
    CHECK(got.error.code == ErrorCode::protocol);
    CHECK(contains(got.error.message, "text/html"));
    CHECK(got.events == 0);
    CHECK(server.request_count() == 1);  // not retried
}

TEST_CASE("a 204 No Content is a protocol error, not an empty success") {
    TestServer server;
    if (!started(server)) return;
    // Sent verbatim: the server's framings would add a Content-Length that a 204 must not carry.
    server.set_default(Response::garbage("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"));
    const Outcome got = chat(retrying_config(server.base_url()));
    INFO("error: " << got.error.message);
    CHECK(got.error.code == ErrorCode::protocol);
    CHECK(contains(got.error.message, "204"));
    CHECK(server.request_count() == 1);  // not retried
}

TEST_CASE("a redirect is not followed: http_status, and the message shows where it pointed") {
    const std::string location = "http://example.invalid/v1/chat/completions";
    for (const int status : {301, 302, 307, 308}) {
        CAPTURE(status);
        TestServer server;
        if (!started(server)) return;
        server.set_default(Response::status(status, "", {{"Location", location}}));
        const Outcome got = chat(retrying_config(server.base_url()));
        INFO("error: " << got.error.message);
        CHECK(got.error.code == ErrorCode::http_status);
        CHECK(got.error.http_status == status);
        CHECK(contains(lower(got.error.message), "not followed"));
        CHECK(contains(got.error.message, location));
        CHECK(server.request_count() == 1);  // not retried
    }
}

/* =============================================================================================
   A server that accepts and never says anything
   ============================================================================================= */

namespace {

/* Listens on 127.0.0.1 and never accepts: the kernel completes each TCP handshake, so a client
   connects and sends, then hears nothing at all. Closed by the destructor. */
class SilentListener {
public:
    SilentListener() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
            return;
        port_ = ntohs(a.sin_port);
    }
    ~SilentListener() {
        if (fd_ >= 0) ::close(fd_);
    }
    SilentListener(const SilentListener&) = delete;
    SilentListener& operator=(const SilentListener&) = delete;

    std::uint16_t port() const { return port_; }  // 0: it could not listen

private:
    int fd_ = -1;
    std::uint16_t port_ = 0;
};

}  // namespace

TEST_CASE("a plain HTTP server that never answers: no response from the server within the read timeout") {
    SilentListener silent;
    CHECK(silent.port() != 0);
    if (silent.port() == 0) return;
    Config config = hostile_config("http://127.0.0.1:" + std::to_string(silent.port()) + "/v1");
    config.connect_timeout = 5000ms;
    config.read_timeout = 300ms;
    const Outcome got = chat(config);
    INFO("error: " << got.error.message);
    CHECK(got.error.code == ErrorCode::timeout);
    CHECK(contains(got.error.message, "no response from the server within"));
    CHECK(got.ms < 3000);
}

#if defined(LLM_STREAM_MBEDTLS)
TEST_CASE("a TLS handshake that stalls says so") {
    SilentListener silent;
    CHECK(silent.port() != 0);
    if (silent.port() == 0) return;
    Config config = hostile_config("https://127.0.0.1:" + std::to_string(silent.port()) + "/v1");
    config.connect_timeout = 300ms;
    config.read_timeout = 5000ms;
    config.tls.verify = false;  // the handshake never gets as far as a certificate
    const Outcome got = chat(config);
    INFO("error: " << got.error.message);
    CHECK(got.error.code == ErrorCode::timeout);
    CHECK(contains(lower(got.error.message), "tls handshake"));
    CHECK(contains(lower(got.error.message), "timed out"));
    CHECK_FALSE(contains(got.error.message, "connecting timed out"));
    CHECK(got.ms < 3000);
}
#endif
