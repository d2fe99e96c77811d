// llm_test::TestServer: a scriptable HTTP/1.1 server on loopback, the independent peer the network tests
// check llm_stream against. It deliberately shares no code with llm_stream.hpp.
//
// POSIX sockets (Linux), C++17, header-only; builds with -fno-exceptions -fno-rtti (nothing here throws
// or catches). One thread accepts; each connection is served by its own thread (at most
// Options::max_connections at once). Every wait polls a wake pipe as well, and every sleep is a
// condition-variable wait, so stop() is prompt whatever the connections are doing.
//
//   llm_test::TestServer server;                       // 127.0.0.1, ephemeral port
//   server.push(llm_test::Response::status(429, "{}", {{"Retry-After", "1"}}));
//   server.push(llm_test::Response::sse(llm_test::read_stream_file("openai-gpt4o-content.sse")));
//   if (!server.start()) { /* server.error() */ }
//   ... connect to server.base_url() ...
//   CHECK(server.requests()[1].connection_id == ...);
//   server.stop();                                     // also done by the destructor
//
// Responses are taken from the queue (push) in request order, across all connections; when it is empty,
// the default (set_default) answers. See Response for the framings and the faults, and Response::flooding
// for a hostile server that sends faster than a client can parse.

#ifndef LLM_TEST_SERVER_HPP
#define LLM_TEST_SERVER_HPP

// Windows (the tests cross-built for wine) gets the script's types and the test data only: the tests there
// reach this server, run natively, through RemoteTestServer (remote_test_server.hpp).
#ifndef _WIN32
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "chunked.hpp"
#include "test_data.hpp"

namespace llm_test {

using Headers = std::vector<std::pair<std::string, std::string>>;

// How the body is delimited on the wire.
enum class Framing {
    chunked,         // Transfer-Encoding: chunked, one HTTP chunk per piece (see Chunking)
    content_length,  // Content-Length: <body size>
    close,           // neither header; the body ends when the server closes the connection
};

// How the body is cut into pieces. With chunked framing each piece is one HTTP chunk; with the other
// framings each piece is one write (which matters with write_delay_ms, slow and the faults).
struct Chunking {
    enum class Kind { whole, fixed, list, per_event, per_line };
    Kind kind = Kind::whole;
    std::size_t size = 0;            // fixed: bytes per piece (the last one may be shorter)
    std::vector<std::size_t> sizes;  // list: piece sizes, used in order and cycled; zeros are ignored

    static Chunking whole() { return Chunking{}; }
    static Chunking fixed(std::size_t n) {
        Chunking c;
        c.kind = Kind::fixed;
        c.size = n;
        return c;
    }
    static Chunking list(std::vector<std::size_t> piece_sizes) {
        Chunking c;
        c.kind = Kind::list;
        c.sizes = std::move(piece_sizes);
        return c;
    }
    // One piece per SSE event: the body is cut after each blank line ("\n\n" or "\r\n\r\n").
    static Chunking per_event() {
        Chunking c;
        c.kind = Kind::per_event;
        return c;
    }
    // One piece per NDJSON line: the body is cut after each "\n".
    static Chunking per_line() {
        Chunking c;
        c.kind = Kind::per_line;
        return c;
    }
};

// What a flooding response (Response::flooding) repeats without end.
enum class Flood {
    comments,      // ":\n\n" (an SSE comment line, then an empty line) in a 200 text/event-stream body
    continues,     // "HTTP/1.1 100 Continue\r\n\r\n": interim responses, and never a final one
    content,       // content events, each with the delta "x"
    empty_deltas,  // events with an empty delta: valid JSON that gives the caller nothing
};

// One scripted response, with its faults. Plain data: set the members directly or use the helpers.
struct Response {
    static constexpr std::size_t never = static_cast<std::size_t>(-1);

    int status_code = 200;
    std::string reason;  // empty: the standard phrase for status_code
    Headers headers;     // sent in this order after the status line; a Content-Length or Transfer-Encoding
                         // given here replaces the one the framing would add (to script lying framings)
    std::string body;    // the payload (before framing); with raw, the exact bytes sent instead of a response

    Framing framing = Framing::chunked;
    Chunking chunking;
    int write_delay_ms = 0;  // sleep before each piece of the body (the first one included)
    bool keep_alive = true;  // false: "Connection: close" and the connection is closed after the response

    // ---- faults ----
    // refuse: the connection is closed at once, nothing read, nothing sent. Consumed when it is at the front
    // of the queue as a connection is accepted; if it is instead taken for a request on a kept-alive
    // connection, that request is read (and recorded) and the connection closed without a response.
    bool refuse = false;
    bool close_before_headers = false;           // read the request, then close (FIN) without a response:
                                                 // a kept-alive connection going stale under the client
    bool reset_before_headers = false;           // read the request, then RST (SO_LINGER 0 + close)
    std::size_t reset_after_body_bytes = never;  // send the head and this many body bytes, then RST
    int stall_before_headers_ms = 0;             // read the request, sleep, then respond
    std::size_t stall_after_body_bytes = never;  // after this many body bytes, sleep stall_ms, then go on
    int stall_ms = 0;
    bool truncate_chunked = false;  // chunked: omit the terminating 0 chunk, then close the connection
    bool raw = false;               // send `body` verbatim: no status line, no headers, no framing
    std::size_t long_header_bytes = 0;   // > 0: add "X-Long-Header: " followed by this many 'a'
    std::size_t extra_header_count = 0;  // > 0: add this many "X-Pad-<i>: ..." header lines
    bool slow = false;                   // write everything one byte per send() ...
    int slow_delay_ms = 1;               // ... sleeping this long after each byte (0: no sleep)
    // "Body bytes" count payload bytes (chunk-size lines and CRLFs excluded; with raw, the raw bytes). A
    // reset waits (up to 2 s) for the bytes already written to leave the socket, so the peer receives
    // exactly that many before the RST. A threshold beyond the body never fires.

