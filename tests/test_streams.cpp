// The recorded corpus (tests/data/streams): every stream, inside every HTTP framing (chunked with odd
// chunk sizes, Content-Length, close-delimited), fed whole, byte by byte and split at random points,
// runs through the whole pipeline (HTTP reader -> SSE -> JSON -> Stream) and must decode to exactly
// what manifest.json expects, with the same events every time. (Fewer random points with
// LLM_STREAM_TEST_SPLITS=sample, for emulated targets: support/random_cuts.hpp.)
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "support/chunked.hpp"
#include "support/decode.hpp"
#include "support/manifest.hpp"
#include "support/random_cuts.hpp"
#include "support/test_data.hpp"

namespace d = llm_stream::detail;
using llm_stream::Event;
using llm_stream::EventType;

namespace {

using llm_test::Entry;
using llm_test::kStreamsDir;
using llm_test::manifest;
using llm_test::Outcome;
using llm_test::read_file;

/* ---------------------------------------------------------------------------------------------
   HTTP framings
   --------------------------------------------------------------------------------------------- */

struct Framing {
    std::string name;
    std::string response;
    std::size_t body_offset = 0;  // where the body starts in response
};

/* The head of a response in `api`'s streaming content type (Ollama's NDJSON, else SSE). */
std::string head_for(llm_stream::Api api) {
    return std::string("HTTP/1.1 200 OK\r\nContent-Type: ") +
           (api == llm_stream::Api::ollama ? "application/x-ndjson" : "text/event-stream; charset=utf-8") +
           "\r\nCache-Control: no-cache\r\nX-Request-Id: replay\r\n";
}

std::vector<Framing> framings(const std::string& body, std::uint32_t seed, llm_stream::Api api = llm_stream::Api::openai) {
    std::vector<Framing> out;
    const std::string kHead = head_for(api);
    const std::string chunked_head = kHead + "Transfer-Encoding: chunked\r\n\r\n";
    for (std::size_t size : {1u, 7u, 13u, 64u}) {
        out.push_back({"chunked/" + std::to_string(size), chunked_head + chunked(body, even_cuts(size, body.size())),
                       chunked_head.size()});
    }
    ChunkedStyle upper;
    upper.upper_hex = true;
    out.push_back({"chunked/random", chunked_head + chunked(body, random_cuts(body.size(), seed), upper),
                   chunked_head.size()});
    const std::string length_head = std::string(kHead) + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    out.push_back({"content-length", length_head + body, length_head.size()});
    const std::string close_head = std::string(kHead) + "Connection: close\r\n\r\n";
    out.push_back({"close-delimited", close_head + body, close_head.size()});
    return out;
}

/* ---------------------------------------------------------------------------------------------
   Running a response through the Decoder (split anywhere) or a Stream (Client::replay)
   --------------------------------------------------------------------------------------------- */

std::size_t code_points(std::string_view s) {
    std::size_t n = 0;
    for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return n;
}

struct Run {
    Outcome outcome;
    std::vector<std::string> trace;  // every event, in order
    std::size_t content_events = 0;
    bool text_always_valid_utf8 = true;
    bool empty_text_event = false;   // a content/reasoning event with no text
    std::size_t messages = 0;        // SSE events decoded
    std::size_t skipped = 0;         // of which skipped as undecodable
    llm_stream::ErrorCode error = llm_stream::ErrorCode::none;
    std::string error_message;
    bool finished = false;
    std::vector<std::string> warnings;
    std::string contract_broken;     // the Decoder's feed()/finish() contract, see support/decode.hpp
};

void record(Run& run, const Event& e) {
    llm_test::add_event(run.outcome, e);
    auto utf8 = [&](std::string_view v) {
        if (!d::utf8_valid(v.data(), v.data() + v.size())) run.text_always_valid_utf8 = false;
    };
    switch (e.type) {
    case EventType::content:
        ++run.content_events;
        utf8(e.text);
        if (e.text.empty()) run.empty_text_event = true;
        run.trace.push_back("content:" + std::string(e.text));
        break;
    case EventType::reasoning:
        utf8(e.text);
        if (e.text.empty() && e.signature.empty()) run.empty_text_event = true;  // a signature comes alone
        run.trace.push_back("reasoning:" + std::string(e.text) + (e.signature.empty() ? "" : " signature:" + std::string(e.signature)));
        break;
    case EventType::tool_call: {
        const llm_stream::ToolCallDelta& t = e.tool_call;
        std::string line = "tool_call:" + std::to_string(t.index);
        for (const auto& part : {t.id, t.name, t.arguments}) {
            line += part ? "|" + std::string(*part) : std::string("|-");
            if (part) utf8(*part);
        }
        run.trace.push_back(line);
        break;
    }
    case EventType::finish:
        utf8(e.text);
        run.trace.push_back("finish:" + std::string(e.text));
        break;
    case EventType::usage:
        run.trace.push_back("usage:" + std::to_string(e.usage.prompt_tokens) + "/" +
                            std::to_string(e.usage.completion_tokens) + "/" + std::to_string(e.usage.total_tokens));
        break;
    }
}

/* `decoder` over `response` cut at `cuts`, each piece in its own heap buffer. */
Run decode_with(llm_stream::Decoder& decoder, const std::string& response, const std::vector<std::size_t>& cuts) {
    Run run;
    const Decoded decoded =
        decode_in_pieces(decoder, response, cuts, PieceMemory::copied, [&run](const Event& e) { record(run, e); });
    run.messages = decoded.messages;
    run.skipped = decoded.skipped_messages;
    run.error = decoded.error.code;
    run.error_message = decoded.error.message;
    run.finished = decoded.done || decoded.failed;
    if (run.error == llm_stream::ErrorCode::server_error) run.outcome.error = run.error_message;
    run.warnings = decoded.warnings;
    run.contract_broken = decoded.contract_broken;
    return run;
}

/* A new Decoder over `response` cut at `cuts`. */
Run decode(const std::string& response, const std::vector<std::size_t>& cuts, llm_stream::Api api = llm_stream::Api::openai) {
    llm_stream::Decoder decoder(llm_stream::Limits{}, api);
    return decode_with(decoder, response, cuts);
}

enum class Drive { next_event, poll };

/* A Stream from Client::replay(response): events, stats and the warnings it logged. */
Run replay(const std::string& response, llm_stream::Stats& stats, Drive drive = Drive::next_event,
           llm_stream::Api api = llm_stream::Api::openai) {
    Run run;
    llm_stream::Config config;
    config.api = api;
    config.log_level = llm_stream::LogLevel::warning;
    config.log = [&run](llm_stream::LogLevel, std::string_view message) { run.warnings.emplace_back(message); };
    llm_stream::Stream stream = llm_stream::Client(config).replay(response);
    if (drive == Drive::next_event) {
        while (const Event* e = stream.next_event()) record(run, *e);
    } else {
        for (int spins = 0; spins < 10000000; ++spins) {
            const llm_stream::PollStatus s = stream.poll();
            if (s == llm_stream::PollStatus::event) record(run, stream.current_event());
            else if (s != llm_stream::PollStatus::pending) break;
        }
    }
    stats = stream.stats();
    run.messages = stats.events;
    run.skipped = stats.skipped_events;
    run.error = stream.error().code;
    run.error_message = stream.error().message;
    run.finished = stream.finished();
    if (run.error == llm_stream::ErrorCode::server_error) run.outcome.error = run.error_message;
    return run;
}

/* A recorded mid-stream error ends the stream as server_error with the provider's message. */
void check_error(const Outcome& expected, const Run& run) {
    if (!expected.error) {
        CHECK(run.error == llm_stream::ErrorCode::none);
        if (run.error != llm_stream::ErrorCode::none) {
            CAPTURE(run.error_message);
            CHECK(run.error_message.empty());
        }
        return;
    }
    CAPTURE(run.error_message);
    CHECK(run.error == llm_stream::ErrorCode::server_error);
    CHECK(run.error_message.find(*expected.error) != std::string::npos);
}

/* Checks one run against the manifest and against the first run of the same stream. */
void check_run(const Entry& entry, const Framing& framing, const std::string& split_name, const Run& run,
               const Run* baseline) {
    CAPTURE(entry.file);
    CAPTURE(framing.name);
    CAPTURE(split_name);
    CHECK(run.contract_broken == "");
    CHECK(run.finished);
    check_error(entry.expected, run);
    CHECK(run.outcome == entry.expected);
    CHECK(run.text_always_valid_utf8);
    CHECK_FALSE(run.empty_text_event);
    CHECK(run.skipped == 0);
    // Complete, well-formed recordings: nothing to warn about.
    CHECK(run.warnings.empty());
    if (!run.warnings.empty()) {
        CAPTURE(run.warnings.front());
        CHECK(run.warnings.front().empty());
    }
    // The very same events, whatever the framing or the split points.
    if (baseline) {
        CHECK(run.trace == baseline->trace);
        CHECK(run.messages == baseline->messages);
    }
}

/* A Stream's statistics agree with the events it handed out. */
void check_stats(const Entry& entry, const Framing& framing, const Run& run, const llm_stream::Stats& stats) {
    CAPTURE(entry.file);
    CAPTURE(framing.name);
    CHECK(stats.chunks == run.content_events);
    CHECK(stats.chars == code_points(run.outcome.content));
    CHECK(stats.content_bytes == run.outcome.content.size());
    CHECK(stats.attempts == 1);
    CHECK(stats.finish_reason == entry.expected.finish_reason.value_or(""));
    CHECK(stats.has_usage == entry.expected.usage.has_value());
    if (entry.expected.usage && stats.has_usage) {
        CHECK(stats.usage.prompt_tokens == entry.expected.usage->prompt);
        CHECK(stats.usage.completion_tokens == entry.expected.usage->completion);
        CHECK(stats.usage.total_tokens == entry.expected.usage->total);
    }
    CHECK(stats.received_bytes > framing.body_offset);
    CHECK(stats.received_bytes <= framing.response.size());
    CHECK((stats.first_chunk_ms >= 0) == !entry.expected.content.empty());
    CHECK(stats.first_byte_ms >= 0);
    if (stats.first_chunk_ms >= 0) CHECK(stats.first_chunk_ms >= stats.first_byte_ms);
    CHECK(stats.total_ms >= 0);
}

}  // namespace

