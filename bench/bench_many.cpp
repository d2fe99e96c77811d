// Many concurrent streams driven from one thread (issue 8, "lean streams" and "many streams"): N
// streams to a loopback server, all open at once, driven by one StreamSet; prints the peak live heap
// per stream, the peak RSS and the CPU time. Linux (epoll, /proc). A program that prints figures, not a
// test; bench/bench_many.sh runs it next to the OpenAI Node SDK doing the same.
//
//   bench_many serve N EVENTS INTERVAL_MS   the server: holds each round's N requests until all have
//                                           arrived, then sends every stream EVENTS content chunks,
//                                           one to each stream every INTERVAL_MS, then the end
//   bench_many URL N                        the client: N streams from URL (http://127.0.0.1:PORT/v1)
//   bench_many requests URL                 three requests in turn on one Client (the second and third
//                                           over its pooled connection; serve with N = 1): the heap
//                                           allocations of each, and those made after each stream's
//                                           first event, per event

#include <sys/epoll.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "tracked_heap.hpp"
#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"

namespace {

/* ---- the server: one thread, epoll, every connection held until the round's N requests are in ---- */

struct Connection {
    std::string in, out;
    bool requested = false;
    int events_sent = -1;  // -1: the head is not sent yet
};

struct Server {
    int listener = -1, epoll = -1;
    std::size_t round_size = 0;
    int events = 0, interval_ms = 0;
    std::unordered_map<int, Connection> connections;
    std::size_t requested = 0;  // this round's requests received
    bool sending = false;

    void watch(int fd, unsigned events_wanted) {
        epoll_event e{};
        e.events = events_wanted;
        e.data.fd = fd;
        if (epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &e) != 0) epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &e);
    }
    void close_connection(int fd) {
        if (connections[fd].requested) --requested;
        connections.erase(fd);
        ::close(fd);
    }
    void accept_all() {
        for (;;) {
            const int fd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) return;
            const int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            connections[fd];
            watch(fd, EPOLLIN);
        }
    }
    void read_request(int fd) {
        Connection& c = connections[fd];
        char buffer[4096];
        for (;;) {
            const ssize_t n = ::read(fd, buffer, sizeof buffer);
            if (n == 0 || (n < 0 && errno != EAGAIN)) return close_connection(fd);
            if (n < 0) break;
            c.in.append(buffer, static_cast<std::size_t>(n));
        }
        const std::size_t head_end = c.in.find("\r\n\r\n");
        if (c.requested || head_end == std::string::npos) return;
        const std::size_t length_at = c.in.find("Content-Length: ");
        const std::size_t body = length_at == std::string::npos ? 0 : std::strtoul(c.in.c_str() + length_at + 16, nullptr, 10);
        if (c.in.size() < head_end + 4 + body) return;
        c.in.clear();
        c.requested = true;
        if (++requested == round_size) sending = true;
    }
    void flush(int fd) {
        Connection& c = connections[fd];
        while (!c.out.empty()) {
            const ssize_t n = ::write(fd, c.out.data(), c.out.size());
            if (n < 0) break;
            c.out.erase(0, static_cast<std::size_t>(n));
        }
        watch(fd, c.out.empty() ? EPOLLIN : EPOLLIN | EPOLLOUT);
    }
    static void add_chunk(std::string& out, const std::string& data) {
        char size[32];
        std::snprintf(size, sizeof size, "%zx\r\n", data.size());
        out += size;
        out += data;
        out += "\r\n";
    }
    static std::string chunk_event(const char* delta, const char* finish) {
        return std::string("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                           "\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":") +
               delta + ",\"finish_reason\":" + finish + "}]}\n\n";
    }
    /* One tick: each requested stream gets its head (first tick), its next chunk, or its end. */
    void tick() {
        for (auto& [fd, c] : connections) {
            if (!c.requested) continue;
            if (c.events_sent < 0)
                c.out += "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
            else if (c.events_sent < events)
                add_chunk(c.out, chunk_event("{\"content\":\"word \"}", "null"));
            else {  // the end; the connection may carry the next round's request
                add_chunk(c.out, chunk_event("{}", "\"stop\"") + "data: [DONE]\n\n");
                c.out += "0\r\n\r\n";
                c.requested = false;
                c.events_sent = -2;
                --requested;
            }
            ++c.events_sent;
            flush(fd);
        }
        sending = requested > 0;  // once the round is over, the next one starts with new requests
    }
    int run() {
        auto next_tick = std::chrono::steady_clock::now();
        for (;;) {
            epoll_event ready[256];
            const int n = epoll_wait(epoll, ready, 256, sending ? interval_ms : 1000);
            for (int i = 0; i < n; ++i) {
                const int fd = ready[i].data.fd;
                if (fd == listener) accept_all();
                else if (ready[i].events & EPOLLOUT) flush(fd);
                else read_request(fd);
            }
            if (!sending || std::chrono::steady_clock::now() < next_tick) continue;
            tick();
            next_tick = std::chrono::steady_clock::now() + std::chrono::milliseconds(interval_ms);
        }
    }
};

