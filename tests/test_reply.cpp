// The assembled reply (issue 9): recorded tool-call streams (tests/data/replies and the corpus's
// parallel calls) fed through the Decoder at every split into a ReplyAssembler assemble to exactly
// the expected messages; a UTF-16 surrogate pair split between two events is one character in
// content, reasoning and tool-call arguments, however a server slices it; Stream::reply() over the
// stub and over a replayed response, with a retry in between.
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>
#include "support/ensure.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/chunked.hpp"
#include "support/decode.hpp"
#include "support/random_cuts.hpp"
#include "support/split_check.hpp"
#include "support/test_data.hpp"

namespace d = llm_stream::detail;
using llm_stream::Event;
using llm_stream::EventType;
using llm_stream::Reply;
using llm_stream::ReplyAssembler;
using llm_stream::ReplyChoice;
using llm_stream::ToolCall;
using llm_stream::Usage;

namespace {

std::string read_data(const std::string& relative) {
    std::string text;
    REQUIRE_MESSAGE(llm_test::read_file(std::string(LLM_STREAM_TEST_DATA_DIR) + "/" + relative, text),
                    "cannot read tests/data/" << relative);
    return text;
}

/* ---------------------------------------------------------------------------------------------
   A Reply as text, and expected replies
   --------------------------------------------------------------------------------------------- */

std::string describe(const Reply& reply) {
    std::string out;
    for (const ReplyChoice& c : reply.choices) {
        const llm_stream::Message& m = c.message;
        out += "choice " + std::to_string(c.index) + " (" + llm_stream::role_name(m.role) + "): content=[" +
               m.content + "] reasoning=[" + m.reasoning + "] finish=[" + c.finish_reason + "]\n";
        out += "  signature=[" + m.reasoning_signature + "] redacted=[";
        for (const std::string& data : m.redacted_reasoning) out += data + ";";
        out += "]\n";
        for (const ToolCall& call : m.tool_calls)
            out += "  call " + call.id + " " + call.name + " [" + call.arguments + "] signature=[" + call.signature + "]\n";
        out += "  invalid:";
        for (std::size_t i : c.invalid_tool_calls) out += " " + std::to_string(i);
        out += "\n";
    }
    if (reply.has_usage)
        out += "usage " + std::to_string(reply.usage.prompt_tokens) + "/" + std::to_string(reply.usage.completion_tokens) +
               "/" + std::to_string(reply.usage.total_tokens) + "\n";
    return out;
}

ToolCall call(std::string id, std::string name, std::string arguments) {
    ToolCall c;
    c.id = std::move(id);
    c.name = std::move(name);
    c.arguments = std::move(arguments);
    return c;
}

ReplyChoice choice(int index, std::string content, std::string reasoning, std::vector<ToolCall> calls,
                   std::string finish, std::vector<std::size_t> invalid = {}) {
    ReplyChoice c;
    c.index = index;
    c.message.content = std::move(content);
    c.message.reasoning = std::move(reasoning);
    c.message.tool_calls = std::move(calls);
    c.finish_reason = std::move(finish);
    c.invalid_tool_calls = std::move(invalid);
    return c;
}

Reply reply(std::vector<ReplyChoice> choices, std::optional<Usage> usage) {
    Reply r;
    r.choices = std::move(choices);
    r.has_usage = usage.has_value();
    if (usage) r.usage = *usage;
    return r;
}

Usage usage(std::int64_t prompt, std::int64_t completion) {
    Usage u;
    u.prompt_tokens = prompt;
    u.completion_tokens = completion;
    u.total_tokens = prompt + completion;
    return u;
}

/* ---------------------------------------------------------------------------------------------
   The Decoder into a ReplyAssembler
   --------------------------------------------------------------------------------------------- */

struct Assembled {
    Reply reply;
    std::vector<std::string> texts;  // each content, reasoning and arguments text, in order
    std::string anomalies;           // a broken contract, an add() error, a warning, no clean end
    std::string describe() const { return ::describe(reply) + anomalies; }
};

Assembled assemble(const std::string& response, const std::vector<std::size_t>& cuts,
                   llm_stream::Api api = llm_stream::Api::openai) {
    Assembled out;
    ReplyAssembler assembler;
    llm_stream::Decoder decoder({}, api);
    const Decoded decoded = decode_in_pieces(decoder, response, cuts, PieceMemory::copied, [&](const Event& e) {
        if (e.type == EventType::content || e.type == EventType::reasoning) out.texts.emplace_back(e.text);
        if (e.type == EventType::tool_call && e.tool_call.arguments) out.texts.emplace_back(*e.tool_call.arguments);
        if (const llm_stream::Error error = assembler.add(e)) out.anomalies += "add: " + error.message + "\n";
    });
    out.anomalies += decoded.contract_broken;
    for (const std::string& w : decoded.warnings) out.anomalies += "warning: " + w + "\n";
    if (!decoded.done) out.anomalies += "not done: " + decoded.error.message + "\n";
    assembler.finish();
    out.reply = assembler.reply();
    return out;
}

/* Whole, byte by byte, at every single cut and at random cuts: always exactly `expected`. */
void check_assembles(const std::string& response, const Reply& expected, llm_stream::Api api = llm_stream::Api::openai) {
    const Assembled whole = check_every_split(
        response.size(), [&](const std::vector<std::size_t>& cuts) { return assemble(response, cuts, api); }, 20000, 8);
    CHECK(whole.describe() == describe(expected));
}

}  // namespace

