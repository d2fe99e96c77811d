#define LLM_STREAM_INTERNALS  // detail::make_responses_reader too; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>

/* The OpenAI Responses API: each message shape and option as the request body writes it (exact
   JSON), each refusal naming its field; the reader on each event type, unknown events, errors and
   invalid JSON; the stub, which must assemble to the same reply
   as the chat-completions stub. */

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "support/chunked.hpp"
#include "support/decode.hpp"
#include "support/known_shape.hpp"
#include "support/stub_check.hpp"

using llm_stream::Api;
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

Error build(const std::vector<Message>& messages, const ChatOptions& options, llm_stream::Request& request) {
    Config config;
    config.api = Api::responses;
    config.base_url = "http://127.0.0.1:9/v1";
    config.model = "m";
    return llm_stream::build_request(config, messages, options, request);
}

/* The Responses body for `messages` under `options` (ChatOptions::system and include_usage write
   nothing here); "(error) ..." when build_request refuses them. */
std::string body_of(const std::vector<Message>& messages, const ChatOptions& options = {}) {
    llm_stream::Request request;
    if (const Error e = build(messages, options, request)) return "(error) " + e.message;
    return request.body;
}

/* The body around these input items and members after "stream" and "store". */
std::string body_with(std::string_view input, std::string_view members = "") {
    return R"({"model":"m","input":[)" + std::string(input) + R"(],"stream":true,"store":false)" +
           std::string(members) + "}";
}

Tool weather_tool(bool strict = false) {
    Tool tool;
    tool.name = "get_weather";
    tool.description = "Weather of a city";
    tool.parameters = R"({"type":"object","properties":{"city":{"type":"string"}}})";
    tool.strict = strict;
    return tool;
}

const char* const user_hi = R"({"role":"user","content":"hi"})";

}  // namespace

TEST_CASE("responses body: messages of every role, in order, as input items") {
    CHECK(body_of({Message::system("be brief"), Message::developer("dev"), Message::user("hi"),
                   Message::assistant("hello")}) ==
          body_with(R"({"role":"system","content":"be brief"},{"role":"developer","content":"dev"},)"
                    R"({"role":"user","content":"hi"},{"role":"assistant","content":"hello"})"));
}

TEST_CASE("responses body: text and image parts") {
    std::vector<ContentPart> images = {ContentPart::image_url("https://example.com/a.png", "low"),
                                       ContentPart::image_bytes("image/png", "abc")};
    CHECK(body_of({Message::user("look", images)}) ==
          body_with(R"({"role":"user","content":[{"type":"input_text","text":"look"},)"
                    R"({"type":"input_image","image_url":"https://example.com/a.png","detail":"low"},)"
                    R"({"type":"input_image","image_url":"data:image/png;base64,YWJj"}]})"));
    Message assistant = Message::assistant({});
    assistant.parts.push_back(ContentPart::text_part("said"));
    CHECK(body_of({Message::user("hi"), assistant}) ==
          body_with(std::string(user_hi) + R"(,{"role":"assistant","content":[{"type":"output_text","text":"said"}]})"));
}

TEST_CASE("responses body: tool calls and results as function_call and function_call_output items") {
    Message calls = Message::assistant({});
    calls.tool_calls = {ToolCall{"call_1", "get_weather", R"({"city":"Paris"})"}, ToolCall{"call_2", "get_weather", "{}"}};
    const std::string items = R"({"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},)"
                              R"({"type":"function_call","call_id":"call_2","name":"get_weather","arguments":"{}"},)"
                              R"({"type":"function_call_output","call_id":"call_1","output":"18 C"},)"
                              R"({"type":"function_call_output","call_id":"call_2","output":"20 C"})";
    CHECK(body_of({Message::user("hi"), calls, Message::tool_result("call_1", "18 C"),
                   Message::tool_result("call_2", "20 C")}) == body_with(std::string(user_hi) + "," + items));
    calls.content = "Let me look.";
    CHECK(body_of({Message::user("hi"), calls, Message::tool_result("call_1", "18 C"),
                   Message::tool_result("call_2", "20 C")}) ==
          body_with(std::string(user_hi) + R"(,{"role":"assistant","content":"Let me look."},)" + items));
}

