#define LLM_STREAM_INTERNALS  // detail::make_anthropic_reader; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>

/* The Anthropic Messages API: request bodies as exact JSON for each message shape and option, each
   refusal naming its field; the reader on each event type, unknown events, errors and invalid JSON;
   the stub in this wire format decoding to the same reply as the openai stub. The recorded streams
   (anthropic-*.sse) run in test_streams.cpp. */

#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/decode.hpp"
#include "support/request_check.hpp"
#include "support/stub_check.hpp"

using llm_stream::Api;
using llm_stream::ChatOptions;
using llm_stream::Config;
using llm_stream::ContentPart;
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

Config anthropic_config() {
    Config config;
    config.base_url = "http://127.0.0.1:9/v1";
    config.model = "claude-m";
    config.api = Api::anthropic;
    return config;
}

std::string body_of(const std::vector<Message>& messages, const ChatOptions& options = bare_options()) {
    return llm_test::request_body(anthropic_config(), messages, options);
}

/* The body of a conversation: its messages' JSON, then the options' members after the fixed ones. */
std::string body_with(std::string_view messages_json, std::string_view after_max_tokens = "") {
    return R"({"model":"claude-m","messages":[)" + std::string(messages_json) + R"(],"stream":true,"max_tokens":4096)" +
           std::string(after_max_tokens) + "}";
}

const Tool kWeather{"get_weather", "The weather in a city",
                    R"({"type":"object","properties":{"city":{"type":"string"}}})", false};

}  // namespace

TEST_CASE("anthropic request: POST to the base URL's /messages") {
    llm_stream::Request request;
    CHECK_FALSE(llm_stream::build_request(anthropic_config(), {Message::user("hi")}, bare_options(), request));
    CHECK(request.url == "http://127.0.0.1:9/v1/messages");
}

TEST_CASE("anthropic body: system and developer messages become the top-level system text") {
    CHECK(body_of({Message::system("Be brief."), Message::developer("Use metric units."), Message::user("hi")}) ==
          body_with(R"({"role":"user","content":"hi"})", R"(,"system":"Be brief.\n\nUse metric units.")"));
    CHECK(body_of({Message::user("hi"), Message::assistant("hello"), Message::user("bye")}) ==
          body_with(R"({"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"bye"})"));
}

TEST_CASE("anthropic body: images by URL, by bytes, and as a base64 data: URL") {
    Message m = Message::user("look", {ContentPart::image_url("https://x.test/a.png"),
                                       ContentPart::image_bytes("image/png", "abc"),
                                       ContentPart::image_url("data:image/gif;base64,R0lG")});
    CHECK(body_of({m}) ==
          body_with(R"({"role":"user","content":[{"type":"text","text":"look"},)"
                    R"({"type":"image","source":{"type":"url","url":"https://x.test/a.png"}},)"
                    R"({"type":"image","source":{"type":"base64","media_type":"image/png","data":"YWJj"}},)"
                    R"({"type":"image","source":{"type":"base64","media_type":"image/gif","data":"R0lG"}}]})"));
}

TEST_CASE("anthropic body: tool calls are tool_use blocks; consecutive tool results make one user message") {
    Message call = Message::assistant("Checking.");
    call.tool_calls = {ToolCall{"toolu_1", "get_weather", R"( {"city":"Paris"} )"}, ToolCall{"toolu_2", "get_weather", "{}"}};
    Message failed = Message::tool_result("toolu_2", "no such city");
    failed.extra_json = R"({"is_error":true})";
    CHECK(body_of({Message::user("weather?"), call, Message::tool_result("toolu_1", "18C"), failed,
                   Message::user("thanks")}) ==
          body_with(R"({"role":"user","content":"weather?"},)"
                    R"({"role":"assistant","content":[{"type":"text","text":"Checking."},)"
                    R"({"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}},)"
                    R"({"type":"tool_use","id":"toolu_2","name":"get_weather","input":{}}]},)"
                    R"({"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"18C"},)"
                    R"({"type":"tool_result","tool_use_id":"toolu_2","content":"no such city","is_error":true}]},)"
                    R"({"role":"user","content":"thanks"})"));
}

