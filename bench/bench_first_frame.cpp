/* The first frame of a game loop that starts N streams at once, against the floor the kernel sets.

     bench_first_frame PORT [STREAMS] [ROUNDS]     (defaults 32 and 7; a server on 127.0.0.1:PORT)

   llm-game-loop's worst frame is its first: every NPC's stream_chat() and then each stream's first
   poll(), which opens its connection. This measures that frame alone, and the same connections opened
   with plain socket calls (socket with O_NONBLOCK, connect), then the request written (getsockopt
   SO_ERROR, TCP_NODELAY, send) as a stream's next poll does. On loopback the kernel does the server
   side's part of each TCP handshake in the connecting thread, so the plain calls are the floor for the
   connections, whatever the library. Each round runs both, plain first; the figures are the medians of
   the rounds, wall time and the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), in ms. Loopback only;
   every socket and stream is closed at the end of its round. Exit 0, 1 when a connection or a
   stream fails, 2 on bad usage. */

#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"
#include "bench_streams.hpp"  // bench::median

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

/* Wall and CPU time of the calling thread, in ms. */
struct Times {
    double wall = 0, cpu = 0;
};

double thread_cpu_ms() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

class Stopwatch {
public:
    Times lap() {
        const Clock::time_point wall = Clock::now();
        const double cpu = thread_cpu_ms();
        const Times t{std::chrono::duration<double, std::milli>(wall - wall_).count(), cpu - cpu_};
        wall_ = wall;
        cpu_ = cpu;
        return t;
    }

private:
    Clock::time_point wall_ = Clock::now();
    double cpu_ = thread_cpu_ms();
};

struct Round {
    Times connects, writes;          // plain socket calls
    Times stream_chats, first_polls;  // the library's first frame
    Times frame;                      // the two together
};

/* N plain connections opened, then the same request written on each; false when one fails. */
bool plain_round(std::uint16_t port, std::size_t n, const std::string& request, Round& round) {
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_port = htons(port);
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::vector<int> sockets;
    bool ok = true;
    Stopwatch watch;
    for (std::size_t i = 0; i < n && ok; ++i) {
        const int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        ok = s >= 0 && (connect(s, reinterpret_cast<const sockaddr*>(&server), sizeof server) == 0 || errno == EINPROGRESS);
        if (s >= 0) sockets.push_back(s);
    }
    round.connects = watch.lap();
    for (const int s : sockets) {
        int error = 0, on = 1;
        socklen_t length = sizeof error;
        ok = ok && getsockopt(s, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0 &&
             setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == 0 &&
             send(s, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size());
    }
    round.writes = watch.lap();
    for (const int s : sockets) close(s);
    return ok;
}

/* N streams started, then each polled once, as llm-game-loop's first frame does; false when one fails. */
bool library_round(llm_stream::Client& client, std::size_t n, Round& round) {
    const std::vector<llm_stream::Message> messages = {
        llm_stream::Message::system("You are Mira, the blacksmith, gruff but kind, in a fantasy village. Stay in "
                                    "character and answer in one or two short sentences."),
        llm_stream::Message::user("Traveller to Mira: What news from the road?")};
    llm_stream::ChatOptions options;
    options.max_tokens = 80;
    std::vector<llm_stream::Stream> streams(n);
    Stopwatch watch;
    for (llm_stream::Stream& stream : streams) stream = client.stream_chat(messages, options);
    round.stream_chats = watch.lap();
    bool ok = true;
    for (llm_stream::Stream& stream : streams) ok = stream.poll() != llm_stream::PollStatus::failed && ok;
    round.first_polls = watch.lap();
    round.frame = {round.stream_chats.wall + round.first_polls.wall, round.stream_chats.cpu + round.first_polls.cpu};
    for (llm_stream::Stream& stream : streams) stream.cancel();
    return ok;
}

/* "W ms (CPU C ms)": the medians of one measure over the rounds. */
std::string figure(const std::vector<Round>& rounds, Times Round::*measure) {
    std::vector<double> wall, cpu;
    for (const Round& r : rounds) {
        wall.push_back((r.*measure).wall);
        cpu.push_back((r.*measure).cpu);
    }
    char text[64];
    std::snprintf(text, sizeof text, "%.3f ms (CPU %.3f ms)", bench::median(wall), bench::median(cpu));
    return text;
}

}  // namespace

int main(int argc, char** argv) {
    const long port = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 0;
    const long n = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 32;
    const long rounds_wanted = argc > 3 ? std::strtol(argv[3], nullptr, 10) : 7;
    if (argc > 4 || port <= 0 || port > 65535 || n <= 0 || n > 1000 || rounds_wanted <= 0 || rounds_wanted > 1000) {
        std::fprintf(stderr, "usage: bench_first_frame PORT [STREAMS (1-1000, default 32)] [ROUNDS (default 7)]\n");
        return 2;
    }
    llm_stream::Config config;
    config.base_url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
    config.max_idle_connections = 0;  // every round opens new connections, as a first frame does
    llm_stream::Client client(config);
    const std::string request = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                                "application/json\r\nContent-Length: 2\r\n\r\n{}";
    std::vector<Round> rounds(static_cast<std::size_t>(rounds_wanted));
    for (Round& round : rounds) {
        if (!plain_round(static_cast<std::uint16_t>(port), static_cast<std::size_t>(n), request, round) ||
            !library_round(client, static_cast<std::size_t>(n), round)) {
            std::fprintf(stderr, "bench_first_frame: a connection to 127.0.0.1:%ld failed\n", port);
            return 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the server's threads wind down
    }
    std::printf("first frame of %ld new streams on loopback, medians of %ld rounds:\n", n, rounds_wanted);
    std::printf("plain socket calls: %ld connects %s; then %ld request writes %s\n", n,
                figure(rounds, &Round::connects).c_str(), n, figure(rounds, &Round::writes).c_str());
    std::printf("llm_stream: %ld stream_chat() %s; then %ld first poll() %s\n", n,
                figure(rounds, &Round::stream_chats).c_str(), n, figure(rounds, &Round::first_polls).c_str());
    std::printf("first frame: llm_stream %s, the plain connects alone %s\n", figure(rounds, &Round::frame).c_str(),
                figure(rounds, &Round::connects).c_str());
    return 0;
}