/* =============================================================================================
   The corpus itself
   ============================================================================================= */

TEST_CASE("manifest.json lists every recorded stream, and each one exists") {
    const std::vector<Entry>& entries = manifest();
    CHECK(entries.size() >= 12);
    std::set<std::string> listed;
    for (const Entry& e : entries) {
        CAPTURE(e.file);
        CHECK(listed.insert(e.file).second);  // no duplicates
        std::string body;
        CHECK(read_file(kStreamsDir + "/" + e.file, body));
        CHECK_FALSE(body.empty());
        // The expectations are themselves well-formed.
        CHECK(d::utf8_valid(e.expected.content.data(), e.expected.content.data() + e.expected.content.size()));
        for (std::size_t i = 1; i < e.expected.tool_calls.size(); ++i)
            CHECK(e.expected.tool_calls[i - 1].index < e.expected.tool_calls[i].index);
    }
    std::error_code ec;
    std::size_t on_disk = 0;
    for (const auto& item : std::filesystem::directory_iterator(kStreamsDir, ec)) {
        const std::string name = item.path().filename().string();
        const bool sse = name.size() > 4 && name.substr(name.size() - 4) == ".sse";
        const bool ndjson = name.size() > 7 && name.substr(name.size() - 7) == ".ndjson";
        if (sse || ndjson) {
            ++on_disk;
            CAPTURE(name);
            CHECK(listed.count(name) == 1);
        }
    }
    CHECK_FALSE(ec);
    CHECK(on_disk == entries.size());

    // Spot checks that the reader decoded the manifest's escapes and nulls.
    for (const Entry& e : entries) {
        if (e.file == "json-edge-cases.sse") {
            CHECK(e.expected.content == "\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80 \"q\" \\ / \b\f\n\r\tspaced!");
            CHECK_FALSE(e.expected.finish_reason.has_value());
            CHECK_FALSE(e.expected.usage.has_value());
        }
        if (e.file == "openai-tool-calls-parallel.sse") {
            CHECK(e.expected.tool_calls.size() == 2);
            if (e.expected.tool_calls.size() == 2) {
                CHECK(e.expected.tool_calls[1].name == "get_history_weather");
                CHECK(e.expected.tool_calls[0].arguments.find("\"location\"") != std::string::npos);
            }
        }
    }
}