    // ---- flooding: a hostile server ----
    // `flood` not empty: after the head (with raw: instead of a response) these bytes are sent over and
    // over, as fast as the client reads them, in writes of about 64 KiB (one HTTP chunk each when
    // chunked), until the client goes away, stop() is called or flood_ms have passed; then the
    // connection is closed and a chunked body is left unterminated. `body` and the mid-body faults are
    // ignored.
    std::string flood;
    int flood_ms = 10000;

    // ---- builders ----
    // text/event-stream, "Cache-Control: no-cache"; chunked responses one chunk per event by default.
    static Response sse(std::string body, Framing framing = Framing::chunked, Chunking chunking = Chunking::per_event()) {
        Response r = streamed(std::move(body), framing, std::move(chunking));
        r.headers = {{"Content-Type", "text/event-stream"}, {"Cache-Control", "no-cache"}};
        return r;
    }
    // application/x-ndjson (Ollama's native stream); chunked responses one chunk per line by default.
    static Response ndjson(std::string body, Framing framing = Framing::chunked, Chunking chunking = Chunking::per_line()) {
        Response r = streamed(std::move(body), framing, std::move(chunking));
        r.headers = {{"Content-Type", "application/x-ndjson"}};
        return r;
    }
    // A recorded stream (tests/data/streams) as its file's name says: a .ndjson file as ndjson(), else sse().
    static Response recorded(const std::string& file_name, std::string body, Framing framing = Framing::chunked) {
        const std::string suffix = ".ndjson";
        const bool ndjson_file = file_name.size() > suffix.size() &&
                                 file_name.compare(file_name.size() - suffix.size(), suffix.size(), suffix) == 0;
        return ndjson_file ? ndjson(std::move(body), framing) : sse(std::move(body), framing);
    }
    // Any status, Content-Length framed; Content-Type application/json when the body starts with '{' or
    // '[', text/plain otherwise (unless `extra` names one). e.g. status(429, body, {{"Retry-After", "1"}}).
    static Response status(int code, std::string body = {}, Headers extra = {}) {
        Response r;
        r.status_code = code;
        r.framing = Framing::content_length;
        bool has_type = false;
        for (const auto& h : extra) has_type = has_type || equals_ignore_case(h.first, "content-type");
        if (!has_type) {
            const bool json = !body.empty() && (body[0] == '{' || body[0] == '[');
            r.headers.emplace_back("Content-Type", json ? "application/json" : "text/plain; charset=utf-8");
        }
        for (auto& h : extra) r.headers.push_back(std::move(h));
        r.body = std::move(body);
        return r;
    }
    static Response json(int code, std::string body) {
        Response r = status(code, std::move(body));
        r.headers = {{"Content-Type", "application/json"}};
        return r;
    }
    // `bytes` sent as they are instead of a response, then the connection is closed.
    static Response garbage(std::string bytes) {
        Response r;
        r.raw = true;
        r.body = std::move(bytes);
        r.keep_alive = false;
        return r;
    }
    static Response refused() {
        Response r;
        r.refuse = true;
        return r;
    }
    static Response hang_up() {
        Response r;
        r.close_before_headers = true;
        return r;
    }
    // A server that floods the client with `kind` for at most `ms` (see flood).
    static Response flooding(Flood kind, int ms = 10000) {
        Response r;
        if (kind == Flood::continues) {
            r.raw = true;
            r.keep_alive = false;
            r.flood = "HTTP/1.1 100 Continue\r\n\r\n";
        } else {
            r = sse({});
            r.flood = flood_event(kind);
        }
        r.flood_ms = ms;
        return r;
    }

    // Chainable tweaks: Response::sse(body).with_delay(20).with_header("X-A", "1")
    Response& with_header(std::string name, std::string value) {
        headers.emplace_back(std::move(name), std::move(value));
        return *this;
    }
    Response& with_framing(Framing f) {
        framing = f;
        return *this;
    }
    Response& with_chunking(Chunking c) {
        chunking = std::move(c);
        return *this;
    }
    Response& with_delay(int ms) {
        write_delay_ms = ms;
        return *this;
    }
    Response& closing() {
        keep_alive = false;
        return *this;
    }

    // The SSE bytes one repetition of a flood of `kind` sends (not for Flood::continues).
    static std::string flood_event(Flood kind) {
        if (kind == Flood::comments) return ":\n\n";
        const char* delta = kind == Flood::content ? "{\"content\":\"x\"}" : "{}";
        return std::string("data: {\"choices\":[{\"index\":0,\"delta\":") + delta + ",\"finish_reason\":null}]}\n\n";
    }

    // A 200 streaming `body` (no headers yet) for sse() and ndjson().
    static Response streamed(std::string body, Framing framing, Chunking chunking) {
        Response r;
        r.body = std::move(body);
        r.framing = framing;
        r.chunking = std::move(chunking);
        return r;
    }

    static bool equals_ignore_case(std::string_view a, std::string_view b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i) {
            unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
            if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
            if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + 32);
            if (x != y) return false;
        }
        return true;
    }
};

// A request as the server read it.
struct Request {
    std::string method, target, version;  // version: e.g. "HTTP/1.1"
    Headers headers;                       // in order, names as sent
    std::string head;                      // the request line and header lines exactly as received
    std::string body;                      // Content-Length or chunked body, decoded
    std::size_t connection_id = 0;         // 1, 2, ... in accept order
    std::size_t index_on_connection = 0;   // 0 for the first request on its connection

    // First value of that header (case-insensitive name), or "" when absent.
    std::string header(std::string_view name) const {
        for (const auto& h : headers)
            if (Response::equals_ignore_case(h.first, name)) return h.second;
        return {};
    }
    bool has_header(std::string_view name) const { return header_count(name) > 0; }
    std::size_t header_count(std::string_view name) const {
        std::size_t n = 0;
        for (const auto& h : headers)
            if (Response::equals_ignore_case(h.first, name)) ++n;
        return n;
    }
};

struct ConnectionInfo {
    std::size_t id = 0;           // as in Request::connection_id
    std::uint16_t peer_port = 0;  // the client's ephemeral port
    std::size_t requests = 0;     // requests read on it
    bool open = true;             // false once the server has closed it
};

