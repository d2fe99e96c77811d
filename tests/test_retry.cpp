// The retry policy alone: decide_retry() as a table, jitter included, and the hints a response's
// headers carry (read through a Decoder). No network, no clock.
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>

using llm_stream::ErrorCode;
using llm_stream::detail::AttemptFailure;
using llm_stream::detail::decide_retry;
using llm_stream::detail::RetryDecision;
using namespace std::chrono_literals;

namespace {

AttemptFailure failure(ErrorCode code, int status = 0, bool started = false) {
    AttemptFailure f;
    f.code = code;
    f.http_status = status;
    f.response_started = started;
    return f;
}

AttemptFailure with_hints(AttemptFailure f, std::optional<double> after, std::optional<bool> should) {
    f.retry_after_seconds = after;
    f.should_retry = should;
    return f;
}

struct Row {
    const char* what;
    AttemptFailure failure;
    int retries_done;
    double random01;
    bool retry;
    std::chrono::milliseconds wait;
};

}  // namespace

TEST_CASE("decide_retry: which failures are retried, and after how long") {
    llm_stream::RetryPolicy policy;  // 3 retries, 0.5 s doubling to 8 s, +/-25 %, Retry-After capped at 60 s
    const Row rows[] = {
        // Backoff: 0.5 s, 1 s, 2 s; random01 = 0.5 is no jitter, 0 is -25 %, just under 1 is +25 %.
        {"connect, first retry", failure(ErrorCode::connect), 0, 0.5, true, 500ms},
        {"timeout, second retry", failure(ErrorCode::timeout), 1, 0.5, true, 1000ms},
        {"dns, third retry", failure(ErrorCode::dns), 2, 0.5, true, 2000ms},
        {"io, budget spent", failure(ErrorCode::io), 3, 0.5, false, 0ms},
        {"jitter at its lowest", failure(ErrorCode::connect), 0, 0.0, true, 375ms},
        {"jitter at its highest", failure(ErrorCode::connect), 1, 0.999999, true, 1249ms},
        // HTTP statuses worth another try, and ones that are not.
        {"408", failure(ErrorCode::http_status, 408), 0, 0.5, true, 500ms},
        {"409", failure(ErrorCode::http_status, 409), 0, 0.5, true, 500ms},
        {"429", failure(ErrorCode::http_status, 429), 0, 0.5, true, 500ms},
        {"500", failure(ErrorCode::http_status, 500), 0, 0.5, true, 500ms},
        {"503", failure(ErrorCode::http_status, 503), 0, 0.5, true, 500ms},
        {"400", failure(ErrorCode::http_status, 400), 0, 0.5, false, 0ms},
        {"401", failure(ErrorCode::http_status, 401), 0, 0.5, false, 0ms},
        {"404", failure(ErrorCode::http_status, 404), 0, 0.5, false, 0ms},
        {"301: redirects are not followed", failure(ErrorCode::http_status, 301), 0, 0.5, false, 0ms},
        // A protocol failure is retried only when the connection died before answering.
        {"protocol before the response", failure(ErrorCode::protocol, 0, false), 0, 0.5, true, 500ms},
        {"protocol inside the response", failure(ErrorCode::protocol, 0, true), 0, 0.5, false, 0ms},
        // Failures no retry can mend.
        {"tls", failure(ErrorCode::tls), 0, 0.5, false, 0ms},
        {"server error event", failure(ErrorCode::server_error), 0, 0.5, false, 0ms},
        {"limit", failure(ErrorCode::limit_exceeded), 0, 0.5, false, 0ms},
        {"cancelled", failure(ErrorCode::cancelled), 0, 0.5, false, 0ms},
        {"out of memory", failure(ErrorCode::out_of_memory), 0, 0.5, false, 0ms},
        // The server's hints: Retry-After replaces the backoff (no jitter), capped; x-should-retry wins.
        {"Retry-After 3", with_hints(failure(ErrorCode::http_status, 429), 3.0, std::nullopt), 0, 0.0, true, 3000ms},
        {"retry-after-ms 1.5", with_hints(failure(ErrorCode::http_status, 503), 0.0015, std::nullopt), 0, 0.9, true, 2ms},
        {"Retry-After over the cap", with_hints(failure(ErrorCode::http_status, 429), 3600.0, std::nullopt), 0, 0.5, true, 60000ms},
        {"Retry-After negative", with_hints(failure(ErrorCode::http_status, 429), -5.0, std::nullopt), 0, 0.5, true, 0ms},
        {"x-should-retry: false on a 503", with_hints(failure(ErrorCode::http_status, 503), std::nullopt, false), 0, 0.5, false, 0ms},
        {"x-should-retry: true on a 400", with_hints(failure(ErrorCode::http_status, 400), std::nullopt, true), 0, 0.5, true, 500ms},
        {"x-should-retry cannot exceed the budget", with_hints(failure(ErrorCode::http_status, 400), std::nullopt, true), 3, 0.5, false, 0ms},
    };
    for (const Row& row : rows) {
        CAPTURE(row.what);
        const RetryDecision d = decide_retry(policy, row.retries_done, row.failure, row.random01);
        CHECK(d.retry == row.retry);
        CHECK(d.wait.count() == row.wait.count());
    }
}