TEST_CASE("every recorded stream decodes as the manifest says, in every framing and at every split") {
    const std::vector<Entry>& entries = manifest();
    CHECK_FALSE(entries.empty());
    const unsigned seeds = random_cut_seeds(50);
    std::size_t runs = 0;
    for (std::size_t n = 0; n < entries.size(); ++n) {
        const Entry& entry = entries[n];
        std::string body;
        if (!read_file(kStreamsDir + "/" + entry.file, body)) {
            CAPTURE(entry.file);
            CHECK(false);
            continue;
        }
        std::optional<Run> baseline;
        for (const Framing& framing : framings(body, static_cast<std::uint32_t>(1000 + n), entry.api)) {
            const std::string& response = framing.response;
            const Run whole = decode(response, {}, entry.api);
            check_run(entry, framing, "whole", whole, baseline ? &*baseline : nullptr);
            if (!baseline) baseline = whole;
            check_run(entry, framing, "every byte", decode(response, even_cuts(1, response.size()), entry.api), &*baseline);
            runs += 2;
            for (unsigned seed = 0; seed < seeds; ++seed) {
                const std::vector<std::size_t> cuts =
                    random_cuts(response.size(), static_cast<unsigned>(seed * 7919 + n * 104729 + framing.name.size()));
                const std::string name = "seed " + std::to_string(seed) + " (" + std::to_string(cuts.size()) + " cuts)";
                check_run(entry, framing, name, decode(response, cuts, entry.api), &*baseline);
                ++runs;
            }
            // The same through a Stream, driven both ways: its statistics and its log.
            for (Drive drive : {Drive::next_event, Drive::poll}) {
                llm_stream::Stats stats;
                const Run streamed = replay(response, stats, drive, entry.api);
                check_run(entry, framing, drive == Drive::poll ? "Stream, poll()" : "Stream, next_event()", streamed,
                          &*baseline);
                check_stats(entry, framing, streamed, stats);
                ++runs;
            }
        }
    }
    MESSAGE("decoded " << runs << " responses");
    CHECK(runs == entries.size() * 7 * (2 + seeds + 2));
}

