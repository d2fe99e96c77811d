// Stub mode speaks tools: offered tools, the stub streams a deterministic call of one (arguments made
// from its JSON Schema); after the tool results, text that quotes them; without tools, the greeting.
#define LLM_STREAM_INTERNALS  // detail::check_json; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using llm_stream::ChatOptions;
using llm_stream::Client;
using llm_stream::Config;
using llm_stream::EventType;
using llm_stream::Message;
using llm_stream::Reply;
using llm_stream::Stream;
using llm_stream::Tool;
using llm_stream::ToolChoice;

namespace {

Config stub_config() {
    Config c;
    c.stub_chunk_delay = 0ms;
    c.log = [](llm_stream::LogLevel, std::string_view) {};
    return c;
}

const Tool kCalculator{"calculator", "Evaluates an arithmetic expression",
                       R"({"type":"object","properties":{"expression":{"type":"string"}},"required":["expression"]})",
                       false};
const Tool kLocalTime{"local_time", "The local date and time", R"({"type":"object","properties":{}})", false};

ChatOptions tool_options(std::vector<Tool> tools, ToolChoice choice = {}) {
    ChatOptions options;
    options.tools = std::move(tools);
    options.tool_choice = std::move(choice);
    options.assemble_reply = true;
    return options;
}

// Reads the stream to its end; the reply assembled.
Reply finish(Stream& stream) {
    while (stream.next_event()) {
    }
    CHECK_FALSE(stream.error());
    return stream.reply();
}

std::vector<Message> conversation(const std::string& prompt) {
    return {Message::system("You are a calculator."), Message::user(prompt)};
}

}  // namespace

TEST_CASE("stub with tools: one call of the first tool, its arguments from the schema, finish tool_calls") {
    Client client(stub_config());
    Stream stream = client.stream_chat(conversation("What is 6*7?"), tool_options({kCalculator, kLocalTime}));
    const Reply reply = finish(stream);
    REQUIRE(reply.choices.size() == 1);
    const Message& message = reply.message();
    CHECK(message.role == llm_stream::Role::assistant);
    CHECK(message.content.empty());
    REQUIRE(message.tool_calls.size() == 1);
    CHECK(message.tool_calls[0].id == "call_stub_1");
    CHECK(message.tool_calls[0].name == "calculator");
    CHECK(message.tool_calls[0].arguments == R"({"expression":"What is 6*7?"})");
    CHECK_FALSE(llm_stream::detail::check_json(message.tool_calls[0].arguments));
    CHECK(reply.choices[0].invalid_tool_calls.empty());
    CHECK(reply.choices[0].finish_reason == "tool_calls");
    CHECK(reply.has_usage);
    CHECK(stream.stats().finish_reason == "tool_calls");
}

TEST_CASE("stub with tools: the name in the first fragment, the arguments in several") {
    Client client(stub_config());
    Stream stream = client.stream_chat(conversation("What is 6*7?"), tool_options({kCalculator}));
    struct Fragment {  // a copy: an event's views last until the next call
        int index;
        std::optional<std::string> id, name;
        std::string arguments;
    };
    std::vector<Fragment> fragments;
    while (const llm_stream::Event* event = stream.next_event()) {
        CHECK(event->type != EventType::content);
        if (event->type != EventType::tool_call) continue;
        const llm_stream::ToolCallDelta& call = event->tool_call;
        fragments.push_back({call.index, call.id ? std::optional<std::string>(*call.id) : std::nullopt,
                             call.name ? std::optional<std::string>(*call.name) : std::nullopt,
                             std::string(call.arguments.value_or(""))});
    }
    CHECK_FALSE(stream.error());
    REQUIRE(fragments.size() >= 4);
    CHECK(fragments[0].id == "call_stub_1");
    CHECK(fragments[0].name == "calculator");
    std::string joined;
    for (std::size_t i = 0; i < fragments.size(); ++i) {
        CHECK(fragments[i].index == 0);
        CHECK((i == 0 || !fragments[i].name));
        joined += fragments[i].arguments;
    }
    CHECK(joined == R"({"expression":"What is 6*7?"})");
}