/* =============================================================================================
   Recorded tool-call streams
   ============================================================================================= */

TEST_CASE("recorded tool-call streams assemble to the exact messages at every split") {
    struct Case {
        const char* file;
        Reply expected;
    };
    const Case cases[] = {
        {"streams/openai-tool-calls-parallel.sse",
         reply({choice(0, "", "",
                       {call("call_8wSWhuzOhClEzH8c2pYjRIiz", "get_current_weather",
                             "{\"format\": \"celsius\", \"location\": \"北京\"}"),
                        call("call_RbImHA6tBOwuzwIAvsQKFOox", "get_history_weather",
                             "{\"format\": \"celsius\", \"location\": \"洛阳\"}")},
                       "tool_calls")},
               usage(172, 57))},
        {"replies/reasoning-then-tools.sse",
         reply({choice(0, "", "The user wants the weather in 北京 and the time; two tools. 😊",
                       {call("call_0_weather", "get_weather", "{\"city\":\"北京\",\"unit\":\"celsius\"}"),
                        call("call_1_time", "get_time", "{\"tz\":\"Asia/Shanghai\"}")},
                       "tool_calls")},
               usage(88, 64))},
        // Every call numbered 0: a new id starts a new call, an empty one does not; "" is a call
        // without parameters (valid, kept as received).
        {"replies/calls-numbered-0.sse",
         reply({choice(0, "Let me check.", "",
                       {call("call_a", "lookup", "{\"q\":\"shoes\"}"), call("call_b", "now", ""),
                        call("call_c", "lookup", "{\"q\": \"socks\"} ")},
                       "tool_calls")},
               usage(30, 20))},
        // The second call's arguments were cut by the length limit: flagged, kept.
        {"replies/cut-short-by-length.sse",
         reply({choice(0, "", "", {call("call_ok", "add", "{\"a\":1,\"b\":2}"), call("call_cut", "write", "{\"text\":\"Once upon")},
                       "length", {1})},
               std::nullopt)},
        // n=2, interleaved: one message per choice, by index.
        {"replies/two-choices.sse",
         reply({choice(0, "Running shoes are light.", "", {}, "stop"),
                choice(1, "", "", {call("call_n2", "search", "{\"q\":\"跑鞋\"}")}, "tool_calls")},
               usage(10, 16))},
    };
    for (const Case& c : cases) {
        CAPTURE(c.file);
        const std::string body = read_data(c.file);
        for (std::size_t chunk_size : {7u, 4096u}) {
            CAPTURE(chunk_size);
            check_assembles(chunked_sse_response(body, chunk_size), c.expected);
        }
    }
}

TEST_CASE("tool-call arguments split at every byte assemble whole") {
    const std::string arguments = "{\"city\":\"Saint-\\u00c9tienne\",\"note\":\"say \\\"hi\\\"\",\"n\":[1,2.5,true,null]}";
    for (std::size_t at = 0; at <= arguments.size(); ++at) {
        CAPTURE(at);
        std::string body =
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_x\",\"type\":\"function\","
            "\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n";
        for (const std::string& piece : {arguments.substr(0, at), arguments.substr(at)}) {
            std::string text;
            d::json_write_string(text, piece);
            body += "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":" +
                    text + "}}]}}]}\n\n";
        }
        body += "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n";
        const Assembled a = assemble(chunked_sse_response(body, 64), {});
        CHECK(a.describe() == describe(reply({choice(0, "", "", {call("call_x", "f", arguments)}, "tool_calls")}, std::nullopt)));
    }
}

/* =============================================================================================
   Reasoning signatures: each API's stream of a thinking model that calls a tool
   ============================================================================================= */