TEST_CASE("anthropic body: an assistant message that only calls a tool has no text block") {
    Message call = Message::assistant({});
    call.tool_calls = {ToolCall{"toolu_1", "f", "{}"}};
    CHECK(body_of({Message::user("go"), call, Message::tool_result("toolu_1", "done")}) ==
          body_with(R"({"role":"user","content":"go"},)"
                    R"({"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"f","input":{}}]},)"
                    R"({"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"done"}]})"));
}

TEST_CASE("anthropic body: sampling options, stop sequences, user id, max_tokens") {
    ChatOptions options = bare_options();
    options.temperature = 0.5;
    options.top_p = 0.9;
    options.max_tokens = 100;
    options.stop = {"END", "\n\n"};
    options.user = "u-1";
    CHECK(body_of({Message::user("hi")}, options) ==
          R"({"model":"claude-m","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":100,)"
          R"("temperature":0.5,"top_p":0.9,"stop_sequences":["END","\n\n"],"metadata":{"user_id":"u-1"}})");
}

TEST_CASE("anthropic body: tools with input_schema, and each tool_choice") {
    ChatOptions options = bare_options();
    options.tools = {kWeather, Tool{"now", "", "", true}};
    const std::string tools =
        R"(,"tools":[{"name":"get_weather","description":"The weather in a city","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},)"
        R"({"name":"now","input_schema":{"type":"object","properties":{}},"strict":true}])";
    struct Case {
        ToolChoice choice;
        std::optional<bool> parallel;
        const char* tool_choice;  // the member written after the tools ("" for none)
    };
    const Case cases[] = {
        {{}, {}, ""},
        {{ToolChoice::Mode::automatic, ""}, {}, R"(,"tool_choice":{"type":"auto"})"},
        {{ToolChoice::Mode::required, ""}, false, R"(,"tool_choice":{"type":"any","disable_parallel_tool_use":true})"},
        {ToolChoice::named("now"), {}, R"(,"tool_choice":{"type":"tool","name":"now"})"},
        {{ToolChoice::Mode::none, ""}, true, R"(,"tool_choice":{"type":"none"})"},
        {{}, true, R"(,"tool_choice":{"type":"auto","disable_parallel_tool_use":false})"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.tool_choice);
        options.tool_choice = c.choice;
        options.parallel_tool_calls = c.parallel;
        CHECK(body_of({Message::user("hi")}, options) == body_with(R"({"role":"user","content":"hi"})", tools + c.tool_choice));
    }
}

TEST_CASE("anthropic body: a JSON Schema reply is output_config.format; extra_json members replace ours") {
    ChatOptions options = bare_options();
    options.response_format.type = ResponseFormat::Type::json_schema;
    options.response_format.name = "answer";
    options.response_format.schema = R"({"type":"object"})";
    CHECK(body_of({Message::user("hi")}, options) ==
          body_with(R"({"role":"user","content":"hi"})", R"(,"output_config":{"format":{"type":"json_schema","schema":{"type":"object"}}})"));
    options = bare_options();
    options.max_tokens = 10;
    options.extra_json = R"({"max_tokens":64000,"thinking":{"type":"enabled","budget_tokens":2000}})";
    CHECK(body_of({Message::user("hi")}, options) ==
          R"({"model":"claude-m","messages":[{"role":"user","content":"hi"}],"stream":true,)"
          R"("max_tokens":64000,"thinking":{"type":"enabled","budget_tokens":2000}})");
    options.extra_json = R"({"stream":false})";
    CHECK(body_of({Message::user("hi")}, options).find("(error) extra JSON may not set \"stream\"") == 0);
}

