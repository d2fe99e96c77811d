// llm_test::RemoteTestServer: a TestServer run by another process, llm_test_server --control (see
// test_server_control.hpp), with the part of TestServer's API the network tests use. It lets those tests,
// built for a system without the POSIX server (Windows, run under wine), script the native server on the
// same loopback. Portable sockets (POSIX and Winsock); shares no code with llm_stream.hpp.
//
//   LLM_TEST_SERVER_CONTROL=127.0.0.1:PORT   where the control server listens (it prints "PORT n")
//
// Each call is one request on a new connection. Not thread-safe: script it from one thread (the streams
// under test may run on any). A failed call (no control server, a refused request) is written to stderr
// and kept in error(); its result is empty, so the test's own checks fail.

#ifndef LLM_TEST_REMOTE_TEST_SERVER_HPP
#define LLM_TEST_REMOTE_TEST_SERVER_HPP

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#endif

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "test_server.hpp"
#include "test_server_wire.hpp"

namespace llm_test {

namespace remote {

#ifdef _WIN32
using socket_handle = SOCKET;
const socket_handle no_socket = INVALID_SOCKET;
inline void close_socket(socket_handle s) { ::closesocket(s); }
inline bool sockets_ready() {
    static const bool ready = [] {
        WSADATA data;
        return ::WSAStartup(MAKEWORD(2, 2), &data) == 0;
    }();
    return ready;
}
constexpr int kSendFlags = 0;
using io_size = int;  // what send() and recv() take
#else
using socket_handle = int;
const socket_handle no_socket = -1;
inline void close_socket(socket_handle s) { ::close(s); }
inline bool sockets_ready() { return true; }
constexpr int kSendFlags = MSG_NOSIGNAL;
using io_size = std::size_t;
#endif

// Bounds every control call: a control server that stops answering fails the test instead of hanging it.
inline void limit_waits(socket_handle s, int seconds) {
#ifdef _WIN32
    const DWORD ms = static_cast<DWORD>(seconds) * 1000;
    const char* value = reinterpret_cast<const char*>(&ms);
    const int size = sizeof ms;
#else
    timeval tv{};
    tv.tv_sec = seconds;
    const timeval* value = &tv;
    const socklen_t size = sizeof tv;
#endif
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, value, size);
    ::setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, value, size);
}

// A connection to an IPv4 "address:port"; no_socket on failure.
inline socket_handle connect_to(const std::string& address) {
    const std::size_t colon = address.rfind(':');
    sockaddr_in to{};
    to.sin_family = AF_INET;
    std::uint16_t port = 0;
    if (!sockets_ready() || colon == std::string::npos ||
        ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &to.sin_addr) != 1 ||
        !wire::Reader::to_number(std::string_view(address).substr(colon + 1), port))
        return no_socket;
    to.sin_port = htons(port);
    const socket_handle s = ::socket(AF_INET, SOCK_STREAM, 0);
    if (s == no_socket) return no_socket;
    limit_waits(s, 60);
    if (::connect(s, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0) return s;
    close_socket(s);
    return no_socket;
}

// Sends `request`, then reads until the peer closes; false on a failure or a time-out.
inline bool exchange(socket_handle s, const std::string& request, std::string& reply) {
    for (std::size_t sent = 0; sent < request.size();) {  // each pass sends at least a byte or returns
        const auto n = ::send(s, request.data() + sent, static_cast<io_size>(request.size() - sent), kSendFlags);
        if (n <= 0) return false;
        sent += static_cast<std::size_t>(n);
    }
    char buffer[65536];
    for (;;) {  // ends when the peer closes, or on a failure (the waits are limited)
        const auto n = ::recv(s, buffer, static_cast<io_size>(sizeof buffer), 0);
        if (n == 0) return true;
        if (n < 0) return false;
        reply.append(buffer, static_cast<std::size_t>(n));
    }
}

}  // namespace remote

class RemoteTestServer {
public:
    struct Options {
        bool ipv6 = false;            // listen on [::1] instead of 127.0.0.1
        int idle_timeout_ms = 30000;  // as TestServer::Options
    };

    RemoteTestServer() : RemoteTestServer(Options{}) {}
    explicit RemoteTestServer(Options options, std::string control = control_from_environment())
        : options_(options), control_(std::move(control)) {}
    ~RemoteTestServer() {
        if (id_ != 0) call("delete");
    }
    RemoteTestServer(const RemoteTestServer&) = delete;
    RemoteTestServer& operator=(const RemoteTestServer&) = delete;