namespace {

ToolCall signed_call(std::string id, std::string name, std::string arguments, std::string signature) {
    ToolCall c = call(std::move(id), std::move(name), std::move(arguments));
    c.signature = std::move(signature);
    return c;
}

ReplyChoice signed_choice(ReplyChoice c, std::string signature, std::vector<std::string> redacted = {}) {
    c.message.reasoning_signature = std::move(signature);
    c.message.redacted_reasoning = std::move(redacted);
    return c;
}

std::string sse(std::string_view name, std::string_view data) {
    return (name.empty() ? "" : "event: " + std::string(name) + "\n") + "data: " + std::string(data) + "\n\n";
}

}  // namespace

TEST_CASE("anthropic: the thinking block's signature and a redacted block's data, at every split") {
    const std::string body =
        sse("message_start", R"({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"usage":{"input_tokens":12,"output_tokens":1}}})") +
        sse("content_block_start", R"({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}})") +
        sse("content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Paris: use the tool."}})") +
        sse("content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCkgIARAB+/sig=="}})") +
        sse("content_block_stop", R"({"type":"content_block_stop","index":0})") +
        sse("content_block_start", R"({"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3p"}})") +
        sse("content_block_stop", R"({"type":"content_block_stop","index":1})") +
        sse("content_block_start", R"({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}})") +
        sse("content_block_delta", R"({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\":\"Paris\"}"}})") +
        sse("content_block_stop", R"({"type":"content_block_stop","index":2})") +
        sse("message_delta", R"({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":30}})") +
        sse("message_stop", R"({"type":"message_stop"})");
    const Reply expected = reply({signed_choice(choice(0, "", "Paris: use the tool.", {call("toolu_1", "get_weather", "{\"city\":\"Paris\"}")}, "tool_calls"),
                                                "EqQBCkgIARAB+/sig==", {"EmwKAhgBEgy3va3p"})},
                                 usage(12, 30));
    check_assembles(chunked_sse_response(body, 4096), expected, llm_stream::Api::anthropic);
}

TEST_CASE("gemini: a call's thoughtSignature and a text part's, at every split") {
    const std::string calls =
        sse("", R"({"candidates":[{"content":{"parts":[{"text":"Paris needs the tool.","thought":true}],"role":"model"},"index":0}]})") +
        sse("", R"({"candidates":[{"content":{"parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"CiQB0e2Kb+sig=="}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":5,"totalTokenCount":14}})");
    Reply expected = reply({choice(0, "", "Paris needs the tool.", {signed_call("", "get_weather", "{\"city\":\"Paris\"}", "CiQB0e2Kb+sig==")}, "tool_calls")},
                           usage(9, 5));
    // The assembler gives the call an id at finish(): the same as it makes for any Gemini call.
    ReplyAssembler made;
    Event open;
    open.type = EventType::tool_call;
    open.tool_call.name = std::string_view("get_weather");
    open.tool_call.arguments = std::string_view("{\"city\":\"Paris\"}");
    REQUIRE_FALSE(made.add(open));
    made.finish();
    expected.choices[0].message.tool_calls[0].id = made.reply().message().tool_calls[0].id;
    check_assembles(chunked_sse_response(calls, 4096), expected, llm_stream::Api::gemini);

    const std::string text =
        sse("", R"({"candidates":[{"content":{"parts":[{"text":"It is "}],"role":"model"},"index":0}]})") +
        sse("", R"({"candidates":[{"content":{"parts":[{"text":"sunny.","thoughtSignature":"Cs0BAdHt+text=="}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":3,"totalTokenCount":12}})");
    check_assembles(chunked_sse_response(text, 4096),
                    reply({signed_choice(choice(0, "It is sunny.", "", {}, "stop"), "Cs0BAdHt+text==")}, usage(9, 3)),
                    llm_stream::Api::gemini);
}

TEST_CASE("responses: the reasoning item done with its encrypted content is the signature, whole, at every split") {
    const std::string item = R"({"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"Use the tool."}],"encrypted_content":"gAAAAB+enc=="})";
    const std::string body =
        sse("response.created", R"({"type":"response.created","response":{"id":"resp_1","status":"in_progress","output":[],"usage":null}})") +
        sse("response.output_item.added", R"({"type":"response.output_item.added","output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[]}})") +
        sse("response.reasoning_summary_text.delta", R"({"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":0,"summary_index":0,"delta":"Use the tool."})") +
        sse("response.output_item.done", R"({"type":"response.output_item.done","output_index":0,"item":)" + item + "}") +
        // Without encrypted_content an item is only a reference that store false did not keep: no signature.
        sse("response.output_item.done", R"({"type":"response.output_item.done","output_index":1,"item":{"id":"rs_2","type":"reasoning","summary":[]}})") +
        sse("response.output_item.added", R"({"type":"response.output_item.added","output_index":2,"item":{"id":"fc_1","type":"function_call","status":"in_progress","arguments":"","call_id":"call_1","name":"get_weather"}})") +
        sse("response.function_call_arguments.delta", R"({"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":2,"delta":"{\"city\":\"Paris\"}"})") +
        sse("response.completed", R"({"type":"response.completed","response":{"id":"resp_1","status":"completed","output":[],"usage":{"input_tokens":20,"output_tokens":10,"total_tokens":30}}})");
    check_assembles(chunked_sse_response(body, 4096),
                    reply({signed_choice(choice(0, "", "Use the tool.", {call("call_1", "get_weather", "{\"city\":\"Paris\"}")}, "tool_calls"), item)},
                          usage(20, 10)),
                    llm_stream::Api::responses);
}