TEST_CASE("anthropic body: an assistant's thinking goes back first, signed, then its redacted blocks") {
    Message call = Message::assistant({});
    call.reasoning = "Paris: use the tool.";
    call.reasoning_signature = "EqQB+sig==";
    call.redacted_reasoning = {"EmwK", "EmwL"};
    call.tool_calls = {ToolCall{"toolu_1", "get_weather", R"({"city":"Paris"})"}};
    ChatOptions options = bare_options();
    const std::string expected =
        body_with(R"({"role":"user","content":"weather?"},)"
                  R"({"role":"assistant","content":[{"type":"thinking","thinking":"Paris: use the tool.","signature":"EqQB+sig=="},)"
                  R"({"type":"redacted_thinking","data":"EmwK"},{"type":"redacted_thinking","data":"EmwL"},)"
                  R"({"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},)"
                  R"({"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"18C"}]})");
    const std::vector<Message> turn{Message::user("weather?"), call, Message::tool_result("toolu_1", "18C")};
    CHECK(body_of(turn, options) == expected);
    options.send_reasoning = true;  // signed thinking goes back either way
    CHECK(body_of(turn, options) == expected);
    Message redacted_only = Message::assistant("It is 18C.");
    redacted_only.redacted_reasoning = {"EmwK"};
    CHECK(body_of({Message::user("q"), redacted_only}, bare_options()) ==
          body_with(R"({"role":"user","content":"q"},{"role":"assistant","content":[{"type":"redacted_thinking","data":"EmwK"},)"
                    R"({"type":"text","text":"It is 18C."}]})"));
}

TEST_CASE("anthropic body: reasoning asked for is a thinking budget, with room for the reply when max_tokens is unset") {
    ChatOptions options = bare_options();
    const std::vector<Message> hi{Message::user("hi")};
    const struct {
        const char* effort;
        int budget;
    } efforts[] = {{"low", 1024}, {"medium", 4096}, {"high", 16384}};
    for (const auto& e : efforts) {
        CAPTURE(e.effort);
        options.reasoning_effort = e.effort;
        CHECK(body_of(hi, options) == R"({"model":"claude-m","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":)" +
                                          std::to_string(e.budget + 4096) + R"(,"thinking":{"type":"enabled","budget_tokens":)" +
                                          std::to_string(e.budget) + "}}");
    }
    options.reasoning_budget = 2000;  // the budget wins over the effort's
    options.max_tokens = 3000;
    CHECK(body_of(hi, options) == R"({"model":"claude-m","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":3000,)"
                                  R"("thinking":{"type":"enabled","budget_tokens":2000}})");
    options.max_tokens = 2000;
    llm_test::check_request_refused(anthropic_config(), hi, options, "max_tokens");
    options.max_tokens.reset();
    options.reasoning_budget = 1023;
    llm_test::check_request_refused(anthropic_config(), hi, options, "reasoning_budget");
    options.extra_json = R"({"thinking":{"budget_tokens":1500}})";  // merges into ours
    options.reasoning_budget = 1024;
    CHECK(body_of(hi, options) == R"({"model":"claude-m","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":5120,)"
                                  R"("thinking":{"type":"enabled","budget_tokens":1500}})");
}