TEST_CASE("responses body: a message's extra_json is merged into its item; reasoning is not sent") {
    Message m = Message::user("hi");
    m.extra_json = R"({"content":[{"type":"input_file","file_id":"f1"}],"type":"message"})";
    CHECK(body_of({m}) == body_with(R"({"role":"user","content":[{"type":"input_file","file_id":"f1"}],"type":"message"})"));
    Message assistant = Message::assistant("hello");
    assistant.reasoning = "thought";
    ChatOptions options;
    options.send_reasoning = true;
    CHECK(body_of({Message::user("hi"), assistant}, options) ==
          body_with(std::string(user_hi) + R"(,{"role":"assistant","content":"hello"})"));
}

TEST_CASE("responses body: the reasoning item kept as the signature goes back as it came, before the message and its calls") {
    const std::string item = R"({"id":"rs_1","type":"reasoning","summary":[],"encrypted_content":"gAAA"})";
    Message calls = Message::assistant("Let me look.");
    calls.reasoning = "not sent as text";
    calls.reasoning_signature = " " + item + "\n";
    calls.tool_calls = {ToolCall{"call_1", "get_weather", "{}"}};
    CHECK(body_of({Message::user("hi"), calls, Message::tool_result("call_1", "18 C")}) ==
          body_with(std::string(user_hi) + "," + item + R"(,{"role":"assistant","content":"Let me look."},)"
                    R"({"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{}"},)"
                    R"({"type":"function_call_output","call_id":"call_1","output":"18 C"})"));
    calls.reasoning_signature = "EqQB";  // another API's: not an item
    llm_stream::Request request;
    const Error e = build({Message::user("hi"), calls}, ChatOptions{}, request);
    CHECK(e.code == ErrorCode::invalid_argument);
    CHECK(e.message.find("messages[1].reasoning_signature") != std::string::npos);
}

TEST_CASE("responses body: reasoning asked for is reasoning.effort with a summary, and the encrypted content included") {
    ChatOptions options;
    options.reasoning_effort = "medium";
    CHECK(body_of({Message::user("hi")}, options) ==
          body_with(user_hi, R"(,"reasoning":{"effort":"medium","summary":"auto"},"include":["reasoning.encrypted_content"])"));
    options.extra_json = R"({"reasoning":{"summary":"detailed"}})";
    CHECK(body_of({Message::user("hi")}, options) ==
          body_with(user_hi, R"(,"reasoning":{"effort":"medium","summary":"detailed"},"include":["reasoning.encrypted_content"])"));
    options.reasoning_budget = 1024;
    CHECK(body_of({Message::user("hi")}, options).find("(error) reasoning_budget") == 0);
}

TEST_CASE("responses body: sampling options, max_output_tokens, user") {
    ChatOptions options;
    options.temperature = 0.5;
    options.top_p = 0.9;
    options.max_tokens = 100;
    options.user = "u1";
    CHECK(body_of({Message::user("hi")}, options) ==
          body_with(user_hi, R"(,"temperature":0.5,"top_p":0.9,"max_output_tokens":100,"user":"u1")"));
}

TEST_CASE("responses body: tools flat, strict always written; each tool_choice; parallel_tool_calls") {
    ChatOptions options;
    options.tools = {weather_tool(), weather_tool(true)};
    options.tools[1].name = "other";
    options.tools[1].description.clear();
    options.tools[1].parameters.clear();
    const std::string tools =
        R"(,"tools":[{"type":"function","name":"get_weather","description":"Weather of a city",)"
        R"("parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":false},)"
        R"({"type":"function","name":"other","strict":true}])";
    CHECK(body_of({Message::user("hi")}, options) == body_with(user_hi, tools));
    const std::pair<ToolChoice, std::string> choices[] = {
        {ToolChoice{ToolChoice::Mode::automatic, {}}, R"("auto")"},
        {ToolChoice{ToolChoice::Mode::none, {}}, R"("none")"},
        {ToolChoice{ToolChoice::Mode::required, {}}, R"("required")"},
        {ToolChoice::named("other"), R"({"type":"function","name":"other"})"},
    };
    for (const auto& [choice, json] : choices) {
        options.tool_choice = choice;
        CHECK(body_of({Message::user("hi")}, options) == body_with(user_hi, tools + R"(,"tool_choice":)" + json));
    }
    options.tool_choice = {};
    options.parallel_tool_calls = false;
    CHECK(body_of({Message::user("hi")}, options) == body_with(user_hi, tools + R"(,"parallel_tool_calls":false)"));
}