TEST_CASE("ReplyAssembler: signatures arrive whole; the last counts; redacted blocks add up; a call keeps its own") {
    ReplyAssembler assembler;
    Event e;
    e.type = EventType::reasoning;
    e.text = "Think.";
    REQUIRE_FALSE(assembler.add(e));
    e.text = {};
    e.signature = "first";
    REQUIRE_FALSE(assembler.add(e));
    e.signature = "second";
    REQUIRE_FALSE(assembler.add(e));
    e.raw_reason = "redacted_thinking";
    e.signature = "r1";
    REQUIRE_FALSE(assembler.add(e));
    e.signature = "r2";
    REQUIRE_FALSE(assembler.add(e));
    Event c;
    c.type = EventType::tool_call;
    c.tool_call.id = std::string_view("call_1");
    c.tool_call.signature = "call-sig";
    REQUIRE_FALSE(assembler.add(c));
    c.tool_call.id.reset();
    c.tool_call.signature = {};
    c.tool_call.arguments = std::string_view("{}");
    REQUIRE_FALSE(assembler.add(c));  // a later fragment without one keeps it
    const llm_stream::Message& m = assembler.reply().message();
    CHECK(m.reasoning == "Think.");
    CHECK(m.reasoning_signature == "second");
    CHECK(m.redacted_reasoning == std::vector<std::string>{"r1", "r2"});
    REQUIRE(m.tool_calls.size() == 1);
    CHECK(m.tool_calls[0].signature == "call-sig");
    CHECK(m.tool_calls[0].arguments == "{}");
}

TEST_CASE("ReplyAssembler: finish(), clear(), choices out of range") {
    ReplyAssembler assembler;
    CHECK(assembler.reply().choices.empty());
    CHECK(assembler.reply().message().role == llm_stream::Role::assistant);
    CHECK(assembler.reply().message().content.empty());
    Event e;
    e.type = EventType::tool_call;
    e.choice = 3;
    e.tool_call.index = 0;
    e.tool_call.id = "call_1";
    e.tool_call.arguments = "{\"a\":";
    CHECK_FALSE(assembler.add(e));
    e.type = EventType::content;
    e.choice = 1;
    e.text = "one";
    CHECK_FALSE(assembler.add(e));
    REQUIRE(assembler.reply().choices.size() == 2);
    CHECK(assembler.reply().choices[0].index == 1);  // by index, whatever the order of arrival
    CHECK(assembler.reply().choices[1].index == 3);
    CHECK(assembler.reply().message().content == "one");
    CHECK(assembler.reply().choices[1].invalid_tool_calls.empty());  // checked only by finish()
    assembler.finish();
    assembler.finish();  // again: the same, nothing doubled
    CHECK(assembler.reply().choices[1].invalid_tool_calls == std::vector<std::size_t>{0});
    for (int bad : {-1, llm_stream::detail::max_choices}) {
        e.choice = bad;
        const llm_stream::Error error = assembler.add(e);
        CHECK(error.code == llm_stream::ErrorCode::invalid_argument);
        CHECK(error.message == "ReplyAssembler: an event's choice must be from 0 to 127");
    }
    assembler.clear();
    CHECK(assembler.reply().choices.empty());
    CHECK_FALSE(assembler.reply().has_usage);
    e.choice = 0;
    e.type = EventType::tool_call;  // the old call at (3, 0) is forgotten too: this opens a new one
    CHECK_FALSE(assembler.add(e));
    REQUIRE(assembler.reply().choices.size() == 1);
    CHECK(assembler.reply().message().tool_calls.size() == 1);
}

/* =============================================================================================
   No character lost across events: UTF-16 surrogate pairs split between two events
   ============================================================================================= */