TEST_CASE("next_chunk() yields exactly the content, one content event per chunk") {
    for (const Entry& entry : manifest()) {
        std::string body;
        CHECK(read_file(kStreamsDir + "/" + entry.file, body));
        for (const Framing& framing : framings(body, 77, entry.api)) {
            CAPTURE(entry.file);
            CAPTURE(framing.name);
            std::vector<std::string> warnings;
            llm_stream::Config config;
            config.api = entry.api;
            config.log = [&warnings](llm_stream::LogLevel, std::string_view message) { warnings.emplace_back(message); };
            llm_stream::Stream stream = llm_stream::Client(config).replay(framing.response);
            std::string content;
            std::size_t chunks = 0;
            bool all_valid = true, any_empty = false;
            while (auto chunk = stream.next_chunk()) {
                content.append(*chunk);
                ++chunks;
                all_valid = all_valid && d::utf8_valid(chunk->data(), chunk->data() + chunk->size());
                any_empty = any_empty || chunk->empty();
            }
            CHECK(content == entry.expected.content);
            CHECK(all_valid);
            CHECK_FALSE(any_empty);
            CHECK(bool(stream.error()) == entry.expected.error.has_value());
            CHECK(stream.finished());
            const llm_stream::Stats stats = stream.stats();
            CHECK(stats.chunks == chunks);
            CHECK(stats.chars == code_points(content));
            // Other events were consumed on the way: their stats still count.
            CHECK(stats.finish_reason == entry.expected.finish_reason.value_or(""));
            CHECK(stats.has_usage == entry.expected.usage.has_value());
            CHECK(warnings.empty());
        }
    }
}

TEST_CASE("range-for over a replayed stream") {
    for (const Entry& entry : manifest()) {
        std::string body;
        CHECK(read_file(kStreamsDir + "/" + entry.file, body));
        const Framing framing = framings(body, 5, entry.api)[1];  // chunked, 7-byte chunks
        llm_stream::Config config;
        config.api = entry.api;
        llm_stream::Stream stream = llm_stream::Client(config).replay(framing.response);
        std::string content;
        for (std::string_view chunk : stream) content.append(chunk);
        CAPTURE(entry.file);
        CHECK(content == entry.expected.content);
        CHECK(bool(stream.error()) == entry.expected.error.has_value());
    }
}