TEST_CASE("anthropic body: what the API cannot carry is refused, naming the field") {
    auto refusal = [](const std::vector<Message>& messages, const ChatOptions& options) {
        const std::string body = body_of(messages, options);
        CHECK(body.rfind("(error) ", 0) == 0);
        return body;
    };
    const std::vector<Message> hi{Message::user("hi")};
    ChatOptions options = bare_options();
    options.seed = 1;
    CHECK(refusal(hi, options).find("seed") != std::string::npos);
    options = bare_options();
    options.presence_penalty = 0.5;
    CHECK(refusal(hi, options).find("presence_penalty") != std::string::npos);
    options = bare_options();
    options.frequency_penalty = 0.5;
    CHECK(refusal(hi, options).find("frequency_penalty") != std::string::npos);
    options = bare_options();
    options.temperature = 1.5;
    CHECK(refusal(hi, options).find("temperature must be between 0 and 1") != std::string::npos);
    options = bare_options();
    options.response_format.type = ResponseFormat::Type::json_object;
    CHECK(refusal(hi, options).find("response_format") != std::string::npos);

    options = bare_options();
    Message named = Message::user("hi");
    named.name = "bob";
    CHECK(refusal({named}, options).find("messages[0].name") != std::string::npos);
    Message system = Message::system("s");
    system.extra_json = R"({"cache_control":{"type":"ephemeral"}})";
    CHECK(refusal({system, Message::user("hi")}, options).find("messages[0].extra_json") != std::string::npos);
    Message thought = Message::assistant("a");
    thought.reasoning = "because";
    options.send_reasoning = true;
    CHECK(refusal({Message::user("q"), thought}, options).find("messages[1].reasoning") != std::string::npos);
    options.send_reasoning = false;
    CHECK(body_of({Message::user("q"), thought}, options).rfind("(error)", 0) != 0);  // reasoning not sent
    Message call = Message::assistant({});
    call.tool_calls = {ToolCall{"toolu_1", "f", "[1]"}};
    CHECK(refusal({Message::user("q"), call}, options).find("messages[1].tool_calls[0].arguments") != std::string::npos);
}

TEST_CASE("anthropic body: images it cannot take are refused, naming the part") {
    const ChatOptions options = bare_options();
    const std::string detail = body_of({Message::user("x", {ContentPart::image_url("https://x.test/a.png", "low")})}, options);
    CHECK(detail.find("messages[0].content[1].detail") != std::string::npos);
    const std::string plain = body_of({Message::user("x", {ContentPart::image_url("data:image/png,abc")})}, options);
    CHECK(plain.find("messages[0].content[1].url") != std::string::npos);
    const std::string bmp = body_of({Message::user("x", {ContentPart::image_bytes("image/bmp", "BM")})}, options);
    CHECK(bmp.find("messages[0].content[1]: the Anthropic Messages API takes image/jpeg") != std::string::npos);
}

namespace {

/* Feeds the reader one event after another; keeps what each gave. */
struct ReaderRun {
    std::unique_ptr<llm_stream::detail::WireReader> reader = llm_stream::detail::make_anthropic_reader();
    Result read(std::string_view name, std::string_view data) { return reader->read(name, data); }
    const std::vector<Event>& events() const { return reader->events(); }
};

const char* const kStart =
    R"({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],)"
    R"("usage":{"input_tokens":10,"cache_creation_input_tokens":2,"cache_read_input_tokens":3,"output_tokens":1}}})";

}  // namespace

TEST_CASE("anthropic reader: text, thinking, and blocks that open with text") {
    ReaderRun run;
    REQUIRE(run.read("message_start", kStart) == Result::ok);
    CHECK(run.events().empty());
    REQUIRE(run.read("content_block_start", R"({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"Hm","signature":""}})") == Result::ok);
    REQUIRE(run.events().size() == 1);
    CHECK(run.events()[0].type == EventType::reasoning);
    CHECK(run.events()[0].text == "Hm");
    REQUIRE(run.read("content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"m\u00e9"}})") == Result::ok);
    REQUIRE(run.events().size() == 1);
    CHECK(run.events()[0].text == "m\xC3\xA9");
    REQUIRE(run.read("content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}})") == Result::ok);
    REQUIRE(run.events().size() == 1);  // the signature, whole, in a reasoning event without text
    CHECK(run.events()[0].type == EventType::reasoning);
    CHECK(run.events()[0].text.empty());
    CHECK(run.events()[0].signature == "EqQB");
    CHECK(run.events()[0].raw_reason.empty());
    REQUIRE(run.read("content_block_start", R"({"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"EmwK"}})") == Result::ok);
    REQUIRE(run.events().size() == 1);
    CHECK(run.events()[0].type == EventType::reasoning);
    CHECK(run.events()[0].text.empty());
    CHECK(run.events()[0].signature == "EmwK");
    CHECK(run.events()[0].raw_reason == "redacted_thinking");
    REQUIRE(run.read("content_block_delta", R"({"delta":{"text":"Hi \"you\"","type":"text_delta"},"index":1,"type":"content_block_delta"})") == Result::ok);
    REQUIRE(run.events().size() == 1);
    CHECK(run.events()[0].type == EventType::content);
    CHECK(run.events()[0].text == "Hi \"you\"");
    // A signature of invalid bytes only decodes to nothing: no event (found by fuzz/fuzz_anthropic.cpp).
    REQUIRE(run.read("", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"\xFE\"}}") == Result::ok);
    CHECK(run.events().empty());
    REQUIRE(run.read("", "{\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"redacted_thinking\",\"data\":\"\x80\"}}") == Result::ok);
    CHECK(run.events().empty());
}