TEST_CASE("stub with tools: every kind of schema gets a value of its kind") {
    const Tool every_kind{"every_kind", "", R"({
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "cut to 40 characters"},
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "flag": {"type": "boolean"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "fixed": {"const": {"a": [1, 2]}},
            "maybe": {"type": ["null", "string"]},
            "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "list": {"type": "array", "items": {"type": "string"}},
            "nested": {"type": "object", "properties": {"deep": {"type": "boolean"}, "empty": {"type": "object"}}},
            "anything": {},
            "esc\u0061ped \"key\"": {"type": "null"}
        }
    })", true};
    Client client(stub_config());
    const std::string prompt = "A prompt of more than forty characters, cut short in the arguments";
    Stream stream = client.stream_chat(conversation(prompt), tool_options({every_kind}));
    const Reply reply = finish(stream);
    REQUIRE(reply.message().tool_calls.size() == 1);
    CHECK(reply.message().tool_calls[0].arguments ==
          R"({"text":"A prompt of more than forty characters, ","count":1,"ratio":1,"flag":true,)"
          R"("unit":"celsius","fixed":{"a": [1, 2]},"maybe":"A prompt of more than forty characters, ",)"
          R"("either":1,"list":[],"nested":{"deep":true,"empty":{}},)"
          R"("anything":"A prompt of more than forty characters, ","esc\u0061ped \"key\"":null})");
    CHECK(reply.choices[0].invalid_tool_calls.empty());
}

TEST_CASE("stub with tools: no parameters, or a schema without properties, make {}") {
    const Tool no_parameters{"ping", "", "", false};
    const Tool no_properties{"now", "", R"({"type":"object"})", false};
    Client client(stub_config());
    for (const Tool& tool : {no_parameters, no_properties}) {
        Stream stream = client.stream_chat(conversation("hi"), tool_options({tool}));
        const Reply reply = finish(stream);
        REQUIRE(reply.message().tool_calls.size() == 1);
        CHECK(reply.message().tool_calls[0].arguments == "{}");
    }
}

TEST_CASE("stub with tools: tool_choice picks the named tool; none answers in text") {
    Client client(stub_config());
    Stream named = client.stream_chat(conversation("What time is it?"),
                                      tool_options({kCalculator, kLocalTime}, ToolChoice::named("local_time")));
    const Reply call = finish(named);
    REQUIRE(call.message().tool_calls.size() == 1);
    CHECK(call.message().tool_calls[0].name == "local_time");
    CHECK(call.message().tool_calls[0].arguments == "{}");

    ToolChoice none;
    none.mode = ToolChoice::Mode::none;
    Stream text = client.stream_chat(conversation("What time is it?"), tool_options({kCalculator}, none));
    const Reply reply = finish(text);
    CHECK(reply.message().tool_calls.empty());
    CHECK(reply.message().content.find("What time is it?") != std::string::npos);
    CHECK(reply.choices[0].finish_reason == "stop");
}

TEST_CASE("stub with tools: after the tool results, text that quotes each with its tool's name") {
    Client client(stub_config());
    const ChatOptions options = tool_options({kCalculator, kLocalTime});
    std::vector<Message> messages = conversation("What is 6*7?");
    Stream first = client.stream_chat(messages, options);
    messages.push_back(finish(first).message());
    REQUIRE(messages.back().tool_calls.size() == 1);
    messages.push_back(Message::tool_result(messages.back().tool_calls[0].id, "42"));

    Stream second = client.stream_chat(messages, options);
    const Reply reply = finish(second);
    CHECK(reply.message().tool_calls.empty());
    CHECK(reply.choices[0].finish_reason == "stop");
    CHECK(reply.message().content == "Stub reply from the tool results: calculator returned \u201c42\u201d.");

    // Parallel results: each quoted, in order; an id no call had is said to be unknown.
    messages.push_back(Message::tool_result("call_nobody", "lost"));
    Stream third = client.stream_chat(messages, options);
    CHECK(finish(third).message().content ==
          "Stub reply from the tool results: calculator returned \u201c42\u201d; "
          "an unknown tool returned \u201clost\u201d.");
}
