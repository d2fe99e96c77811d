// llm_test::DnsServer: a scripted DNS server on 127.0.0.1 (UDP and TCP on the same ephemeral port), the
// independent peer the resolver tests check llm_stream against. It shares no code with llm_stream.hpp.
//
// POSIX sockets (Linux), C++17, header-only, nothing thrown. One thread serves both sockets; every wait
// is a poll() with a short timeout that also watches a wake pipe, so stop() is prompt.
//
//   llm_test::DnsServer dns;                   // answers every name with 127.0.0.1 (A), nothing (AAAA)
//   dns.set_mode(llm_test::DnsMode::cname_chain);
//   if (!dns.start()) { /* dns.error() */ }
//   config.dns.servers = {dns.address()};      // "127.0.0.1:PORT"

#ifndef LLM_TEST_DNS_SERVER_HPP
#define LLM_TEST_DNS_SERVER_HPP

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace llm_test {

// How the server answers every query.
enum class DnsMode {
    answer,       // the script's addresses of the asked type (none: NOERROR without records)
    cname_chain,  // the name is a CNAME of alias1.<name>, a CNAME of alias2.<name>, which has the addresses
    truncate,     // over UDP an empty answer with TC set; over TCP the full answer
    wrong_id,     // the answer, but under another id (a late or spoofed reply): never the right one
    nxdomain,     // RCODE 3
    servfail,     // RCODE 2
    garbage,      // the right id and question, then an answer record cut short
    silent,       // never answers
};

struct DnsScript {
    DnsMode mode = DnsMode::answer;
    std::vector<std::string> a = {"127.0.0.1"};
    std::vector<std::string> aaaa;
};

class DnsServer {
public:
    DnsServer() = default;
    ~DnsServer() { stop(); }
    DnsServer(const DnsServer&) = delete;
    DnsServer& operator=(const DnsServer&) = delete;

    void set_script(DnsScript script) {
        std::lock_guard<std::mutex> lock(mutex_);
        script_ = std::move(script);
    }
    void set_mode(DnsMode mode) {
        std::lock_guard<std::mutex> lock(mutex_);
        script_.mode = mode;
    }
    // While held, answers are kept back (queries still count); release() sends them.
    void hold() { held_ = true; }
    void release() { held_ = false; }

    bool start() {
        for (int tries = 0; tries < 20 && !running_; ++tries) bind_both();
        if (!running_) return false;
        thread_ = std::thread([this] { serve(); });
        return true;
    }
    void stop() {
        if (!running_) return;
        const char byte = 'x';
        while (::write(wake_write_, &byte, 1) < 0 && errno == EINTR) {
        }
        thread_.join();
        for (int fd : {udp_, tcp_, wake_read_, wake_write_}) ::close(fd);
        udp_ = tcp_ = wake_read_ = wake_write_ = -1;
        running_ = false;
    }

    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    std::uint16_t port() const { return port_; }
    int queries() const { return queries_; }          // received, over UDP and TCP
    int tcp_queries() const { return tcp_queries_; }
    int answers_sent() const { return answers_sent_; }
    std::string error() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return error_;
    }

private:
    struct Pending {
        sockaddr_in to{};
        std::string message;
    };

    void fail(const char* what) {
        std::lock_guard<std::mutex> lock(mutex_);
        error_ = std::string(what) + ": " + std::strerror(errno);
    }
    // UDP on an ephemeral port, then TCP on the same one (which may be taken: the caller tries again).
    void bind_both() {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof a;
        const int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        const int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int pipe_fds[2] = {-1, -1};
        const bool ok = udp >= 0 && tcp >= 0 && ::bind(udp, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                        ::getsockname(udp, reinterpret_cast<sockaddr*>(&a), &length) == 0 &&
                        ::bind(tcp, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(tcp, 16) == 0 &&
                        ::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) == 0;
        if (!ok) {
            fail("binding the DNS server");
            for (int fd : {udp, tcp}) if (fd >= 0) ::close(fd);
            return;
        }
        udp_ = udp;
        tcp_ = tcp;
        wake_read_ = pipe_fds[0];
        wake_write_ = pipe_fds[1];
        port_ = ntohs(a.sin_port);
        running_ = true;
    }

    void serve() {
        std::vector<Pending> pending;
        for (;;) {
            pollfd fds[3] = {{udp_, POLLIN, 0}, {tcp_, POLLIN, 0}, {wake_read_, POLLIN, 0}};
            ::poll(fds, 3, 10);
            if (fds[2].revents) return;
            if (fds[0].revents & POLLIN) serve_udp(pending);
            if (fds[1].revents & POLLIN) serve_tcp();
            if (held_) continue;
            for (const Pending& p : pending) send_udp(p);
            pending.clear();
        }
    }
    void send_udp(const Pending& p) {
        ::sendto(udp_, p.message.data(), p.message.size(), 0, reinterpret_cast<const sockaddr*>(&p.to), sizeof p.to);
        ++answers_sent_;
    }
    void serve_udp(std::vector<Pending>& pending) {
        char buffer[1024];
        Pending p;
        socklen_t length = sizeof p.to;
        const ssize_t n = ::recvfrom(udp_, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&p.to), &length);
        if (n <= 0) return;
        ++queries_;
        p.message = answer(std::string(buffer, static_cast<std::size_t>(n)), false);
        if (!p.message.empty()) pending.push_back(std::move(p));
    }
    // One connection, one or more length-prefixed queries, answered in order, then closed.
    void serve_tcp() {
        const int fd = ::accept4(tcp_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;
        std::string in;
        char buffer[1024];
        for (int waits = 0; waits < 100; ++waits) {  // up to a second for the queries
            pollfd p = {fd, POLLIN, 0};
            if (::poll(&p, 1, 10) <= 0) continue;
            const ssize_t n = ::read(fd, buffer, sizeof buffer);
            if (n <= 0) break;
            in.append(buffer, static_cast<std::size_t>(n));
            while (in.size() >= 2 && in.size() >= 2u + length_at(in)) {
                const std::size_t size = length_at(in);
                const std::string reply = answer(in.substr(2, size), true);
                in.erase(0, 2 + size);
                ++queries_;
                ++tcp_queries_;
                const std::string framed = std::string{static_cast<char>(reply.size() >> 8), static_cast<char>(reply.size() & 0xFF)} + reply;
                if (!reply.empty() && ::write(fd, framed.data(), framed.size()) > 0) ++answers_sent_;
            }
        }
        ::close(fd);
    }
    static std::size_t length_at(const std::string& s) {
        return static_cast<std::size_t>(static_cast<unsigned char>(s[0]) << 8 | static_cast<unsigned char>(s[1]));
    }

    static void put16(std::string& out, unsigned v) {
        out += static_cast<char>((v >> 8) & 0xFF);
        out += static_cast<char>(v & 0xFF);
    }
    // "alias1" + a name in wire form.
    static std::string prefixed(const char* label, const std::string& wire_name) {
        return std::string(1, static_cast<char>(std::strlen(label))) + label + wire_name;
    }
    static void put_record(std::string& out, const std::string& owner, unsigned type, const std::string& data) {
        out += owner;
        put16(out, type);
        put16(out, 1);  // IN
        out.append("\0\0\0\x3c", 4);  // TTL 60
        put16(out, static_cast<unsigned>(data.size()));
        out += data;
    }

    // The reply to `query` (empty: none), as the script says.
    std::string answer(const std::string& query, bool over_tcp) {
        DnsScript script;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            script = script_;
        }
        const std::size_t name_end = query.size() > 12 ? query.find('\0', 12) : std::string::npos;
        if (name_end == std::string::npos || name_end + 5 > query.size() || script.mode == DnsMode::silent) return {};
        const std::string name = query.substr(12, name_end + 1 - 12);
        const unsigned type = static_cast<unsigned char>(query[name_end + 1]) << 8 | static_cast<unsigned char>(query[name_end + 2]);
        unsigned rcode = script.mode == DnsMode::nxdomain ? 3 : script.mode == DnsMode::servfail ? 2 : 0;
        const bool truncated = script.mode == DnsMode::truncate && !over_tcp;
        std::string records;
        unsigned count = 0;
        std::string owner = name;
        if (script.mode == DnsMode::cname_chain) {
            for (const char* alias : {"alias1", "alias2"}) {
                put_record(records, owner, 5, prefixed(alias, name));
                owner = prefixed(alias, name);
                ++count;
            }
        }
        if (rcode == 0 && !truncated) {
            for (const std::string& text : type == 1 ? script.a : script.aaaa) {
                unsigned char bytes[16];
                if (inet_pton(type == 1 ? AF_INET : AF_INET6, text.c_str(), bytes) != 1) continue;
                put_record(records, owner, type, std::string(reinterpret_cast<char*>(bytes), type == 1 ? 4 : 16));
                ++count;
            }
        } else {
            records.clear();
            count = 0;
        }
        std::string out = query.substr(0, 2);
        if (script.mode == DnsMode::wrong_id) out[1] = static_cast<char>(out[1] ^ 1);
        put16(out, 0x8180u | (truncated ? 0x0200u : 0u) | rcode);  // QR, RD, RA (and TC), RCODE
        put16(out, 1);
        put16(out, script.mode == DnsMode::garbage ? count + 1 : count);
        out.append(4, '\0');
        out += query.substr(12, name_end + 5 - 12);
        out += records;
        if (script.mode == DnsMode::garbage) out += "\xC0\x0C\x00\x01\x00";  // a record cut short
        return out;
    }

    mutable std::mutex mutex_;
    DnsScript script_;
    std::string error_;
    std::thread thread_;
    int udp_ = -1, tcp_ = -1, wake_read_ = -1, wake_write_ = -1;
    std::uint16_t port_ = 0;
    bool running_ = false;
    std::atomic<bool> held_{false};
    std::atomic<int> queries_{0}, tcp_queries_{0}, answers_sent_{0};
};

}  // namespace llm_test

#endif  // LLM_TEST_DNS_SERVER_HPP