namespace detail {

inline const char* reason_phrase(int code) {
    switch (code) {
        case 100: return "Continue";
        case 200: return "OK";
        case 201: return "Created";
        case 204: return "No Content";
        case 301: return "Moved Permanently";
        case 302: return "Found";
        case 307: return "Temporary Redirect";
        case 308: return "Permanent Redirect";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 413: return "Content Too Large";
        case 422: return "Unprocessable Content";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        default: return "Status";
    }
}

// [offset, length) pieces of `body` per `chunking`; an empty body has no pieces.
inline std::vector<std::pair<std::size_t, std::size_t>> split_pieces(const std::string& body, const Chunking& chunking) {
    std::vector<std::pair<std::size_t, std::size_t>> pieces;
    const std::size_t n = body.size();
    if (n == 0) return pieces;
    switch (chunking.kind) {
        case Chunking::Kind::whole:
            pieces.emplace_back(0, n);
            break;
        case Chunking::Kind::fixed: {
            const std::size_t step = chunking.size == 0 ? n : chunking.size;
            for (std::size_t at = 0; at < n; at += step) pieces.emplace_back(at, std::min(step, n - at));
            break;
        }
        case Chunking::Kind::list: {
            std::vector<std::size_t> sizes;
            for (std::size_t s : chunking.sizes)
                if (s > 0) sizes.push_back(s);
            if (sizes.empty()) sizes.push_back(n);
            std::size_t at = 0;
            for (std::size_t i = 0; at < n; i = (i + 1) % sizes.size()) {
                const std::size_t len = std::min(sizes[i], n - at);
                pieces.emplace_back(at, len);
                at += len;
            }
            break;
        }
        case Chunking::Kind::per_event: {
            std::size_t start = 0;
            for (std::size_t i = 0; i < n; ++i) {
                std::size_t end = 0;
                if (body[i] == '\n' && i + 1 < n && body[i + 1] == '\n') end = i + 2;
                else if (body[i] == '\n' && i + 2 < n && body[i + 1] == '\r' && body[i + 2] == '\n') end = i + 3;
                if (end != 0) {
                    pieces.emplace_back(start, end - start);
                    start = end;
                    i = end - 1;
                }
            }
            if (start < n) pieces.emplace_back(start, n - start);
            break;
        }
        case Chunking::Kind::per_line:
            for (std::size_t start = 0; start < n;) {
                const std::size_t newline = body.find('\n', start);
                const std::size_t end = newline == std::string::npos ? n : newline + 1;
                pieces.emplace_back(start, end - start);
                start = end;
            }
            break;
    }
    return pieces;
}

// A response with its pieces computed once, shared (read-only) by every request it answers.
struct Prepared {
    Response r;
    std::vector<std::pair<std::size_t, std::size_t>> pieces;
    bool fast = false;  // no delays, no slowness, no mid-body fault: `wire` is written with large writes
    std::string wire;   // fast: the whole framed body (chunk lines and terminator included); flooding:
                        // one write's worth of the flood, framed
    std::size_t body_size = 0;
};

// About 64 KiB of whole repetitions of r.flood, as one HTTP chunk when the body is chunked.
inline std::string flood_block(const Response& r) {
    std::string block;
    while (block.size() < 64 * 1024) block += r.flood;  // r.flood is not empty: each pass grows it
    if (r.raw || r.framing != Framing::chunked) return block;
    return chunk_size_line(block.size()) + block + "\r\n";
}

inline std::shared_ptr<const Prepared> prepare(Response r) {
    auto p = std::make_shared<Prepared>();
    if (!r.flood.empty()) {
        p->wire = flood_block(r);
        p->r = std::move(r);
        return p;
    }
    p->body_size = r.body.size();
    p->pieces = split_pieces(r.body, r.chunking);
    p->fast = !r.slow && r.write_delay_ms <= 0 && r.reset_after_body_bytes == Response::never &&
              r.stall_after_body_bytes == Response::never && !r.refuse && !r.reset_before_headers &&
              !r.close_before_headers;
    if (p->fast) {
        if (r.raw || r.framing != Framing::chunked) {
            p->wire = std::move(r.body);
        } else {
            std::vector<std::size_t> ends;
            for (const auto& piece : p->pieces) ends.push_back(piece.first + piece.second);
            ChunkedStyle style;
            style.last_chunk = !r.truncate_chunked;
            p->wire = chunked(r.body, ends, style);
        }
        r.body.clear();
        r.body.shrink_to_fit();
    }
    p->r = std::move(r);
    return p;
}

}  // namespace detail

#ifndef _WIN32
class TestServer {
public:
    struct Options {
        bool ipv6 = false;                  // listen on [::1] instead of 127.0.0.1
        std::uint16_t port = 0;             // 0: ephemeral
        std::size_t max_connections = 64;   // served at once; more wait in the listen backlog
        int idle_timeout_ms = 30000;        // a connection with nothing to read or unable to write this long is closed
        std::size_t max_header_bytes = 64 * 1024;        // larger request heads get 431 and a close
        std::size_t max_body_bytes = 256 * 1024 * 1024;  // larger request bodies get 413 and a close
    };

    TestServer() : TestServer(Options{}) {}
    explicit TestServer(Options options) : options_(options) {
        default_ = detail::prepare(Response::json(404, "{\"error\":{\"message\":\"llm_test: no scripted response\"}}"));
    }
    ~TestServer() { stop(); }
    TestServer(const TestServer&) = delete;
    TestServer& operator=(const TestServer&) = delete;