/* =============================================================================================
   A decoder reset for the next response on a pooled connection
   ============================================================================================= */

namespace {

/* What a stream can leave its decoder in when the next response comes: read to its end, cut inside a
   message, cut between two (both fail: the body is shorter than its Content-Length), or past a
   message that is not JSON. */
std::vector<std::pair<std::string, std::string>> leftovers_of(const std::string& body, llm_stream::Api api) {
    const char* const message_end = api == llm_stream::Api::ollama ? "\n" : "\n\n";
    const std::size_t found = body.find(message_end, body.size() / 2);
    const std::size_t between = found == std::string::npos ? body.size() : found + std::strlen(message_end);
    const std::string not_json = std::string(api == llm_stream::Api::ollama ? "" : "data: ") + "{\"x\":" + message_end;
    const Framing whole = framings(body, 1, api)[5];  // Content-Length
    const std::string with_bad = body.substr(0, between) + not_json + body.substr(between);
    return {
        {"complete", whole.response},
        {"cut in a message", whole.response.substr(0, whole.body_offset + body.size() / 3)},
        {"cut between messages", whole.response.substr(0, whole.body_offset + between)},
        {"a message that is not JSON", framings(with_bad, 1, api)[5].response},
    };
}

}  // namespace

// A pooled connection's decoder is reset, not made anew, and so is its API's reader: whatever any
// stream of the API left it in, the next stream decodes to exactly the events a new decoder makes.
TEST_CASE("a reset decoder decodes every recorded stream as a new one, after any stream of its API") {
    const std::vector<Entry>& entries = manifest();
    std::vector<std::string> bodies(entries.size());
    for (std::size_t i = 0; i < entries.size(); ++i) CHECK(read_file(kStreamsDir + "/" + entries[i].file, bodies[i]));
    std::size_t runs = 0;
    for (std::size_t next = 0; next < entries.size(); ++next) {
        const llm_stream::Api api = entries[next].api;
        const Framing framing = framings(bodies[next], 2, api)[1];  // chunked, 7-byte chunks
        const Run fresh = decode(framing.response, {}, api);
        llm_stream::Decoder decoder(llm_stream::Limits{}, api);
        for (std::size_t before = 0; before < entries.size(); ++before) {
            if (entries[before].api != api) continue;
            for (const auto& left : leftovers_of(bodies[before], api)) {
                const auto& state = left.first;  // not structured bindings: CAPTURE's lambda takes them (clang 14)
                const auto& leftover = left.second;
                CAPTURE(entries[before].file);
                CAPTURE(state);
                decode_with(decoder, leftover, even_cuts(5, leftover.size()));
                decoder.reset();
                const Run again = decode_with(decoder, framing.response, {});
                decoder.reset();
                check_run(entries[next], framing, "after a reset", again, &fresh);
                CHECK(again.error_message == fresh.error_message);
                CHECK(again.warnings == fresh.warnings);
                ++runs;
            }
        }
    }
    MESSAGE("decoded " << runs << " responses after a reset");
    CHECK(runs >= entries.size() * 4);
}

/* =============================================================================================
   The JSON layer inside the pipeline: undecodable events and error events
   ============================================================================================= */

/* Whole, at every byte and at random cuts through the Decoder, then whole through a Stream: the
   same events every time, each run checked by `check`. */
template <class Check>
void check_every_split(const std::string& body, std::uint32_t seed, int random_splits, Check check) {
    std::optional<std::vector<std::string>> first_trace;
    int runs = 0;
    for (const Framing& framing : framings(body, seed)) {
        CAPTURE(framing.name);
        for (int split = 0; split < 2 + random_splits; ++split) {
            CAPTURE(split);
            const std::vector<std::size_t> cuts =
                split == 0   ? std::vector<std::size_t>{}
                : split == 1 ? even_cuts(1, framing.response.size())
                             : random_cuts(framing.response.size(), seed * 31 + static_cast<unsigned>(split));
            const Run run = decode(framing.response, cuts);
            CHECK(run.contract_broken == "");
            check(run);
            if (!first_trace) first_trace = run.trace;
            CHECK(run.trace == *first_trace);
            ++runs;
        }
        llm_stream::Stats stats;
        const Run streamed = replay(framing.response, stats);
        check(streamed);
        CHECK(streamed.trace == *first_trace);
        CHECK(stats.skipped_events == streamed.skipped);
        CHECK(stats.chunks == streamed.content_events);
        CHECK(stats.chars == code_points(streamed.outcome.content));
        ++runs;
    }
    CHECK(runs == 7 * (3 + random_splits));
}

