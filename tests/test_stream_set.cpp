// StreamSet: many streams driven from one thread by one wait over all their sockets and timers, plus
// sockets of the caller's own. Streams come from the loopback test server (tests/support/test_server.hpp)
// and from stub mode (timers only); wake() comes from another thread.
#include "llm_stream.hpp"
#include <doctest/doctest.h>
#include "support/test_server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using llm_stream::Client;
using llm_stream::Config;
using llm_stream::EventType;
using llm_stream::PollStatus;
using llm_stream::SocketWatch;
using llm_stream::Stream;
using llm_stream::StreamSet;
using llm_test::Response;
using llm_test::TestServer;

namespace {

/* Per stream: the content it delivered, and how it ended. */
struct Outcome {
    std::string content;
    bool done = false;
    bool failed = false;
};

/* poll() until pending, keeping the content of `stream`. */
void advance(Stream& stream, Outcome& out) {
    for (;;) {
        const PollStatus s = stream.poll();
        if (s == PollStatus::pending) return;
        if (s == PollStatus::event) {
            const llm_stream::Event& e = stream.current_event();
            if (e.type == EventType::content) out.content += e.text;
            continue;
        }
        out.done = s == PollStatus::done;
        out.failed = s == PollStatus::failed;
        return;
    }
}

/* Drives every stream of `streams` to its end through one StreamSet; false if it took more than
   `max_waits` waits (a wait that returns nothing ready, again and again, would be a spin). */
bool drive(std::vector<Stream>& streams, std::vector<Outcome>& outcomes, int max_waits, int& empty_waits) {
    StreamSet set;
    for (Stream& s : streams) set.add(s);
    outcomes.assign(streams.size(), Outcome{});
    std::size_t finished = 0;
    for (int i = 0; i < max_waits && finished < streams.size(); ++i) {
        const std::vector<Stream*>& ready = set.wait(5s);
        if (ready.empty()) ++empty_waits;
        for (Stream* s : ready) {
            Outcome& out = outcomes[static_cast<std::size_t>(s - streams.data())];
            advance(*s, out);
            if (out.done || out.failed) ++finished;
        }
    }
    return finished == streams.size();
}

Config server_config(const TestServer& server) {
    Config c;
    c.base_url = server.base_url();
    c.log_level = llm_stream::LogLevel::off;
    c.retry.max_retries = 0;
    return c;
}

}  // namespace

TEST_CASE("StreamSet drives many network streams from one thread, each to its exact text") {
    std::string content;
    const std::string body = llm_test::generate_events(200, &content);
    TestServer::Options options;
    options.max_connections = 64;
    TestServer server(options);
    Response r = Response::sse(body, llm_test::Framing::chunked, llm_test::Chunking::fixed(97));
    r.write_delay_ms = 1;  // the streams' bytes arrive interleaved, over many waits
    server.set_default(r);
    REQUIRE(server.start());
    Client client(server_config(server));
    std::vector<Stream> streams;
    for (int i = 0; i < 24; ++i) streams.push_back(client.stream_chat("hi"));

    std::vector<Outcome> outcomes;
    int empty_waits = 0;
    REQUIRE(drive(streams, outcomes, 100000, empty_waits));
    for (std::size_t i = 0; i < streams.size(); ++i) {
        CAPTURE(i);
        CHECK_MESSAGE(outcomes[i].done, streams[i].error().message);
        CHECK(outcomes[i].content == content);
    }
    CHECK(server.requests().size() == streams.size());
    CHECK(empty_waits < 100);  // a wait ends when something is ready: it does not spin
    server.stop();
}

