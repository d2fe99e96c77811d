#define LLM_STREAM_INTERNALS  // detail::base64_append too; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>
#include "support/ensure.hpp"

/* The request side of a conversation: every message shape and option as build_request() writes it
   (exact JSON text), each refusal before sending (code and field named), parse_messages() and
   parse_tools() on good and bad input, the parse → write → parse round trip, base64 against RFC 4648,
   and one body as it goes on the wire to the loopback test server. */

#include <string>
#include <string_view>
#include <vector>

#include "support/message_equal.hpp"
#include "support/request_check.hpp"
#include "support/test_server.hpp"

using llm_stream::ChatOptions;
using llm_stream::Config;
using llm_stream::ContentPart;
using llm_stream::Error;
using llm_stream::ErrorCode;
using llm_stream::Message;
using llm_stream::ResponseFormat;
using llm_stream::Role;
using llm_stream::Tool;
using llm_stream::ToolCall;
using llm_stream::ToolChoice;


namespace {

using llm_test::bare_options;

Config config_for_model(std::string model = "m") {
    Config config;
    config.base_url = "http://127.0.0.1:9/v1";
    config.model = std::move(model);
    return config;
}

/* The body for `messages` under `options`; "(error) ..." when build_request refuses them. */
std::string body_of(const std::vector<Message>& messages, const ChatOptions& options = bare_options()) {
    return llm_test::request_body(config_for_model(), messages, options);
}

/* The body of a one-message conversation: the message's JSON between the fixed parts. */
std::string body_with(std::string_view message_json, std::string_view options_json = "") {
    return std::string(R"({"model":"m","messages":[)") + std::string(message_json) + R"(],"stream":true)" +
           std::string(options_json) + "}";
}

std::string message_json(const Message& m, bool with_reasoning = true) {
    std::string out;
    llm_stream::write_message_json(out, m, with_reasoning);
    return out;
}

/* The message written `with` its reasoning and `without`, and sent so only with send_reasoning. */
void check_sent_only_with_reasoning(const Message& m, const std::string& with, const std::string& without) {
    CHECK(message_json(m) == with);
    CHECK(message_json(m, false) == without);
    ChatOptions options = bare_options();
    CHECK(body_of({Message::user("q"), m}, options) == body_with(R"({"role":"user","content":"q"},)" + without));
    options.send_reasoning = true;
    CHECK(body_of({Message::user("q"), m}, options) == body_with(R"({"role":"user","content":"q"},)" + with));
}

Error refusal(const std::vector<Message>& messages, const ChatOptions& options) {
    llm_stream::Request request;
    return llm_stream::build_request(config_for_model(), messages, options, request);
}

/* build_request refuses with invalid_argument and a message that names `field`. */
void check_refused(const std::vector<Message>& messages, const ChatOptions& options, std::string_view field) {
    llm_test::check_request_refused(config_for_model(), messages, options, field);
}

Message assistant_calling(std::vector<ToolCall> calls, std::string text = {}) {
    Message m = Message::assistant(std::move(text));
    m.tool_calls = std::move(calls);
    return m;
}

std::string base64(std::string_view bytes) {
    std::string out = "prefix:";
    llm_stream::detail::base64_append(out, bytes);
    return out.substr(7);
}

}  // namespace

// =================================================================================================
// Message shapes
// =================================================================================================

TEST_CASE("text messages of every role") {
    CHECK(message_json(Message::system("s")) == R"({"role":"system","content":"s"})");
    CHECK(message_json(Message::developer("d")) == R"({"role":"developer","content":"d"})");
    CHECK(message_json(Message::user("运动鞋 \"quoted\"\n")) == R"({"role":"user","content":"运动鞋 \"quoted\"\n"})");
    CHECK(message_json(Message::assistant("a")) == R"({"role":"assistant","content":"a"})");
    CHECK(message_json(Message::assistant({})) == R"({"role":"assistant","content":""})");
    Message named = Message::user("hi");
    named.name = "alice";
    CHECK(message_json(named) == R"({"role":"user","content":"hi","name":"alice"})");
    CHECK(body_of({Message::system("s"), named}) ==
          body_with(R"({"role":"system","content":"s"},{"role":"user","content":"hi","name":"alice"})"));
}

