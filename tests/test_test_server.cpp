#include "support/test_server.hpp"
#include "support/remote_test_server.hpp"
#include "support/test_server_control.hpp"
#include "support/test_server_wire.hpp"
#include <doctest/doctest.h>

/* Tests of llm_test::TestServer (tests/support/test_server.hpp), the loopback HTTP/1.1 server the network
   tests run llm_stream against. The client side here is written with raw sockets in this file, so the
   server is checked by code that shares nothing with it or with llm_stream: framings round-trip, keep-alive
   and pipelining, request recording, every scripted fault, concurrency and a prompt stop(). */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

using llm_test::Chunking;
using llm_test::Framing;
using llm_test::Response;
using llm_test::TestServer;

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

// ---- a raw client ----

class Client {
public:
    Client() = default;
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;
    ~Client() { close(); }

    bool connect(std::uint16_t port, bool ipv6 = false) {
        close();
        fd_ = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) return false;
        int rc;
        if (ipv6) {
            sockaddr_in6 a{};
            a.sin6_family = AF_INET6;
            a.sin6_addr = in6addr_loopback;
            a.sin6_port = htons(port);
            rc = ::connect(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a);
        } else {
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            a.sin_port = htons(port);
            rc = ::connect(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a);
        }
        if (rc != 0) close();
        return fd_ >= 0;
    }

    bool send(std::string_view data) {
        std::size_t done = 0;
        for (int tries = 0; done < data.size() && tries < 100000; ++tries) {
            const ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
            if (n > 0) done += static_cast<std::size_t>(n);
            else if (n < 0 && errno != EINTR) return false;
        }
        return done == data.size();
    }

    struct Received {
        std::string bytes;
        bool eof = false;        // orderly close by the server
        int error = 0;           // errno of a failed recv (ECONNRESET...)
        bool timed_out = false;  // neither within the time limit
        std::vector<std::pair<double, std::size_t>> arrivals;  // (ms since the read started, total bytes so far)
    };

    // Reads until EOF, an error, `done(bytes)` or timeout_ms.
    Received read(int timeout_ms, const std::function<bool(const std::string&)>& done = nullptr) {
        Received r;
        const auto t0 = Clock::now();
        char buf[65536];
        for (;;) {  // ends on EOF, error, done or the time limit
            if (done && done(r.bytes)) return r;
            const double left = timeout_ms - ms_since(t0);
            if (left <= 0) {
                r.timed_out = true;
                return r;
            }
            pollfd p{fd_, POLLIN, 0};
            const int pr = ::poll(&p, 1, static_cast<int>(left) + 1);
            if (pr < 0 && errno == EINTR) continue;
            if (pr <= 0) continue;
            const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n > 0) {
                r.bytes.append(buf, static_cast<std::size_t>(n));
                r.arrivals.emplace_back(ms_since(t0), r.bytes.size());
            } else if (n == 0) {
                r.eof = true;
                return r;
            } else if (errno != EINTR) {
                r.error = errno;
                return r;
            }
        }
    }

    // True when nothing (not even EOF) arrives within ms.
    bool silent_for(int ms) {
        pollfd p{fd_, POLLIN, 0};
        return ::poll(&p, 1, ms) == 0;
    }

    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    int fd() const { return fd_; }

private:
    int fd_ = -1;
};

// ---- an independent HTTP/1.1 response parser ----

struct Parsed {
    bool has_head = false;
    int status = 0;
    std::string status_line;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string head;                      // status line and header lines, CRLFs included
    std::string body;                      // decoded so far (a partial chunk included)
    std::vector<std::size_t> chunk_sizes;  // as announced, the terminating 0 excluded
    bool chunked = false;
    bool complete = false;  // the message ended as its framing says
    bool bad = false;
    std::size_t size = 0;  // bytes of this message when complete

    std::string header(std::string_view name) const {
        for (const auto& h : headers)
            if (lower(h.first) == lower(name)) return h.second;
        return {};
    }
    std::size_t header_count(std::string_view name) const {
        std::size_t n = 0;
        for (const auto& h : headers) n += lower(h.first) == lower(name) ? 1 : 0;
        return n;
    }
};

Parsed parse_response(std::string_view in, bool eof) {
    Parsed p;
    const std::size_t head_end = in.find("\r\n\r\n");
    if (head_end == std::string_view::npos) return p;
    p.has_head = true;
    p.head = std::string(in.substr(0, head_end + 4));
    std::size_t pos = 0;
    bool first = true;
    while (pos < head_end) {
        std::size_t eol = in.find("\r\n", pos);
        const std::string_view line = in.substr(pos, eol - pos);
        pos = eol + 2;
        if (first) {
            p.status_line = std::string(line);
            if (line.substr(0, 9) != "HTTP/1.1 " || line.size() < 12) {
                p.bad = true;
                return p;
            }
            p.status = std::atoi(std::string(line.substr(9, 3)).c_str());
            first = false;
            continue;
        }
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) {
            p.bad = true;
            return p;
        }
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        p.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
    }
    pos = head_end + 4;
    if (lower(p.header("transfer-encoding")) == "chunked") {
        p.chunked = true;
        for (;;) {
            const std::size_t eol = in.find("\r\n", pos);
            if (eol == std::string_view::npos) return p;
            const std::size_t size = std::strtoul(std::string(in.substr(pos, eol - pos)).c_str(), nullptr, 16);
            pos = eol + 2;
            if (size == 0) {
                if (in.substr(pos, 2) != "\r\n") return p;
                p.complete = true;
                p.size = pos + 2;
                return p;
            }
            p.chunk_sizes.push_back(size);
            const std::size_t have = std::min(size, in.size() - pos);
            p.body.append(in.substr(pos, have));
            if (have < size || in.size() < pos + size + 2) return p;
            if (in.substr(pos + size, 2) != "\r\n") {
                p.bad = true;
                return p;
            }
            pos += size + 2;
        }
    }
    const std::string cl = p.header("content-length");
    if (!cl.empty()) {
        const std::size_t n = std::strtoul(cl.c_str(), nullptr, 10);
        p.body = std::string(in.substr(pos, std::min(n, in.size() - pos)));
        p.complete = p.body.size() == n;
        p.size = pos + n;
        return p;
    }
    p.body = std::string(in.substr(pos));
    p.complete = eof;
    p.size = in.size();
    return p;
}

