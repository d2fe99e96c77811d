/* llm-relay's sockets, beyond what the header's portable calls (llm_stream::detail: non-blocking
   mode, reads, writes, close, on POSIX and Winsock) already do: listening, the bound port, half-close.
   Included by llm-relay.cpp after llm_stream.hpp. */
#ifndef LLM_STREAM_EXAMPLES_RELAY_SOCKET_HPP
#define LLM_STREAM_EXAMPLES_RELAY_SOCKET_HPP

#include <cstdint>
#include <string>

#ifdef _WIN32
#include <ws2tcpip.h>
#else
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

namespace relay {

namespace net = llm_stream::detail;

inline void shut_down_writing(net::native_socket s) {
#ifdef _WIN32
    shutdown(s, SD_SEND);
#else
    shutdown(s, SHUT_WR);
#endif
}

inline std::uint16_t bound_port(net::native_socket s) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (getsockname(s, reinterpret_cast<sockaddr*>(&address), &length) != 0) return 0;
    const bool v6 = address.ss_family == AF_INET6;
    return ntohs(v6 ? reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port
                    : reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
}

/* A non-blocking socket listening on one of the addresses `host` resolves to. */
inline net::native_socket listen_on(const std::string& host, int port, std::string& error) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || !found) {
        error = "cannot resolve --host " + host;
        return net::invalid_socket;
    }
    net::native_socket listener = net::invalid_socket;
    for (addrinfo* a = found; a && listener == net::invalid_socket; a = a->ai_next) {
        listener = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (listener == net::invalid_socket) {
            error = "cannot open a socket for " + host + ": " + net::socket_error_text(net::last_socket_error());
            continue;
        }
#ifndef _WIN32
        const int on = 1;  // a restarted relay must not wait for its old connections' TIME_WAIT
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
#endif
        if (bind(listener, a->ai_addr, static_cast<socklen_t>(a->ai_addrlen)) == 0 && listen(listener, SOMAXCONN) == 0 &&
            net::set_non_blocking(listener))
            break;
        error = "cannot listen on " + host + " port " + std::to_string(port) + ": " +
                net::socket_error_text(net::last_socket_error());
        net::close_socket(listener);
        listener = net::invalid_socket;
    }
    freeaddrinfo(found);
    return listener;
}

}  // namespace relay

#endif  // LLM_STREAM_EXAMPLES_RELAY_SOCKET_HPP