TEST_CASE("content parts: text, an image by URL with its detail, an image by bytes as a data: URL") {
    const Message m = Message::user("What is in these?", {ContentPart::image_url("https://example.com/a.png", "low"),
                                                          ContentPart::image_bytes("image/png", "foobar")});
    const char* expected =
        R"({"role":"user","content":[{"type":"text","text":"What is in these?"},)"
        R"({"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"low"}},)"
        R"({"type":"image_url","image_url":{"url":"data:image/png;base64,Zm9vYmFy"}}]})";
    CHECK(message_json(m) == expected);
    CHECK(body_of({m}) == body_with(expected));

    const std::string bytes("\x89PNG\r\n\x1a\n\0\xff", 10);
    const Message image_only = Message::user({}, {ContentPart::image_bytes("image/webp", bytes, "high")});
    CHECK(message_json(image_only) == R"({"role":"user","content":[{"type":"image_url","image_url":)"
                                      R"({"url":"data:image/webp;base64,iVBORw0KGgoA/w==","detail":"high"}}]})");
    Message copy = image_only;  // image bytes are shared, not copied
    CHECK(copy.parts[0].bytes.get() == image_only.parts[0].bytes.get());
}

TEST_CASE("an assistant's tool calls: content null without text, as OpenAI sends it back") {
    const Message calls = assistant_calling({{"call_1", "get_weather", R"({"city":"Paris"})"},
                                             {"call_2", "get_time", "{}"}});
    const char* expected =
        R"({"role":"assistant","content":null,"tool_calls":[)"
        R"({"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},)"
        R"({"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]})";
    CHECK(message_json(calls) == expected);
    CHECK(message_json(assistant_calling({{"c", "f", "{}"}}, "Let me look.")) ==
          R"({"role":"assistant","content":"Let me look.","tool_calls":[)"
          R"({"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]})");
    const Message result = Message::tool_result("call_1", "18°C");
    CHECK(message_json(result) == R"({"role":"tool","content":"18°C","tool_call_id":"call_1"})");
    CHECK(body_of({Message::user("weather?"), calls, result}) ==
          body_with(std::string(R"({"role":"user","content":"weather?"},)") + expected +
                    R"(,{"role":"tool","content":"18°C","tool_call_id":"call_1"})"));
}

TEST_CASE("reasoning goes back only with send_reasoning") {
    Message m = assistant_calling({{"c", "f", "{}"}});
    m.reasoning = "think";
    const std::string with = R"({"role":"assistant","content":null,"reasoning_content":"think","tool_calls":[)"
                             R"({"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]})";
    const std::string without = R"({"role":"assistant","content":null,"tool_calls":[)"
                                R"({"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]})";
    check_sent_only_with_reasoning(m, with, without);
}

TEST_CASE("the reasoning's signatures go with it: written, read back, sent only with send_reasoning") {
    Message m = assistant_calling({{"c", "f", "{}", "call-sig"}});
    m.reasoning = "think";
    m.reasoning_signature = "sig";
    m.redacted_reasoning = {"r1", "r2"};
    const std::string with = R"({"role":"assistant","content":null,"reasoning_content":"think","reasoning_signature":"sig",)"
                             R"("redacted_reasoning":["r1","r2"],"tool_calls":[)"
                             R"({"id":"c","type":"function","function":{"name":"f","arguments":"{}"},"signature":"call-sig"}]})";
    const std::string without = R"({"role":"assistant","content":null,"tool_calls":[)"
                                R"({"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]})";
    check_sent_only_with_reasoning(m, with, without);
    std::vector<Message> read;
    REQUIRE_FALSE(llm_stream::parse_messages("[" + with + "]", read));
    ENSURE(read.size() == 1);
    CHECK(llm_test::equal(read[0], m));
    const Error e = llm_stream::parse_messages(R"([{"role":"assistant","redacted_reasoning":["a",1]}])", read);
    CHECK(e.code == ErrorCode::invalid_argument);
    CHECK(e.message.find("messages[0].redacted_reasoning[1]") != std::string::npos);
}

