#define LLM_STREAM_INTERNALS  // detail::make_ollama_reader, detail::check_json; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>

/* Ollama's native /api/chat: every message shape and option as the request body writes it (exact JSON
   text) and each refusal naming its field; the NDJSON reader line by line (text, thinking, whole tool
   calls, the done line's finish and counts, errors, unknown fields, invalid lines); the stub in
   Ollama's wire format against the openai stub. The recorded streams run in test_streams. */

#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "support/request_check.hpp"
#include "support/stub_check.hpp"

using llm_stream::ChatOptions;
using llm_stream::Config;
using llm_stream::ContentPart;
using llm_stream::Error;
using llm_stream::ErrorCode;
using llm_stream::Event;
using llm_stream::EventType;
using llm_stream::Message;
using llm_stream::ResponseFormat;
using llm_stream::Tool;
using llm_stream::ToolCall;
using llm_stream::ToolChoice;
using Result = llm_stream::detail::WireReader::Result;

namespace {

using llm_test::bare_options;

Config ollama_config() {
    Config config;
    config.api = llm_stream::Api::ollama;
    config.base_url = "http://127.0.0.1:9";
    config.model = "m";
    return config;
}

std::string body_of(const std::vector<Message>& messages, const ChatOptions& options = bare_options()) {
    return llm_test::request_body(ollama_config(), messages, options);
}

/* The body of a conversation of these messages' JSON, with these members after "stream". */
std::string body_with(std::string_view messages_json, std::string_view members = "") {
    return std::string(R"({"model":"m","messages":[)") + std::string(messages_json) + R"(],"stream":true)" +
           std::string(members) + "}";
}

void check_refused(const std::vector<Message>& messages, const ChatOptions& options, std::string_view field) {
    llm_test::check_request_refused(ollama_config(), messages, options, field);
}

Message assistant_calling(std::vector<ToolCall> calls) {
    Message m = Message::assistant({});
    m.tool_calls = std::move(calls);
    return m;
}

const Tool kWeather{"get_weather", "The weather in a city",
                    R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})", false};

}  // namespace

// =================================================================================================
// Request bodies
// =================================================================================================

TEST_CASE("ollama request: the URL, roles (developer as system) and text parts joined into content") {
    llm_stream::Request request;
    REQUIRE_FALSE(llm_stream::build_request(ollama_config(), {Message::user("hi")}, bare_options(), request));
    CHECK(request.url == "http://127.0.0.1:9/api/chat");

    Message parts = Message::user({});
    parts.parts = {ContentPart::text_part("one "), ContentPart::text_part("two")};
    CHECK(body_of({Message::system("s"), Message::developer("d"), parts, Message::assistant("a")}) ==
          body_with(R"({"role":"system","content":"s"},{"role":"system","content":"d"},)"
                    R"({"role":"user","content":"one two"},{"role":"assistant","content":"a"})"));
    CHECK(body_of({Message::user("a\"b\n")}) == body_with(R"({"role":"user","content":"a\"b\n"})"));
}

TEST_CASE("ollama request: images as base64 strings, from bytes or a base64 data: URL") {
    const Message m = Message::user("look", {ContentPart::image_bytes("image/png", "abc"),
                                             ContentPart::image_url("data:image/jpeg;base64,QUJD+/==")});
    CHECK(body_of({m}) == body_with(R"({"role":"user","content":"look","images":["YWJj","QUJD+/=="]})"));
}

TEST_CASE("ollama request: image URLs and detail hints are refused, naming the part") {
    check_refused({Message::user("x", {ContentPart::image_url("https://example.com/a.png")})}, bare_options(),
                  "messages[0].content[1].url");
    check_refused({Message::user("x", {ContentPart::image_url("data:image/png,raw")})}, bare_options(),
                  "messages[0].content[1].url");
    check_refused({Message::user("x", {ContentPart::image_bytes("image/png", "abc", "low")})}, bare_options(),
                  "messages[0].content[1].detail");
}