TEST_CASE("anthropic reader: tool calls numbered in the order they open, their input in fragments") {
    ReaderRun run;
    REQUIRE(run.read("message_start", kStart) == Result::ok);
    REQUIRE(run.read("", R"({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_a","name":"f","input":{}}})") == Result::ok);
    REQUIRE(run.events().size() == 1);
    const Event& open = run.events()[0];
    CHECK(open.type == EventType::tool_call);
    CHECK(open.tool_call.index == 0);
    CHECK(open.tool_call.id == std::string_view("toolu_a"));
    CHECK(open.tool_call.name == std::string_view("f"));
    CHECK_FALSE(open.tool_call.arguments.has_value());
    REQUIRE(run.read("", R"({"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_b","name":"g","input":{}}})") == Result::ok);
    CHECK(run.events()[0].tool_call.index == 1);
    REQUIRE(run.read("", R"({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}})") == Result::ok);
    CHECK(run.events().empty());
    REQUIRE(run.read("", R"({"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{\"x\":"}})") == Result::ok);
    REQUIRE(run.events().size() == 1);
    CHECK(run.events()[0].tool_call.index == 1);
    CHECK(run.events()[0].tool_call.arguments == std::string_view("{\"x\":"));
    // A server tool's input (web search, ...) is the server's business: no event, no warning.
    REQUIRE(run.read("", R"({"type":"content_block_start","index":4,"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}})") == Result::ok);
    CHECK(run.events().empty());
    CHECK(run.read("", R"({"type":"content_block_delta","index":4,"delta":{"type":"input_json_delta","partial_json":"{\"q\":1}"}})") == Result::ok);
    CHECK(run.events().empty());
}

TEST_CASE("anthropic reader: stop reasons in one vocabulary, the raw value kept, usage cumulative") {
    const std::pair<const char*, const char*> reasons[] = {
        {"end_turn", "stop"}, {"stop_sequence", "stop"}, {"max_tokens", "length"}, {"tool_use", "tool_calls"},
        {"refusal", "content_filter"}, {"pause_turn", "pause_turn"}};
    for (const auto& reason : reasons) {
        const char* const raw = reason.first;
        const char* const common = reason.second;
        CAPTURE(raw);
        ReaderRun run;
        REQUIRE(run.read("message_start", kStart) == Result::ok);
        const std::string delta = std::string(R"({"type":"message_delta","delta":{"stop_reason":")") + raw +
                                  R"(","stop_sequence":null},"usage":{"output_tokens":7}})";
        REQUIRE(run.read("message_delta", delta) == Result::ok);
        REQUIRE(run.events().size() == 2);
        CHECK(run.events()[0].type == EventType::finish);
        CHECK(run.events()[0].text == common);
        CHECK(run.events()[0].raw_reason == raw);
        CHECK(run.events()[1].type == EventType::usage);
        CHECK(run.events()[1].usage.prompt_tokens == 15);  // input + cache writes + cache reads
        CHECK(run.events()[1].usage.completion_tokens == 7);
        CHECK(run.events()[1].usage.total_tokens == 22);
    }
    ReaderRun run;
    REQUIRE(run.read("message_start", kStart) == Result::ok);
    REQUIRE(run.read("", R"({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}})") == Result::ok);
    REQUIRE(run.read("", R"({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":20,"output_tokens":9}})") == Result::ok);
    REQUIRE(run.events().size() == 2);
    CHECK(run.events()[0].text == "tool_calls");  // a turn that ends with calls
    CHECK(run.events()[1].usage.prompt_tokens == 20);  // a later input count replaces message_start's
    CHECK(run.events()[1].usage.total_tokens == 29);
}