TEST_CASE("reasoning_effort is sent as is; a budget, or an effort of another name, is refused") {
    ChatOptions options = bare_options();
    options.reasoning_effort = "high";
    CHECK(body_of({Message::user("q")}, options) == body_with(R"({"role":"user","content":"q"})", R"(,"reasoning_effort":"high")"));
    options.reasoning_budget = 2048;
    check_refused({Message::user("q")}, options, "reasoning_budget");
    options.reasoning_budget.reset();
    options.reasoning_effort = "extreme";
    check_refused({Message::user("q")}, options, "reasoning_effort");
    options.reasoning_effort.clear();
    options.reasoning_budget = 0;
    check_refused({Message::user("q")}, options, "reasoning_budget");
}

TEST_CASE("the request's extra_json: an object member merges into ours at every depth, any other replaces") {
    ChatOptions options = bare_options();
    options.include_usage = true;
    options.response_format.type = ResponseFormat::Type::json_schema;
    options.response_format.name = "s";
    options.response_format.schema = R"({"type":"object"})";
    options.extra_json = R"({"stream_options":{"continuous_usage_stats":true},)"
                         R"("response_format":{"json_schema":{"strict":false,"description":"d"},"type":"json_schema"},)"
                         R"("logit_bias":{"50256":-100},"top_k":20})";
    CHECK(body_of({Message::user("q")}, options) ==
          body_with(R"({"role":"user","content":"q"})",
                    R"(,"stream_options":{"include_usage":true,"continuous_usage_stats":true},)"
                    R"("response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"},"strict":false,"description":"d"}},)"
                    R"("logit_bias":{"50256":-100},"top_k":20)"));
    options.extra_json = R"({"stream_options":null,"response_format":"text"})";  // not an object: replaces
    CHECK(body_of({Message::user("q")}, options) ==
          body_with(R"({"role":"user","content":"q"})", R"(,"stream_options":null,"response_format":"text")"));
    // A schema as deep as a schema may be sits deeper in the body than the parser reads: merging
    // into the body is then refused, while sending it without a merge is not.
    std::string deep = "{}";
    for (int level = 1; level < 64; ++level) deep = "{\"a\":" + deep + "}";
    REQUIRE_FALSE(llm_stream::detail::check_json(deep));  // 64 levels: the most the parser reads
    REQUIRE(llm_stream::detail::check_json("[" + deep + "]"));
    options.response_format.schema = deep;
    options.extra_json = R"({"top_k":20})";
    CHECK(body_of({Message::user("q")}, options).rfind("(error)", 0) != 0);
    options.extra_json = R"({"response_format":{"json_schema":{"strict":false}}})";
    check_refused({Message::user("q")}, options, "extra JSON");
}

TEST_CASE("a message's extra_json members are merged into it and replace ours") {
    Message m = Message::user("hi");
    m.extra_json = R"( {"cache_control":{"type":"ephemeral"}} )";
    CHECK(message_json(m) == R"({"role":"user","content":"hi","cache_control":{"type":"ephemeral"}})");
    m.extra_json = R"({"content":[{"type":"input_audio","input_audio":{"data":"AA==","format":"wav"}}]})";
    CHECK(body_of({m}) == body_with(R"({"role":"user","content":[{"type":"input_audio","input_audio":)"
                                    R"({"data":"AA==","format":"wav"}}]})"));
    m.extra_json = "{}";
    CHECK(message_json(m) == R"({"role":"user","content":"hi"})");
    m.extra_json = "[not an object";  // the writer leaves it out; build_request refuses it
    CHECK(message_json(m) == R"({"role":"user","content":"hi"})");
}

// =================================================================================================
// Options
// =================================================================================================

TEST_CASE("tools, tool_choice and parallel_tool_calls") {
    ChatOptions options = bare_options();
    options.tools = {{"get_weather", "The weather in a city", R"({"type":"object","properties":{"city":{"type":"string"}}})", true},
                     {"now", "", "", false}};
    const std::string tools =
        R"(,"tools":[{"type":"function","function":{"name":"get_weather","description":"The weather in a city",)"
        R"("parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true}},)"
        R"({"type":"function","function":{"name":"now"}}])";
    const std::vector<Message> q = {Message::user("q")};
    const std::string user = R"({"role":"user","content":"q"})";
    CHECK(body_of(q, options) == body_with(user, tools));

    const std::pair<ToolChoice, std::string> choices[] = {
        {{ToolChoice::Mode::automatic, {}}, R"("auto")"},
        {{ToolChoice::Mode::none, {}}, R"("none")"},
        {{ToolChoice::Mode::required, {}}, R"("required")"},
        {ToolChoice::named("now"), R"({"type":"function","function":{"name":"now"}})"},
    };
    for (const auto& choice : choices) {
        options.tool_choice = choice.first;
        CHECK(body_of(q, options) == body_with(user, tools + R"(,"tool_choice":)" + choice.second));
    }
    options.tool_choice = {};
    options.parallel_tool_calls = false;
    CHECK(body_of(q, options) == body_with(user, tools + R"(,"parallel_tool_calls":false)"));
    options.parallel_tool_calls = true;
    CHECK(body_of(q, options) == body_with(user, tools + R"(,"parallel_tool_calls":true)"));

    ChatOptions no_tools = bare_options();
    no_tools.tool_choice.mode = ToolChoice::Mode::none;  // what no tools mean: not sent
    CHECK(body_of(q, no_tools) == body_with(user));
}

