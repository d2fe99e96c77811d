// ENSURE: a CHECK that also leaves the test case when it fails, so that what follows never reads out
// of range. (doctest's REQUIRE needs exceptions; under -fno-exceptions it does not compile, or acts as
// a CHECK.) Include after doctest.
#ifndef LLM_STREAM_TEST_ENSURE_HPP
#define LLM_STREAM_TEST_ENSURE_HPP

#define ENSURE(...)                                                  \
    do {                                                             \
        const bool ensure_ok_ = (__VA_ARGS__); /* evaluated once */  \
        CHECK_MESSAGE(ensure_ok_, "ENSURE(" #__VA_ARGS__ ")");       \
        if (!ensure_ok_) return;                                     \
    } while (0)

#endif