TEST_CASE("decide_retry: the backoff doubles up to max_backoff, and zero retries means none") {
    llm_stream::RetryPolicy policy;
    policy.max_retries = 10;
    policy.jitter = 0;
    const long long expected[] = {500, 1000, 2000, 4000, 8000, 8000, 8000};
    for (int i = 0; i < 7; ++i) {
        CAPTURE(i);
        CHECK(decide_retry(policy, i, failure(ErrorCode::connect), 0.3).wait.count() == expected[i]);
    }
    policy.max_retries = 0;
    CHECK_FALSE(decide_retry(policy, 0, failure(ErrorCode::http_status, 503), 0.5).retry);
}

TEST_CASE("decide_retry: jitter stays within its bounds over the whole range of draws") {
    llm_stream::RetryPolicy policy;
    for (int step = 0; step < 1000; ++step) {
        const double draw = step / 1000.0;
        const long long wait = decide_retry(policy, 1, failure(ErrorCode::timeout), draw).wait.count();
        CHECK(wait >= 750);   // 1 s - 25 %
        CHECK(wait <= 1250);  // 1 s + 25 %
    }
}

TEST_CASE("read_retry_hints: retry-after-ms, Retry-After in seconds or as a date, x-should-retry") {
    auto hints = [](const std::string& headers) {
        llm_stream::Decoder decoder;
        const std::string response = "HTTP/1.1 503 Service Unavailable\r\n" + headers + "Content-Length: 0\r\n\r\n";
        CHECK(decoder.feed(response).status == llm_stream::DecodeStatus::failed);  // the 503 itself
        AttemptFailure f = failure(ErrorCode::http_status, 503);
        llm_stream::detail::read_retry_hints(decoder, 1000000000, f);  // now: 2001-09-09T01:46:40Z
        return f;
    };
    CHECK(hints("retry-after-ms: 250\r\n").retry_after_seconds == doctest::Approx(0.25));
    CHECK(hints("Retry-After: 7\r\n").retry_after_seconds == doctest::Approx(7.0));
    CHECK(hints("retry-after-ms: 100\r\nRetry-After: 9\r\n").retry_after_seconds == doctest::Approx(0.1));
    CHECK(hints("Retry-After: Sun, 09 Sep 2001 01:47:00 GMT\r\n").retry_after_seconds == doctest::Approx(20.0));
    CHECK(hints("Retry-After: Sun, 09 Sep 2001 01:40:00 GMT\r\n").retry_after_seconds == doctest::Approx(0.0));
    CHECK_FALSE(hints("Retry-After: soon\r\n").retry_after_seconds);
    CHECK(hints("x-should-retry: false\r\n").should_retry == std::optional<bool>(false));
    CHECK(hints("X-Should-Retry: TRUE\r\n").should_retry == std::optional<bool>(true));
    CHECK_FALSE(hints("x-should-retry: maybe\r\n").should_retry);
}