TEST_CASE("response_format: a JSON object, or JSON that follows a schema") {
    ChatOptions options = bare_options();
    const std::vector<Message> q = {Message::user("q")};
    const std::string user = R"({"role":"user","content":"q"})";
    options.response_format.type = ResponseFormat::Type::json_object;
    CHECK(body_of(q, options) == body_with(user, R"(,"response_format":{"type":"json_object"})"));
    options.response_format.type = ResponseFormat::Type::json_schema;
    options.response_format.name = "shoe";
    options.response_format.schema = R"( {"type":"object"} )";
    CHECK(body_of(q, options) == body_with(user, R"(,"response_format":{"type":"json_schema","json_schema":)"
                                                 R"({"name":"shoe","schema":{"type":"object"},"strict":true}})"));
    options.response_format.strict = false;
    CHECK(body_of(q, options) == body_with(user, R"(,"response_format":{"type":"json_schema","json_schema":)"
                                                 R"({"name":"shoe","schema":{"type":"object"},"strict":false}})"));
}

TEST_CASE("sampling options, stop, seed, user and usage") {
    ChatOptions options = bare_options();
    options.temperature = 0.25;
    options.top_p = 0.9;
    options.max_tokens = 100;
    options.seed = -9007199254740993;
    options.presence_penalty = -2.0;
    options.frequency_penalty = 1.5;
    options.stop = {"\n\n", "END"};
    options.user = "user-42";
    const std::vector<Message> q = {Message::user("q")};
    const std::string user = R"({"role":"user","content":"q"})";
    CHECK(body_of(q, options) ==
          body_with(user, R"(,"temperature":0.25,"top_p":0.9,"max_tokens":100,"seed":-9007199254740993,)"
                          R"("presence_penalty":-2,"frequency_penalty":1.5,"stop":["\n\n","END"],"user":"user-42")"));

    ChatOptions usage = bare_options();
    usage.include_usage = true;
    CHECK(body_of(q, usage) == body_with(user, R"(,"stream_options":{"include_usage":true})"));
    CHECK(ChatOptions{}.include_usage);  // on by default: every server in the README's list accepts it
    usage.extra_json = R"({"stream_options":{"include_usage":true,"continuous_usage_stats":true}})";
    CHECK(body_of(q, usage) == body_with(user, R"(,"stream_options":{"include_usage":true,"continuous_usage_stats":true})"));
}

TEST_CASE("the request's extra_json replaces any option it names, and may not set stream or messages") {
    ChatOptions options = bare_options();
    options.tools = {{"f", "", "", false}};
    options.tool_choice.mode = ToolChoice::Mode::required;
    options.top_p = 0.5;
    options.extra_json = R"({"tool_choice":"auto","top_p":1,"top_k":20})";
    CHECK(body_of({Message::user("q")}, options) ==
          body_with(R"({"role":"user","content":"q"})",
                    R"(,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"auto","top_p":1,"top_k":20)"));
    for (const char* key : {"stream", "messages"}) {
        options.extra_json = std::string("{\"") + key + "\":null}";
        check_refused({Message::user("q")}, options, key);
    }
}

// =================================================================================================
// Refused before sending
// =================================================================================================