TEST_CASE("ollama request: tool calls with object arguments, tool results with tool_name") {
    const std::vector<Message> messages = {
        Message::user("weather?"),
        assistant_calling({{"call_1", "get_weather", " {\"city\": \"Paris\"} "}, {"call_2", "now", "{}"}}),
        Message::tool_result("call_1", "sunny"),
        Message::tool_result("call_9", "?"),  // answers no call made here: no tool_name
    };
    CHECK(body_of(messages) ==
          body_with(R"({"role":"user","content":"weather?"},)"
                    R"({"role":"assistant","content":"","tool_calls":[)"
                    R"({"id":"call_1","function":{"name":"get_weather","arguments":{"city": "Paris"}}},)"
                    R"({"id":"call_2","function":{"name":"now","arguments":{}}}]},)"
                    R"({"role":"tool","content":"sunny","tool_name":"get_weather","tool_call_id":"call_1"},)"
                    R"({"role":"tool","content":"?","tool_call_id":"call_9"})"));
    Message named = Message::tool_result("call_1", "ok");
    named.name = "given";
    CHECK(body_of({Message::user("u"), named}) ==
          body_with(R"({"role":"user","content":"u"},{"role":"tool","content":"ok","tool_name":"given","tool_call_id":"call_1"})"));
}

TEST_CASE("ollama request: arguments that are not an object and participant names are refused") {
    check_refused({Message::user("u"), assistant_calling({{"call_1", "f", "[1]"}})}, bare_options(),
                  "messages[1].tool_calls[0].arguments");
    Message named = Message::user("u");
    named.name = "alice";
    check_refused({named}, bare_options(), "messages[0].name");
}

TEST_CASE("ollama request: reasoning goes back as thinking with send_reasoning; a message's extra_json") {
    Message m = Message::assistant("a");
    m.reasoning = "r";
    m.extra_json = R"({"content":"replaced","x":1})";
    ChatOptions options = bare_options();
    CHECK(body_of({Message::user("u"), m}, options) ==
          body_with(R"({"role":"user","content":"u"},{"role":"assistant","content":"replaced","x":1})"));
    options.send_reasoning = true;
    CHECK(body_of({Message::user("u"), m}, options) ==
          body_with(R"({"role":"user","content":"u"},{"role":"assistant","thinking":"r","content":"replaced","x":1})"));
}

TEST_CASE("ollama request: tools with their schema; tool_choice auto sends them, none leaves them out") {
    ChatOptions options = bare_options();
    options.tools = {kWeather};
    const std::string tools = std::string(R"(,"tools":[{"type":"function","function":{"name":"get_weather",)") +
                              R"("description":"The weather in a city","parameters":)" + kWeather.parameters + "}}]";
    CHECK(body_of({Message::user("u")}, options) == body_with(R"({"role":"user","content":"u"})", tools));
    options.tool_choice.mode = ToolChoice::Mode::automatic;
    CHECK(body_of({Message::user("u")}, options) == body_with(R"({"role":"user","content":"u"})", tools));
    options.tool_choice.mode = ToolChoice::Mode::none;
    CHECK(body_of({Message::user("u")}, options) == body_with(R"({"role":"user","content":"u"})"));
}

TEST_CASE("ollama request: what Ollama cannot say is refused, naming the option") {
    ChatOptions options = bare_options();
    options.tools = {kWeather};
    options.tool_choice.mode = ToolChoice::Mode::required;
    check_refused({Message::user("u")}, options, "tool_choice");
    options.tool_choice = ToolChoice::named("get_weather");
    check_refused({Message::user("u")}, options, "tool_choice");
    options.tool_choice = {};
    options.parallel_tool_calls = false;
    check_refused({Message::user("u")}, options, "parallel_tool_calls");
    options.parallel_tool_calls.reset();
    options.tools[0].strict = true;
    check_refused({Message::user("u")}, options, "tools[0].strict");
    ChatOptions user = bare_options();
    user.user = "u-1";
    check_refused({Message::user("u")}, user, "user");
}

TEST_CASE("ollama request: sampling options in \"options\", max_tokens as num_predict") {
    ChatOptions options = bare_options();
    options.temperature = 0.5;
    options.top_p = 0.9;
    options.max_tokens = 100;
    options.seed = 7;
    options.presence_penalty = 0.25;
    options.frequency_penalty = -1;
    options.stop = {"END", "\n\n"};
    CHECK(body_of({Message::user("u")}, options) ==
          body_with(R"({"role":"user","content":"u"})",
                    R"(,"options":{"temperature":0.5,"top_p":0.9,"seed":7,"presence_penalty":0.25,)"
                    R"("frequency_penalty":-1,"stop":["END","\n\n"],"num_predict":100})"));
    ChatOptions one = bare_options();
    one.max_tokens = 5;
    CHECK(body_of({Message::user("u")}, one) == body_with(R"({"role":"user","content":"u"})", R"(,"options":{"num_predict":5})"));
}