bool one_response_complete(const std::string& bytes) { return parse_response(bytes, false).complete; }

std::string post(const std::string& target, const std::string& body, const std::string& extra_headers = "") {
    return "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + extra_headers +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// The body cut after each blank line, independently of the server's own splitter.
std::vector<std::string> events_of(const std::string& body) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (;;) {
        const std::size_t a = body.find("\n\n", start);
        const std::size_t b = body.find("\n\r\n", start);
        if (a == std::string::npos && b == std::string::npos) break;
        const std::size_t end = (b == std::string::npos || (a != std::string::npos && a < b)) ? a + 2 : b + 3;
        out.push_back(body.substr(start, end - start));
        start = end;
    }
    if (start < body.size()) out.push_back(body.substr(start));
    return out;
}

// One request on a fresh connection; the response read until it is complete (or the server closes).
template <class Server>  // TestServer or RemoteTestServer
Parsed round_trip(Server& server, const std::string& request, Client::Received* raw = nullptr) {
    Client c;
    REQUIRE(c.connect(server.port()));
    REQUIRE(c.send(request));
    Client::Received r = c.read(10000, one_response_complete);
    Parsed p = parse_response(r.bytes, r.eof);
    if (raw) *raw = r;
    return p;
}

const char* const kStream = "openai-gpt4o-content.sse";

}  // namespace

TEST_CASE("start, port, stop: idempotent, restartable, destructor stops") {
    TestServer server;
    CHECK(server.port() == 0);
    REQUIRE(server.start());
    CHECK(server.running());
    CHECK(server.port() != 0);
    CHECK(server.base_url() == "http://127.0.0.1:" + std::to_string(server.port()));
    CHECK_FALSE(server.start());  // already running
    CHECK(server.error() == "already running");
    server.stop();
    server.stop();
    CHECK_FALSE(server.running());
    Client c;
    CHECK_FALSE(c.connect(server.port()));  // the port no longer listens: a real refused connection

    REQUIRE(server.start());  // again, on a new port
    server.push(Response::json(200, "{}"));
    const Parsed p = round_trip(server, post("/x", "{}"));
    CHECK(p.status == 200);
    {
        TestServer scoped;
        REQUIRE(scoped.start());
        Client idle;
        REQUIRE(idle.connect(scoped.port()));
        CHECK(scoped.wait_for_connections(1, 5000));
    }  // destructor: stops with a connection open
}

TEST_CASE("IPv6 loopback [::1]") {
    TestServer::Options o;
    o.ipv6 = true;
    TestServer server(o);
    if (!server.start()) {
        MESSAGE("no IPv6 loopback here, skipped: " << server.error());
        return;
    }
    CHECK(server.host() == "::1");
    CHECK(server.base_url() == "http://[::1]:" + std::to_string(server.port()));
    server.set_default(Response::sse("data: {\"a\":1}\n\ndata: [DONE]\n\n"));
    Client c;
    REQUIRE(c.connect(server.port(), true));
    REQUIRE(c.send(post("/v1/chat/completions", "{}")));
    const Client::Received r = c.read(5000, one_response_complete);
    const Parsed p = parse_response(r.bytes, r.eof);
    CHECK(p.complete);
    CHECK(p.body == "data: {\"a\":1}\n\ndata: [DONE]\n\n");
    CHECK(p.chunk_sizes.size() == 2);
}

TEST_CASE("scripted chunked SSE response round-trips, one chunk per event") {
    const std::string stream = llm_test::read_stream_file(kStream);
    REQUIRE(!stream.empty());
    TestServer server;
    REQUIRE(server.start());
    server.push(Response::sse(stream));
    Client::Received raw;
    const Parsed p = round_trip(server, post("/v1/chat/completions", "{\"stream\":true}"), &raw);
    CHECK(p.status == 200);
    CHECK(p.status_line == "HTTP/1.1 200 OK");
    CHECK(p.chunked);
    CHECK(p.complete);
    CHECK(p.header("content-type") == "text/event-stream");
    CHECK(p.header("cache-control") == "no-cache");
    CHECK(p.header_count("content-length") == 0);
    CHECK(p.body == stream);
    const std::vector<std::string> events = events_of(stream);
    REQUIRE(p.chunk_sizes.size() == events.size());
    for (std::size_t i = 0; i < events.size(); ++i) CHECK(p.chunk_sizes[i] == events[i].size());
    CHECK(raw.bytes.size() == p.size);  // nothing after the terminating chunk

    SUBCASE("CRLF events are split too") {
        const std::string crlf = llm_test::read_stream_file("openrouter-comments-crlf.sse");
        REQUIRE(!crlf.empty());
        server.push(Response::sse(crlf));
        const Parsed q = round_trip(server, post("/v1/chat/completions", "{}"));
        CHECK(q.body == crlf);
        CHECK(q.chunk_sizes.size() == events_of(crlf).size());
        CHECK(q.chunk_sizes.size() > 2);
    }
}

TEST_CASE("chunk sizes: fixed, list (cycled), whole, empty body") {
    const std::string body = "abcdefghijklmnopqrstuvwxyz0123";  // 30 bytes
    TestServer server;
    REQUIRE(server.start());

    server.push(Response::sse(body, Framing::chunked, Chunking::fixed(7)));
    Parsed p = round_trip(server, post("/", "{}"));
    CHECK(p.body == body);
    CHECK(p.chunk_sizes == std::vector<std::size_t>{7, 7, 7, 7, 2});

    server.push(Response::sse(body, Framing::chunked, Chunking::list({1, 0, 2, 3})));
    p = round_trip(server, post("/", "{}"));
    CHECK(p.body == body);
    CHECK(p.chunk_sizes == std::vector<std::size_t>{1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3});

    server.push(Response::sse(body, Framing::chunked, Chunking::whole()));
    p = round_trip(server, post("/", "{}"));
    CHECK(p.chunk_sizes == std::vector<std::size_t>{30});

    server.push(Response::sse(""));
    Client::Received raw;
    p = round_trip(server, post("/", "{}"), &raw);
    CHECK(p.complete);
    CHECK(p.body.empty());
    CHECK(raw.bytes.substr(raw.bytes.size() - 5) == "0\r\n\r\n");

    SUBCASE("a list with a delay still delivers everything") {
        server.push(Response::sse(body, Framing::chunked, Chunking::list({5, 11})).with_delay(5));
        p = round_trip(server, post("/", "{}"));
        CHECK(p.body == body);
        CHECK(p.chunk_sizes == std::vector<std::size_t>{5, 11, 5, 9});
    }
}

