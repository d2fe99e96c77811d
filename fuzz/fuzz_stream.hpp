// Shared by the pipeline targets (include after llm_stream.hpp): HTTP wrappers for an SSE body,
// a Config chosen from the input's PRNG, and a run of detail::replay_stream copied into plain data
// (with the invariants every run must keep checked on the way).
#ifndef LLM_STREAM_FUZZ_STREAM_HPP
#define LLM_STREAM_FUZZ_STREAM_HPP

#include "fuzz_common.hpp"

#include <cstdio>
#include <string>
#include <vector>

namespace fuzz {

inline bool utf8(std::string_view s) { return llm_stream::detail::utf8_valid(s.data(), s.data() + s.size()); }

// Chunked framing with chunk sizes from rng (style as in random_cuts), sometimes with extensions.
inline std::string chunked_body(std::string_view body, Rng& rng, int style) {
    std::string out;
    std::size_t at = 0;
    const std::vector<std::size_t> cuts = random_cuts(rng, body.size(), style);
    for (std::size_t i = 0; i <= cuts.size(); ++i) {
        const std::size_t stop = i < cuts.size() ? cuts[i] : body.size();
        if (stop == at) continue;
        char size[32];
        std::snprintf(size, sizeof size, rng.below(8) == 0 ? "%zX;ext=1\r\n" : "%zx\r\n", stop - at);
        out += size;
        out.append(body.substr(at, stop - at));
        out += "\r\n";
        at = stop;
    }
    out += "0\r\n\r\n";
    return out;
}

enum class Framing { chunked, content_length, close };

inline std::string http_response(std::string_view body, Framing framing, Rng& rng, int chunk_style,
                                 std::string_view status_line = "HTTP/1.1 200 OK",
                                 std::string_view content_type = "text/event-stream; charset=utf-8") {
    std::string out(status_line);
    out += "\r\nContent-Type: ";
    out += content_type;
    out += "\r\nCache-Control: no-cache\r\n";
    switch (framing) {
    case Framing::chunked:
        out += "Transfer-Encoding: chunked\r\n\r\n";
        out += chunked_body(body, rng, chunk_style);
        break;
    case Framing::content_length:
        out += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
        out.append(body);
        break;
    case Framing::close:
        out += "Connection: close\r\n\r\n";
        out.append(body);
        break;
    }
    return out;
}

// Defaults most of the time; small limits sometimes, so the limit errors are reached.
inline llm_stream::Config fuzz_config(Rng& rng) {
    llm_stream::Config config;
    config.log_level = llm_stream::LogLevel::off;
    config.retry.max_retries = 0;
    switch (rng.below(4)) {
    case 0:
        config.limits.max_line_bytes = 1 + rng.below(128);
        config.limits.max_event_bytes = 1 + rng.below(128);
        config.limits.max_header_bytes = 64 + rng.below(256);
        config.limits.max_error_body_bytes = rng.below(64);
        break;
    case 1:
        config.limits.max_line_bytes = 64 + rng.below(4096);
        config.limits.max_event_bytes = 64 + rng.below(4096);
        break;
    default: break;
    }
    return config;
}

struct CopiedEvent {
    llm_stream::EventType type{};
    std::string text;
    int index = 0;
    std::string id, name, arguments;  // "\x01" marks absent
    llm_stream::Usage usage;
};

struct RunResult {
    std::vector<CopiedEvent> events;
    llm_stream::ErrorCode error = llm_stream::ErrorCode::none;
    int http_status = 0;
    std::string message;
    llm_stream::Stats stats;
};

inline std::string optional_text(const std::optional<std::string_view>& v) {
    FUZZ_CHECK(!v || utf8(*v));
    return v ? std::string(*v) : std::string("\x01");
}

// Runs the whole pipeline over `response`; use_poll drives it with poll() instead of next_event().
inline RunResult run_stream(const llm_stream::Config& config, const std::string& response,
                            std::vector<std::size_t> segment_ends, bool use_poll = false) {
    llm_stream::Stream stream = llm_stream::detail::replay_stream(config, response, std::move(segment_ends));
    RunResult r;
    std::size_t content_bytes = 0, chars = 0, chunks = 0;
    std::string finish_reason;
    bool has_usage = false;
    llm_stream::Usage usage;
    // Every event needs at least one byte of input: more than that is a loop.
    const std::size_t bound = response.size() + 16;
    for (std::size_t calls = 0;; ++calls) {
        FUZZ_CHECK(calls <= bound);
        const llm_stream::Event* e = nullptr;
        if (use_poll) {
            const llm_stream::PollStatus s = stream.poll();
            if (s == llm_stream::PollStatus::pending) continue;  // MemoryTransport never blocks, bounded above
            if (s == llm_stream::PollStatus::event) e = &stream.current_event();
            else FUZZ_CHECK((s == llm_stream::PollStatus::failed) == static_cast<bool>(stream.error()));
        } else {
            e = stream.next_event();
        }
        if (!e) break;
        CopiedEvent c;
        c.type = e->type;
        FUZZ_CHECK(utf8(e->text));
        c.text = std::string(e->text);
        switch (e->type) {
        case llm_stream::EventType::content:
            FUZZ_CHECK(!e->text.empty());
            ++chunks;
            content_bytes += e->text.size();
            chars += llm_stream::detail::utf8_count_chars(e->text);
            break;
        case llm_stream::EventType::reasoning: FUZZ_CHECK(!e->text.empty()); break;
        case llm_stream::EventType::tool_call:
            c.index = e->tool_call.index;
            c.id = optional_text(e->tool_call.id);
            c.name = optional_text(e->tool_call.name);
            c.arguments = optional_text(e->tool_call.arguments);
            break;
        case llm_stream::EventType::finish: finish_reason = c.text; break;
        case llm_stream::EventType::usage:
            c.usage = e->usage;
            has_usage = true;
            usage = e->usage;
            break;
        }
        r.events.push_back(std::move(c));
    }
    FUZZ_CHECK(stream.finished());
    FUZZ_CHECK(stream.next_event() == nullptr);  // the end is sticky
    const llm_stream::PollStatus again = stream.poll();
    const llm_stream::Error& error = stream.error();
    FUZZ_CHECK(again == (error ? llm_stream::PollStatus::failed : llm_stream::PollStatus::done));
    r.error = error.code;
    r.http_status = error.http_status;
    r.message = error.message;
    if (error) {
        FUZZ_CHECK(!error.message.empty());
        FUZZ_CHECK(utf8(error.message));
    }
    r.stats = stream.stats();
    FUZZ_CHECK(r.stats.chunks == chunks);
    FUZZ_CHECK(r.stats.content_bytes == content_bytes);
    FUZZ_CHECK(r.stats.chars == chars);
    FUZZ_CHECK(r.stats.finish_reason == finish_reason);
    FUZZ_CHECK(r.stats.has_usage == has_usage);
    if (has_usage) {
        FUZZ_CHECK(r.stats.usage.prompt_tokens == usage.prompt_tokens);
        FUZZ_CHECK(r.stats.usage.completion_tokens == usage.completion_tokens);
        FUZZ_CHECK(r.stats.usage.total_tokens == usage.total_tokens);
    }
    FUZZ_CHECK(r.stats.received_bytes <= response.size());
    FUZZ_CHECK(r.stats.attempts == 1);
    FUZZ_CHECK((r.stats.first_chunk_ms >= 0) == (chunks > 0));
    return r;
}

// Prints the first difference, then aborts.
inline void same_run(const RunResult& a, const RunResult& b, const char* what) {
    auto differ = [&](const char* field, std::size_t at) {
        std::fprintf(stderr, "\nsplit dependence (%s): %s differs", what, field);
        if (at != static_cast<std::size_t>(-1)) std::fprintf(stderr, " at event %zu", at);
        std::fprintf(stderr, "\n  baseline: %zu events, error %s \"%s\"\n  variant:  %zu events, error %s \"%s\"\n",
                     a.events.size(), llm_stream::to_string(a.error), a.message.c_str(), b.events.size(),
                     llm_stream::to_string(b.error), b.message.c_str());
        fuzz::fail("the event sequence depends on how the bytes were split", __FILE__, __LINE__);
    };
    const std::size_t n = std::min(a.events.size(), b.events.size());
    for (std::size_t i = 0; i < n; ++i) {
        const CopiedEvent& x = a.events[i];
        const CopiedEvent& y = b.events[i];
        if (x.type != y.type) differ("event type", i);
        if (x.text != y.text) differ("event text", i);
        if (x.index != y.index || x.id != y.id || x.name != y.name || x.arguments != y.arguments)
            differ("tool call", i);
        if (x.usage.prompt_tokens != y.usage.prompt_tokens || x.usage.completion_tokens != y.usage.completion_tokens ||
            x.usage.total_tokens != y.usage.total_tokens)
            differ("usage", i);
    }
    if (a.events.size() != b.events.size()) differ("event count", static_cast<std::size_t>(-1));
    if (a.error != b.error) differ("error code", static_cast<std::size_t>(-1));
    if (a.http_status != b.http_status) differ("error http_status", static_cast<std::size_t>(-1));
    if (a.message != b.message) differ("error message", static_cast<std::size_t>(-1));
    if (a.stats.events != b.stats.events) differ("stats.events", static_cast<std::size_t>(-1));
    if (a.stats.skipped_events != b.stats.skipped_events) differ("stats.skipped_events", static_cast<std::size_t>(-1));
}

}  // namespace fuzz

#endif