TEST_CASE("ollama request: reasoning asked for is \"think\" with the level; a budget is refused") {
    ChatOptions options = bare_options();
    options.reasoning_effort = "high";
    CHECK(body_of({Message::user("u")}, options) == body_with(R"({"role":"user","content":"u"})", R"(,"think":"high")"));
    options.extra_json = R"({"think":true})";  // a model that only turns thinking on
    CHECK(body_of({Message::user("u")}, options) == body_with(R"({"role":"user","content":"u"})", R"(,"think":true)"));
    options.reasoning_budget = 4096;
    check_refused({Message::user("u")}, options, "reasoning_budget");
}

TEST_CASE("ollama request: format \"json\" or the schema itself") {
    ChatOptions options = bare_options();
    options.response_format.type = ResponseFormat::Type::json_object;
    CHECK(body_of({Message::user("u")}, options) == body_with(R"({"role":"user","content":"u"})", R"(,"format":"json")"));
    options.response_format.type = ResponseFormat::Type::json_schema;
    options.response_format.name = "answer";
    options.response_format.schema = R"( {"type":"object"} )";
    CHECK(body_of({Message::user("u")}, options) ==
          body_with(R"({"role":"user","content":"u"})", R"(,"format":{"type":"object"})"));
}

TEST_CASE("ollama request: extra_json members join the body, an object merges into ours, others replace; stream is the client's") {
    ChatOptions options = bare_options();
    options.temperature = 1;
    options.extra_json = R"({"think":true,"options":{"num_ctx":8192},"keep_alive":"5m"})";
    CHECK(body_of({Message::user("u")}, options) ==
          body_with(R"({"role":"user","content":"u"})", R"(,"options":{"temperature":1,"num_ctx":8192},"think":true,"keep_alive":"5m")"));
    options.extra_json = R"({"options":"none"})";
    CHECK(body_of({Message::user("u")}, options) == body_with(R"({"role":"user","content":"u"})", R"(,"options":"none")"));
    options.extra_json = R"({"stream":false})";
    check_refused({Message::user("u")}, options, "stream");
}

// =================================================================================================
// The NDJSON reader
// =================================================================================================

namespace {

/* One line through a fresh or given reader: its result and events described in one line each. */
struct Read {
    Result result;
    std::vector<std::string> events;
    Error error;
};

std::string describe(const Event& e) {
    switch (e.type) {
    case EventType::content: return "content " + std::string(e.text);
    case EventType::reasoning: return "reasoning " + std::string(e.text);
    case EventType::tool_call:
        return "call " + std::to_string(e.tool_call.index) + " id=" + std::string(e.tool_call.id.value_or("(none)")) +
               " " + std::string(e.tool_call.name.value_or("(none)")) + " " +
               std::string(e.tool_call.arguments.value_or("(none)"));
    case EventType::finish: return "finish " + std::string(e.text) + " raw=" + std::string(e.raw_reason);
    case EventType::usage:
        return "usage " + std::to_string(e.usage.prompt_tokens) + "+" + std::to_string(e.usage.completion_tokens) +
               "=" + std::to_string(e.usage.total_tokens);
    }
    return "?";
}

Read read_line(llm_stream::detail::WireReader& reader, std::string_view line) {
    Read out;
    out.result = reader.read("", line);
    for (const Event& e : reader.events()) out.events.push_back(describe(e));
    if (out.result == Result::invalid || out.result == Result::error_event) out.error = reader.error();
    return out;
}

Read read_line(std::string_view line) {
    const auto reader = llm_stream::detail::make_ollama_reader();
    return read_line(*reader, line);
}

using Lines = std::vector<std::string>;

}  // namespace

TEST_CASE("ollama reader: content and thinking; empty text adds nothing; done false goes on") {
    const Read r = read_line(R"({"model":"m","message":{"role":"assistant","content":"a \u003c b","thinking":"hm"},"done":false})");
    CHECK(r.result == Result::ok);
    CHECK(r.events == Lines{"reasoning hm", "content a < b"});
    CHECK(read_line(R"({"message":{"role":"assistant","content":""},"done":false})").events.empty());
    CHECK(read_line(R"({"message":{"content":null,"thinking":null,"images":null}})").events.empty());
}