TEST_CASE("Content-Length framing") {
    const std::string stream = llm_test::read_stream_file(kStream);
    TestServer server;
    REQUIRE(server.start());
    server.push(Response::sse(stream, Framing::content_length));
    server.push(Response::sse(stream, Framing::content_length, Chunking::fixed(100)).with_delay(1));
    Client c;
    REQUIRE(c.connect(server.port()));
    for (int i = 0; i < 2; ++i) {
        CAPTURE(i);
        REQUIRE(c.send(post("/v1/chat/completions", "{}")));
        const Client::Received r = c.read(10000, one_response_complete);
        const Parsed p = parse_response(r.bytes, r.eof);
        CHECK(p.complete);
        CHECK_FALSE(p.chunked);
        CHECK(p.header("content-length") == std::to_string(stream.size()));
        CHECK(p.header_count("transfer-encoding") == 0);
        CHECK(p.header_count("connection") == 0);
        CHECK(p.body == stream);
        CHECK(r.bytes.size() == p.size);
    }
    REQUIRE(server.wait_for_requests(2, 5000));
    CHECK(server.requests()[1].connection_id == server.requests()[0].connection_id);
}

TEST_CASE("close-delimited framing: no length, Connection: close, body ends at EOF") {
    const std::string stream = llm_test::read_stream_file(kStream);
    TestServer server;
    REQUIRE(server.start());
    server.push(Response::sse(stream, Framing::close));
    Client c;
    REQUIRE(c.connect(server.port()));
    REQUIRE(c.send(post("/v1/chat/completions", "{}")));
    const Client::Received r = c.read(10000);
    CHECK(r.eof);
    CHECK(r.error == 0);
    const Parsed p = parse_response(r.bytes, r.eof);
    CHECK(p.complete);
    CHECK(p.header_count("content-length") == 0);
    CHECK(p.header_count("transfer-encoding") == 0);
    CHECK(lower(p.header("connection")) == "close");
    CHECK(p.body == stream);
    CHECK(server.wait_for_responses(1, 5000));
}

TEST_CASE("keep-alive: requests share a connection id; keep_alive=false closes; pipelining; HTTP/1.0") {
    TestServer server;
    REQUIRE(server.start());
    server.set_default(Response::sse("data: x\n\n"));
    Client c;
    REQUIRE(c.connect(server.port()));
    for (int i = 0; i < 2; ++i) {
        REQUIRE(c.send(post("/v1/chat/completions", "{\"n\":" + std::to_string(i) + "}")));
        const Client::Received r = c.read(5000, one_response_complete);
        CHECK(parse_response(r.bytes, false).body == "data: x\n\n");
    }
    REQUIRE(server.wait_for_requests(2, 5000));
    auto reqs = server.requests();
    CHECK(reqs[0].connection_id == reqs[1].connection_id);
    CHECK(reqs[0].index_on_connection == 0);
    CHECK(reqs[1].index_on_connection == 1);
    CHECK(reqs[1].body == "{\"n\":1}");
    CHECK(server.connection_count() == 1);
    CHECK(server.connections()[0].requests == 2);
    CHECK(server.connections()[0].open);
    CHECK(server.open_connection_count() == 1);

    // A response with keep_alive=false: "Connection: close", then EOF; the next request needs a new connection.
    server.push(Response::sse("data: y\n\n").closing());
    REQUIRE(c.send(post("/", "{}")));
    Client::Received r = c.read(5000);
    CHECK(r.eof);
    Parsed p = parse_response(r.bytes, r.eof);
    CHECK(p.complete);
    CHECK(lower(p.header("connection")) == "close");
    CHECK(p.body == "data: y\n\n");

    Client d;
    REQUIRE(d.connect(server.port()));
    REQUIRE(d.send(post("/a", "1") + post("/b", "22")));  // two requests in one write
    r = d.read(5000, [](const std::string& b) {
        const Parsed first = parse_response(b, false);
        return first.complete && one_response_complete(b.substr(first.size));
    });
    const Parsed first = parse_response(r.bytes, false);
    CHECK(first.body == "data: x\n\n");
    CHECK(parse_response(r.bytes.substr(first.size), false).body == "data: x\n\n");
    REQUIRE(server.wait_for_requests(5, 5000));
    reqs = server.requests();
    CHECK(reqs[3].target == "/a");
    CHECK(reqs[4].target == "/b");
    CHECK(reqs[4].body == "22");
    CHECK(reqs[3].connection_id == reqs[4].connection_id);
    CHECK(reqs[3].connection_id != reqs[0].connection_id);
    CHECK(server.connection_count() == 2);

    // The client asking for close, and HTTP/1.0, get Connection: close and EOF.
    REQUIRE(d.send(post("/c", "{}", "Connection: close\r\n")));
    r = d.read(5000);
    CHECK(r.eof);
    CHECK(lower(parse_response(r.bytes, true).header("connection")) == "close");
    Client e;
    REQUIRE(e.connect(server.port()));
    REQUIRE(e.send("GET /old HTTP/1.0\r\n\r\n"));
    r = e.read(5000);
    CHECK(r.eof);
    CHECK(parse_response(r.bytes, true).body == "data: x\n\n");
    CHECK(server.wait_for_responses(7, 5000));
}