TEST_CASE("StreamSet wakes for the stub's timers (streams without a socket)") {
    Config stub;
    stub.log_level = llm_stream::LogLevel::off;
    Client plain(stub);
    std::string expected;
    Stream reference = plain.stream_chat("hi");
    while (auto chunk = reference.next_chunk()) expected += *chunk;
    REQUIRE(!expected.empty());

    stub.stub_chunk_delay = 2ms;
    Client delayed(stub);
    std::vector<Stream> streams;
    for (int i = 0; i < 6; ++i) streams.push_back(delayed.stream_chat("hi"));
    std::vector<Outcome> outcomes;
    int empty_waits = 0;
    REQUIRE(drive(streams, outcomes, 100000, empty_waits));
    for (const Outcome& out : outcomes) {
        CHECK(out.done);
        CHECK(out.content == expected);
    }
    CHECK(empty_waits < 100);
}

TEST_CASE("StreamSet: wait(0) only looks; removed streams and those whose end poll() returned are never ready") {
    Config stub;
    stub.log_level = llm_stream::LogLevel::off;
    Client client(stub);
    StreamSet set;
    CHECK(set.wait(0ms).empty());

    Stream first = client.stream_chat("hi");
    Stream second = client.stream_chat("hi");
    set.add(first);
    set.add(second);
    CHECK(set.size() == 2);
    const std::vector<Stream*> ready = set.wait(0ms);  // not started: both can go on at once
    CHECK(ready == std::vector<Stream*>{&first, &second});

    set.remove(first);
    CHECK(set.size() == 1);
    CHECK(set.wait(0ms) == std::vector<Stream*>{&second});
    while (second.next_chunk()) {}
    CHECK(second.finished());
    CHECK(set.wait(0ms).empty());
    set.remove(first);  // not in the set: no effect
    CHECK(set.size() == 1);
}

TEST_CASE("StreamSet::wake() from another thread ends a wait, and a wake before a wait ends that one") {
    StreamSet set;
    const auto t0 = std::chrono::steady_clock::now();
    std::thread waker([&set] {
        std::this_thread::sleep_for(20ms);
        set.wake();
    });
    CHECK(set.wait(10min).empty());
    waker.join();
    set.wake();
    CHECK(set.wait(10min).empty());
    // Far below the timeout whatever the machine's load: the waits did not run to their end.
    CHECK(std::chrono::steady_clock::now() - t0 < 5min);
    CHECK(set.wait(0ms).empty());  // one wake ends one wait
}

TEST_CASE("StreamSet watches the caller's sockets with the streams") {
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
    StreamSet set;
    std::vector<SocketWatch> sockets(2);
    sockets[0].socket = pair[0];
    sockets[0].want_read = true;
    sockets[1].socket = pair[1];
    sockets[1].want_write = true;

    set.wait(0ms, sockets);
    CHECK(!sockets[0].ready);  // nothing written yet
    CHECK(sockets[1].ready);   // room to write
    REQUIRE(::write(pair[1], "x", 1) == 1);
    sockets[1].want_write = false;
    sockets[1].want_read = true;
    set.wait(10min, sockets);
    CHECK(sockets[0].ready);
    CHECK(!sockets[1].ready);
    ::close(pair[0]);
    ::close(pair[1]);
}

TEST_CASE("StreamSet returns a stream that failed as it was made, so its caller sees it end") {
    Config broken;
    broken.base_url = "ftp://127.0.0.1/v1";  // refused before any poll(): not http or https
    broken.log_level = llm_stream::LogLevel::off;
    Client client(broken);
    Stream stream = client.stream_chat("hi");
    REQUIRE(stream.finished());
    StreamSet set;
    set.add(stream);
    CHECK(set.wait(10min) == std::vector<Stream*>{&stream});  // at once, not after ten minutes
    CHECK(set.wait(0ms).empty());  // once, even before poll() says so
    CHECK(stream.poll() == PollStatus::failed);
    CHECK(!stream.error().message.empty());
    CHECK(set.wait(0ms).empty());
    stream = client.stream_chat("again");  // a new stream in the same object: its end is returned too
    REQUIRE(stream.finished());
    CHECK(set.wait(10min) == std::vector<Stream*>{&stream});
    CHECK(set.wait(0ms).empty());
}