TEST_CASE("bad messages are refused, naming the message and the field") {
    const ChatOptions options = bare_options();
    const Message user = Message::user("q");
    SUBCASE("a tool message without tool_call_id") {
        check_refused({user, assistant_calling({{"c", "f", "{}"}}), Message::tool_result("", "r")}, options,
                      "messages[2].tool_call_id is empty: a tool message must say which call it answers");
    }
    SUBCASE("tool_call_id on a user message") {
        Message m = user;
        m.tool_call_id = "c";
        check_refused({m}, options, "messages[0].tool_call_id");
    }
    SUBCASE("tool calls on a user message") {
        Message m = user;
        m.tool_calls = {{"c", "f", "{}"}};
        check_refused({m}, options, "messages[0].tool_calls");
    }
    SUBCASE("a call without id") {
        check_refused({user, assistant_calling({{"a", "f", "{}"}, {"", "f", "{}"}})}, options, "messages[1].tool_calls[1].id");
    }
    SUBCASE("a call without name") {
        check_refused({user, assistant_calling({{"a", "", "{}"}})}, options, "messages[1].tool_calls[0].name");
    }
    SUBCASE("arguments that are not JSON") {
        check_refused({user, assistant_calling({{"a", "f", R"({"x":)"}})}, options,
                      "messages[1].tool_calls[0].arguments is not valid JSON: ");
    }
    SUBCASE("empty arguments") {
        check_refused({user, assistant_calling({{"a", "f", ""}})}, options, "messages[1].tool_calls[0].arguments is empty");
    }
    SUBCASE("message extra_json that is not an object, or sets role") {
        Message m = user;
        m.extra_json = "[1]";
        check_refused({m}, options, "messages[0].extra_json must be an object");
        m.extra_json = "{\"a\":";
        check_refused({m}, options, "messages[0].extra_json is not valid JSON");
        m.extra_json = R"({"\u0072ole":"system"})";
        check_refused({m}, options, "messages[0].extra_json may not set \"role\"");
    }
}

TEST_CASE("bad images are refused, naming the part") {
    const ChatOptions options = bare_options();
    auto with_image = [](ContentPart image) { return Message::user("see", {std::move(image)}); };
    ContentPart nothing = ContentPart::image_url({});
    check_refused({with_image(nothing)}, options, "messages[0].content[1] is an image with neither a URL nor bytes");
    ContentPart both = ContentPart::image_bytes("image/png", "x");
    both.text = "https://a/b.png";
    check_refused({with_image(both)}, options, "messages[0].content[1] is an image with both");
    check_refused({with_image(ContentPart::image_url("file:///etc/passwd"))}, options, "messages[0].content[1].url");
    check_refused({with_image(ContentPart::image_url("example.com/a.png"))}, options, "messages[0].content[1].url");
    check_refused({with_image(ContentPart::image_bytes("text/plain", "x"))}, options, "messages[0].content[1].mime_type");
    check_refused({with_image(ContentPart::image_bytes("", "x"))}, options, "messages[0].content[1].mime_type");
    check_refused({with_image(ContentPart::image_bytes("image/png;x=\"", "x"))}, options, "messages[0].content[1].mime_type");
    check_refused({with_image(ContentPart::image_url("https://a/b.png", "ultra"))}, options, "messages[0].content[1].detail");
    Message system = Message::system("s");
    system.parts = {ContentPart::image_url("https://a/b.png")};
    check_refused({system}, options, "messages[0].content[0] is an image in a system message");
    for (const char* url : {"http://a/b.png", "https://a/b.png", "data:image/png;base64,AA=="})
        CHECK_FALSE(refusal({with_image(ContentPart::image_url(url))}, options));
}

TEST_CASE("bad tools and tool choices are refused, naming the field") {
    const std::vector<Message> q = {Message::user("q")};
    ChatOptions o = bare_options();
    SUBCASE("names") {
        o.tools = {{"", "", "", false}};
        check_refused(q, o, "tools[0].name is empty");
        o.tools = {{"ok", "", "", false}, {"has space", "", "", false}};
        check_refused(q, o, "tools[1].name \"has space\" is not a valid name");
        o.tools = {{std::string(65, 'a'), "", "", false}};
        check_refused(q, o, "tools[0].name");
        o.tools = {{std::string(64, 'a'), "", "", false}};
        CHECK_FALSE(refusal(q, o));
        o.tools = {{"f", "", "", false}, {"g", "", "", false}, {"f", "", "", false}};
        check_refused(q, o, "tools[2].name \"f\" is already the name of tools[0]");
    }
    SUBCASE("parameters") {
        o.tools = {{"f", "", "[1]", false}};
        check_refused(q, o, "tools[0].parameters must be a JSON object");
        o.tools = {{"f", "", "{\"type\":", false}};
        check_refused(q, o, "tools[0].parameters is not valid JSON");
    }
    SUBCASE("tool_choice and parallel_tool_calls") {
        o.tool_choice.mode = ToolChoice::Mode::required;
        check_refused(q, o, "tool_choice is set but no tools are offered");
        o.tool_choice.mode = ToolChoice::Mode::none;
        CHECK_FALSE(refusal(q, o));
        o.tool_choice = {};
        o.parallel_tool_calls = true;
        check_refused(q, o, "parallel_tool_calls");
        o.parallel_tool_calls.reset();
        o.tools = {{"f", "", "", false}};
        o.tool_choice = ToolChoice::named("g");
        check_refused(q, o, "tool_choice names \"g\", which is not among the tools");
    }
}