TEST_CASE("requests are recorded: method, target, headers (case-insensitive), bodies") {
    TestServer server;
    REQUIRE(server.start());
    server.set_default(Response::json(200, "{\"ok\":true}"));
    const std::string body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"你好\"}],\"stream\":true}";
    const Parsed p = round_trip(server, post("/v1/chat/completions?x=1", body,
                                           "Authorization: Bearer sk-test\r\nAccept: text/event-stream\r\n"
                                           "X-Twice: a\r\nx-twice: b\r\nX-Spaces:   padded value  \r\n"));
    CHECK(p.status == 200);
    CHECK(p.header("content-type") == "application/json");
    CHECK(p.body == "{\"ok\":true}");
    REQUIRE(server.wait_for_requests(1, 5000));
    const llm_test::Request req = server.requests()[0];
    CHECK(req.method == "POST");
    CHECK(req.target == "/v1/chat/completions?x=1");
    CHECK(req.version == "HTTP/1.1");
    CHECK(req.header("authorization") == "Bearer sk-test");
    CHECK(req.header("AUTHORIZATION") == "Bearer sk-test");
    CHECK(req.header("accept") == "text/event-stream");
    CHECK(req.header("content-length") == std::to_string(body.size()));
    CHECK(req.header("x-spaces") == "padded value");
    CHECK(req.header_count("x-twice") == 2);
    CHECK(req.header("X-TWICE") == "a");
    CHECK(req.has_header("host"));
    CHECK_FALSE(req.has_header("cookie"));
    CHECK(req.header("cookie").empty());
    CHECK(req.body == body);
    CHECK(req.connection_id == 1);
    CHECK(req.head.compare(0, 46, "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: ") == 0);
    CHECK(req.head.substr(req.head.size() - 4) == "\r\n\r\n");
    CHECK(req.head.find("X-Spaces:   padded value  \r\n") != std::string::npos);

    SUBCASE("chunked request body") {
        Client c;
        REQUIRE(c.connect(server.port()));
        REQUIRE(c.send("POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n"));
        CHECK(parse_response(c.read(5000, one_response_complete).bytes, false).status == 200);
        REQUIRE(server.wait_for_requests(2, 5000));
        CHECK(server.requests()[1].body == "hello world");
    }
    SUBCASE("Expect: 100-continue gets the interim response before the body is sent") {
        Client c;
        REQUIRE(c.connect(server.port()));
        REQUIRE(c.send("POST /expect HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"));
        const Client::Received interim =
            c.read(5000, [](const std::string& b) { return b.find("\r\n\r\n") != std::string::npos; });
        CHECK(interim.bytes == "HTTP/1.1 100 Continue\r\n\r\n");
        REQUIRE(c.send("body"));
        CHECK(parse_response(c.read(5000, one_response_complete).bytes, false).status == 200);
        REQUIRE(server.wait_for_requests(2, 5000));
        CHECK(server.requests()[1].body == "body");
    }
    SUBCASE("a GET without a body, and a body split across writes") {
        Client c;
        REQUIRE(c.connect(server.port()));
        REQUIRE(c.send("GET /v1/models HTTP/1.1\r\nHost: h\r\n\r\n"));
        CHECK(parse_response(c.read(5000, one_response_complete).bytes, false).status == 200);
        const std::string req2 = post("/split", "0123456789");
        for (char ch : req2) {
            REQUIRE(c.send(std::string(1, ch)));
        }
        CHECK(parse_response(c.read(5000, one_response_complete).bytes, false).status == 200);
        REQUIRE(server.wait_for_requests(3, 5000));
        CHECK(server.requests()[1].method == "GET");
        CHECK(server.requests()[1].body.empty());
        CHECK(server.requests()[2].body == "0123456789");
        CHECK(server.requests()[2].connection_id == server.requests()[1].connection_id);
    }
}

TEST_CASE("malformed and oversized requests get 400 / 431 and a close") {
    TestServer::Options o;
    o.max_header_bytes = 4096;
    TestServer server(o);
    REQUIRE(server.start());
    Client c;
    REQUIRE(c.connect(server.port()));
    REQUIRE(c.send("NONSENSE\r\n\r\n"));
    Client::Received r = c.read(5000);
    CHECK(r.eof);
    CHECK(parse_response(r.bytes, true).status == 400);

    REQUIRE(c.connect(server.port()));
    REQUIRE(c.send("POST / HTTP/1.1\r\nX-Big: " + std::string(8000, 'b') + "\r\n\r\n"));
    r = c.read(5000);
    CHECK(parse_response(r.bytes, true).status == 431);
    CHECK(server.request_count() == 0);
}

TEST_CASE("the queue answers in order, then the default; no default means 404") {
    TestServer server;
    REQUIRE(server.start());
    CHECK(round_trip(server, post("/", "{}")).status == 404);
    server.push(Response::status(429, "{\"error\":{\"message\":\"slow down\"}}", {{"Retry-After", "1"}}));
    server.push(Response::status(503, "busy"));
    server.push(Response::sse("data: ok\n\n"));
    server.set_default(Response::json(201, "{}"));
    CHECK(server.queued() == 3);
    Client c;
    REQUIRE(c.connect(server.port()));
    std::vector<Parsed> got;
    for (int i = 0; i < 4; ++i) {
        REQUIRE(c.send(post("/v1/chat/completions", "{}")));
        const Client::Received r = c.read(5000, one_response_complete);
        got.push_back(parse_response(r.bytes, false));
    }
    CHECK(got[0].status == 429);
    CHECK(got[0].status_line == "HTTP/1.1 429 Too Many Requests");
    CHECK(got[0].header("retry-after") == "1");
    CHECK(got[0].header("content-type") == "application/json");
    CHECK(got[0].body == "{\"error\":{\"message\":\"slow down\"}}");
    CHECK(got[1].status == 503);
    CHECK(got[1].header("content-type") == "text/plain; charset=utf-8");
    CHECK(got[1].body == "busy");
    CHECK(got[2].status == 200);
    CHECK(got[2].body == "data: ok\n\n");
    CHECK(got[3].status == 201);
    CHECK(server.queued() == 0);

    Response custom = Response::json(401, "{\"error\":{\"message\":\"bad key\"}}");
    custom.reason = "Nope";
    server.push(custom);
    server.clear_queue();
    server.push(std::move(custom));
    const Parsed p = round_trip(server, post("/", "{}"));
    CHECK(p.status_line == "HTTP/1.1 401 Nope");
    CHECK(p.body == "{\"error\":{\"message\":\"bad key\"}}");
}

TEST_CASE("fault: refuse closes the accepted connection without reading") {
    TestServer server;
    REQUIRE(server.start());
    server.push(Response::refused());
    server.set_default(Response::json(200, "{}"));
    Client c;
    REQUIRE(c.connect(server.port()));
    REQUIRE(server.wait_for_connections(1, 5000));
    c.send(post("/", "{}"));  // may already fail: the server has closed
    const Client::Received r = c.read(5000);
    CHECK(r.bytes.empty());
    CHECK((r.eof || r.error == ECONNRESET || r.error == EPIPE));
    CHECK(server.request_count() == 0);
    CHECK(server.connection_count() == 1);
    CHECK_FALSE(server.connections()[0].open);
    CHECK(round_trip(server, post("/", "{}")).status == 200);  // consumed: the next connection is served
}