int serve(std::size_t round_size, int events, int interval_ms) {
    Server server;
    server.round_size = round_size;
    server.events = events;
    server.interval_ms = interval_ms;
    server.listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(server.listener, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
        ::listen(server.listener, 4096) != 0 ||
        getsockname(server.listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        std::perror("bench_many serve");
        return 1;
    }
    server.epoll = epoll_create1(EPOLL_CLOEXEC);
    server.watch(server.listener, EPOLLIN);
    std::printf("PORT %d\n", ntohs(address.sin_port));
    std::fflush(stdout);
    return server.run();
}

/* ---- the client: N streams, one StreamSet, one thread ---- */

long status_kib(const char* field) {  // a "VmHWM:"-style line of /proc/self/status, in KiB
    std::FILE* f = std::fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && std::fgets(line, sizeof line, f))
        if (std::strncmp(line, field, std::strlen(field)) == 0) kib = std::strtol(line + std::strlen(field), nullptr, 10);
    if (f) std::fclose(f);
    return kib;
}

double cpu_seconds() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

llm_stream::Config bench_config(const char* url) {
    llm_stream::Config config;
    config.base_url = url;
    config.api_key = "bench";
    config.model = "bench";
    config.log_level = llm_stream::LogLevel::off;
    return config;
}

int run_client(const char* url, std::size_t count) {
    llm_stream::Client client(bench_config(url));
    std::vector<llm_stream::Stream> streams;
    streams.reserve(count);
    llm_stream::StreamSet set;
    const long rss_before = status_kib("VmRSS:");
    const std::size_t heap_before = live_bytes;
    peak_bytes = live_bytes;
    const double cpu_before = cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < count; ++i) streams.push_back(client.stream_chat("hi"));
    for (llm_stream::Stream& s : streams) set.add(s);
    std::size_t events = 0, finished = 0, failed = 0;
    while (finished < count) {
        for (llm_stream::Stream* s : set.wait(std::chrono::milliseconds(1000))) {
            llm_stream::PollStatus status;
            while ((status = s->poll()) == llm_stream::PollStatus::event) ++events;
            if (status == llm_stream::PollStatus::pending) continue;
            ++finished;
            if (status == llm_stream::PollStatus::failed && failed++ == 0)
                std::fprintf(stderr, "a stream failed: %s\n", s->error().message.c_str());
        }
    }
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double cpu = cpu_seconds() - cpu_before;
    const long rss_peak = status_kib("VmHWM:");
    std::printf("llm_stream  %6zu streams: %zu events, %zu failed; peak live heap %zu B/stream; "
                "peak RSS %.1f MiB (%.1f KiB/stream over the %.1f MiB before); CPU %.2f s; wall %.2f s\n",
                count, events, failed, (peak_bytes - heap_before) / count, static_cast<double>(rss_peak) / 1024,
                static_cast<double>(rss_peak - rss_before) / static_cast<double>(count),
                static_cast<double>(rss_before) / 1024, cpu, wall);
    return failed == 0 ? 0 : 1;
}

/* One stream of `client` read to its end: its allocations from stream_chat() to the end, and those
   made after its first event (an event costs none: they stay 0). */
struct RequestAllocations {
    std::size_t whole = 0, after_first_event = 0, events = 0;
    bool failed = false;
};

RequestAllocations one_request(llm_stream::Client& client) {
    RequestAllocations counted;
    const std::size_t before = allocations;
    std::size_t at_first_event = 0;
    llm_stream::Stream stream = client.stream_chat("hi");
    while (stream.next_event())
        if (counted.events++ == 0) at_first_event = allocations;
    counted.whole = allocations - before;
    counted.after_first_event = allocations - at_first_event;
    counted.failed = bool(stream.error()) || counted.events == 0;
    if (stream.error()) std::fprintf(stderr, "a request failed: %s\n", stream.error().message.c_str());
    return counted;
}

int run_requests(const char* url) {
    llm_stream::Client client(bench_config(url));
    const RequestAllocations first = one_request(client), second = one_request(client), third = one_request(client);
    const std::size_t later_events = second.events + third.events - 2;
    std::printf("llm_stream requests: allocations per request %zu on a new connection, %zu and %zu on the pooled "
                "one; %zu allocations over the %zu events after the first of each pooled request (%.3f per event)\n",
                first.whole, second.whole, third.whole, second.after_first_event + third.after_first_event,
                later_events,
                static_cast<double>(second.after_first_event + third.after_first_event) /
                    static_cast<double>(later_events ? later_events : 1));
    return first.failed || second.failed || third.failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 5 && std::strcmp(argv[1], "serve") == 0)
        return serve(std::strtoul(argv[2], nullptr, 10), std::atoi(argv[3]), std::atoi(argv[4]));
    if (argc == 3 && std::strcmp(argv[1], "requests") == 0) return run_requests(argv[2]);
    if (argc == 3) return run_client(argv[1], std::strtoul(argv[2], nullptr, 10));
    std::fputs("usage: bench_many serve N EVENTS INTERVAL_MS | bench_many URL N | bench_many requests URL\n", stderr);
    return 2;
}