TEST_CASE("bad response formats and sampling options are refused, naming the field") {
    const std::vector<Message> q = {Message::user("q")};
    ChatOptions o = bare_options();
    o.response_format.type = ResponseFormat::Type::json_schema;
    o.response_format.schema = "{}";
    check_refused(q, o, "response_format.json_schema.name is empty");
    o.response_format.name = "a.b";
    check_refused(q, o, "response_format.json_schema.name");
    o.response_format.name = "shoe";
    o.response_format.schema = "";
    check_refused(q, o, "response_format.json_schema.schema is empty");
    o.response_format.schema = "\"object\"";
    check_refused(q, o, "response_format.json_schema.schema must be a JSON object");

    const auto sampling = [&](void (*set)(ChatOptions&), std::string_view field) {
        ChatOptions s = bare_options();
        set(s);
        check_refused(q, s, field);
    };
    sampling([](ChatOptions& s) { s.top_p = 1.5; }, "top_p");
    sampling([](ChatOptions& s) { s.top_p = -0.1; }, "top_p");
    sampling([](ChatOptions& s) { s.presence_penalty = 2.5; }, "presence_penalty");
    sampling([](ChatOptions& s) { s.frequency_penalty = -3; }, "frequency_penalty");
    sampling([](ChatOptions& s) { s.temperature = 3; }, "temperature");
    sampling([](ChatOptions& s) { s.max_tokens = 0; }, "max_tokens");
    sampling([](ChatOptions& s) { s.stop = {"a", "b", "c", "d", "e"}; }, "stop has 5 sequences: at most 4");
    sampling([](ChatOptions& s) { s.stop = {"a", ""}; }, "stop[1] is empty");
    ChatOptions edges = bare_options();
    edges.top_p = 0;
    edges.presence_penalty = 2;
    edges.frequency_penalty = -2;
    edges.stop = {"a", "b", "c", "d"};
    CHECK_FALSE(refusal(q, edges));
}

// =================================================================================================
// parse_messages, parse_tools
// =================================================================================================

TEST_CASE("parse_messages reads every shape, keeps unknown members, and round-trips") {
    const char* json = R"([
      {"role":"system","content":"You are terse."},
      {"role":"developer","content":"d","name":"dev"},
      {"role":"user","content":[{"type":"text","text":"What is this?"},
                                {"type":"image_url","image_url":{"url":"data:image/png;base64,AA==","detail":"low"}}]},
      {"role":"assistant","content":null,"reasoning_content":"hmm","refusal":null,
       "tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"42","cache_control":{"type":"ephemeral"}},
      {"role":"assistant","tool_calls":[{"id":"c","function":{"name":"g","arguments":"{}"}}]}
    ])";
    std::vector<Message> m;
    const Error e = llm_stream::parse_messages(json, m);
    CHECK_MESSAGE(!e, e.message);
    ENSURE(m.size() == 6);
    CHECK((m[0].role == Role::system && m[0].content == "You are terse."));
    CHECK((m[1].role == Role::developer && m[1].name == "dev"));
    ENSURE(m[2].parts.size() == 2);
    CHECK((m[2].parts[0].kind == ContentPart::Kind::text && m[2].parts[0].text == "What is this?"));
    CHECK((m[2].parts[1].kind == ContentPart::Kind::image && m[2].parts[1].text == "data:image/png;base64,AA==" &&
           m[2].parts[1].detail == "low"));
    CHECK((m[3].role == Role::assistant && m[3].content.empty() && m[3].reasoning == "hmm"));
    ENSURE(m[3].tool_calls.size() == 1);
    CHECK((m[3].tool_calls[0].id == "call_1" && m[3].tool_calls[0].name == "f" && m[3].tool_calls[0].arguments == "{\"x\":1}"));
    CHECK(m[3].extra_json == R"({"refusal":null})");
    CHECK((m[4].role == Role::tool && m[4].tool_call_id == "call_1" && m[4].content == "42"));
    CHECK(m[4].extra_json == R"({"cache_control":{"type":"ephemeral"}})");
    CHECK(m[5].tool_calls.size() == 1);

    std::string written = "[";
    for (std::size_t i = 0; i < m.size(); ++i) {
        if (i) written += ',';
        llm_stream::write_message_json(written, m[i]);
    }
    written += ']';
    std::vector<Message> again;
    CHECK_FALSE(llm_stream::parse_messages(written, again));
    CHECK(llm_test::equal(m, again));
    CHECK(body_of(m).find(R"({"role":"tool","content":"42","tool_call_id":"call_1","cache_control":{"type":"ephemeral"}})") !=
          std::string::npos);
}

