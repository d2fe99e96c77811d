#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>
#include "support/dns_server.hpp"
#include "support/ensure.hpp"
#include "support/manifest.hpp"
#include "support/test_server.hpp"

/* The built-in resolver: the query writer and the answer reader (sans-I/O, fed hostile and cut
   answers), the hosts file and resolv.conf readers, DnsLookup against llm_test::DnsServer on loopback
   (UDP, TCP after a truncated answer, the faults a server can commit), and streams whose base URL names
   a host only that server knows, driven by poll() as a frame loop would. No timing assertions: "poll()
   never blocks" is checked as "poll() returned pending while the answer was being held back". */

#include <dirent.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

using llm_stream::Client;
using llm_stream::Config;
using llm_stream::ErrorCode;
using llm_stream::PollStatus;
using llm_stream::Stream;
using llm_stream::WaitInfo;
using llm_stream::detail::DnsLookup;
using llm_stream::detail::DnsReply;
using llm_stream::detail::DnsSettings;
using llm_stream::detail::IoStatus;
using llm_stream::detail::read_dns_answer;
using llm_stream::detail::write_dns_query;
using llm_test::DnsMode;
using llm_test::DnsServer;
using namespace std::chrono_literals;

namespace {

std::string bytes(std::initializer_list<int> list) {
    std::string out;
    for (int b : list) out += static_cast<char>(b);
    return out;
}

std::string u16(unsigned v) { return bytes({static_cast<int>(v >> 8), static_cast<int>(v & 0xFF)}); }

/* An answer to `query`: its id and question, the flags, then `records` counted as `count`. */
std::string answer_to(const std::string& query, const std::string& records, unsigned count, unsigned flags = 0x8180) {
    return query.substr(0, 2) + u16(flags) + u16(1) + u16(count) + u16(0) + u16(0) + query.substr(12) + records;
}

/* A record owned by `owner` (wire form, or a pointer such as "\xC0\x0C"). */
std::string record(const std::string& owner, unsigned type, const std::string& data) {
    return owner + u16(type) + u16(1) + bytes({0, 0, 0, 60}) + u16(static_cast<unsigned>(data.size())) + data;
}

const std::string kName = "\x03llm\x04test";  // + '\0' in wire form
const std::string kAt12 = "\xC0\x0C";         // a pointer to the question's name

std::string query_for(const char* name, std::uint16_t type = 1, std::uint16_t id = 0x1234) {
    std::string q;
    const llm_stream::Error e = write_dns_query(name, id, type, q);
    CHECK_MESSAGE(!e, e.message);
    return q;
}

DnsReply read(const std::string& answer, const std::string& query, std::vector<std::string>& addresses) {
    std::string why;
    return read_dns_answer(answer, query, addresses, why);
}

std::size_t open_fds() {
    std::size_t n = 0;
    if (DIR* d = opendir("/proc/self/fd")) {
        while (readdir(d)) ++n;
        closedir(d);
    }
    return n;
}

DnsSettings settings_for(std::vector<std::string> servers, std::chrono::milliseconds timeout = 300ms, int attempts = 1) {
    DnsSettings s;
    s.servers = std::move(servers);
    s.timeout = timeout;
    s.attempts = attempts;
    return s;
}

/* Steps a lookup to its end as a frame loop would: each step returns at once, waits go to poll(2). */
IoStatus run(DnsLookup& lookup) {
    for (int steps = 0; steps < 10000; ++steps) {
        const llm_stream::detail::IoResult r = lookup.step();
        if (r.status != IoStatus::would_block) return r.status;
        pollfd p = {lookup.socket(), static_cast<short>(lookup.wants_write() ? POLLOUT : POLLIN), 0};
        ::poll(&p, 1, static_cast<int>(std::max<long long>(1, lookup.time_left(std::chrono::steady_clock::now()).count())));
    }
    return IoStatus::would_block;
}

/* Waits (up to 10 s) for the DNS server's thread to have counted what the client sent: counts are
   checked once they can no longer grow, never against a race with that thread. */
template <class Condition>
void wait_until(Condition done) {
    for (int waits = 0; waits < 10000 && !done(); ++waits) std::this_thread::sleep_for(1ms);
}

#define START_DNS(server)                                                \
    do {                                                                 \
        const bool started_ = (server).start();                          \
        CHECK_MESSAGE(started_, "DNS server: " << (server).error());     \
        if (!started_) return;                                           \
    } while (0)

}  // namespace

