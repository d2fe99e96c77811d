#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>
#include "support/ensure.hpp"

/* Waiting on every platform (POSIX poll() with a pipe, Windows WSAPoll with a loopback socket): cancel()
   wakes a wait at once, and on Windows the system resolver's answer wakes a wait on the lookup's socket
   (GetAddrInfoExW overlapped). No timing assertions: each wait is an hour long, so it returns at all
   only when woken (ctest's timeout catches a wait that is not). */

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

using llm_stream::detail::IoStatus;
using llm_stream::detail::native_socket;
using llm_stream::detail::wait_for_socket;
using llm_stream::detail::Waker;
using namespace std::chrono_literals;

namespace {

/* A UDP socket bound to loopback that nobody sends to: it never turns readable. */
native_socket quiet_socket() {
    if (!llm_stream::detail::network_startup()) return llm_stream::detail::invalid_socket;
    const native_socket s = ::socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s != llm_stream::detail::invalid_socket &&
        ::bind(s, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
        llm_stream::detail::close_socket(s);
        return llm_stream::detail::invalid_socket;
    }
    return s;
}

}  // namespace

TEST_CASE("wake() from another thread ends a wait_for_socket() of an hour on a socket that stays silent") {
    const native_socket quiet = quiet_socket();
    ENSURE(quiet != llm_stream::detail::invalid_socket);
    Waker waker;
    waker.prepare();
    CHECK(waker.readable() != llm_stream::detail::invalid_socket);
    std::atomic<bool> woken{false};
    std::thread waking([&] {
        // Long enough for a wait that ends by itself (as Windows' 50 ms slices did) to end first and
        // fail the check below; a wake that comes before the wait begins passes as well.
        std::this_thread::sleep_for(200ms);
        woken.store(true);
        waker.wake();
    });
    wait_for_socket(quiet, true, false, std::chrono::hours(1), waker);
    CHECK(woken.load());  // the wait ended because of the wake, not before it
    waking.join();
    wait_for_socket(quiet, true, false, std::chrono::hours(1), waker);  // woken for good: a cancel stays seen
    llm_stream::detail::close_socket(quiet);
}

#if defined(_WIN32)
using llm_stream::detail::DnsLookup;

TEST_CASE("Windows: DnsLookup asks the system's resolver without blocking; its answer wakes a wait on socket()") {
    const llm_stream::detail::DnsSettings settings = llm_stream::detail::dns_settings(llm_stream::DnsOptions{});
    {
        DnsLookup abandoned("localhost", settings);  // given up while the query runs: nothing leaks or crashes
        CHECK(abandoned.step().status != IoStatus::failed);
    }
    DnsLookup lookup("localhost", settings);
    const Waker unprepared;  // nothing but the lookup wakes the wait
    IoStatus status = lookup.step().status;
    for (int round = 0; round < 3 && status == IoStatus::would_block; ++round) {
        CHECK(lookup.socket() != llm_stream::detail::invalid_socket);
        CHECK(!lookup.wants_write());
        wait_for_socket(lookup.socket(), true, false, std::chrono::hours(1), unprepared);
        status = lookup.step().status;  // readable means answered: one round is enough
    }
    CHECK_MESSAGE(status == IoStatus::ok, lookup.error().message);
    const std::vector<std::string>& found = lookup.addresses();
    CHECK(std::find_if(found.begin(), found.end(), [](const std::string& a) { return a == "127.0.0.1" || a == "::1"; }) !=
          found.end());

    DnsLookup malformed("bad\xff.example", settings);  // refused before the resolver is asked
    CHECK(malformed.step().status == IoStatus::failed);
    CHECK(malformed.error().code == llm_stream::ErrorCode::dns);
    CHECK(malformed.error().message == "cannot resolve bad\xff.example: the name is not valid UTF-8");
}
#endif