TEST_CASE("parse_messages refuses bad input, naming the culprit, and leaves the output alone") {
    const std::pair<const char*, const char*> bad[] = {
        {R"([{"role":"robot","content":"x"}])", R"(messages[0].role: unknown role "robot")"},
        {R"({"role":"user"})", "messages must be an array"},
        {R"([{"role":"user","content":"x"},)", "the messages are not valid JSON"},
        {R"([{"role":"user","content":"x"}] x)", "the messages are not valid JSON"},
        {R"(["hello"])", "messages[0] must be an object"},
        {R"([{"content":"x"}])", "messages[0] has no role"},
        {R"([{"role":1,"content":"x"}])", "messages[0].role must be a string"},
        {R"([{"role":"user"}])", "messages[0] has no content"},
        {R"([{"role":"user","content":null}])", "messages[0].content is null"},
        {R"([{"role":"user","content":7}])", "messages[0].content must be a string, an array of parts or null"},
        {R"([{"role":"user","content":[{"type":"audio"}]}])", R"(messages[0].content[0].type: unknown part type "audio")"},
        {R"([{"role":"user","content":[{"text":"x"}]}])", "messages[0].content[0] has no type"},
        {R"([{"role":"user","content":[{"type":"text"}]}])", "messages[0].content[0] must have a text"},
        {R"([{"role":"user","content":[{"type":"image_url","image_url":{}}]}])", "messages[0].content[0] must have an image_url.url"},
        {R"([{"role":"user","content":[{"type":"text","text":"x","cache":1}]}])", "messages[0].content[0].cache: not a member"},
        {R"([{"role":"user","content":[{"type":"image_url","image_url":{"url":"u","size":1}}]}])",
         "messages[0].content[0].image_url.size: not a member"},
        {R"([{"role":"assistant","tool_calls":{}}])", "messages[0].tool_calls must be an array"},
        {R"([{"role":"assistant","tool_calls":[{"id":"c","type":"custom"}]}])", "messages[0].tool_calls[0].type"},
        {R"([{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":{}}}]}])",
         "messages[0].tool_calls[0].function.arguments must be a string"},
        {R"([{"role":"assistant","tool_calls":[{"id":"c","index":0}]}])", "messages[0].tool_calls[0].index: not a member"},
        {R"([{"role":"user","content":"x","name":3}])", "messages[0].name must be a string"},
    };
    for (const auto& b : bad) {
        std::vector<Message> out = {Message::user("kept")};
        const Error e = llm_stream::parse_messages(b.first, out);
        INFO("input: ", b.first, "; error: ", e.message);
        CHECK(e.code == ErrorCode::invalid_argument);
        CHECK(e.message.find(b.second) != std::string::npos);
        CHECK((out.size() == 1 && out[0].content == "kept"));
    }
}