TEST_CASE("responses body: structured output as text.format") {
    ChatOptions options;
    options.response_format.type = ResponseFormat::Type::json_object;
    CHECK(body_of({Message::user("hi")}, options) == body_with(user_hi, R"(,"text":{"format":{"type":"json_object"}})"));
    options.response_format.type = ResponseFormat::Type::json_schema;
    options.response_format.name = "city";
    options.response_format.schema = R"( {"type":"object"} )";
    CHECK(body_of({Message::user("hi")}, options) ==
          body_with(user_hi, R"(,"text":{"format":{"type":"json_schema","name":"city","schema":{"type":"object"},"strict":true}})"));
}

TEST_CASE("responses body: extra_json replaces the members written, store and model included") {
    ChatOptions options;
    options.temperature = 1;
    options.extra_json = R"({"store":true,"temperature":0,"reasoning":{"effort":"low","summary":"auto"},"model":"x"})";
    CHECK(body_of({Message::user("hi")}, options) ==
          R"({"input":[{"role":"user","content":"hi"}],"stream":true,)"
          R"("store":true,"temperature":0,"reasoning":{"effort":"low","summary":"auto"},"model":"x"})");
}

TEST_CASE("responses body: what the API cannot carry is refused, naming the field") {
    const auto refusal = [](ChatOptions options, std::vector<Message> messages = {Message::user("hi")}) {
        return body_of(messages, options);
    };
    ChatOptions options;
    options.stop = {"end"};
    CHECK(refusal(options) == "(error) stop is set but the Responses API has no such option");
    options = ChatOptions{};
    options.seed = 1;
    CHECK(refusal(options) == "(error) seed is set but the Responses API has no such option");
    options = ChatOptions{};
    options.presence_penalty = 0.5;
    CHECK(refusal(options) == "(error) presence_penalty is set but the Responses API has no such option");
    options = ChatOptions{};
    options.frequency_penalty = 0.5;
    CHECK(refusal(options) == "(error) frequency_penalty is set but the Responses API has no such option");
    options = ChatOptions{};
    options.extra_json = R"({"input":"hi"})";
    CHECK(refusal(options) == "(error) extra JSON may not set \"input\": the client sets it");
    Message named = Message::user("hi");
    named.name = "ann";
    CHECK(refusal(ChatOptions{}, {Message::system("s"), named}) ==
          "(error) messages[1].name is set but the Responses API has no participant names");
    llm_stream::Request request;
    options = ChatOptions{};
    options.seed = 1;
    CHECK(build({Message::user("hi")}, options, request).code == ErrorCode::invalid_argument);
}

// --- The reader ------------------------------------------------------------------------------

namespace {

/* One message's events, as text: "content:Hi", "tool_call:0 id=call_1 name=f args=...", ... */
std::string describe(const std::vector<Event>& events) {
    std::string out;
    for (const Event& e : events) {
        if (!out.empty()) out += " | ";
        switch (e.type) {
        case EventType::content: out += "content:" + std::string(e.text); break;
        case EventType::reasoning:
            out += e.signature.empty() ? "reasoning:" + std::string(e.text) : "signature:" + std::string(e.signature);
            break;
        case EventType::finish: out += "finish:" + std::string(e.text) + " raw=" + std::string(e.raw_reason); break;
        case EventType::usage:
            out += "usage:" + std::to_string(e.usage.prompt_tokens) + "/" + std::to_string(e.usage.completion_tokens) +
                   "/" + std::to_string(e.usage.total_tokens);
            break;
        case EventType::tool_call:
            out += "tool_call:" + std::to_string(e.tool_call.index);
            if (e.tool_call.id) out += " id=" + std::string(*e.tool_call.id);
            if (e.tool_call.name) out += " name=" + std::string(*e.tool_call.name);
            if (e.tool_call.arguments) out += " args=" + std::string(*e.tool_call.arguments);
            break;
        }
    }
    return out;
}

struct ReaderFixture {
    std::unique_ptr<llm_stream::detail::WireReader> reader = llm_stream::detail::make_responses_reader();
    Result last = Result::ok;
    std::string read(std::string_view data, std::string_view name = "") {
        last = reader->read(name, data);
        return describe(reader->events());
    }
};

const char* const fc_added =
    R"({"type":"response.output_item.added","output_index":1,"item":{"id":"fc_1","type":"function_call",)"
    R"("status":"in_progress","arguments":"","call_id":"call_A","name":"get_weather"},"sequence_number":3})";

}  // namespace