TEST_CASE("fault: hang_up closes a kept-alive connection after reading the next request") {
    TestServer server;
    REQUIRE(server.start());
    server.push(Response::json(200, "{}"));
    server.push(Response::hang_up());
    server.set_default(Response::json(200, "{\"again\":1}"));
    Client c;
    REQUIRE(c.connect(server.port()));
    REQUIRE(c.send(post("/1", "{}")));
    CHECK(parse_response(c.read(5000, one_response_complete).bytes, false).status == 200);
    REQUIRE(c.send(post("/2", "{}")));
    const Client::Received r = c.read(5000);
    CHECK(r.eof);  // FIN, not RST: the request was read
    CHECK(r.error == 0);
    CHECK(r.bytes.empty());
    REQUIRE(server.wait_for_requests(2, 5000));
    CHECK(server.requests()[1].target == "/2");
    CHECK(server.requests()[1].connection_id == server.requests()[0].connection_id);
    CHECK(round_trip(server, post("/3", "{}")).body == "{\"again\":1}");
    CHECK(server.connection_count() == 2);
}

TEST_CASE("refuse taken by a request on a kept-alive connection closes it without a response") {
    TestServer server;
    REQUIRE(server.start());
    server.push(Response::json(200, "{}"));
    Client c;
    REQUIRE(c.connect(server.port()));
    REQUIRE(c.send(post("/1", "{}")));
    CHECK(parse_response(c.read(5000, one_response_complete).bytes, false).status == 200);
    server.push(Response::refused());
    REQUIRE(c.send(post("/2", "{}")));
    const Client::Received r = c.read(5000);
    CHECK(r.bytes.empty());
    CHECK((r.eof || r.error == ECONNRESET));
    CHECK(server.wait_for_requests(2, 5000));
}

TEST_CASE("fault: reset before headers") {
    TestServer server;
    REQUIRE(server.start());
    Response r = Response::sse("data: never\n\n");
    r.reset_before_headers = true;
    server.push(r);
    Client c;
    REQUIRE(c.connect(server.port()));
    REQUIRE(c.send(post("/v1/chat/completions", "{}")));
    const Client::Received got = c.read(5000);
    CHECK(got.bytes.empty());
    CHECK((got.error == ECONNRESET || got.eof));
    CHECK(got.error == ECONNRESET);  // Linux: SO_LINGER 0 sends a RST
    REQUIRE(server.wait_for_requests(1, 5000));  // the request was read first
    CHECK(server.requests()[0].target == "/v1/chat/completions");
}

TEST_CASE("fault: reset after N body bytes (chunked and Content-Length)") {
    const std::string stream = llm_test::read_stream_file(kStream);
    REQUIRE(stream.size() > 500);
    TestServer server;
    REQUIRE(server.start());
    for (const std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(300), stream.size()}) {
        for (const Framing framing : {Framing::chunked, Framing::content_length}) {
            CAPTURE(n);
            CAPTURE(static_cast<int>(framing));
            Response r = Response::sse(stream, framing);
            r.reset_after_body_bytes = n;
            server.push(r);
            Client c;
            REQUIRE(c.connect(server.port()));
            REQUIRE(c.send(post("/v1/chat/completions", "{}")));
            const Client::Received got = c.read(5000);
            CHECK(got.error == ECONNRESET);
            const Parsed p = parse_response(got.bytes, false);
            CHECK(p.has_head);
            CHECK(p.status == 200);
            CHECK(p.complete == (framing == Framing::content_length && n == stream.size()));
            CHECK(p.body == stream.substr(0, n));
        }
    }
}

TEST_CASE("fault: stall before headers: no byte for the stall time") {
    TestServer server;
    REQUIRE(server.start());
    Response r = Response::sse("data: late\n\n");
    r.stall_before_headers_ms = 400;
    server.push(r);
    Client c;
    REQUIRE(c.connect(server.port()));
    REQUIRE(c.send(post("/", "{}")));
    const Client::Received got = c.read(5000, one_response_complete);
    REQUIRE(!got.arrivals.empty());
    CHECK(got.arrivals.front().first >= 350.0);
    CHECK(parse_response(got.bytes, false).body == "data: late\n\n");
    CHECK(server.request_count() == 1);  // recorded before the stall
}

TEST_CASE("fault: stall after N body bytes") {
    const std::string body(100, 'z');
    for (const Framing framing : {Framing::chunked, Framing::content_length, Framing::close}) {
        CAPTURE(static_cast<int>(framing));
        TestServer server;
        REQUIRE(server.start());
        Response r = Response::sse(body, framing, Chunking::whole());
        r.stall_after_body_bytes = 40;
        r.stall_ms = 400;
        server.push(r);
        Client c;
        REQUIRE(c.connect(server.port()));
        REQUIRE(c.send(post("/", "{}")));
        const Client::Received first =
            c.read(5000, [](const std::string& b) { return parse_response(b, false).body.size() >= 40; });
        const Parsed p1 = parse_response(first.bytes, false);
        CHECK(p1.body == body.substr(0, 40));
        const auto t1 = Clock::now();
        CHECK(c.silent_for(250));
        const Client::Received rest = c.read(5000, [&](const std::string& b) {
            return parse_response(first.bytes + b, false).complete;
        });
        CHECK(ms_since(t1) >= 350.0);
        const Parsed p = parse_response(first.bytes + rest.bytes, rest.eof);
        CHECK(p.complete);
        CHECK(p.body == body);
    }
}

TEST_CASE("fault: truncated chunked body: no terminating chunk, then close") {
    const std::string stream = llm_test::read_stream_file(kStream);
    TestServer server;
    REQUIRE(server.start());
    Response r = Response::sse(stream);
    r.truncate_chunked = true;
    server.push(r);
    r.write_delay_ms = 1;  // the piecewise writer as well as the one-write fast path
    server.push(r);
    for (int i = 0; i < 2; ++i) {
        Client c;
        REQUIRE(c.connect(server.port()));
        REQUIRE(c.send(post("/", "{}")));
        const Client::Received got = c.read(5000);
        CHECK(got.eof);
        const Parsed p = parse_response(got.bytes, got.eof);
        CHECK(p.chunked);
        CHECK_FALSE(p.complete);
        CHECK(p.body == stream);
        CHECK(got.bytes.find("\r\n0\r\n\r\n") == std::string::npos);
        CHECK(got.bytes.substr(got.bytes.size() - 2) == "\r\n");  // ends after the last full chunk
    }
}