    // Binds and listens; false (see error()) on failure or when already running. After stop() it may be
    // started again (on a new ephemeral port unless Options::port is set); the records are kept.
    bool start() {
        if (running_) return set_error("already running");
        const int family = options_.ipv6 ? AF_INET6 : AF_INET;
        const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) return set_errno("socket");
        const int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        int rc;
        if (options_.ipv6) {
            ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
            sockaddr_in6 a{};
            a.sin6_family = AF_INET6;
            a.sin6_addr = in6addr_loopback;
            a.sin6_port = htons(options_.port);
            rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
        } else {
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            a.sin_port = htons(options_.port);
            rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
        }
        if (rc != 0 || ::listen(fd, 128) != 0) {
            set_errno(rc != 0 ? "bind" : "listen");
            ::close(fd);
            return false;
        }
        sockaddr_storage bound{};
        socklen_t len = sizeof bound;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
            set_errno("getsockname");
            ::close(fd);
            return false;
        }
        port_ = options_.ipv6 ? ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port)
                              : ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
        int pipe_fds[2];
        if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
            set_errno("pipe2");
            ::close(fd);
            return false;
        }
        listen_fd_ = fd;
        wake_read_ = pipe_fds[0];
        wake_write_ = pipe_fds[1];
        {
            std::lock_guard<std::mutex> lock(mu_);
            stopping_ = false;
        }
        running_ = true;
        accept_thread_ = std::thread([this] { accept_loop(); });
        return true;
    }

    // Closes the listening socket and every connection, joins every thread. Idempotent.
    void stop() {
        if (!running_) return;
        {
            std::lock_guard<std::mutex> lock(mu_);
            stopping_ = true;
            for (const auto& c : open_fds_) ::shutdown(c.second, SHUT_RDWR);
        }
        cv_.notify_all();
        const char byte = 'x';
        while (::write(wake_write_, &byte, 1) < 0 && errno == EINTR) {
        }
        if (accept_thread_.joinable()) accept_thread_.join();
        for (auto& w : workers_) w.second.join();
        workers_.clear();
        {
            std::lock_guard<std::mutex> lock(mu_);
            finished_.clear();
        }
        ::close(listen_fd_);
        ::close(wake_read_);
        ::close(wake_write_);
        listen_fd_ = wake_read_ = wake_write_ = -1;
        running_ = false;
    }

    bool running() const { return running_; }
    std::uint16_t port() const { return port_; }
    // "127.0.0.1" or "::1"
    std::string host() const { return options_.ipv6 ? "::1" : "127.0.0.1"; }
    // "http://127.0.0.1:PORT" or "http://[::1]:PORT"
    std::string base_url() const {
        return std::string("http://") + (options_.ipv6 ? "[::1]" : "127.0.0.1") + ":" + std::to_string(port_);
    }
    std::string error() const {
        std::lock_guard<std::mutex> lock(mu_);
        return error_;
    }

    // ---- the script (thread-safe, may be changed while running) ----
    void push(Response r) {
        auto p = detail::prepare(std::move(r));
        std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back(std::move(p));
    }
    void set_default(Response r) {
        auto p = detail::prepare(std::move(r));
        std::lock_guard<std::mutex> lock(mu_);
        default_ = std::move(p);
    }
    // With the queue empty, a request whose target starts with `prefix` gets `r` instead of the default
    // (the first matching route wins): one server answering differently by path.
    void route(std::string prefix, Response r) {
        auto p = detail::prepare(std::move(r));
        std::lock_guard<std::mutex> lock(mu_);
        routes_.emplace_back(std::move(prefix), std::move(p));
    }
    // With the queue empty, every request gets handler(request) instead of a route or the default: a server
    // that computes its answers (llm_test_server --control). Set it before start(); it is called on the
    // connection's thread, outside the server's lock.
    void answer_with(std::function<Response(const Request&)> handler) { handler_ = std::move(handler); }
    void clear_queue() {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.clear();
    }
    std::size_t queued() const {
        std::lock_guard<std::mutex> lock(mu_);
        return queue_.size();
    }

    // ---- what happened (thread-safe snapshots) ----
    std::vector<Request> requests() const {
        std::lock_guard<std::mutex> lock(mu_);
        return requests_;
    }
    std::size_t request_count() const {
        std::lock_guard<std::mutex> lock(mu_);
        return requests_.size();
    }
    std::vector<ConnectionInfo> connections() const {
        std::lock_guard<std::mutex> lock(mu_);
        return connections_;
    }
    // Connections accepted so far (refused ones included).
    std::size_t connection_count() const {
        std::lock_guard<std::mutex> lock(mu_);
        return connections_.size();
    }
    std::size_t open_connection_count() const {
        std::lock_guard<std::mutex> lock(mu_);
        return open_fds_.size();
    }
    // Responses finished (fully written, reset, refused or failed while writing).
    std::size_t responses_completed() const {
        std::lock_guard<std::mutex> lock(mu_);
        return responses_completed_;
    }
    bool wait_for_requests(std::size_t n, int timeout_ms) const {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return requests_.size() >= n; });
    }
    bool wait_for_responses(std::size_t n, int timeout_ms) const {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return responses_completed_ >= n; });
    }
    bool wait_for_connections(std::size_t n, int timeout_ms) const {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return connections_.size() >= n; });
    }
    // Forgets the recorded requests and connections and resets the counters (ids keep increasing).
    void clear_records() {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.clear();
        connections_.clear();
        responses_completed_ = 0;
    }