/* =============================================================================================
   The query writer
   ============================================================================================= */

TEST_CASE("a query: the id, RD, one question in labels, QTYPE and QCLASS IN") {
    const std::string q = query_for("llm.test", 28, 0xBEEF);
    CHECK(q == bytes({0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}) + kName + std::string(1, '\0') + u16(28) + u16(1));
    CHECK(query_for("LLM.test.") == query_for("LLM.test"));  // an absolute name: the same question
}

TEST_CASE("names that cannot be asked are refused, naming the name and why") {
    std::string q;
    const std::string label63(63, 'a'), label64(64, 'a');
    CHECK(!write_dns_query(label63 + ".test", 1, 1, q));
    std::string long_name;
    while (long_name.size() < 250) long_name += "abcdefghi.";
    long_name += "test";
    const struct {
        std::string name;
        const char* why;
    } cases[] = {
        {"", "empty"},
        {".", "empty"},
        {"a..test", "an empty label"},
        {label64 + ".test", "longer than 63"},
        {long_name, "longer than 255"},
        {"\xC3\xA9t\xC3\xA9.test", "not an ASCII name"},
        {"bad host.test", "space or control"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        const llm_stream::Error e = write_dns_query(c.name, 1, 1, q);
        CHECK(e.code == ErrorCode::dns);
        CHECK(e.message.find(c.why) != std::string::npos);
    }
}

/* =============================================================================================
   The answer reader
   ============================================================================================= */

TEST_CASE("an answer's A and AAAA records become numeric addresses; other types are skipped") {
    const std::string q4 = query_for("llm.test"), q6 = query_for("llm.test", 28);
    std::vector<std::string> got;
    const std::string txt = record(kAt12, 16, "\x05hello");
    CHECK(read(answer_to(q4, txt + record(kAt12, 1, bytes({10, 0, 0, 7})) + record(kAt12, 1, bytes({10, 0, 0, 8})), 3), q4, got) ==
          DnsReply::addresses);
    CHECK(got == std::vector<std::string>{"10.0.0.7", "10.0.0.8"});
    const std::string v6 = bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
    CHECK(read(answer_to(q6, record(kAt12, 28, v6) + record(kAt12, 1, bytes({1, 2, 3, 4})), 2), q6, got) == DnsReply::addresses);
    CHECK(got == std::vector<std::string>{"2001:db8::1"});
    CHECK(read(answer_to(q6, "", 0), q6, got) == DnsReply::addresses);  // NOERROR, no record: none
    CHECK(got.empty());
}

TEST_CASE("an answer must be to this query: id, QR and the question, names compared case-insensitively") {
    const std::string q = query_for("llm.test");
    const std::string a = record(kAt12, 1, bytes({10, 0, 0, 7}));
    std::vector<std::string> got;
    std::string other_id = answer_to(q, a, 1);
    other_id[1] = static_cast<char>(other_id[1] ^ 1);
    CHECK(read(other_id, q, got) == DnsReply::not_ours);
    CHECK(read(answer_to(q, a, 1, 0x0180), q, got) == DnsReply::not_ours);  // QR clear: a query
    CHECK(read(answer_to(query_for("other.test"), a, 1), q, got) == DnsReply::not_ours);
    CHECK(read(answer_to(query_for("llm.test", 28), a, 1), q, got) == DnsReply::not_ours);  // another QTYPE
    CHECK(read(answer_to(query_for("LLM.Test"), a, 1), q, got) == DnsReply::addresses);
    CHECK(read(std::string(), q, got) == DnsReply::not_ours);
}

TEST_CASE("RCODE, opcode and TC say what to do next") {
    const std::string q = query_for("llm.test");
    std::vector<std::string> got;
    std::string why;
    CHECK(read(answer_to(q, "", 0, 0x8183), q, got) == DnsReply::no_such_host);
    CHECK(read_dns_answer(answer_to(q, "", 0, 0x8182), q, got, why) == DnsReply::server_failed);
    CHECK(why == "SERVFAIL");
    CHECK(read_dns_answer(answer_to(q, "", 0, 0x8185), q, got, why) == DnsReply::server_failed);
    CHECK(why == "REFUSED");
    CHECK(read(answer_to(q, "", 0, 0x8380), q, got) == DnsReply::truncated);
    CHECK(read(answer_to(q, "", 0, 0x8980), q, got) == DnsReply::server_failed);  // opcode 1
}

TEST_CASE("a CNAME chain is followed within the answer, through compression pointers") {
    const std::string q = query_for("llm.test");
    // llm.test CNAME a.llm.test (written as "a" + a pointer), a.llm.test CNAME b.example, b.example A.
    const std::string first = record(kAt12, 5, "\x01" "a" + kAt12);
    const std::size_t first_target = 12 + kName.size() + 1 + 4 + 2 + 10;  // its RDATA's offset
    const std::string second = record(u16(0xC000 | static_cast<unsigned>(first_target)), 5, "\x01" "b\x07" "example" + std::string(1, '\0'));
    const std::size_t b_example = first_target + 4 + 2 + 10;  // where "b.example" starts
    const std::string third = record(u16(0xC000 | static_cast<unsigned>(b_example)), 1, bytes({10, 1, 2, 3}));
    std::vector<std::string> got;
    std::string why;
    CHECK(read_dns_answer(answer_to(q, first + second + third, 3), q, got, why) == DnsReply::addresses);
    CHECK_MESSAGE(got == std::vector<std::string>(1, "10.1.2.3"), why);
    // A chain that loops ends as a malformed answer, not in a loop.
    const std::string back = record("\x01" "a" + kAt12, 5, kAt12);
    CHECK(read_dns_answer(answer_to(q, first + back, 2), q, got, why) == DnsReply::server_failed);
    CHECK(why.find("CNAME") != std::string::npos);
}

TEST_CASE("hostile answers: pointer loops, forward pointers, counts and lengths that lie, odd-sized addresses") {
    const std::string q = query_for("llm.test");
    const std::size_t answer_start = 12 + kName.size() + 1 + 4;
    const std::string self = u16(0xC000 | static_cast<unsigned>(answer_start));  // points at itself
    const std::string forward = u16(0xC000 | static_cast<unsigned>(answer_start + 2));
    const std::string a = record(kAt12, 1, bytes({10, 0, 0, 7}));
    const struct {
        std::string what;
        std::string message;
    } cases[] = {
        {"a pointer to itself", answer_to(q, record(self, 1, bytes({1, 2, 3, 4})), 1)},
        {"a forward pointer", answer_to(q, record(forward, 1, bytes({1, 2, 3, 4})), 1)},
        {"a pointer past the message", answer_to(q, record(u16(0xFFFF), 1, bytes({1, 2, 3, 4})), 1)},
        {"a count that lies", answer_to(q, a, 2)},
        {"an RDLENGTH that lies", answer_to(q, a.substr(0, a.size() - 6) + u16(200) + bytes({1, 2, 3, 4}), 1)},
        {"an A record of 5 bytes", answer_to(q, record(kAt12, 1, bytes({1, 2, 3, 4, 5})), 1)},
        {"a reserved label type", answer_to(q, record(bytes({0x40, 1}), 1, bytes({1, 2, 3, 4})), 1)},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        std::vector<std::string> got;
        CHECK(read(c.message, q, got) == DnsReply::server_failed);
        CHECK(got.empty());
    }
}

TEST_CASE("an answer cut anywhere is never taken for addresses") {
    const std::string q = query_for("llm.test");
    const std::string whole = answer_to(q, record(kAt12, 5, "\x01" "a" + kAt12) + record("\x01" "a" + kAt12, 1, bytes({10, 0, 0, 9})), 2);
    std::vector<std::string> got;
    CHECK(read(whole, q, got) == DnsReply::addresses);
    CHECK(got == std::vector<std::string>{"10.0.0.9"});
    for (std::size_t cut = 0; cut < whole.size(); ++cut) {
        CAPTURE(cut);
        const DnsReply r = read(whole.substr(0, cut), q, got);
        CHECK((r == DnsReply::not_ours || r == DnsReply::server_failed));
        CHECK(got.empty());
    }
}

/* =============================================================================================
   The hosts file and resolv.conf
   ============================================================================================= */

TEST_CASE("the hosts file: both families, aliases, comments, names compared case-insensitively") {
    const std::string text = "# local\n127.0.0.1\tlocalhost\n10.0.0.5 llm.test llm # the model server\n"
                             "::1 ip6-localhost\n  fd00::5   LLM.test\r\n#10.9.9.9 llm.test\n";
    std::vector<std::string> got;
    llm_stream::detail::hosts_file_addresses(text, "llm.TEST.", got);
    CHECK(got == std::vector<std::string>{"10.0.0.5", "fd00::5"});
    got.clear();
    llm_stream::detail::hosts_file_addresses(text, "llm", got);
    CHECK(got == std::vector<std::string>{"10.0.0.5"});
    got.clear();
    llm_stream::detail::hosts_file_addresses(text, "model", got);
    CHECK(got.empty());
}

TEST_CASE("resolv.conf: the first 3 name servers, timeout and attempts; defaults without the file") {
    DnsSettings s;
    llm_stream::detail::read_resolv_conf("# comment\nsearch example.com\nnameserver 10.0.0.1\nnameserver ::1 # v6\n"
                                         "nameserver 10.0.0.3\nnameserver 10.0.0.4\noptions ndots:2 timeout:1 attempts:4\n",
                                         s);
    CHECK(s.servers == std::vector<std::string>{"10.0.0.1", "::1", "10.0.0.3"});
    CHECK(s.timeout == 1000ms);
    CHECK(s.attempts == 4);
    const DnsSettings missing = llm_stream::detail::dns_settings({}, "/nonexistent/resolv.conf");
    CHECK(missing.servers == std::vector<std::string>{"127.0.0.1"});
    CHECK(missing.timeout == 5000ms);
    CHECK(missing.attempts == 2);
    llm_stream::DnsOptions options;
    options.servers = {"127.0.0.1:5353"};
    options.timeout = 250ms;
    options.attempts = 3;
    const DnsSettings chosen = llm_stream::detail::dns_settings(options, "/nonexistent/resolv.conf");
    CHECK(chosen.servers == options.servers);
    CHECK(chosen.timeout == 250ms);
    CHECK(chosen.attempts == 3);
}

TEST_CASE("name server addresses: IPv4 or IPv6, with a port (IPv6 in brackets) or port 53") {
    using llm_stream::detail::dns_server_address;
    using llm_stream::detail::SocketAddress;
    const struct {
        const char* text;
        int family;
        unsigned port;
    } good[] = {{"10.0.0.1", AF_INET, 53}, {"127.0.0.1:5353", AF_INET, 5353}, {"::1", AF_INET6, 53}, {"[::1]:5353", AF_INET6, 5353}};
    for (const auto& g : good) {
        CAPTURE(g.text);
        SocketAddress a;
        CHECK(dns_server_address(g.text, a));
        CHECK(a.storage.ss_family == g.family);
        const std::uint16_t port = g.family == AF_INET ? reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_port
                                                       : reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_port;
        CHECK(ntohs(port) == g.port);
    }
    for (const char* bad : {"dns.google", "", "10.0.0.1:port", "[::1]"}) {
        CAPTURE(bad);
        SocketAddress a;
        CHECK(!dns_server_address(bad, a));
    }
}

/* =============================================================================================
   DnsLookup against a DNS server on loopback
   ============================================================================================= */

TEST_CASE("a lookup asks A and AAAA at once, AAAA first where IPv6 is routed; CNAME chains; TCP after a truncated answer") {
    const std::size_t fds_before = open_fds();
    {
        DnsServer dns;
        START_DNS(dns);
        for (DnsMode mode : {DnsMode::answer, DnsMode::cname_chain, DnsMode::truncate}) {
            CAPTURE(static_cast<int>(mode));
            dns.set_script({mode, {"127.0.0.1", "127.0.0.2"}, {"::1"}});
            DnsLookup lookup("llm.test", settings_for({dns.address()}, 5s));
            CHECK(run(lookup) == IoStatus::ok);
            // AAAA first where this host reaches ::1 (as getaddrinfo orders them), else A first.
            const std::vector<std::string> expected = llm_stream::detail::dns_routable("::1")
                                                          ? std::vector<std::string>{"::1", "127.0.0.1", "127.0.0.2"}
                                                          : std::vector<std::string>{"127.0.0.1", "127.0.0.2", "::1"};
            CHECK_MESSAGE(lookup.addresses() == expected, lookup.error().message);
        }
        CHECK(dns.tcp_queries() == 2);  // the truncated answers' A and AAAA, over TCP
    }
    CHECK(open_fds() == fds_before);
}

TEST_CASE("server faults: NXDOMAIN ends the lookup; SERVFAIL, garbage and silence move on to the next server") {
    const std::size_t fds_before = open_fds();
    {
        DnsServer good, bad;
        START_DNS(good);
        START_DNS(bad);
        bad.set_mode(DnsMode::nxdomain);
        DnsLookup nx("llm.test", settings_for({bad.address(), good.address()}));
        CHECK(run(nx) == IoStatus::failed);
        CHECK(nx.error().code == ErrorCode::dns);
        CHECK(nx.error().message == "cannot resolve llm.test: no such host");
        for (DnsMode mode : {DnsMode::servfail, DnsMode::garbage, DnsMode::silent}) {
            CAPTURE(static_cast<int>(mode));
            bad.set_mode(mode);
            DnsLookup lookup("llm.test", settings_for({bad.address(), good.address()}, 200ms));
            CHECK(run(lookup) == IoStatus::ok);
            CHECK_MESSAGE(lookup.addresses() == std::vector<std::string>(1, "127.0.0.1"), lookup.error().message);
        }
    }
    CHECK(open_fds() == fds_before);
}

TEST_CASE("answers under another id are ignored until the try times out; every try is made") {
    DnsServer dns;
    dns.set_mode(DnsMode::wrong_id);
    START_DNS(dns);
    DnsLookup lookup("llm.test", settings_for({dns.address()}, 150ms, 2));
    CHECK(run(lookup) == IoStatus::failed);
    CHECK(lookup.error().code == ErrorCode::dns);
    CHECK(lookup.error().message == "cannot resolve llm.test: the name server " + dns.address() +
                                        " did not answer within 150 ms (2 tries)");
    wait_until([&] { return dns.answers_sent() >= 4; });
    CHECK(dns.queries() == 4);  // A and AAAA, twice
    CHECK(dns.answers_sent() == 4);
}

/* =============================================================================================
   Streams whose host only the test DNS server knows
   ============================================================================================= */

namespace {

const llm_test::Entry& openai_entry() {
    for (const llm_test::Entry& e : llm_test::manifest())
        if (e.api == llm_stream::Api::openai && !e.expected.content.empty() && !e.expected.error) return e;
    return llm_test::manifest().front();
}

Config dns_config(std::uint16_t http_port, const DnsServer& dns) {
    Config c;
    c.base_url = "http://llm.test:" + std::to_string(http_port) + "/v1";
    c.log_level = llm_stream::LogLevel::off;
    c.connect_timeout = 5s;
    c.retry.max_retries = 0;
    c.dns.servers = {dns.address()};
    c.dns.hosts_file.clear();
    c.dns.timeout = 2s;
    c.dns.attempts = 1;
    return c;
}

}  // namespace

TEST_CASE("a stream to llm.test: poll() stays pending while the answer is held back, then streams the recorded reply") {
    const llm_test::Entry& entry = openai_entry();
    const std::size_t fds_before = open_fds();
    {
        llm_test::TestServer http;
        ENSURE(http.start());
        http.push(llm_test::Response::recorded(entry.file, llm_test::read_stream_file(entry.file)));
        DnsServer dns;
        START_DNS(dns);
        dns.hold();
        Client client(dns_config(http.port(), dns));
        Stream stream = client.stream_chat("hello");
        double longest_poll_ms = 0;
        for (int polls = 0; polls < 100000 && dns.queries() < 2; ++polls) {
            const auto t0 = std::chrono::steady_clock::now();
            const PollStatus s = stream.poll();
            longest_poll_ms = std::max(longest_poll_ms, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            CHECK(s == PollStatus::pending);
            CHECK(stream.wait_info().socket != static_cast<llm_stream::socket_handle>(-1));  // the DNS socket to watch
            std::this_thread::sleep_for(1ms);
        }
        CHECK(dns.queries() == 2);
        CHECK(dns.answers_sent() == 0);
        CHECK(stream.poll() == PollStatus::pending);  // both queries in, no answer out: still pending
        MESSAGE("the longest poll() while resolving took " << longest_poll_ms << " ms");
        dns.release();
        llm_test::Outcome got;
        for (int steps = 0; steps < 100000 && !stream.finished(); ++steps) {
            const PollStatus s = stream.poll();
            if (s == PollStatus::event) llm_test::add_event(got, stream.current_event());
            else if (s == PollStatus::pending) stream.wait();
        }
        CHECK_MESSAGE(!stream.error(), stream.error().message);
        CHECK(got.content == entry.expected.content);
    }
    CHECK(open_fds() == fds_before);
}

TEST_CASE("a blocking stream resolves the same way; NXDOMAIN and a DNS timeout are ErrorCode::dns naming the host") {
    DnsServer dns;
    START_DNS(dns);
    llm_test::TestServer http;
    ENSURE(http.start());
    http.set_default(llm_test::Response::sse("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"));
    Config config = dns_config(http.port(), dns);
    {
        Stream stream = Client(config).stream_chat("hello");
        const std::optional<std::string_view> chunk = stream.next_chunk();
        CHECK((chunk && *chunk == "hi"));
    }
    dns.set_mode(DnsMode::nxdomain);
    {
        Stream stream = Client(config).stream_chat("hello");
        CHECK(!stream.next_chunk());
        CHECK(stream.error().code == ErrorCode::dns);
        CHECK(stream.error().message == "cannot resolve llm.test: no such host");
    }
    dns.set_mode(DnsMode::silent);
    config.dns.timeout = 100ms;
    config.dns.attempts = 2;
    config.retry.max_retries = 1;
    config.retry.initial_backoff = 1ms;
    {
        wait_until([&] { return dns.queries() >= 4; });  // the first two streams' A and AAAA
        const int queries_before = dns.queries();
        Stream stream = Client(config).stream_chat("hello");
        CHECK(!stream.next_chunk());
        CHECK(stream.error().code == ErrorCode::dns);
        CHECK(stream.error().message.find("cannot resolve llm.test: the name server " + dns.address() +
                                          " did not answer within 100 ms (2 tries)") == 0);
        CHECK(stream.stats().attempts == 2);  // the retry policy retries DNS failures
        wait_until([&] { return dns.queries() - queries_before >= 8; });
        CHECK(dns.queries() - queries_before == 8);
    }
}

TEST_CASE("cancel() wakes a stream blocked in name resolution, connect_timeout ends it; the hosts file and the resolver hook come first") {
    DnsServer dns;
    dns.set_mode(DnsMode::silent);
    START_DNS(dns);
    Config config = dns_config(9, dns);
    config.dns.timeout = 60s;
    {
        Stream stream = Client(config).stream_chat("hello");
        std::thread canceller([&] {
            wait_until([&] { return dns.queries() >= 2; });
            stream.cancel();
        });
        CHECK(!stream.next_chunk());
        canceller.join();
        CHECK(stream.error().code == ErrorCode::cancelled);
    }
    config.connect_timeout = 200ms;  // covers the name resolution as well
    {
        Stream stream = Client(config).stream_chat("hello");
        CHECK(!stream.next_chunk());
        CHECK(stream.error().code == ErrorCode::timeout);
        CHECK(stream.error().message == "name resolution timed out after 0.2 s");
    }
    llm_test::TestServer http;
    ENSURE(http.start());
    http.set_default(llm_test::Response::sse("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"));
    config.base_url = "http://llm.test:" + std::to_string(http.port()) + "/v1";
    const std::string hosts = "/tmp/llm_stream_test_dns_hosts_" + std::to_string(::getpid());
    std::FILE* f = std::fopen(hosts.c_str(), "w");
    ENSURE(f != nullptr);
    std::fputs("127.0.0.1 LLM.test\n", f);
    std::fclose(f);
    config.dns.hosts_file = hosts;
    wait_until([&] { return dns.queries() >= 2; });
    const int queries_before = dns.queries();
    CHECK(Client(config).stream_chat("hello").next_chunk() == std::optional<std::string_view>("hi"));
    std::remove(hosts.c_str());
    config.dns.hosts_file.clear();
    config.resolver = [](const std::string&) { return std::vector<std::string>{"127.0.0.1"}; };
    CHECK(Client(config).stream_chat("hello").next_chunk() == std::optional<std::string_view>("hi"));
    CHECK(dns.queries() == queries_before);  // neither asked the name server
}