    // LLM_TEST_SERVER_CONTROL, or "" (every call then fails, saying so).
    static std::string control_from_environment() {
        const char* address = std::getenv("LLM_TEST_SERVER_CONTROL");
        return address ? address : "";
    }

    // Starts the server (again, after stop()); false (see error()) on failure.
    bool start() {
        std::string reply;
        if (id_ == 0) {
            wire::Writer options;
            options.number("ipv6", options_.ipv6).number("idle_timeout_ms", options_.idle_timeout_ms);
            if (!post("/new", options.text(), reply)) return false;
        } else if (!call("start", {}, &reply)) {
            return false;
        }
        wire::Reader in(reply);
        while (in.next()) {
            if (in.name() == "id") in.read(id_);
            if (in.name() == "port") in.read(port_);
        }
        if (id_ == 0 || port_ == 0) return false;
        for (const auto& [verb, body] : scripted_before_start_)
            if (!call(verb, body)) return false;
        scripted_before_start_.clear();
        return true;
    }
    void stop() {
        if (id_ != 0) call("stop");
    }

    std::uint16_t port() const { return port_; }
    std::string host() const { return options_.ipv6 ? "::1" : "127.0.0.1"; }
    std::string base_url() const {
        return std::string("http://") + (options_.ipv6 ? "[::1]" : "127.0.0.1") + ":" + std::to_string(port_);
    }
    std::string error() const { return error_; }

    void push(const Response& r) { script("push", wire::write_response(r)); }
    void set_default(const Response& r) { script("set_default", wire::write_response(r)); }
    void clear_queue() { call("clear_queue"); }
    void clear_records() { call("clear_records"); }

    std::vector<Request> requests() const {
        std::string reply;
        std::vector<Request> requests;
        if (call("requests", {}, &reply) && !wire::read_requests(reply, requests)) failed("malformed requests");
        return requests;
    }
    std::size_t request_count() const { return count("request_count"); }
    std::size_t connection_count() const { return count("connection_count"); }
    std::size_t open_connection_count() const { return count("open_connection_count"); }
    std::size_t responses_completed() const { return count("responses_completed"); }

private:
    // As TestServer allows, responses may be scripted before the first start(), which creates the
    // remote server: they are sent once it exists.
    void script(const std::string& verb, const std::string& body) {
        if (id_ == 0)
            scripted_before_start_.emplace_back(verb, body);
        else
            call(verb, body);
    }

    std::size_t count(std::string_view name) const {
        std::string reply;
        std::size_t n = 0;
        if (!call("counts", {}, &reply)) return n;
        wire::Reader in(reply);
        while (in.next())
            if (in.name() == name) in.read(n);
        return n;
    }

    bool call(const std::string& verb, const std::string& body = {}, std::string* reply = nullptr) const {
        std::string ignored;
        return post("/" + std::to_string(id_) + "/" + verb, body, reply ? *reply : ignored);
    }

    // POSTs `body` to the control server; true with the answer's body in `reply` when it says 200.
    bool post(const std::string& target, const std::string& body, std::string& reply) const {
        const remote::socket_handle s = remote::connect_to(control_);
        if (s == remote::no_socket) return failed("cannot connect to the control server at \"" + control_ + "\"");
        std::string answer;
        const bool exchanged = remote::exchange(s, "POST " + target + " HTTP/1.1\r\nHost: " + control_ +
                                                       "\r\nContent-Length: " + std::to_string(body.size()) +
                                                       "\r\nConnection: close\r\n\r\n" + body,
                                                answer);
        remote::close_socket(s);
        const std::size_t head_end = answer.find("\r\n\r\n");
        if (!exchanged || head_end == std::string::npos) return failed(target + ": no answer");
        reply = answer.substr(head_end + 4);
        if (answer.compare(0, 13, "HTTP/1.1 200 ") != 0) return failed(target + ": " + reply);
        return true;
    }

    bool failed(const std::string& why) const {
        error_ = "RemoteTestServer: " + why;
        std::fprintf(stderr, "%s\n", error_.c_str());
        return false;
    }

    Options options_;
    std::string control_;
    std::size_t id_ = 0;
    std::uint16_t port_ = 0;
    std::vector<std::pair<std::string, std::string>> scripted_before_start_;  // verb, body
    mutable std::string error_;
};

}  // namespace llm_test

#endif  // LLM_TEST_REMOTE_TEST_SERVER_HPP