TEST_CASE("anthropic reader: a stop reason that decodes to nothing is none; the usage stays") {
    for (const char* empty : {"", "\xff", "\\udc00"}) {  // empty, an invalid byte alone, a lone surrogate
        CAPTURE(empty);
        ReaderRun run;
        REQUIRE(run.read("message_start", kStart) == Result::ok);
        const std::string delta = std::string(R"({"type":"message_delta","delta":{"stop_reason":")") + empty +
                                  R"("},"usage":{"output_tokens":7}})";
        REQUIRE(run.read("message_delta", delta) == Result::ok);
        REQUIRE(run.events().size() == 1);
        CHECK(run.events()[0].type == EventType::usage);
        CHECK(run.events()[0].usage.completion_tokens == 7);
    }
}

TEST_CASE("anthropic reader: message_stop ends; ping, block stops and unknown events give nothing") {
    ReaderRun run;
    CHECK(run.read("ping", R"({"type":"ping"})") == Result::ok);
    CHECK(run.events().empty());
    CHECK(run.read("content_block_stop", R"({"type":"content_block_stop","index":0})") == Result::ok);
    CHECK(run.read("future_event", R"({"type":"future_event","detail":{"a":[1,{"b":null}]}})") == Result::ok);
    CHECK(run.read("", R"({"type":"content_block_delta","index":0,"delta":{"type":"future_delta","text":"no"}})") == Result::ok);
    CHECK(run.events().empty());
    CHECK(run.read("message_stop", R"({"type":"message_stop"})") == Result::end);
    CHECK(run.read("message_stop", "{}") == Result::end);  // the event name stands in for a missing type
}

TEST_CASE("anthropic reader: error events are server errors with the provider's message") {
    ReaderRun run;
    REQUIRE(run.read("error", R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})") == Result::error_event);
    CHECK(run.reader->error().code == ErrorCode::server_error);
    CHECK(run.reader->error().message == "server error: Overloaded (type: overloaded_error)");
    REQUIRE(run.read("error", "upstream went away") == Result::error_event);
    CHECK(run.reader->error().message == "server error: upstream went away");
    REQUIRE(run.read("error", "") == Result::error_event);  // found by fuzz/fuzz_anthropic.cpp
    CHECK(run.reader->error().message == "server error: the server reported an error");
    REQUIRE(run.read("", "{\"type\":\"error\",\"error\":{\"message\":\"\xff\"}}") == Result::error_event);
    CHECK(run.reader->error().message == "server error: the server reported an error");  // the invalid byte dropped
    CHECK(run.reader->error().code == ErrorCode::server_error);
}

TEST_CASE("anthropic reader: invalid JSON is invalid, with what and where") {
    ReaderRun run;
    CHECK(run.read("content_block_delta", R"({"type":"content_block_delta","delta":{"text":"x")") == Result::invalid);
    CHECK(run.reader->error().code == ErrorCode::protocol);
    CHECK(run.reader->error().message.find("at byte") != std::string::npos);
    CHECK(run.read("ping", "[1]") == Result::invalid);
    CHECK(run.read("ping", R"({"type":"ping"} x)") == Result::invalid);
    CHECK(run.reader->error().message.find("unexpected text after the object") != std::string::npos);
}

/* A text delta in the very bytes the API sends takes a shortcut past the general walk: it must read
   exactly as the walk does (here: the same data after a leading space, which the shortcut leaves to the
   walk), near misses and every cut of it included. */