TEST_CASE("responses reader: text and reasoning deltas, escapes decoded") {
    ReaderFixture r;
    CHECK(r.read(R"({"type":"response.output_text.delta","output_index":0,"delta":"Hi \u00e9\n"})") == "content:Hi é\n");
    CHECK(r.last == Result::ok);
    CHECK(r.read(R"({"type":"response.reasoning_summary_text.delta","delta":"think"})") == "reasoning:think");
    CHECK(r.read(R"({"type":"response.reasoning_text.delta","delta":"raw"})") == "reasoning:raw");
    CHECK(r.read(R"({"type":"response.output_text.delta","delta":""})").empty());
}

TEST_CASE("responses reader: a delta shaped like the last one is read exactly as a fresh reader reads it") {
    const std::vector<llm_test::ShapeSeed> seeds = {
        {R"({"type":"response.output_text.delta","item_id":"msg_68af4e0a","output_index":0,"content_index":0,"delta":)",
         R"("\u4f60\u597d")", "", R"(,"logprobs":[],"sequence_number":4,"obfuscation":"x0"})"},
        {R"({"type":"response.reasoning_summary_text.delta","output_index":1,"delta":)", R"("hm")", "", "}"},
        {R"({"output_index":2,"type":"response.function_call_arguments.delta","delta":)", R"("{\"a\":")", "", R"(,"sequence_number":9})"},
    };
    const std::vector<std::string> texts = {R"("")", R"("x")", R"("\"q\\")", R"("\ud83d\ude00")", "\"\x01\"",
                                            "\"\xFF\"", R"("open)", "null", "7"};
    std::vector<std::string> tails = {"}", R"(,"type":"response.completed"})", R"(,"output_index":5})",
                                            R"(,"response":{"usage":{"input_tokens":1}}})", R"(,"type":"error","message":"m"})",
                                            R"(,"delta":"again"})", ",}", "}}", ""};
    // The same members with other integers (KnownTail), valid and not.
    for (const char* n : {"5", "0", "-1", "-0", "12345678901234567", "1234567890123456789", "05", "1.5", "2e1", "-", "\"4\""}) {
        tails.push_back(std::string(R"(,"logprobs":[],"sequence_number":)") + n + R"(,"obfuscation":"x0"})");
        tails.push_back(std::string(R"(,"sequence_number":)") + n + "}");
    }
    const std::vector<std::string> open_call = {
        R"({"type":"response.output_item.added","output_index":2,"item":{"type":"function_call","call_id":"call_1","name":"f","arguments":""}})"};
    const int quick =
        llm_test::check_known_shape(llm_stream::detail::make_responses_reader, seeds, texts, tails, 20000, open_call);
    CHECK(quick > 2000);
}

TEST_CASE("responses reader: function calls open at output_item.added, arguments by output_index") {
    ReaderFixture r;
    CHECK(r.read(fc_added) == "tool_call:0 id=call_A name=get_weather args=");
    CHECK(r.read(R"({"type":"response.output_item.added","output_index":2,"item":{"type":"function_call",)"
                 R"("call_id":"call_B","name":"f","arguments":"{\"a\":1}"}})") ==
          "tool_call:1 id=call_B name=f args={\"a\":1}");
    CHECK(r.read(R"({"type":"response.function_call_arguments.delta","output_index":1,"delta":"{\"city\""})") ==
          "tool_call:0 args={\"city\"");
    CHECK(r.read(R"({"type":"response.function_call_arguments.delta","output_index":7,"delta":"x"})").empty());
    CHECK(r.read(R"({"type":"response.function_call_arguments.done","output_index":1,"arguments":"{}"})").empty());
    CHECK(r.read(R"({"type":"response.completed","response":{"status":"completed","output":[],)"
                 R"("usage":{"input_tokens":3,"output_tokens":4,"total_tokens":7}}})") ==
          "finish:tool_calls raw=completed | usage:3/4/7");
    CHECK(r.last == Result::end);
    // A new response counts its calls from 0 again.
    CHECK(r.read(R"({"type":"response.created","response":{"status":"in_progress"}})").empty());
    CHECK(r.read(fc_added) == "tool_call:0 id=call_A name=get_weather args=");
}

TEST_CASE("responses reader: an empty status or reason falls back to the event's own") {
    const auto reader = llm_stream::detail::make_responses_reader();
    REQUIRE(reader->read("", R"({"type":"response.completed","response":{"status":""}})") == Result::end);
    REQUIRE(reader->events().size() == 1);
    CHECK(reader->events()[0].text == "stop");
    CHECK(reader->events()[0].raw_reason == "completed");
    REQUIRE(reader->read("", R"({"type":"response.incomplete","response":{"incomplete_details":{"reason":""}}})") ==
            Result::end);
    CHECK(reader->events()[0].raw_reason == "incomplete");
    CHECK(!reader->events()[0].text.empty());
}