TEST_CASE("ollama reader: the done line ends the completion with its finish and counts") {
    const Read r = read_line(R"({"message":{"content":"!"},"done":true,"done_reason":"stop","prompt_eval_count":5,"eval_count":3})");
    CHECK(r.result == Result::end);
    CHECK(r.events == Lines{"content !", "finish stop raw=stop", "usage 5+3=8"});
    CHECK(read_line(R"({"done":true,"done_reason":"length"})").events == Lines{"finish length raw=length"});
    CHECK(read_line(R"({"done":true,"done_reason":"load"})").events == Lines{"finish load raw=load"});
    CHECK(read_line(R"({"done":true})").events == Lines{"finish stop raw="});  // servers before done_reason
    CHECK(read_line(R"({"done":true,"done_reason":""})").events == Lines{"finish stop raw="});  // as none
    CHECK(read_line("{\"done\":true,\"done_reason\":\"\xff\"}").events == Lines{"finish stop raw="});
    CHECK(read_line(R"({"eval_count":3,"done":false})").events.empty());      // counts only on the done line
}

TEST_CASE("ollama reader: whole tool calls, numbered across lines; stop after them is tool_calls") {
    const auto reader = llm_stream::detail::make_ollama_reader();
    CHECK(read_line(*reader, R"({"message":{"tool_calls":[{"function":{"name":"f","arguments":{ "a" : [1, 2], "s":"x y\" \u0026" }}},)"
                             R"({"id":"call_7","function":{"name":"g","arguments":"{\"k\":1}"}}]},"done":false})")
              .events == Lines{R"(call 0 id= f {"a":[1,2],"s":"x y\" \u0026"})", R"(call 1 id=call_7 g {"k":1})"});
    CHECK(read_line(*reader, R"({"message":{"tool_calls":[{"function":{"name":"h","arguments":null}}]}})").events ==
          Lines{"call 2 id= h {}"});
    CHECK(read_line(*reader, R"({"done":true,"done_reason":"stop"})").events == Lines{"finish tool_calls raw=stop"});
}

TEST_CASE("ollama reader: arguments sent as a string (the OpenAI form) are kept as received, JSON or not") {
    CHECK(read_line(R"({"message":{"tool_calls":[{"function":{"name":"f","arguments":"{\"q\":"}}]}})").events ==
          Lines{R"(call 0 id= f {"q":)"});
    CHECK(read_line(R"({"message":{"tool_calls":[{"function":{"name":"f","arguments":"search"}}]}})").events ==
          Lines{"call 0 id= f search"});
}

TEST_CASE("ollama reader: an error line is the server's error") {
    Read r = read_line(R"({"error":"model \"x\" not found"})");
    CHECK(r.result == Result::error_event);
    CHECK(r.error.code == ErrorCode::server_error);
    CHECK(r.error.message == "server error: model \"x\" not found");
    r = read_line(R"({"error":{"code":500}})");
    CHECK(r.result == Result::error_event);
    CHECK(r.error.message == "server error: the server reported an error");
    CHECK(read_line(R"({"error":null,"message":{"content":"a"}})").events == Lines{"content a"});
}

TEST_CASE("ollama reader: unknown members and wrong types are skipped silently") {
    const Read r = read_line(R"({"future":{"content":"no"},"message":{"content":"yes","role":1,"tool_calls":{}},)"
                             R"("done":"maybe","logprobs":[{"token":"x"}]})");
    CHECK(r.result == Result::ok);
    CHECK(r.events == Lines{"content yes"});
}

TEST_CASE("ollama reader: invalid lines say what and where") {
    Read r = read_line(R"({"message":{"content":"a"},)");
    CHECK(r.result == Result::invalid);
    CHECK(r.error.code == ErrorCode::protocol);
    CHECK(r.error.message.find("at byte") != std::string::npos);
    r = read_line(R"(["not", "an object"])");
    CHECK(r.result == Result::invalid);
    CHECK(r.error.message.find("must be an object") != std::string::npos);
    CHECK(read_line(R"({"done":true} {})").result == Result::invalid);
    CHECK(read_line(R"({"message":{"content":"\x"}})").result == Result::invalid);
}