TEST_CASE("anthropic reader: a text delta in the API's own bytes reads as any other spelling of it") {
    const std::string exact = R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi \"you\" \u00e9)"
                              "\xE4\xBD\xA0\"}}";
    const std::string variants[] = {
        exact,
        exact + " \n",
        exact + "x",
        R"({"type":"content_block_delta","index":12,"delta":{"type":"text_delta","text":""}})",
        R"({"type":"content_block_delta","index":-1.5e3,"delta":{"type":"text_delta","text":"a"}})",
        R"({"type":"content_block_delta","index":99999999999999999999,"delta":{"type":"text_delta","text":"a"}})",
        R"({"type":"content_block_delta","index":"0","delta":{"type":"text_delta","text":"a"}})",
        R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","x":1}})",
        R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"},"type":"ping"})",
        R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":7}})",
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\x01\"}}",
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\xFF\"}}",
    };
    std::vector<std::string> cases(std::begin(variants), std::end(variants));
    for (std::size_t cut = 0; cut < exact.size(); ++cut) cases.push_back(exact.substr(0, cut));
    for (const std::string& data : cases) {
        CAPTURE(data);
        ReaderRun shortcut, walk;
        const std::string spaced = " " + data;  // the events are views of the data
        const Result result = shortcut.read("content_block_delta", data);
        REQUIRE(result == walk.read("content_block_delta", spaced));
        REQUIRE(shortcut.events().size() == walk.events().size());
        for (std::size_t i = 0; i < walk.events().size(); ++i) {
            CHECK(shortcut.events()[i].type == walk.events()[i].type);
            CHECK(shortcut.events()[i].text == walk.events()[i].text);
        }
        if (result == Result::invalid) CHECK(shortcut.reader->error().code == walk.reader->error().code);
    }
    ReaderRun run;
    REQUIRE(run.read("content_block_delta", exact) == Result::ok);
    REQUIRE(run.events().size() == 1);
    CHECK(run.events()[0].type == EventType::content);
    CHECK(run.events()[0].text == "Hi \"you\" \xC3\xA9\xE4\xBD\xA0");
}

TEST_CASE("anthropic decoder: an error status's body gives the provider's message; 529 is retried like 503") {
    const std::string body = R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})";
    const std::string response = "HTTP/1.1 529 Site Overloaded\r\nContent-Type: application/json\r\nContent-Length: " +
                                 std::to_string(body.size()) + "\r\n\r\n" + body;
    llm_stream::Decoder decoder({}, Api::anthropic);
    const Decoded d = decode_in_pieces(decoder, response, {}, PieceMemory::copied, [](const Event&) {});
    REQUIRE(d.failed);
    CHECK(d.error.code == ErrorCode::http_status);
    CHECK(d.error.message == "HTTP 529: Overloaded (type: overloaded_error)");
    llm_stream::detail::AttemptFailure failure;
    failure.code = ErrorCode::http_status;
    failure.http_status = 529;
    CHECK(llm_stream::detail::decide_retry(llm_stream::RetryPolicy{}, 0, failure, 0.5).retry);
}