TEST_CASE("responses reader: the end of a response") {
    ReaderFixture r;
    CHECK(r.read(R"({"type":"response.completed","response":{"status":"completed","usage":null}})") ==
          "finish:stop raw=completed");
    CHECK(r.last == Result::end);
    CHECK(r.read(R"({"type":"response.incomplete","response":{"status":"incomplete",)"
                 R"("incomplete_details":{"reason":"max_output_tokens"},"usage":{"input_tokens":1,"output_tokens":2,"total_tokens":3}}})") ==
          "finish:length raw=max_output_tokens | usage:1/2/3");
    CHECK(r.last == Result::end);
    CHECK(r.read(R"({"type":"response.incomplete","response":{"incomplete_details":{"reason":"content_filter"}}})") ==
          "finish:content_filter raw=content_filter");
    CHECK(r.read(R"({"type":"response.incomplete","response":{"status":"incomplete","incomplete_details":null}})") ==
          "finish:incomplete raw=incomplete");
}

TEST_CASE("responses reader: a done reasoning item with encrypted content is the signature, its JSON whole") {
    ReaderFixture r;
    const std::string item = R"({"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"t"}],"encrypted_content":"gAAA"})";
    CHECK(r.read(R"({"type":"response.output_item.done","output_index":0,"item":)" + item + R"(,"sequence_number":4})") ==
          "signature:" + item);
    // Without encrypted content (not asked for): only a reference to what store false did not keep.
    CHECK(r.read(R"({"type":"response.output_item.done","output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[]}})").empty());
    CHECK(r.read(R"({"type":"response.output_item.done","output_index":0,"item":{"id":"rs_1","type":"reasoning","encrypted_content":null}})").empty());
    CHECK(r.read(R"({"type":"response.output_item.added","output_index":0,"item":)" + item + "}").empty());
    // A whole response's reasoning item: its summary, then the item.
    const std::string whole = R"({"object":"response","status":"completed","output":[)" + item + R"(]})";
    CHECK(r.read(whole) == "reasoning:t | signature:" + item + " | finish:stop raw=completed");
}

TEST_CASE("responses reader: a whole response object (a server that ignored \"stream\")") {
    ReaderFixture r;
    const std::string whole =
        R"({"id":"resp_1","object":"response","status":"completed","output":[)"
        R"({"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"think"}]},)"
        R"({"type":"message","role":"assistant","content":[{"type":"output_text","text":"Hi \u00e9","annotations":[]},)"
        R"({"type":"refusal","refusal":"no"}]},)"
        R"({"arguments":"{\"a\":1}","type":"function_call","call_id":"call_A","name":"f"}],)"
        R"("usage":{"input_tokens":5,"output_tokens":6,"total_tokens":11}})";
    CHECK(r.read(whole) ==
          "reasoning:think | content:Hi é | tool_call:0 id=call_A name=f args={\"a\":1} | "
          "finish:tool_calls raw=completed | usage:5/6/11");
    CHECK(r.last == Result::end);
    CHECK(r.read(R"({"object":"response","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},)"
                 R"("output":[{"type":"message","content":[{"type":"output_text","text":"cut"}]}]})") ==
          "content:cut | finish:length raw=max_output_tokens");
    CHECK(r.read(R"({"object":"response","status":"failed","error":{"code":"server_error","message":"Boom"},"output":[]})").empty());
    CHECK(r.last == Result::error_event);

    llm_stream::Decoder decoder({}, Api::responses);  // as the Decoder hands it over: the body whole
    std::string events;
    const Decoded d = decode_in_pieces(decoder, length_response(whole, "application/json"), {}, PieceMemory::copied,
                                       [&](const Event& e) { events += describe({e}) + ";"; });
    CHECK(d.done);
    CHECK(d.warnings.empty());
    CHECK(events == "reasoning:think;content:Hi é;tool_call:0 id=call_A name=f args={\"a\":1};"
                    "finish:tool_calls raw=completed;usage:5/6/11;");
}