TEST_CASE("fault: garbage is sent verbatim") {
    TestServer server;
    REQUIRE(server.start());
    const std::string junk = std::string("HTTP/1.1 two hundred OK\r\n\x01\xff garbage\r\n\r\n", 38);
    server.push(Response::garbage(junk));
    server.push(Response::garbage("\x16\x03\x01 not http at all"));
    for (const std::string& expect : {junk, std::string("\x16\x03\x01 not http at all")}) {
        Client c;
        REQUIRE(c.connect(server.port()));
        REQUIRE(c.send(post("/", "{}")));
        const Client::Received got = c.read(5000);
        CHECK(got.eof);
        CHECK(got.bytes == expect);
    }
}

TEST_CASE("fault: over-long header line and many header lines") {
    TestServer server;
    REQUIRE(server.start());
    Response r = Response::sse("data: x\n\n");
    r.long_header_bytes = 100000;
    server.push(r);
    Parsed p = round_trip(server, post("/", "{}"));
    CHECK(p.complete);
    CHECK(p.header("x-long-header") == std::string(100000, 'a'));
    CHECK(p.body == "data: x\n\n");

    r.long_header_bytes = 0;
    r.extra_header_count = 500;
    server.push(r);
    p = round_trip(server, post("/", "{}"));
    CHECK(p.headers.size() == 500 + 3);
    CHECK(p.header("x-pad-499").size() > 10);
}

TEST_CASE("slow mode: one byte per write") {
    const std::string body = "data: {\"c\":\"慢\"}\n\n";
    TestServer server;
    REQUIRE(server.start());
    Response r = Response::sse(body);
    r.slow = true;
    r.slow_delay_ms = 2;
    server.push(r);
    Client c;
    REQUIRE(c.connect(server.port()));
    REQUIRE(c.send(post("/", "{}")));
    const auto t0 = Clock::now();
    const Client::Received got = c.read(20000, one_response_complete);
    const Parsed p = parse_response(got.bytes, false);
    CHECK(p.complete);
    CHECK(p.body == body);
    CHECK(ms_since(t0) >= static_cast<double>(got.bytes.size()) * 2 * 0.8);
    CHECK(got.arrivals.size() > got.bytes.size() / 4);  // it arrived in many small pieces
}

TEST_CASE("write_delay_ms paces the pieces") {
    TestServer server;
    REQUIRE(server.start());
    server.push(Response::sse("data: 1\n\ndata: 2\n\ndata: 3\n\ndata: [DONE]\n\n").with_delay(80));
    Client c;
    REQUIRE(c.connect(server.port()));
    REQUIRE(c.send(post("/", "{}")));
    const Client::Received got = c.read(5000, one_response_complete);
    const Parsed p = parse_response(got.bytes, false);
    CHECK(p.chunk_sizes.size() == 4);
    REQUIRE(got.arrivals.size() >= 2);
    CHECK(got.arrivals.back().first >= 4 * 80 * 0.9);
    CHECK(got.arrivals.size() >= 4);  // headers and pieces arrive separately
}

TEST_CASE("connections are served concurrently, up to max_connections") {
    TestServer::Options o;
    o.max_connections = 4;
    TestServer server(o);
    REQUIRE(server.start());
    server.set_default(Response::sse("data: a\n\ndata: b\n\ndata: c\n\n").with_delay(100));  // ~300 ms each
    constexpr int clients = 8;
    std::vector<std::string> bodies(clients);
    std::vector<std::thread> threads;
    const auto t0 = Clock::now();
    for (int i = 0; i < clients; ++i) {
        threads.emplace_back([&, i] {
            Client c;
            if (!c.connect(server.port()) || !c.send(post("/", "{}"))) return;
            bodies[static_cast<std::size_t>(i)] = parse_response(c.read(10000, one_response_complete).bytes, false).body;
        });
    }
    for (auto& t : threads) t.join();
    const double elapsed = ms_since(t0);
    for (const auto& b : bodies) CHECK(b == "data: a\n\ndata: b\n\ndata: c\n\n");
    CHECK(elapsed >= 2 * 300 * 0.9);  // 8 clients, 4 at a time: two rounds at least
    CHECK(elapsed < 8 * 300);         // but not one at a time
    CHECK(server.connection_count() == clients);
    std::set<std::size_t> ids;
    for (const auto& r : server.requests()) ids.insert(r.connection_id);
    CHECK(ids.size() == clients);
}

TEST_CASE("stop() is prompt with connections idle, stalled, silent and blocked writing") {
    auto server = std::make_unique<TestServer>();
    REQUIRE(server->start());
    server->push(Response::json(200, "{}"));
    Response stall = Response::sse("data: x\n\n");
    stall.stall_before_headers_ms = 20000;
    server->push(stall);
    server->set_default(Response::sse(std::string(32 << 20, 'x'), Framing::content_length));  // 32 MiB, unread

    Client idle, stalled, silent, blocked;
    REQUIRE(idle.connect(server->port()));
    REQUIRE(idle.send(post("/", "{}")));
    CHECK(parse_response(idle.read(5000, one_response_complete).bytes, false).status == 200);
    REQUIRE(stalled.connect(server->port()));
    REQUIRE(stalled.send(post("/", "{}")));
    REQUIRE(server->wait_for_requests(2, 5000));
    REQUIRE(blocked.connect(server->port()));
    REQUIRE(blocked.send(post("/", "{}")));
    REQUIRE(server->wait_for_requests(3, 5000));
    REQUIRE(silent.connect(server->port()));
    REQUIRE(server->wait_for_connections(4, 5000));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(server->open_connection_count() == 4);

    const auto t0 = Clock::now();
    server->stop();
    const double took = ms_since(t0);
    CHECK(took < 1000.0);
    CHECK(server->open_connection_count() == 0);
    for (Client* c : {&idle, &stalled, &silent}) {
        const Client::Received r = c->read(2000);
        CHECK((r.eof || r.error == ECONNRESET));
        CHECK(r.bytes.empty());
    }
    const Client::Received r = blocked.read(10000);  // what was in flight, then the end
    CHECK((r.eof || r.error == ECONNRESET));
    CHECK(r.bytes.size() < (32u << 20));
    server.reset();  // the destructor after stop(): nothing left to do
}