private:
    using Clock = std::chrono::steady_clock;
    enum class Io { ok, closed, timeout, stopped, error };

    struct Conn {
        int fd = -1;
        std::size_t id = 0;
        std::string in;  // bytes read and not consumed yet
        std::size_t requests = 0;
    };

    bool set_error(const std::string& message) {
        std::lock_guard<std::mutex> lock(mu_);
        error_ = message;
        return false;
    }
    bool set_errno(const char* what) { return set_error(std::string(what) + ": " + std::strerror(errno)); }

    bool stopping() const {
        std::lock_guard<std::mutex> lock(mu_);
        return stopping_;
    }

    // Sleeps `ms`; false when stop() interrupted it.
    bool pause(int ms) {
        std::unique_lock<std::mutex> lock(mu_);
        if (ms > 0) cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stopping_; });
        return !stopping_;
    }

    // Waits until fd is ready for `events`, the wake pipe fires or the time runs out.
    Io wait_fd(int fd, short events, int timeout_ms) {
        pollfd p[2] = {{fd, events, 0}, {wake_read_, POLLIN, 0}};
        const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
        for (int spins = 0; spins < 1000000; ++spins) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
            if (left <= 0) return Io::timeout;
            const int n = ::poll(p, 2, static_cast<int>(std::min<long long>(left, 1000)));
            if (n < 0 && errno != EINTR) return Io::error;
            if (n <= 0) continue;
            if (p[1].revents != 0) return Io::stopped;
            if (p[0].revents != 0) return Io::ok;  // ready, or an error the next call reports
        }
        return Io::timeout;
    }

    // Appends what the socket has (up to 64 KiB) to c.in, waiting at most timeout_ms (default: the idle timeout).
    Io read_some(Conn& c, int timeout_ms = -1) {
        const Io w = wait_fd(c.fd, POLLIN, timeout_ms < 0 ? options_.idle_timeout_ms : timeout_ms);
        if (w != Io::ok) return w;
        char buf[65536];
        for (int tries = 0; tries < 1000; ++tries) {
            const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
            if (n > 0) {
                c.in.append(buf, static_cast<std::size_t>(n));
                return Io::ok;
            }
            if (n == 0) return Io::closed;
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::ok;  // spurious wake-up: nothing appended
            return Io::error;
        }
        return Io::error;
    }

    // Writes everything: large writes, or one byte per send() with slow.
    bool send_all(Conn& c, const char* data, std::size_t size, bool slow = false, int slow_delay_ms = 0) {
        std::size_t done = 0;
        while (done < size) {  // ends: each pass writes, or waits with a timeout that ends the loop
            if (stopping()) return false;
            const std::size_t want = slow ? 1 : std::min<std::size_t>(size - done, 4u << 20);
            const ssize_t n = ::send(c.fd, data + done, want, MSG_NOSIGNAL);
            if (n > 0) {
                done += static_cast<std::size_t>(n);
                if (slow && slow_delay_ms > 0 && !pause(slow_delay_ms)) return false;
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (wait_fd(c.fd, POLLOUT, options_.idle_timeout_ms) != Io::ok) return false;
                continue;
            }
            return false;
        }
        return true;
    }
    bool send_all(Conn& c, const std::string& s, bool slow = false, int slow_delay_ms = 0) {
        return send_all(c, s.data(), s.size(), slow, slow_delay_ms);
    }

    // ---- connections ----

    void accept_loop() {
        for (;;) {  // ends on stop()
            reap_workers();
            {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [&] { return stopping_ || active_ < options_.max_connections; });
                if (stopping_) return;
            }
            const Io w = wait_fd(listen_fd_, POLLIN, 1000);
            if (w == Io::stopped || w == Io::error) return;
            if (w != Io::ok) continue;
            sockaddr_storage peer{};
            socklen_t len = sizeof peer;
            const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0) continue;  // EAGAIN, ECONNABORTED, EMFILE...: try again after the next poll
            const int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            ConnectionInfo info;
            info.peer_port = peer.ss_family == AF_INET6 ? ntohs(reinterpret_cast<const sockaddr_in6*>(&peer)->sin6_port)
                                                        : ntohs(reinterpret_cast<const sockaddr_in*>(&peer)->sin_port);
            bool refuse = false;
            {
                std::lock_guard<std::mutex> lock(mu_);
                info.id = ++next_connection_id_;
                if (!queue_.empty() ? queue_.front()->r.refuse : default_->r.refuse) {
                    if (!queue_.empty()) queue_.pop_front();
                    refuse = true;
                    info.open = false;
                    ++responses_completed_;
                } else {
                    open_fds_[info.id] = fd;
                    ++active_;
                }
                connections_.push_back(info);
            }
            cv_.notify_all();
            if (refuse) {
                ::close(fd);
                continue;
            }
            const std::size_t id = info.id;
            workers_.emplace(id, std::thread([this, fd, id] { serve_connection(fd, id); }));
        }
    }

    void reap_workers() {
        std::vector<std::size_t> done;
        {
            std::lock_guard<std::mutex> lock(mu_);
            done.swap(finished_);
        }
        for (std::size_t id : done) {
            auto it = workers_.find(id);
            if (it == workers_.end()) continue;
            it->second.join();
            workers_.erase(it);
        }
    }

    enum class After { keep, close_gracefully, close_now, already_closed };

    void serve_connection(int fd, std::size_t id) {
        Conn c;
        c.fd = fd;
        c.id = id;
        After after = After::close_now;
        for (;;) {  // one pass per request; ends when a response closes or the peer goes away
            Request req;
            int error_status = 0;
            if (!read_request(c, req, error_status)) {
                if (error_status != 0) {
                    write_error(c, error_status);
                    after = After::close_gracefully;
                } else {
                    after = After::close_now;
                }
                break;
            }
            std::shared_ptr<const detail::Prepared> p;
            {
                std::lock_guard<std::mutex> lock(mu_);
                req.connection_id = c.id;
                req.index_on_connection = c.requests++;
                for (auto& ci : connections_)
                    if (ci.id == c.id) ci.requests = c.requests;
                if (!queue_.empty()) {
                    p = queue_.front();
                    queue_.pop_front();
                } else if (!handler_) {
                    p = unqueued_response(req.target);
                }
                requests_.push_back(req);
            }
            if (!p) p = detail::prepare(handler_(req));
            cv_.notify_all();
            const bool client_closes = Response::equals_ignore_case(req.header("connection"), "close");
            after = respond(c, *p, client_closes || req.version == "HTTP/1.0");
            {
                std::lock_guard<std::mutex> lock(mu_);
                ++responses_completed_;
            }
            cv_.notify_all();
            if (after != After::keep) break;
        }
        finish_connection(c, after);
    }

    // The first route whose prefix starts `target`, else the default. Called with mu_ held.
    std::shared_ptr<const detail::Prepared> unqueued_response(const std::string& target) const {
        for (const auto& r : routes_)
            if (target.compare(0, r.first.size(), r.first) == 0) return r.second;
        return default_;
    }

    void finish_connection(Conn& c, After after) {
        if (after == After::close_gracefully && !stopping()) {
            // FIN first, then read until the peer closes (bounded), so unread input never turns the close
            // into an RST that would destroy the end of the response.
            ::shutdown(c.fd, SHUT_WR);
            const auto deadline = Clock::now() + std::chrono::milliseconds(2000);
            for (int reads = 0; reads < 100000; ++reads) {
                const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
                c.in.clear();
                if (left <= 0 || read_some(c, static_cast<int>(left)) != Io::ok) break;
            }
        }
        {
            std::lock_guard<std::mutex> lock(mu_);
            open_fds_.erase(c.id);
            for (auto& ci : connections_)
                if (ci.id == c.id) ci.open = false;
            --active_;
            finished_.push_back(c.id);
        }
        if (after != After::already_closed) ::close(c.fd);
        cv_.notify_all();
    }

    // RST: the bytes written so far are given up to 2 s to be delivered, then SO_LINGER 0 + close.
    void reset(Conn& c) {
        for (int i = 0; i < 2000 && !stopping(); ++i) {
            int queued = 0;
            if (::ioctl(c.fd, SIOCOUTQ, &queued) != 0 || queued <= 0) break;
            pause(1);
        }
        linger l{};
        l.l_onoff = 1;
        l.l_linger = 0;
        ::setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        {
            std::lock_guard<std::mutex> lock(mu_);
            open_fds_.erase(c.id);  // before close: stop() must never shut down a reused descriptor
        }
        ::close(c.fd);
    }

    // Reads one request into `req`. false: the connection should close (error_status != 0: answer it first).
    bool read_request(Conn& c, Request& req, int& error_status) {
        std::size_t head_end = std::string::npos, body_start = 0;
        for (int reads = 0; reads < 1000000; ++reads) {
            const std::size_t crlf = c.in.find("\r\n\r\n");
            const std::size_t lf = c.in.find("\n\n");
            if (crlf != std::string::npos && (lf == std::string::npos || crlf < lf)) {
                head_end = crlf;
                body_start = crlf + 4;
            } else if (lf != std::string::npos) {
                head_end = lf;
                body_start = lf + 2;
            }
            if (head_end != std::string::npos) break;
            if (c.in.size() > options_.max_header_bytes) {
                error_status = 431;
                return false;
            }
            if (read_some(c) != Io::ok) return false;
        }
        if (head_end == std::string::npos) return false;
        if (head_end > options_.max_header_bytes) {
            error_status = 431;
            return false;
        }
        req.head.assign(c.in, 0, body_start);
        if (!parse_head(std::string_view(c.in).substr(0, head_end), req)) {
            error_status = 400;
            return false;
        }
        c.in.erase(0, body_start);

        const std::string te = req.header("transfer-encoding");
        const std::string cl = req.header("content-length");
        if (Response::equals_ignore_case(req.header("expect"), "100-continue") && (!cl.empty() || !te.empty()) &&
            !send_all(c, std::string("HTTP/1.1 100 Continue\r\n\r\n")))
            return false;
        if (!te.empty()) {
            if (!Response::equals_ignore_case(te, "chunked")) {
                error_status = 501;
                return false;
            }
            for (int reads = 0; reads < 1000000; ++reads) {
                std::size_t consumed = 0;
                const int r = decode_chunked(c.in, req.body, consumed);
                if (r > 0) {
                    c.in.erase(0, consumed);
                    return true;
                }
                if (r < 0) {
                    error_status = 400;
                    return false;
                }
                if (c.in.size() > options_.max_body_bytes) {
                    error_status = 413;
                    return false;
                }
                if (read_some(c) != Io::ok) return false;
            }
            return false;
        }
        if (!cl.empty()) {
            std::size_t length = 0;
            for (char ch : cl) {
                if (ch < '0' || ch > '9' || length > options_.max_body_bytes) {
                    error_status = ch < '0' || ch > '9' ? 400 : 413;
                    return false;
                }
                length = length * 10 + static_cast<std::size_t>(ch - '0');
            }
            if (length > options_.max_body_bytes) {
                error_status = 413;
                return false;
            }
            for (int reads = 0; c.in.size() < length && reads < 1000000; ++reads)
                if (read_some(c) != Io::ok) return false;
            if (c.in.size() < length) return false;
            req.body.assign(c.in, 0, length);
            c.in.erase(0, length);
        }
        return true;
    }

    static bool parse_head(std::string_view head, Request& req) {
        std::vector<std::string_view> lines;
        std::size_t start = 0;
        while (start <= head.size()) {  // one pass per line; start strictly increases
            std::size_t nl = head.find('\n', start);
            if (nl == std::string_view::npos) nl = head.size();
            std::string_view line = head.substr(start, nl - start);
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            lines.push_back(line);
            start = nl + 1;
        }
        if (lines.empty()) return false;
        const std::string_view first = lines[0];
        const std::size_t sp1 = first.find(' ');
        const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : first.find(' ', sp1 + 1);
        if (sp1 == 0 || sp2 == std::string_view::npos || sp2 == sp1 + 1) return false;
        req.method = std::string(first.substr(0, sp1));
        req.target = std::string(first.substr(sp1 + 1, sp2 - sp1 - 1));
        req.version = std::string(first.substr(sp2 + 1));
        if (req.version.compare(0, 5, "HTTP/") != 0) return false;
        for (std::size_t i = 1; i < lines.size(); ++i) {
            const std::string_view line = lines[i];
            const std::size_t colon = line.find(':');
            if (colon == 0 || colon == std::string_view::npos) return false;
            const std::string_view name = line.substr(0, colon);
            if (name.find_first_of(" \t") != std::string_view::npos) return false;
            std::string_view value = line.substr(colon + 1);
            while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
            while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
            req.headers.emplace_back(std::string(name), std::string(value));
        }
        return true;
    }

    // Decodes a whole chunked body from the start of `in`: 1 done (consumed set), 0 need more, -1 malformed.
    static int decode_chunked(const std::string& in, std::string& body, std::size_t& consumed) {
        std::string out;
        std::size_t pos = 0;
        for (;;) {  // one pass per chunk; pos strictly increases
            const std::size_t eol = in.find("\r\n", pos);
            if (eol == std::string::npos) return in.size() - pos > 1024 ? -1 : 0;
            std::size_t size = 0, digits = 0;
            for (std::size_t i = pos; i < eol && in[i] != ';'; ++i, ++digits) {
                const char ch = in[i];
                int v = -1;
                if (ch >= '0' && ch <= '9') v = ch - '0';
                else if (ch >= 'a' && ch <= 'f') v = ch - 'a' + 10;
                else if (ch >= 'A' && ch <= 'F') v = ch - 'A' + 10;
                if (v < 0 || digits >= 15) return -1;
                size = size * 16 + static_cast<std::size_t>(v);
            }
            if (digits == 0) return -1;
            pos = eol + 2;
            if (size == 0) {
                for (;;) {  // trailer lines up to the empty one
                    const std::size_t end = in.find("\r\n", pos);
                    if (end == std::string::npos) return 0;
                    const bool empty = end == pos;
                    pos = end + 2;
                    if (empty) break;
                }
                body = std::move(out);
                consumed = pos;
                return 1;
            }
            if (in.size() < pos + size + 2) return 0;
            if (in.compare(pos + size, 2, "\r\n") != 0) return -1;
            out.append(in, pos, size);
            pos += size + 2;
        }
    }

    void write_error(Conn& c, int status) {
        const std::string body = std::string("{\"error\":{\"message\":\"llm_test: request rejected (") +
                                 std::to_string(status) + ")\"}}";
        const std::string msg = "HTTP/1.1 " + std::to_string(status) + " " + detail::reason_phrase(status) +
                                "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                                "\r\nConnection: close\r\n\r\n" + body;
        send_all(c, msg);
    }

    static std::string build_head(const detail::Prepared& p, bool closing) {
        const Response& r = p.r;
        std::string h = "HTTP/1.1 " + std::to_string(r.status_code) + " " +
                        (r.reason.empty() ? std::string(detail::reason_phrase(r.status_code)) : r.reason) + "\r\n";
        bool has_length = false, has_te = false, has_connection = false;
        for (const auto& kv : r.headers) {
            has_length = has_length || Response::equals_ignore_case(kv.first, "content-length");
            has_te = has_te || Response::equals_ignore_case(kv.first, "transfer-encoding");
            has_connection = has_connection || Response::equals_ignore_case(kv.first, "connection");
            h += kv.first + ": " + kv.second + "\r\n";
        }
        if (r.framing == Framing::chunked && !has_length && !has_te) h += "Transfer-Encoding: chunked\r\n";
        if (r.framing == Framing::content_length && !has_length && !has_te)
            h += "Content-Length: " + std::to_string(p.body_size) + "\r\n";
        if (closing && !has_connection) h += "Connection: close\r\n";
        if (r.long_header_bytes > 0) h += "X-Long-Header: " + std::string(r.long_header_bytes, 'a') + "\r\n";
        for (std::size_t i = 0; i < r.extra_header_count; ++i)
            h += "X-Pad-" + std::to_string(i) + ": padding padding padding padding\r\n";
        h += "\r\n";
        return h;
    }

    // Body payload writer that applies the mid-body faults at exact payload offsets.
    enum class Sent { ok, reset, failed };
    struct BodyWriter {
        TestServer& server;
        Conn& c;
        const Response& r;
        std::size_t sent = 0;
        bool stalled = false;

        Sent payload(const char* data, std::size_t size) {
            for (;;) {  // each pass writes at least one byte or returns
                if (sent == r.reset_after_body_bytes) {
                    server.reset(c);
                    return Sent::reset;
                }
                if (!stalled && sent == r.stall_after_body_bytes) {
                    stalled = true;
                    if (!server.pause(r.stall_ms)) return Sent::failed;
                }
                if (size == 0) return Sent::ok;
                std::size_t n = size;
                if (r.reset_after_body_bytes != Response::never && r.reset_after_body_bytes > sent)
                    n = std::min(n, r.reset_after_body_bytes - sent);
                if (!stalled && r.stall_after_body_bytes != Response::never && r.stall_after_body_bytes > sent)
                    n = std::min(n, r.stall_after_body_bytes - sent);
                if (!server.send_all(c, data, n, r.slow, r.slow_delay_ms)) return Sent::failed;
                data += n;
                size -= n;
                sent += n;
            }
        }
    };

    After respond(Conn& c, const detail::Prepared& p, bool client_closes) {
        const Response& r = p.r;
        if (r.refuse) return After::close_now;
        if (r.stall_before_headers_ms > 0 && !pause(r.stall_before_headers_ms)) return After::close_now;
        if (r.close_before_headers) return After::close_now;
        if (r.reset_before_headers) {
            reset(c);
            return After::already_closed;
        }
        const bool closing = client_closes || !r.keep_alive || r.framing == Framing::close || r.truncate_chunked;
        const After done = closing ? After::close_gracefully : After::keep;
        if (!r.raw && !send_all(c, build_head(p, closing), r.slow, r.slow_delay_ms)) return After::close_now;
        if (!r.flood.empty()) return flood(c, p);
        if (p.fast) return send_all(c, p.wire) ? done : After::close_now;

        const bool chunked = !r.raw && r.framing == Framing::chunked;
        BodyWriter w{*this, c, r};
        Sent s = w.payload(nullptr, 0);  // faults at offset 0 fire before any body byte
        for (std::size_t i = 0; s == Sent::ok && i < p.pieces.size(); ++i) {
            const auto& piece = p.pieces[i];
            if (r.write_delay_ms > 0 && !pause(r.write_delay_ms)) return After::close_now;
            if (chunked && !send_all(c, chunk_size_line(piece.second), r.slow, r.slow_delay_ms))
                return After::close_now;
            s = w.payload(r.body.data() + piece.first, piece.second);
            if (s == Sent::ok && chunked && !send_all(c, std::string("\r\n"), r.slow, r.slow_delay_ms))
                return After::close_now;
        }
        if (s == Sent::reset) return After::already_closed;
        if (s == Sent::failed) return After::close_now;
        if (chunked && !r.truncate_chunked && !send_all(c, std::string(kLastChunk), r.slow, r.slow_delay_ms))
            return After::close_now;
        return done;
    }

    // Writes p.wire again and again, as fast as the client reads, until the client goes away, stop() (it
    // shuts the socket down) or p.r.flood_ms have passed; the first write is made whatever the clock says.
    // Partial writes resume where they stopped, so the client sees whole repetitions.
    After flood(Conn& c, const detail::Prepared& p) {
        const auto until = Clock::now() + std::chrono::milliseconds(p.r.flood_ms);
        std::size_t at = 0;
        for (;;) {  // ends: the time limit, a failed write or stop()
            const ssize_t n = ::send(c.fd, p.wire.data() + at, p.wire.size() - at, MSG_NOSIGNAL);
            const int error = n < 0 ? errno : 0;
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
            if (left <= 0) return After::close_now;
            if (n > 0) {
                at = (at + static_cast<std::size_t>(n)) % p.wire.size();
            } else if (error == EAGAIN || error == EWOULDBLOCK) {
                const Io w = wait_fd(c.fd, POLLOUT, static_cast<int>(left));
                if (w != Io::ok && w != Io::timeout) return After::close_now;  // a timeout ends it above
            } else if (error != EINTR) {
                return After::close_now;
            }
        }
    }

    Options options_;
    std::atomic<bool> running_{false};
    std::uint16_t port_ = 0;
    int listen_fd_ = -1, wake_read_ = -1, wake_write_ = -1;
    std::thread accept_thread_;
    std::map<std::size_t, std::thread> workers_;  // accept thread (and stop() after joining it) only

    mutable std::mutex mu_;
    mutable std::condition_variable cv_;
    bool stopping_ = false;
    std::string error_;
    std::deque<std::shared_ptr<const detail::Prepared>> queue_;
    std::shared_ptr<const detail::Prepared> default_;
    std::vector<std::pair<std::string, std::shared_ptr<const detail::Prepared>>> routes_;  // see route()
    std::function<Response(const Request&)> handler_;                                      // see answer_with()
    std::vector<Request> requests_;
    std::vector<ConnectionInfo> connections_;
    std::map<std::size_t, int> open_fds_;
    std::vector<std::size_t> finished_;
    std::size_t active_ = 0;
    std::size_t next_connection_id_ = 0;
    std::size_t responses_completed_ = 0;
};