namespace {

const std::string kEmojiText = "a\xF0\x9F\x98\x8A" "b\xF0\x9F\x8E\x89";  // "a😊b🎉": 6 UTF-16 code units

/* The UTF-16 code units of valid UTF-8 text. */
std::vector<std::uint32_t> utf16_units(std::string_view text) {
    std::vector<std::uint32_t> units;
    for (std::size_t i = 0; i < text.size();) {
        const unsigned char lead = static_cast<unsigned char>(text[i]);
        const std::size_t n = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
        std::uint32_t cp = n == 1 ? lead : lead & (0xFFu >> (n + 1));
        for (std::size_t k = 1; k < n; ++k) cp = cp << 6 | (static_cast<unsigned char>(text[i + k]) & 0x3Fu);
        if (cp < 0x10000) {
            units.push_back(cp);
        } else {
            units.push_back(0xD800 + ((cp - 0x10000) >> 10));
            units.push_back(0xDC00 + ((cp - 0x10000) & 0x3FF));
        }
        i += n;
    }
    return units;
}

std::string hex_escape(std::uint32_t unit) {
    char text[16];  // room for any unsigned value, though a code unit has four hex digits
    std::snprintf(text, sizeof text, "\\u%04x", static_cast<unsigned>(unit));
    return text;
}

/* A JSON string of units [begin, end) as a server written in JavaScript sends it: JSON.stringify
   escapes a lone surrogate and writes the rest as UTF-8; with escape_all (Python's ensure_ascii),
   every unit outside ASCII is an escape. */
std::string js_string(const std::vector<std::uint32_t>& units, std::size_t begin, std::size_t end, bool escape_all) {
    std::string utf8;
    std::string out = "\"";
    for (std::size_t i = begin; i < end; ++i) {
        const std::uint32_t u = units[i];
        const bool high = u >= 0xD800 && u <= 0xDBFF, low = u >= 0xDC00 && u <= 0xDFFF;
        if (escape_all && u >= 0x80) {
            out += hex_escape(u);
        } else if (high && i + 1 < end && units[i + 1] >= 0xDC00 && units[i + 1] <= 0xDFFF) {
            char bytes[4];
            const std::size_t n = d::utf8_encode(0x10000 + ((u - 0xD800) << 10) + (units[i + 1] - 0xDC00), bytes);
            out.append(bytes, n);
            ++i;
        } else if (high || low) {
            out += hex_escape(u);
        } else {
            utf8.clear();
            d::json_write_string(utf8, std::string(1, static_cast<char>(u)));  // the tests' text is ASCII there
            out.append(utf8, 1, utf8.size() - 2);
        }
    }
    return out + "\"";
}

enum class Field { content, reasoning, arguments };

/* One SSE event carrying `json_string` in `field` of choice `choice` (arguments: of call `call`). */
std::string event_with(Field field, const std::string& json_string, int choice = 0, int call = 0) {
    const std::string head = "data: {\"choices\":[{\"index\":" + std::to_string(choice) + ",\"delta\":{";
    switch (field) {
    case Field::content: return head + "\"content\":" + json_string + "}}]}\n\n";
    case Field::reasoning: return head + "\"reasoning_content\":" + json_string + "}}]}\n\n";
    case Field::arguments: break;
    }
    return head + "\"tool_calls\":[{\"index\":" + std::to_string(call) + ",\"function\":{\"arguments\":" + json_string +
           "}}]}}]}\n\n";
}

std::string opening_of_call(int choice, int call) {
    return "data: {\"choices\":[{\"index\":" + std::to_string(choice) + ",\"delta\":{\"tool_calls\":[{\"index\":" +
           std::to_string(call) + ",\"id\":\"call_" + std::to_string(call) + "\",\"function\":{\"name\":\"f\"}}]}}]}\n\n";
}

const std::string kDone = "data: [DONE]\n\n";

/* The one text a field of choice 0 assembled to (arguments: of its first call), after checking the
   stream decoded cleanly and no content or reasoning event was empty. */
std::string assembled_text(const std::string& body, Field field) {
    const Assembled a = assemble(chunked_sse_response(body, 5), {});
    CHECK(a.anomalies == "");
    if (a.reply.choices.empty()) return "<no choice>";
    const llm_stream::Message& m = a.reply.choices[0].message;
    switch (field) {
    case Field::content: return m.content;
    case Field::reasoning: return m.reasoning;
    case Field::arguments: break;
    }
    return m.tool_calls.empty() ? "<no call>" : m.tool_calls[0].arguments;
}

/* Events carrying `text` sliced by UTF-16 code units at `cuts`. */
std::string sliced(Field field, const std::string& text, const std::vector<std::size_t>& cuts, bool escape_all) {
    const std::vector<std::uint32_t> units = utf16_units(text);
    std::string body = field == Field::arguments ? opening_of_call(0, 0) : "";
    std::size_t at = 0;
    for (std::size_t i = 0; i <= cuts.size(); ++i) {
        const std::size_t end = i < cuts.size() ? cuts[i] : units.size();
        body += event_with(field, js_string(units, at, end, escape_all));
        at = end;
    }
    return body + kDone;
}

}  // namespace