TEST_CASE("responses reader: errors are the server's, with its message") {
    ReaderFixture r;
    CHECK(r.read(R"({"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"Boom"}}})").empty());
    CHECK(r.last == Result::error_event);
    CHECK(r.reader->error().code == ErrorCode::server_error);
    CHECK(r.reader->error().message == "server error: Boom (code: server_error)");
    CHECK(r.read(R"({"type":"error","code":null,"message":"Rate limited","param":null})", "error").empty());
    CHECK(r.last == Result::error_event);
    CHECK(r.reader->error().message == "server error: Rate limited");
    r.read(R"({"type":"error"})");
    CHECK(r.reader->error().message == "server error: the server reported an error");
    r.read(R"({"error":{"message":"Invalid key","code":"invalid_api_key"}})");  // a whole error body
    CHECK(r.last == Result::error_event);
    CHECK(r.reader->error().message == "server error: Invalid key (code: invalid_api_key)");
}

TEST_CASE("responses reader: keep-alives, .done repeats and unknown events are skipped silently") {
    ReaderFixture r;
    for (const char* data : {"", "  ", R"({"type":"response.in_progress","response":{"output":[]}})",
                             R"({"type":"response.output_text.done","text":"whole"})",
                             R"({"type":"response.some_future_event","delta":"no"})",
                             R"({"type":"response.output_item.added","item":{"type":"message","content":[]}})",
                             R"({"no_type":true})", R"({"type":7,"delta":"no"})"}) {
        CAPTURE(data);
        CHECK(r.read(data).empty());
        CHECK(r.last == Result::ok);
    }
}

TEST_CASE("responses reader: invalid JSON is invalid, with where") {
    ReaderFixture r;
    for (const char* data : {"{", "[]", R"({"type":"response.output_text.delta","delta":"a"} x)",
                             R"({"type":"response.output_text.delta","delta":"\q"})", "data"}) {
        CAPTURE(data);
        CHECK(r.read(data).empty());
        CHECK(r.last == Result::invalid);
        CHECK(r.reader->error().code == ErrorCode::protocol);
        CHECK(r.reader->error().message.find(" at byte ") != std::string::npos);
    }
}

// --- The stub --------------------------------------------------------------------------------

namespace {

using llm_test::stub_reply;

void check_same_reply(const std::vector<Message>& messages, const ChatOptions& options) {
    llm_test::check_same_as_openai_stub(Api::responses, messages, options, "completed");
}

}  // namespace

TEST_CASE("responses stub: asked to reason, its reasoning item comes back whole and goes back before the call") {
    ChatOptions options;
    options.tools = {weather_tool()};
    options.reasoning_effort = "low";
    const std::vector<Message> ask{Message::user("Weather in Paris?")};
    check_same_reply(ask, options);
    const llm_stream::Reply called = stub_reply(Api::responses, ask, options);
    const Message& said = called.message();
    CHECK_FALSE(said.reasoning.empty());
    CHECK(said.reasoning_signature.find(R"({"id":"rs_stub_1","type":"reasoning",)") == 0);
    CHECK(said.reasoning_signature.find(std::string(R"("encrypted_content":")") + llm_stream::detail::stub_signature) !=
          std::string::npos);
    ENSURE(said.tool_calls.size() == 1);
    const std::string next = body_of({ask[0], said, Message::tool_result(said.tool_calls[0].id, "18 C")}, options);
    CHECK_MESSAGE(next.find("," + said.reasoning_signature + R"(,{"type":"function_call","call_id":"call_stub_1")") != std::string::npos,
                  next);
}

TEST_CASE("responses stub: the same reply as the chat-completions stub") {
    SUBCASE("text") {
        check_same_reply({Message::system("s"), Message::user("请介绍运动鞋的特点 🏃")}, ChatOptions{});
        CHECK(stub_reply(Api::responses, {Message::user("hi")}, ChatOptions{}).choices[0].finish_reason == "stop");
    }
    SUBCASE("a tool call") {
        ChatOptions options;
        options.tools = {weather_tool()};
        check_same_reply({Message::user("Weather in Paris?")}, options);
        CHECK(stub_reply(Api::responses, {Message::user("hi")}, options).message().tool_calls.size() == 1);
    }
    SUBCASE("after tool results") {
        Message calls = Message::assistant({});
        calls.tool_calls = {ToolCall{"call_1", "get_weather", R"({"city":"Paris"})"}};
        ChatOptions options;
        options.tools = {weather_tool()};
        options.tool_choice.mode = ToolChoice::Mode::automatic;
        check_same_reply({Message::user("Weather?"), calls, Message::tool_result("call_1", "18 C")}, options);
    }
}