/* A content line in the very bytes Ollama sends takes a shortcut past the general walk: it must read
   exactly as the walk does (here: the same line after a leading space, which the shortcut leaves to the
   walk), near misses and every cut of it included. */
TEST_CASE("ollama reader: a content line in Ollama's own bytes reads as any other spelling of it") {
    const std::string exact = R"({"model":"qwen3:8b","created_at":"2025-08-28T09:14:00.1Z","message":{"role":"assistant",)"
                              R"("content":"a \u003c b \"c\" )" "\xE4\xBD\xA0\"},\"done\":false}";
    const std::string variants[] = {
        exact,
        exact + "\r ",
        exact + ",",
        R"({"model":"m","created_at":"t","message":{"role":"assistant","content":""},"done":false})",
        R"({"model":"m","created_at":"t","message":{"role":"assistant","content":"a","thinking":"b"},"done":false})",
        R"({"model":"m","created_at":"t","message":{"role":"assistant","content":"a"},"done":true})",
        R"({"model":"m","created_at":"t","message":{"role":"assistant","content":"a"},"done":false,"eval_count":1})",
        R"({"model":1,"created_at":"t","message":{"role":"assistant","content":"a"},"done":false})",
        R"({"model":"m","created_at":"t","message":{"role":"assistant","content":null},"done":false})",
        "{\"model\":\"m\x01\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"a\"},\"done\":false}",
        "{\"model\":\"m\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"a\xC0\"},\"done\":false}",
    };
    std::vector<std::string> lines(std::begin(variants), std::end(variants));
    for (std::size_t cut = 0; cut < exact.size(); ++cut) lines.push_back(exact.substr(0, cut));
    for (const std::string& line : lines) {
        CAPTURE(line);
        const Read shortcut = read_line(line), walk = read_line(" " + line);
        CHECK(shortcut.result == walk.result);
        CHECK(shortcut.events == walk.events);
        CHECK(shortcut.error.code == walk.error.code);
    }
    CHECK(read_line(exact).events == Lines{"content a < b \"c\" \xE4\xBD\xA0"});
}

// =================================================================================================
// The stub in Ollama's wire format
// =================================================================================================

namespace {

using llm_test::stub_reply;

void check_same_as_openai(const std::vector<Message>& messages, const ChatOptions& options) {
    llm_test::check_same_as_openai_stub(llm_stream::Api::ollama, messages, options);
}

}  // namespace

TEST_CASE("ollama stub: text decodes to the openai stub's reply, finish stop") {
    const std::vector<Message> messages = {Message::system("s"), Message::user("跑鞋推荐 😀 & <b>")};
    check_same_as_openai(messages, bare_options());
    CHECK(stub_reply(llm_stream::Api::ollama, messages, bare_options()).choices[0].finish_reason == "stop");
}

TEST_CASE("ollama stub: a tool call decodes to the openai stub's call, finish tool_calls") {
    ChatOptions options = bare_options();
    options.tools = {kWeather};
    const std::vector<Message> messages = {Message::user("Weather in \"Paris\"?")};
    check_same_as_openai(messages, options);
    const llm_stream::Reply reply = stub_reply(llm_stream::Api::ollama, messages, options);
    REQUIRE(reply.message().tool_calls.size() == 1);
    CHECK(reply.message().tool_calls[0].arguments == R"({"city":"Weather in \"Paris\"?"})");
    CHECK(reply.choices[0].finish_reason == "tool_calls");
    CHECK(reply.choices[0].raw_finish_reason == "stop");
}

TEST_CASE("ollama stub: asked to think, its thinking comes first, as the openai stub's reasoning") {
    ChatOptions options = bare_options();
    options.tools = {kWeather};
    options.reasoning_effort = "low";
    check_same_as_openai({Message::user("weather?")}, options);
    CHECK_FALSE(stub_reply(llm_stream::Api::ollama, {Message::user("weather?")}, options).message().reasoning.empty());
}

TEST_CASE("ollama stub: the answer after tool results") {
    ChatOptions options = bare_options();
    options.tools = {kWeather};
    check_same_as_openai({Message::user("weather?"), assistant_calling({{"call_1", "get_weather", R"({"city":"Paris"})"}}),
                          Message::tool_result("call_1", "sunny")},
                         options);
}