TEST_CASE("a surrogate pair split between two events is one character: every slicing, every field") {
    const std::string arguments_text = "{\"s\":\"" + kEmojiText + "\"}";
    for (Field field : {Field::content, Field::reasoning, Field::arguments}) {
        const std::string& text = field == Field::arguments ? arguments_text : kEmojiText;
        const std::size_t units = utf16_units(text).size();
        CAPTURE(static_cast<int>(field));
        for (bool escape_all : {false, true}) {
            CAPTURE(escape_all);
            for (std::size_t at = 0; at <= units; ++at) {
                CAPTURE(at);
                CHECK(assembled_text(sliced(field, text, {at}, escape_all), field) == text);
            }
            CHECK(assembled_text(sliced(field, text, even_cuts(1, units), escape_all), field) == text);  // a unit each
        }
    }
}

TEST_CASE("a joined character opens the next event's text; a half alone makes no event") {
    const std::vector<std::uint32_t> units = utf16_units(kEmojiText);
    const std::string one_unit_per_event = sliced(Field::content, kEmojiText, even_cuts(1, units.size()), false);
    const Assembled a = assemble(chunked_sse_response(one_unit_per_event, 5), {});
    CHECK(a.texts == std::vector<std::string>{"a", "\xF0\x9F\x98\x8A", "b", "\xF0\x9F\x8E\x89"});
    const std::string pair_split =
        event_with(Field::content, "\"x\\ud83d\"") + event_with(Field::content, "\"\\ude0ay\"") + kDone;
    const Assembled split = assemble(chunked_sse_response(pair_split, 5), {});
    CHECK(split.texts == std::vector<std::string>{"x", "\xF0\x9F\x98\x8Ay"});
}

TEST_CASE("split surrogates: per choice and per call, whatever comes between the halves") {
    // n=2 and two calls, one code unit per event, the fields interleaved.
    const std::vector<std::uint32_t> units = utf16_units(kEmojiText);
    std::string body = opening_of_call(1, 0) + opening_of_call(1, 1);
    for (std::size_t i = 0; i < units.size(); ++i) {
        const std::string unit = js_string(units, i, i + 1, false);
        body += event_with(Field::content, unit, 0) + event_with(Field::reasoning, unit, 0) +
                event_with(Field::content, unit, 1) + event_with(Field::arguments, unit, 1, 0) +
                event_with(Field::arguments, unit, 1, 1);
    }
    const Assembled a = assemble(chunked_sse_response(body + kDone, 11), {});
    CHECK(a.anomalies == "");
    CHECK(a.describe() == describe(reply({choice(0, kEmojiText, kEmojiText, {}, ""),
                                          choice(1, kEmojiText, "", {call("call_0", "f", kEmojiText), call("call_1", "f", kEmojiText)}, "",
                                                 {0, 1})},  // not JSON
                                         std::nullopt)));
}

TEST_CASE("split surrogates: lone halves are dropped, and only they") {
    struct Case {
        const char* what;
        std::vector<std::string> strings;  // the content of successive events
        const char* expected;
    };
    const Case cases[] = {
        {"a high half, then a character that is no low half", {"\"a\\ud83d\"", "\"x\""}, "ax"},
        {"a high half, then an escape that is no low half", {"\"\\ud83d\"", "\"\\u0041\""}, "A"},
        {"a high half, then another high half and its low half", {"\"a\\ud83d\"", "\"\\ud83d\"", "\"\\ude0a\""}, "a\xF0\x9F\x98\x8A"},
        {"a lone low half", {"\"x\\ude0ay\"", "\"\\ude0a\""}, "xy"},
        {"a high half at the end of the stream", {"\"a\"", "\"\\ud83d\""}, "a"},
        {"an empty string between the halves", {"\"\\ud83d\"", "\"\"", "\"\\ude0a\""}, "\xF0\x9F\x98\x8A"},
        {"a pair within one event is untouched", {"\"\\ud83d\\ude0a\\ud83d\"", "\"\\ude0a\""}, "\xF0\x9F\x98\x8A\xF0\x9F\x98\x8A"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.what);
        std::string body;
        for (const std::string& s : c.strings) body += event_with(Field::content, s);
        CHECK(assembled_text(body + kDone, Field::content) == c.expected);
    }
    // Another field's strings between the halves change nothing, nor does a null content, nor another
    // choice's low half (alone there: dropped, and its choice gets no event).
    const std::string between = event_with(Field::content, "\"\\ud83d\"") + event_with(Field::reasoning, "\"r\"") +
                                event_with(Field::content, "null") + event_with(Field::content, "\"\\ude0a\"", 1) +
                                event_with(Field::content, "\"\\ude0a!\"") + kDone;
    const Assembled a = assemble(chunked_sse_response(between, 9), {});
    CHECK(a.describe() == describe(reply({choice(0, "\xF0\x9F\x98\x8A!", "r", {}, "")}, std::nullopt)));
}