#endif  // _WIN32

// ---- test data ----

// tests/data/streams/NAME (".sse" appended when NAME alone is not found); "" when it cannot be read.
inline std::string read_stream_file(const std::string& name) {
    const std::string dir = std::string(LLM_STREAM_TEST_DATA_DIR) + "/streams/";
    std::string out;
    if (read_file(dir + name, out) || read_file(dir + name + ".sse", out)) return out;
    return {};
}

// A large realistic OpenAI stream body: `n` chat.completion.chunk content events (the first also carries
// "role":"assistant"), each delta 2-8 characters (code points) mixing ASCII words and Chinese, with an
// occasional escaped newline or quote; then a finish_reason "stop" event, a usage event (choices []) and
// "data: [DONE]". Every event is "data: <json>\n\n". Deterministic for a given seed (std::mt19937, no
// distributions). When `content` is given it receives the concatenated delta text a client must deliver.
inline std::string generate_events(std::size_t n, std::string* content = nullptr, std::uint32_t seed = 42) {
    static const char* const words[] = {" the", " model", " stream", "ing", " token", "s", " fast", " light",
                                        ",", " and", " data", " is", " well", ".", " C++", " 42",
                                        " shoe", " run", " test", " ok"};
    static const char* const hanzi[] = {"运", "动", "鞋", "轻", "便", "透", "气", "适", "合", "日", "常", "穿",
                                        "着", "的", "一", "是", "在", "不", "了", "有", "和", "人", "这", "中",
                                        "大", "为", "上", "个", "我", "们", "，", "。"};
    const std::size_t n_words = sizeof words / sizeof words[0];
    const std::size_t n_hanzi = sizeof hanzi / sizeof hanzi[0];
    std::mt19937 rng(seed);
    const std::string prefix =
        "data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\","
        "\"created\":1741569952,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\","
        "\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[{\"index\":0,\"delta\":{";
    const std::string suffix = "},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n";
    std::string out;
    out.reserve(n * (prefix.size() + suffix.size() + 40) + 1024);
    if (content) content->clear();
    std::string delta, escaped;
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t want = 2 + rng() % 7;  // code points
        std::size_t have = 0;
        delta.clear();
        while (have < want) {  // adds at least one code point per pass
            const std::uint32_t pick = rng() % 64;
            if (pick == 0) {
                delta += '\n';
                ++have;
            } else if (pick == 1) {
                delta += '"';
                ++have;
            } else if (pick < 32) {
                delta += hanzi[rng() % n_hanzi];
                ++have;
            } else {
                const char* w = words[rng() % n_words];
                for (; *w && have < want; ++w, ++have) delta += *w;
            }
        }
        escaped.clear();
        for (char ch : delta) {
            if (ch == '\n') escaped += "\\n";
            else if (ch == '"') escaped += "\\\"";
            else if (ch == '\\') escaped += "\\\\";
            else escaped += ch;
        }
        out += prefix;
        if (i == 0) out += "\"role\":\"assistant\",";
        out += "\"content\":\"";
        out += escaped;
        out += '"';
        out += suffix;
        if (content) *content += delta;
    }
    out += prefix;
    out += "},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
    out += "data: {\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\","
           "\"created\":1741569952,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\","
           "\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,"
           "\"completion_tokens\":" +
           std::to_string(n) + ",\"total_tokens\":" + std::to_string(n + 12) +
           ",\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},"
           "\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,"
           "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n";
    out += "data: [DONE]\n\n";
    return out;
}

}  // namespace llm_test

#endif  // LLM_TEST_SERVER_HPP