TEST_CASE("parse_tools reads OpenAI tools and refuses bad ones") {
    const char* json = R"([{"type":"function","function":{"name":"get_weather","description":"Weather",
        "parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true}},
        {"type":"function","function":{"name":"now"}}])";
    std::vector<Tool> tools;
    const Error e = llm_stream::parse_tools(json, tools);
    CHECK_MESSAGE(!e, e.message);
    ENSURE(tools.size() == 2);
    CHECK((tools[0].name == "get_weather" && tools[0].description == "Weather" && tools[0].strict));
    CHECK(tools[0].parameters == R"({"type":"object","properties":{"city":{"type":"string"}}})");
    CHECK((tools[1].name == "now" && tools[1].parameters.empty() && !tools[1].strict));

    std::string written;
    llm_stream::detail::write_tools(written, tools);
    std::vector<Tool> again;
    CHECK_FALSE(llm_stream::parse_tools(written, again));
    CHECK(llm_test::equal(tools, again));

    const std::pair<const char*, const char*> bad[] = {
        {R"([{"type":"retrieval"}])", R"(tools[0].type: only "function" tools are supported)"},
        {R"([{"type":"function"}])", "tools[0] has no function"},
        {R"([{"type":"function","function":{"name":"f","parameters":[]}}])", "tools[0].function.parameters must be a JSON object"},
        {R"([{"type":"function","function":{"name":"f","strict":"yes"}}])", "tools[0].function.strict must be true or false"},
        {R"([{"type":"function","function":{"name":"f","returns":{}}}])", "tools[0].function.returns: not a member"},
        {R"({})", "tools must be an array"},
        {R"([)", "the tools are not valid JSON"},
    };
    for (const auto& b : bad) {
        std::vector<Tool> out;
        const Error error = llm_stream::parse_tools(b.first, out);
        INFO("input: ", b.first, "; error: ", error.message);
        CHECK(error.code == ErrorCode::invalid_argument);
        CHECK(error.message.find(b.second) != std::string::npos);
    }
}

// =================================================================================================
// base64, and the body on the wire
// =================================================================================================

TEST_CASE("base64 follows RFC 4648 (section 10 test vectors), appended in place") {
    CHECK(base64("") == "");
    CHECK(base64("f") == "Zg==");
    CHECK(base64("fo") == "Zm8=");
    CHECK(base64("foo") == "Zm9v");
    CHECK(base64("foob") == "Zm9vYg==");
    CHECK(base64("fooba") == "Zm9vYmE=");
    CHECK(base64("foobar") == "Zm9vYmFy");
    CHECK(base64(std::string("\xff\xfe\xfd\0", 4)) == "//79AA==");  // the last two letters of the alphabet, and NUL
}

TEST_CASE("a tool-call turn as it goes on the wire to the loopback test server") {
    llm_test::TestServer server;
    server.push(llm_test::Response::sse(llm_test::read_stream_file("openai-gpt4o-content.sse")));
    const bool started = server.start();
    CHECK_MESSAGE(started, "server: " << server.error());
    if (!started) return;
    Config config = config_for_model("gpt-4o-mini");
    config.base_url = server.base_url() + "/v1";
    config.log_level = llm_stream::LogLevel::off;
    ChatOptions options;
    options.system.clear();
    options.tools = {{"add", "Adds two numbers", R"({"type":"object"})", false}};
    options.tool_choice.mode = ToolChoice::Mode::automatic;
    const std::vector<Message> conversation = {
        Message::user("2+3?", {ContentPart::image_bytes("image/png", "foo")}),
        assistant_calling({{"call_1", "add", R"({"a":2,"b":3})"}}),
        Message::tool_result("call_1", "5"),
    };
    llm_stream::Stream stream = llm_stream::Client(config).stream_chat(conversation, options);
    while (stream.next_chunk()) {
    }
    CHECK_FALSE(stream.error());
    const auto requests = server.requests();
    ENSURE(requests.size() == 1);
    CHECK(requests[0].header("Content-Length") == std::to_string(requests[0].body.size()));
    CHECK(requests[0].body ==
          R"({"model":"gpt-4o-mini","messages":[)"
          R"({"role":"user","content":[{"type":"text","text":"2+3?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,Zm9v"}}]},)"
          R"({"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"add","arguments":"{\"a\":2,\"b\":3}"}}]},)"
          R"({"role":"tool","content":"5","tool_call_id":"call_1"}],)"
          R"("stream":true,"stream_options":{"include_usage":true},)"
          R"("tools":[{"type":"function","function":{"name":"add","description":"Adds two numbers","parameters":{"type":"object"}}}],)"
          R"("tool_choice":"auto"})");
}