TEST_CASE("anthropic decoder: a reply sent whole (stream ignored) decodes to the same events") {
    const std::string body =
        R"({"id":"msg_1","type":"message","role":"assistant","model":"m","content":[)"
        R"({"type":"thinking","thinking":"hm","signature":"EqQB"},{"type":"text","text":"Hi \u00e9"},)"
        R"({"type":"tool_use","id":"toolu_1","name":"f","input":{"a": [1, "x"]}}],)"
        R"("stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":7}})";
    const std::string response = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                                 std::to_string(body.size()) + "\r\n\r\n" + body;
    llm_stream::Decoder decoder({}, Api::anthropic);
    llm_stream::ReplyAssembler assembler;
    const Decoded d = decode_in_pieces(decoder, response, {}, PieceMemory::copied,
                                       [&](const Event& e) { CHECK_FALSE(assembler.add(e)); });
    assembler.finish();
    CHECK(d.done);
    CHECK(d.warnings.empty());
    const llm_stream::Reply& reply = assembler.reply();
    REQUIRE(reply.choices.size() == 1);
    CHECK(reply.message().reasoning == "hm");
    CHECK(reply.message().reasoning_signature == "EqQB");
    CHECK(reply.message().content == "Hi \xC3\xA9");
    REQUIRE(reply.message().tool_calls.size() == 1);
    CHECK(reply.message().tool_calls[0].id == "toolu_1");
    CHECK(reply.message().tool_calls[0].name == "f");
    CHECK(reply.message().tool_calls[0].arguments == R"({"a": [1, "x"]})");  // the input as sent
    CHECK(reply.choices[0].finish_reason == "tool_calls");
    CHECK(reply.choices[0].raw_finish_reason == "tool_use");
    CHECK(reply.usage.prompt_tokens == 5);
    CHECK(reply.usage.completion_tokens == 7);
    CHECK(reply.usage.total_tokens == 12);
}

namespace {

using llm_test::stub_reply;

/* The same reply from both stubs; only the call id is the API's own. */
void check_same_reply(const std::vector<Message>& messages, const ChatOptions& options) {
    llm_test::check_same_as_openai_stub(Api::anthropic, messages, options, {}, "toolu_stub_1");
}

}  // namespace

TEST_CASE("anthropic stub: text decodes to the openai stub's reply, finish stop (raw end_turn)") {
    const std::vector<Message> messages{Message::system("Be kind."), Message::user("Hello, 世界 😀")};
    check_same_reply(messages, bare_options());
    const llm_stream::Reply reply = stub_reply(Api::anthropic, messages, bare_options());
    CHECK_FALSE(reply.message().content.empty());
    CHECK(reply.choices[0].finish_reason == "stop");
    CHECK(reply.choices[0].raw_finish_reason == "end_turn");
}

TEST_CASE("anthropic stub: asked to think, it signs its thinking, and the next turn sends the block back first") {
    ChatOptions options = bare_options();
    options.tools = {kWeather};
    options.reasoning_effort = "low";
    const std::vector<Message> messages{Message::user("weather in Paris?")};
    check_same_reply(messages, options);
    const llm_stream::Reply reply = stub_reply(Api::anthropic, messages, options);
    const Message& said = reply.message();
    CHECK_FALSE(said.reasoning.empty());
    CHECK(said.reasoning_signature == llm_stream::detail::stub_signature);
    REQUIRE(said.tool_calls.size() == 1);
    const std::string next = body_of({messages[0], said, Message::tool_result(said.tool_calls[0].id, "18C")}, options);
    std::string thinking = R"({"role":"assistant","content":[{"type":"thinking","thinking":)";
    llm_stream::detail::json_write_string(thinking, said.reasoning);
    thinking += R"(,"signature":")" + said.reasoning_signature + R"("},{"type":"tool_use","id":"toolu_stub_1")";
    CHECK_MESSAGE(next.find(thinking) != std::string::npos, next);
}

TEST_CASE("anthropic stub: a tool call decodes to the openai stub's call, finish tool_calls (raw tool_use)") {
    ChatOptions options = bare_options();
    options.tools = {kWeather};
    const std::vector<Message> messages{Message::user("weather in Paris?")};
    check_same_reply(messages, options);
    const llm_stream::Reply reply = stub_reply(Api::anthropic, messages, options);
    REQUIRE(reply.message().tool_calls.size() == 1);
    CHECK(reply.choices[0].finish_reason == "tool_calls");
    CHECK(reply.choices[0].raw_finish_reason == "tool_use");
    CHECK(reply.choices[0].invalid_tool_calls.empty());
    Message result = Message::tool_result(reply.message().tool_calls[0].id, "18C");
    check_same_reply({messages[0], reply.message(), result}, options);
}