namespace {

// True when `bytes` is `unit` repeated, the last repetition possibly cut short.
bool repeats(std::string_view bytes, std::string_view unit) {
    if (bytes.size() < unit.size()) return false;
    for (std::size_t i = 0; i < bytes.size(); ++i)
        if (bytes[i] != unit[i % unit.size()]) return false;
    return true;
}

// Reads until EOF (or an error, or timeout_ms): the first MiB is kept in `first`, the rest only counted.
Client::Received read_flood(Client& c, int timeout_ms, std::size_t& total) {
    const auto mib = [](const std::string& b) { return b.size() >= (1u << 20); };
    const auto t0 = Clock::now();
    Client::Received first = c.read(timeout_ms, mib);
    total = first.bytes.size();
    bool ended = first.eof || first.error != 0 || first.timed_out;
    while (!ended) {  // each pass reads until 1 MiB more, the end, or the time left
        const Client::Received more = c.read(timeout_ms - static_cast<int>(ms_since(t0)), mib);
        total += more.bytes.size();
        first.eof = more.eof;
        first.error = more.error;
        first.timed_out = more.timed_out;
        ended = more.eof || more.error != 0 || more.timed_out;
    }
    return first;
}

}  // namespace

TEST_CASE("flooding: each kind repeats its bytes while the client reads, then closes at its time limit") {
    using llm_test::Flood;
    TestServer server;
    REQUIRE(server.start());
    for (const Flood kind : {Flood::comments, Flood::content, Flood::empty_deltas, Flood::continues}) {
        CAPTURE(static_cast<int>(kind));
        server.push(Response::flooding(kind, 400));
        Client c;
        REQUIRE(c.connect(server.port()));
        REQUIRE(c.send(post("/", "{}")));
        const auto t0 = Clock::now();
        std::size_t total = 0;
        const Client::Received got = read_flood(c, 20000, total);
        const double took = ms_since(t0);
        CHECK(got.eof);
        CHECK(took >= 300);  // it kept sending for its time limit (less a little for the clock's start)
        CHECK(took < 10000);
        CHECK(total > 64 * 1024);
        if (kind == Flood::continues) {
            CHECK(repeats(got.bytes, "HTTP/1.1 100 Continue\r\n\r\n"));
            continue;
        }
        const Parsed p = parse_response(got.bytes, got.eof);
        CHECK(p.status == 200);
        CHECK(p.header("content-type") == "text/event-stream");
        CHECK(p.chunked);
        CHECK(repeats(p.body, Response::flood_event(kind)));
        const std::size_t unit = Response::flood_event(kind).size();
        CHECK(std::all_of(p.chunk_sizes.begin(), p.chunk_sizes.end(), [&](std::size_t n) { return n % unit == 0; }));
    }
}