TEST_CASE("the whole-JSON reply: several choices, tool calls without an index, a trailing half dropped") {
    const std::string body =
        "{\"id\":\"chatcmpl-w\",\"object\":\"chat.completion\",\"choices\":["
        "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"a\\ud83d\\ude0ab\\ud83d\",\"tool_calls\":["
        "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":\\\"\\ud83c\\udf89\\\"}\"}},"
        "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"},"
        "{\"index\":1,\"message\":{\"role\":\"assistant\",\"content\":\"second\"},\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}";
    const Reply expected = reply({choice(0, "a\xF0\x9F\x98\x8A" "b", "",
                                         {call("call_1", "f", "{\"x\":\"\xF0\x9F\x8E\x89\"}"), call("call_2", "g", "{}")},
                                         "tool_calls"),
                                  choice(1, "second", "", {}, "stop")},
                                 usage(5, 7));
    check_assembles(length_response(body, "application/json"), expected);
}

/* =============================================================================================
   Stream::reply()
   ============================================================================================= */

namespace {

llm_stream::Config quiet_config() {
    llm_stream::Config config;
    config.log_level = llm_stream::LogLevel::off;
    config.retry.initial_backoff = std::chrono::milliseconds(1);
    config.retry.jitter = 0;
    return config;
}

/* A stream over in-memory responses, one per attempt (the last one for every later attempt). */
llm_stream::Stream memory_stream(std::vector<std::string> responses, bool assemble_reply) {
    auto state = std::make_shared<d::ClientState>();
    state->config = quiet_config();
    auto shared = std::make_shared<std::vector<std::string>>(std::move(responses));
    auto attempt = std::make_shared<std::size_t>(0);
    d::AttemptPlan plan;
    plan.factory = [shared, attempt](d::ClientState&, const auto&) {
        const std::size_t i = std::min((*attempt)++, shared->size() - 1);
        return std::make_unique<d::MemoryTransport>(std::make_shared<const std::string>((*shared)[i]),
                                                    std::vector<std::size_t>{}, std::chrono::milliseconds(0));
    };
    plan.description = "test";
    plan.assemble_reply = assemble_reply;
    return llm_stream::Stream(std::make_unique<d::StreamImpl>(state, std::move(plan)));
}

}  // namespace

TEST_CASE("Stream::reply(): partial while running, complete at the end, empty unless asked for") {
    const std::string response = chunked_sse_response(read_data("replies/reasoning-then-tools.sse"), 64);
    llm_stream::Stream stream = memory_stream({response}, true);
    std::string reasoning;
    std::size_t events = 0;
    while (const Event* e = stream.next_event()) {
        ++events;
        if (e->type == EventType::reasoning) reasoning.append(e->text);
        REQUIRE(stream.reply().choices.size() == 1);
        CHECK(stream.reply().message().reasoning == reasoning);
        CHECK(stream.reply().choices[0].invalid_tool_calls.empty());
    }
    CHECK_FALSE(stream.error());
    CHECK(events > 10);
    const Assembled decoded = assemble(response, {});
    CHECK(describe(stream.reply()) == describe(decoded.reply));
    CHECK(stream.reply().message().tool_calls.size() == 2);

    llm_stream::Stream plain = memory_stream({response}, false);
    while (plain.next_event()) {}
    CHECK_FALSE(plain.error());
    CHECK(plain.reply().choices.empty());
    CHECK(llm_stream::Stream().reply().choices.empty());
}

TEST_CASE("Stream::reply(): a retried attempt adds nothing twice") {
    const std::string response = chunked_sse_response(read_data("replies/two-choices.sse"), 13);
    const std::string unavailable =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    llm_stream::Stream stream = memory_stream({unavailable, response}, true);
    std::string chunks;
    while (auto chunk = stream.next_chunk()) chunks.append(*chunk);
    CHECK_FALSE(stream.error());
    CHECK(stream.stats().attempts == 2);
    CHECK(chunks == "Running shoes are light.");  // next_chunk(): choice 0 only
    CHECK(describe(stream.reply()) == describe(assemble(response, {}).reply));
}