bool skipped_warning(const std::string& warning) {
    return warning.find("skipped an event whose JSON could not be decoded (") == 0;
}

TEST_CASE("pipeline: an undecodable event is skipped with a warning; an error event ends the stream") {
    const std::string body =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"A\\u00e9\"}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"LOST\"}}],}\n\n"  // trailing comma
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"B\xF0\x9F\x98\x80\"}}]}\n\n"
        "data: {\"error\":{\"message\":\"The engine is overloaded\",\"type\":\"server_error\",\"code\":529}}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"NEVER\"}}]}\n\n"
        "data: [DONE]\n\n";
    check_every_split(body, 3, 10, [](const Run& run) {
        CHECK(run.outcome.content == "A\xC3\xA9" "B\xF0\x9F\x98\x80");  // the text before the error stays
        CHECK(run.content_events == 2);
        CHECK(run.finished);
        CHECK(run.error == llm_stream::ErrorCode::server_error);
        CHECK(run.error_message.find("The engine is overloaded") != std::string::npos);
        CHECK(run.error_message.find("server_error") != std::string::npos);
        CHECK(run.error_message.find("529") != std::string::npos);
        CHECK(run.skipped == 1);
        CHECK(run.warnings.size() == 1);  // the skipped event
        if (run.warnings.size() == 1) {
            CAPTURE(run.warnings[0]);
            CHECK(skipped_warning(run.warnings[0]));
            CHECK(run.warnings[0].find("LOST") != std::string::npos);  // an excerpt of the event
        }
    });
}

TEST_CASE("pipeline: events that are not chat chunks never stop a stream") {
    const std::string body =
        "data: {\"choices\":[],\"prompt_filter_results\":[{\"prompt_index\":0}]}\n\n"   // Azure preamble
        "data: [1,2,3]\n\n"                                                           // not an object
        "data: \"just a string\"\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"}}],\"error\":null}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\ud83d\"}}]}\n\n"   // only a lone surrogate
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xFF\xFE\"}}]}\n\n"   // only invalid bytes
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n"
        "data: [DONE]\n\n";
    check_every_split(body, 4, 0, [](const Run& run) {
        CHECK(run.finished);
        CHECK(run.error == llm_stream::ErrorCode::none);
        CHECK(run.outcome.content == "ok");
        CHECK(run.content_events == 1);
        CHECK_FALSE(run.empty_text_event);
        CHECK(run.outcome.finish_reason == std::optional<std::string>("stop"));
        CHECK(run.outcome.usage.has_value());
        CHECK(run.skipped == 2);
        CHECK(run.warnings.size() == 2);
        for (const std::string& w : run.warnings) {
            CAPTURE(w);
            CHECK(skipped_warning(w));
        }
    });
}

/* =============================================================================================
   The end of the response, for connection reuse
   ============================================================================================= */

TEST_CASE("Decoder: after done, the response is complete once its last byte was consumed") {
    const std::string body =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\n"
        "data: [DONE]\n\n";
    for (const Framing& framing : framings(body, 6)) {
        CAPTURE(framing.name);
        llm_stream::Decoder decoder;
        std::string_view input = framing.response;
        llm_stream::DecodeStep step;
        for (int steps = 0; steps < 16 && step.status != llm_stream::DecodeStatus::done; ++steps) {
            step = decoder.feed(input);
            input.remove_prefix(step.consumed);
        }
        CHECK(step.status == llm_stream::DecodeStatus::done);
        // What a transport does before pooling the connection: read the rest of the response.
        for (int steps = 0; steps < 16 && !input.empty() && !decoder.response_complete(); ++steps)
            input.remove_prefix(decoder.feed(input).consumed);
        CHECK(input.empty());
        const bool close_delimited = framing.name == "close-delimited";  // its end is the end of input
        CHECK(decoder.response_complete() == !close_delimited);
        CHECK(decoder.keep_alive() == !close_delimited);
    }
}
