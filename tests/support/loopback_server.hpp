// The loopback test server of the network tests, and a port that refuses connections. TestServer is
// llm_test::TestServer (tests/support/test_server.hpp, POSIX, in this process), or, in a build with
// LLM_TEST_REMOTE_SERVER (Windows, under wine), llm_test::RemoteTestServer: the same API over servers
// that the native llm_test_server --control runs.
#ifndef LLM_STREAM_TESTS_LOOPBACK_SERVER_HPP
#define LLM_STREAM_TESTS_LOOPBACK_SERVER_HPP

#ifdef LLM_TEST_REMOTE_SERVER
#include "remote_test_server.hpp"
using TestServer = llm_test::RemoteTestServer;
#else
#include "test_server.hpp"
using llm_test::TestServer;
#endif

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include <cstdint>

/* A loopback port that refuses connections: bound, never listening, and held until the end of the
   test, so that no other server (tests run in parallel) can take it, as one could a stopped server's. */
class RefusedPort {
public:
    RefusedPort() {
#ifdef _WIN32
        WSADATA data;
        WSAStartup(MAKEWORD(2, 2), &data);
#endif
        socket_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t size = sizeof address;
        if (::bind(socket_, reinterpret_cast<const sockaddr*>(&address), size) == 0 &&
            ::getsockname(socket_, reinterpret_cast<sockaddr*>(&address), &size) == 0)
            port_ = ntohs(address.sin_port);
    }
    RefusedPort(const RefusedPort&) = delete;
    RefusedPort& operator=(const RefusedPort&) = delete;
    ~RefusedPort() {
#ifdef _WIN32
        ::closesocket(socket_);
        WSACleanup();
#else
        ::close(socket_);
#endif
    }
    std::uint16_t port() const { return port_; }  // 0 when none could be had

private:
#ifdef _WIN32
    SOCKET socket_;
#else
    int socket_;
#endif
    std::uint16_t port_ = 0;
};

#endif