TEST_CASE("Stream: next_chunk() and the stats are of choice 0; the reply has every choice") {
    const std::string body = event_with(Field::content, "\"one \"", 0) + event_with(Field::content, "\"uno \"", 1) +
                             event_with(Field::content, "\"two\"", 0) +
                             "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
                             "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"dos\"},\"finish_reason\":\"length\"}]}\n\n" +
                             kDone;
    llm_stream::Stream stream = memory_stream({chunked_sse_response(body, 16)}, true);
    std::string chunks;
    while (auto chunk = stream.next_chunk()) chunks.append(*chunk);
    CHECK_FALSE(stream.error());
    CHECK(chunks == "one two");
    const llm_stream::Stats stats = stream.stats();
    CHECK(stats.chunks == 2);
    CHECK(stats.chars == 7);
    CHECK(stats.content_bytes == 7);
    CHECK(stats.finish_reason == "stop");
    CHECK(describe(stream.reply()) ==
          describe(reply({choice(0, "one two", "", {}, "stop"), choice(1, "uno dos", "", {}, "length")}, std::nullopt)));
}

TEST_CASE("Client::replay() assembles the reply when asked to") {
    const std::string response = chunked_sse_response(read_data("replies/reasoning-then-tools.sse"), 64);
    llm_stream::Client client(quiet_config());
    llm_stream::ChatOptions options;
    options.assemble_reply = true;
    llm_stream::Stream stream = client.replay(response, options);
    while (stream.next_event()) {}
    CHECK_FALSE(stream.error());
    CHECK(describe(stream.reply()) == describe(assemble(response, {}).reply));
    llm_stream::Stream plain = client.replay(response);
    while (plain.next_event()) {}
    CHECK(plain.reply().choices.empty());
}

TEST_CASE("Stream::reply() in stub mode") {
    llm_stream::Client client(quiet_config());
    llm_stream::ChatOptions options;
    options.assemble_reply = true;
    llm_stream::Stream stream = client.stream_chat("请介绍运动鞋的特点", options);
    std::string chunks;
    while (auto chunk = stream.next_chunk()) chunks.append(*chunk);
    CHECK_FALSE(stream.error());
    REQUIRE(stream.reply().choices.size() == 1);
    CHECK_FALSE(chunks.empty());
    CHECK(stream.reply().message().content == chunks);
    CHECK(stream.reply().message().role == llm_stream::Role::assistant);
    CHECK(stream.reply().choices[0].finish_reason == stream.stats().finish_reason);
    CHECK(stream.reply().has_usage == stream.stats().has_usage);
}

TEST_CASE("ReplyAssembler: a call sent without an id gets one made from it, and the reply can go back") {
    auto whole_call = [](int index, std::string_view name, std::string_view arguments) {
        Event e;
        e.type = EventType::tool_call;
        e.tool_call.index = index;
        e.tool_call.id = std::string_view();  // Gemini and Ollama send no id
        e.tool_call.name = name;
        e.tool_call.arguments = arguments;
        return e;
    };
    auto assembled = [&]() {
        ReplyAssembler a;
        CHECK_FALSE(a.add(whole_call(0, "get_weather", R"({"city":"北京"})")));
        CHECK_FALSE(a.add(whole_call(1, "get_weather", R"({"city":"上海"})")));
        a.finish();
        return a.reply();
    };
    const Reply reply = assembled();
    ENSURE(reply.message().tool_calls.size() == 2);
    const std::string& first = reply.message().tool_calls[0].id;
    const std::string& second = reply.message().tool_calls[1].id;
    CHECK(first.rfind("call_", 0) == 0);
    CHECK(first != second);
    CHECK(assembled().message().tool_calls[0].id == first);  // the same every time

    std::vector<llm_stream::Message> conversation = {llm_stream::Message::user("天气?"), reply.message(),
                                                     llm_stream::Message::tool_result(first, "晴"),
                                                     llm_stream::Message::tool_result(second, "雨")};
    for (llm_stream::Api api : {llm_stream::Api::openai, llm_stream::Api::gemini, llm_stream::Api::ollama}) {
        llm_stream::Config config;
        config.api = api;
        config.base_url = "http://127.0.0.1:1";
        llm_stream::Request request;
        const llm_stream::Error e = llm_stream::build_request(config, conversation, {}, request);
        CAPTURE(e.message);
        CHECK_FALSE(e);
    }
}
