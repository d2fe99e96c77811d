// Shared by the pipeline targets (include after llm_stream.hpp): HTTP wrappers for an SSE body,
// a Config chosen from the input's PRNG, and runs of the Decoder (fed in pieces by
// tests/support/decode.hpp) or of a Stream (Client::replay) copied into plain data, with the
// invariants every run must keep checked on the way.
#ifndef LLM_STREAM_FUZZ_STREAM_HPP
#define LLM_STREAM_FUZZ_STREAM_HPP

#include "fuzz_common.hpp"
#include "../tests/support/chunked.hpp"
#include "../tests/support/decode.hpp"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace fuzz {

enum class Framing { chunked, content_length, close };

inline std::string http_response(std::string_view body, Framing framing, Rng& rng, int chunk_style,
                                 std::string_view status_line = "HTTP/1.1 200 OK",
                                 std::string_view content_type = "text/event-stream; charset=utf-8") {
    std::string out(status_line);
    out += "\r\nContent-Type: ";
    out += content_type;
    out += "\r\nCache-Control: no-cache\r\n";
    switch (framing) {
    case Framing::chunked: {
        ChunkedStyle style;
        style.upper_hex = rng.below(2) == 0;
        if (rng.below(8) == 0) style.extension = ";ext=1";
        out += "Transfer-Encoding: chunked\r\n\r\n";
        out += chunked(body, random_cuts(rng, body.size(), chunk_style), style);
        break;
    }
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
    int choice = 0;
    std::string text;
    int index = 0;
    std::string id, name, arguments;  // "\x01" marks absent
    llm_stream::Usage usage;
};

struct RunResult {
    std::vector<CopiedEvent> events;
    bool failed = false;
    llm_stream::ErrorCode error = llm_stream::ErrorCode::none;
    int http_status = 0;
    std::string message;
    std::size_t messages = 0;  // SSE events (or JSON replies) decoded
    std::size_t skipped = 0;   // of which skipped
    std::vector<std::string> warnings;
};

inline std::string optional_text(const std::optional<std::string_view>& v) {
    FUZZ_CHECK(!v || utf8(*v));
    return v ? std::string(*v) : std::string("\x01");
}

// The event copied, its text checked: valid UTF-8, never an empty content or reasoning fragment.
inline CopiedEvent copy_event(const llm_stream::Event& e) {
    CopiedEvent c;
    c.type = e.type;
    FUZZ_CHECK(e.choice >= 0 && e.choice < llm_stream::detail::max_choices);
    c.choice = e.choice;
    FUZZ_CHECK(utf8(e.text));
    c.text = std::string(e.text);
    switch (e.type) {
    case llm_stream::EventType::content:
    case llm_stream::EventType::reasoning: FUZZ_CHECK(!e.text.empty()); break;
    case llm_stream::EventType::tool_call:
        c.index = e.tool_call.index;
        c.id = optional_text(e.tool_call.id);
        c.name = optional_text(e.tool_call.name);
        c.arguments = optional_text(e.tool_call.arguments);
        break;
    case llm_stream::EventType::finish: break;
    case llm_stream::EventType::usage: c.usage = e.usage; break;
    }
    return c;
}

inline void copy_error(const llm_stream::Error& error, RunResult& r) {
    r.failed = static_cast<bool>(error);
    r.error = error.code;
    r.http_status = error.http_status;
    r.message = error.message;
    if (error) {
        FUZZ_CHECK(!error.message.empty());
        FUZZ_CHECK(utf8(error.message));
    }
}

/* What a ReplyAssembler made of `events` agrees with them: per choice (by index, each once) the
   content, reasoning and the arguments' bytes are the events' in order, the finish reason the last
   one; a call is flagged exactly when its arguments are neither empty nor valid JSON. */
inline void check_assembled(const std::vector<CopiedEvent>& events, const llm_stream::Reply& reply) {
    using llm_stream::EventType;
    int previous = -1;
    for (const llm_stream::ReplyChoice& c : reply.choices) {
        FUZZ_CHECK(c.index > previous);
        previous = c.index;
        FUZZ_CHECK(c.message.role == llm_stream::Role::assistant);
        std::string content, reasoning, finish;
        std::size_t argument_bytes = 0, fragments = 0;
        for (const CopiedEvent& e : events) {
            if (e.choice != c.index) continue;
            if (e.type == EventType::content) content += e.text;
            if (e.type == EventType::reasoning) reasoning += e.text;
            if (e.type == EventType::finish) finish = e.text;
            if (e.type == EventType::tool_call) ++fragments;
            if (e.type == EventType::tool_call && e.arguments != "\x01") argument_bytes += e.arguments.size();
        }
        FUZZ_CHECK(c.message.content == content);
        FUZZ_CHECK(c.message.reasoning == reasoning);
        FUZZ_CHECK(c.finish_reason == finish);
        FUZZ_CHECK(c.message.tool_calls.size() <= fragments);
        std::size_t assembled_bytes = 0, flagged = 0;
        for (std::size_t i = 0; i < c.message.tool_calls.size(); ++i) {
            const llm_stream::ToolCall& call = c.message.tool_calls[i];
            FUZZ_CHECK(utf8(call.id) && utf8(call.name) && utf8(call.arguments));
            assembled_bytes += call.arguments.size();
            const bool invalid = !call.arguments.empty() && static_cast<bool>(llm_stream::detail::check_json(call.arguments));
            const bool is_flagged = flagged < c.invalid_tool_calls.size() && c.invalid_tool_calls[flagged] == i;
            FUZZ_CHECK(invalid == is_flagged);
            flagged += is_flagged;
        }
        FUZZ_CHECK(flagged == c.invalid_tool_calls.size());
        FUZZ_CHECK(assembled_bytes == argument_bytes);
    }
    std::vector<bool> has_events(llm_stream::detail::max_choices);
    const CopiedEvent* last_usage = nullptr;
    for (const CopiedEvent& e : events) {
        if (e.type == EventType::usage) last_usage = &e;
        else has_events[static_cast<std::size_t>(e.choice)] = true;
    }
    FUZZ_CHECK(reply.choices.size() == static_cast<std::size_t>(std::count(has_events.begin(), has_events.end(), true)));
    FUZZ_CHECK(reply.has_usage == (last_usage != nullptr));
    if (last_usage) FUZZ_CHECK(reply.usage.total_tokens == last_usage->usage.total_tokens);
}

// The Decoder over `response` cut at `cuts`, each piece in its own heap buffer, its events also
// assembled into a reply (checked against them).
inline RunResult run_decoder(const llm_stream::Limits& limits, const std::string& response,
                             const std::vector<std::size_t>& cuts) {
    RunResult r;
    llm_stream::ReplyAssembler assembler;
    const Decoded d = decode_in_pieces(response, cuts, [&](const llm_stream::Event& e) {
        r.events.push_back(copy_event(e));
        FUZZ_CHECK(!assembler.add(e));  // a decoded event's choice is always in range
    }, limits);
    if (!d.contract_broken.empty()) {
        std::fprintf(stderr, "\nDecoder contract: %s\n", d.contract_broken.c_str());
        fuzz::fail("the Decoder broke its feed()/finish() contract", __FILE__, __LINE__);
    }
    FUZZ_CHECK(d.done != d.failed);  // it always says how the response ended
    copy_error(d.error, r);
    r.messages = d.messages;
    r.skipped = d.skipped_messages;
    FUZZ_CHECK(r.skipped <= r.messages);
    for (const std::string& w : d.warnings) FUZZ_CHECK(utf8(w));
    r.warnings = d.warnings;
    assembler.finish();
    check_assembled(r.events, assembler.reply());
    return r;
}

// What a Stream's statistics must say about the events it handed out.
struct Tally {
    std::size_t content_bytes = 0, chars = 0, chunks = 0;
    std::string finish_reason;
    bool has_usage = false;
    llm_stream::Usage usage;

    void add(const llm_stream::Event& e) {
        if (e.choice != 0) return;  // the stats are of choice 0
        switch (e.type) {
        case llm_stream::EventType::content:
            ++chunks;
            content_bytes += e.text.size();
            chars += llm_stream::detail::utf8_count_chars(e.text);
            break;
        case llm_stream::EventType::finish: finish_reason = std::string(e.text); break;
        case llm_stream::EventType::usage:
            has_usage = true;
            usage = e.usage;
            break;
        default: break;
        }
    }
    void check(const llm_stream::Stats& s, std::size_t response_size) const {
        FUZZ_CHECK(s.chunks == chunks);
        FUZZ_CHECK(s.content_bytes == content_bytes);
        FUZZ_CHECK(s.chars == chars);
        FUZZ_CHECK(s.finish_reason == finish_reason);
        FUZZ_CHECK(s.has_usage == has_usage);
        if (has_usage) {
            FUZZ_CHECK(s.usage.prompt_tokens == usage.prompt_tokens);
            FUZZ_CHECK(s.usage.completion_tokens == usage.completion_tokens);
            FUZZ_CHECK(s.usage.total_tokens == usage.total_tokens);
        }
        FUZZ_CHECK(s.received_bytes <= response_size);
        FUZZ_CHECK(s.attempts == 1);  // replay() never retries
        FUZZ_CHECK((s.first_chunk_ms >= 0) == (chunks > 0));
    }
};

// A Stream from Client::replay (its transport reads Limits::receive_buffer_bytes at a time);
// use_poll drives it with poll() instead of next_event().
inline RunResult run_stream(llm_stream::Config config, const std::string& response, bool use_poll) {
    RunResult r;
    config.log_level = llm_stream::LogLevel::warning;  // a replayed Stream warns only what its Decoder warns
    config.log = [&r](llm_stream::LogLevel, std::string_view message) { r.warnings.emplace_back(message); };
    llm_stream::Stream stream = llm_stream::Client(config).replay(response);
    Tally tally;
    // Every event needs at least one byte of input; each read, one more call: more than that is a loop.
    const std::size_t bound = 2 * response.size() + 16;
    for (std::size_t calls = 0;; ++calls) {
        FUZZ_CHECK(calls <= bound);
        const llm_stream::Event* e = nullptr;
        if (use_poll) {
            const llm_stream::PollStatus s = stream.poll();
            if (s == llm_stream::PollStatus::pending) continue;  // replay never blocks, bounded above
            if (s == llm_stream::PollStatus::event) e = &stream.current_event();
            else FUZZ_CHECK((s == llm_stream::PollStatus::failed) == static_cast<bool>(stream.error()));
        } else {
            e = stream.next_event();
        }
        if (!e) break;
        r.events.push_back(copy_event(*e));
        tally.add(*e);
    }
    FUZZ_CHECK(stream.finished());
    FUZZ_CHECK(stream.next_event() == nullptr);  // the end is sticky
    const llm_stream::PollStatus again = stream.poll();
    FUZZ_CHECK(again == (stream.error() ? llm_stream::PollStatus::failed : llm_stream::PollStatus::done));
    copy_error(stream.error(), r);
    const llm_stream::Stats stats = stream.stats();
    tally.check(stats, response.size());
    r.messages = stats.events;
    r.skipped = stats.skipped_events;
    return r;
}

// Prints the first difference, then aborts. `same_end`: the errors must match too (code, HTTP
// status, message), the warnings, and the counts of decoded and skipped events.
inline void same_run(const RunResult& a, const RunResult& b, const char* what, bool same_end = true) {
    auto differ = [&](const char* field, std::size_t at) {
        std::fprintf(stderr, "\ndifference (%s): %s differs", what, field);
        if (at != static_cast<std::size_t>(-1)) std::fprintf(stderr, " at event %zu", at);
        std::fprintf(stderr, "\n  baseline: %zu events, error %s \"%s\"\n  variant:  %zu events, error %s \"%s\"\n",
                     a.events.size(), llm_stream::to_string(a.error), a.message.c_str(), b.events.size(),
                     llm_stream::to_string(b.error), b.message.c_str());
        fuzz::fail("two runs of the same response differ", __FILE__, __LINE__);
    };
    const std::size_t none = static_cast<std::size_t>(-1);
    const std::size_t n = std::min(a.events.size(), b.events.size());
    for (std::size_t i = 0; i < n; ++i) {
        const CopiedEvent& x = a.events[i];
        const CopiedEvent& y = b.events[i];
        if (x.type != y.type) differ("event type", i);
        if (x.choice != y.choice) differ("event choice", i);
        if (x.text != y.text) differ("event text", i);
        if (x.index != y.index || x.id != y.id || x.name != y.name || x.arguments != y.arguments)
            differ("tool call", i);
        if (x.usage.prompt_tokens != y.usage.prompt_tokens || x.usage.completion_tokens != y.usage.completion_tokens ||
            x.usage.total_tokens != y.usage.total_tokens)
            differ("usage", i);
    }
    if (a.events.size() != b.events.size()) differ("event count", none);
    if (a.failed != b.failed) differ("failed or not", none);
    if (!same_end) return;
    if (a.error != b.error) differ("error code", none);
    if (a.http_status != b.http_status) differ("error http_status", none);
    if (a.message != b.message) differ("error message", none);
    if (a.messages != b.messages) differ("decoded events", none);
    if (a.skipped != b.skipped) differ("skipped events", none);
    if (a.warnings != b.warnings) differ("warnings", none);
}

}  // namespace fuzz

#endif