TEST_CASE("flooding stops when the client goes away, and stop() ends a flood the client does not read") {
    TestServer server;
    REQUIRE(server.start());
    server.set_default(Response::flooding(llm_test::Flood::comments, 60000));
    {
        Client c;
        REQUIRE(c.connect(server.port()));
        REQUIRE(c.send(post("/", "{}")));
        const Client::Received got = c.read(5000, [](const std::string& b) { return b.size() > 256 * 1024; });
        CHECK(got.bytes.size() > 256 * 1024);
    }  // closed while the server writes
    for (int i = 0; i < 500 && server.responses_completed() < 1; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK(server.responses_completed() == 1);
    CHECK(server.open_connection_count() == 0);

    Client blocked;  // never reads: the server waits to write
    REQUIRE(blocked.connect(server.port()));
    REQUIRE(blocked.send(post("/", "{}")));
    REQUIRE(server.wait_for_requests(2, 5000));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto t0 = Clock::now();
    server.stop();
    CHECK(ms_since(t0) < 1000.0);
    CHECK(server.open_connection_count() == 0);
}

TEST_CASE("large generated stream through the one-write path") {
    std::string content;
    const std::string stream = llm_test::generate_events(20000, &content);
    TestServer server;
    REQUIRE(server.start());
    server.set_default(Response::sse(stream));
    Client c;
    REQUIRE(c.connect(server.port()));
    REQUIRE(c.send(post("/v1/chat/completions", "{}", "Connection: close\r\n")));
    const Client::Received r = c.read(60000);
    CHECK(r.eof);
    const Parsed p = parse_response(r.bytes, r.eof);
    CHECK(p.complete);
    CHECK(p.body == stream);
    CHECK(p.chunk_sizes.size() == 20000 + 3);
}

// The "content" string values of a generated stream, unescaped.
static std::vector<std::string> contents_of(const std::string& stream) {
    std::vector<std::string> out;
    const std::string key = "\"content\":\"";
    std::size_t pos = 0;
    for (;;) {
        pos = stream.find(key, pos);
        if (pos == std::string::npos) break;
        pos += key.size();
        std::string s;
        while (pos < stream.size() && stream[pos] != '"') {
            if (stream[pos] == '\\' && pos + 1 < stream.size()) {
                const char e = stream[++pos];
                s += e == 'n' ? '\n' : e;
            } else {
                s += stream[pos];
            }
            ++pos;
        }
        out.push_back(s);
    }
    return out;
}

static std::size_t code_points(const std::string& s) {
    std::size_t n = 0;
    for (unsigned char ch : s) n += (ch & 0xC0) != 0x80 ? 1 : 0;
    return n;
}

TEST_CASE("generate_events: deterministic, realistic, content as announced") {
    std::string content, content2;
    const std::string a = llm_test::generate_events(1000, &content);
    CHECK(a == llm_test::generate_events(1000, &content2));
    CHECK(content == content2);
    CHECK(a != llm_test::generate_events(1000, nullptr, 7));

    const std::vector<std::string> events = events_of(a);
    REQUIRE(events.size() == 1000 + 3);
    for (const auto& e : events) {
        CHECK(e.compare(0, 6, "data: ") == 0);
        CHECK(e.substr(e.size() - 2) == "\n\n");
        CHECK(e.find('\n') == e.size() - 2);  // one data line per event
    }
    CHECK(events[0].find("\"role\":\"assistant\"") != std::string::npos);
    CHECK(events[1000].find("\"finish_reason\":\"stop\"") != std::string::npos);
    CHECK(events[1001].find("\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":1000") !=
          std::string::npos);
    CHECK(events[1002] == "data: [DONE]\n\n");
    CHECK(a.find("chat.completion.chunk") != std::string::npos);

    const std::vector<std::string> deltas = contents_of(a);
    REQUIRE(deltas.size() == 1000);
    std::string joined;
    bool ascii = false, chinese = false;
    for (const auto& d : deltas) {
        CHECK(code_points(d) >= 2);
        CHECK(code_points(d) <= 8);
        joined += d;
        for (unsigned char ch : d) {
            ascii = ascii || (ch >= 'a' && ch <= 'z');
            chinese = chinese || ch >= 0xE4;
        }
    }
    CHECK(joined == content);
    CHECK(ascii);
    CHECK(chinese);
    CHECK(content.find('\n') != std::string::npos);
    CHECK(content.find('"') != std::string::npos);

    const std::string big = llm_test::generate_events(200000);
    CHECK(big.size() > 40u * 1000 * 1000);
    CHECK(big.size() < 80u * 1000 * 1000);
}

TEST_CASE("read_stream_file") {
    const std::string s = llm_test::read_stream_file(kStream);
    CHECK(s.compare(0, 6, "data: ") == 0);
    CHECK(llm_test::read_stream_file("openai-gpt4o-content") == s);  // ".sse" optional
    CHECK(llm_test::read_stream_file("no-such-stream.sse").empty());
}

// ---- the wire form and RemoteTestServer (the tests built for Windows script this server through them) ----

TEST_CASE("wire: a Response with every field set and requests read back the same; malformed text is refused") {
    Response r = Response::sse(std::string("data: x\n\n\0\xff", 12), Framing::close, Chunking::list({3, 0, 9}));
    r.status_code = 503;
    r.reason = "Busy\r\nX: y";
    r.headers.emplace_back("Retry-After", "");
    r.keep_alive = r.raw = r.slow = r.refuse = r.truncate_chunked = false;
    r.close_before_headers = r.reset_before_headers = true;
    r.write_delay_ms = 1;
    r.reset_after_body_bytes = 2;
    r.stall_before_headers_ms = 3;
    r.stall_after_body_bytes = Response::never;
    r.stall_ms = 4;
    r.long_header_bytes = 5;
    r.extra_header_count = 6;
    r.slow_delay_ms = 7;
    r.flood = "f\n";
    r.flood_ms = 8;
    const std::string text = llm_test::wire::write_response(r);
    Response back;
    REQUIRE(llm_test::wire::read_response(text, back));
    CHECK(llm_test::wire::write_response(back) == text);
    CHECK(back.body == r.body);
    CHECK(back.headers == r.headers);
    CHECK(back.chunking.sizes == r.chunking.sizes);
    CHECK(back.framing == Framing::close);
    CHECK(back.stall_after_body_bytes == Response::never);
    CHECK(back.reset_before_headers);
    CHECK(!back.keep_alive);

    llm_test::Request q;
    q.method = "POST";
    q.target = "/v1";
    q.headers = {{"A", "1"}, {"B", ""}};
    q.body = "{}\n";
    q.connection_id = 3;
    std::vector<llm_test::Request> requests;
    REQUIRE(llm_test::wire::read_requests(llm_test::wire::write_requests({q, q}), requests));
    REQUIRE(requests.size() == 2);
    CHECK(requests[1].headers == q.headers);
    CHECK(requests[1].body == q.body);
    CHECK(requests[1].connection_id == 3);

    for (const char* bad : {"body 5\nabc\n", "body x\nabc\n", "body 3\nabcd", "nosuch 0\n\n", "slow 1\n2\n",
                            "status_code 3\n-1x\n", " 0\n\n", "framing 1\n7\n"}) {
        CAPTURE(bad);
        CHECK(!llm_test::wire::read_response(bad, back));
    }
    CHECK(!llm_test::wire::read_requests("method 1\nX\n", requests));  // before any "request"
}

TEST_CASE("RemoteTestServer scripts test servers through a control server, as the Windows tests do") {
    llm_test::ServerControl servers;
    TestServer control;
    control.answer_with([&servers](const llm_test::Request& r) { return servers.handle(r); });
    REQUIRE(control.start());
    const std::string address = "127.0.0.1:" + std::to_string(control.port());
    llm_test::RemoteTestServer remote({}, address);
    REQUIRE(remote.start());
    CHECK(remote.base_url() == "http://127.0.0.1:" + std::to_string(remote.port()));
    remote.push(Response::status(429, "{}", {{"Retry-After", "1"}}));
    remote.set_default(Response::sse("data: ok\n\n"));
    CHECK(round_trip(remote, post("/first", "{\"a\":1}")).status == 429);
    CHECK(round_trip(remote, post("/second", "{}")).body == "data: ok\n\n");
    const std::vector<llm_test::Request> requests = remote.requests();
    REQUIRE(requests.size() == 2);
    CHECK(requests[0].target == "/first");
    CHECK(requests[0].body == "{\"a\":1}");
    CHECK(requests[0].header("content-type") == "application/json");
    CHECK(remote.request_count() == 2);
    CHECK(remote.connection_count() == 2);
    CHECK(remote.responses_completed() == 2);
    remote.clear_records();
    CHECK(remote.request_count() == 0);

    remote.push(Response::status(500));
    remote.clear_queue();
    remote.stop();
    Client c;
    CHECK(!c.connect(remote.port()));
    REQUIRE(remote.start());  // again, on a new port, with the same script
    CHECK(round_trip(remote, post("/", "{}")).body == "data: ok\n\n");
    CHECK(remote.error().empty());

    llm_test::RemoteTestServer::Options v6;
    v6.ipv6 = true;
    v6.idle_timeout_ms = 100;
    llm_test::RemoteTestServer six(v6, address);
    if (six.start()) CHECK(six.base_url() == "http://[::1]:" + std::to_string(six.port()));
    CHECK(round_trip(control, "GET /1/counts HTTP/1.1\r\n\r\n").status == 400);
    CHECK(round_trip(control, post("/7/counts", "")).body == "llm_test_server: no test server 7");
    CHECK(round_trip(control, post("/1/push", "body 9\nshort\n")).status == 400);

    llm_test::RemoteTestServer nowhere({}, "");
    CHECK(!nowhere.start());
    CHECK(nowhere.error().find("cannot connect to the control server") != std::string::npos);
}
