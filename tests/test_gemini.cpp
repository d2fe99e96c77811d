#define LLM_STREAM_INTERNALS  // detail::make_gemini_reader too; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>
#include "support/ensure.hpp"
#include "support/known_shape.hpp"

/* Google Gemini's streamGenerateContent: every message shape and option as build_request() writes
   the body (exact JSON text), each refusal naming its field, the reader on each kind of message (text,
   thoughts, whole function calls, finish reasons, cumulative usage, errors, unknown and invalid
   JSON), and the stub, which must assemble to the same reply as the chat-completions stub. The
   recorded Gemini streams run in test_streams.cpp. */

#include <memory>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "support/request_check.hpp"
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

using llm_test::bare_options;

Config gemini_config() {
    Config config;
    config.api = Api::gemini;
    config.base_url = "http://127.0.0.1:9/v1beta";
    config.model = "gemini-2.5-flash";
    config.log_level = llm_stream::LogLevel::off;
    return config;
}

std::string body_of(const std::vector<Message>& messages, const ChatOptions& options = bare_options()) {
    return llm_test::request_body(gemini_config(), messages, options);
}

void check_refused(const std::vector<Message>& messages, const ChatOptions& options, std::string_view field) {
    llm_test::check_request_refused(gemini_config(), messages, options, field);
}

ToolCall call(std::string id, std::string name, std::string arguments) {
    return ToolCall{std::move(id), std::move(name), std::move(arguments)};
}

Message assistant_calling(std::vector<ToolCall> calls, std::string text = {}) {
    Message m = Message::assistant(std::move(text));
    m.tool_calls = std::move(calls);
    return m;
}

Tool weather_tool() {
    Tool tool;
    tool.name = "get_weather";
    tool.description = "Weather of a city";
    tool.parameters = R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})";
    return tool;
}

/* A reader's events as one line each: "content:..", "reasoning:..", "signature:..",
   "call:INDEX|ID|NAME|ARGS" (then "|SIGNATURE" when it has one), "finish:TEXT/RAW", "usage:P/C/T",
   with the choice in front when it is not 0. */
std::vector<std::string> describe(const std::vector<Event>& events) {
    std::vector<std::string> out;
    for (const Event& e : events) {
        std::string line = e.choice ? std::to_string(e.choice) + "." : "";
        switch (e.type) {
        case EventType::content: line += "content:" + std::string(e.text); break;
        case EventType::reasoning:
            line += e.signature.empty() ? "reasoning:" + std::string(e.text) : "signature:" + std::string(e.signature);
            break;
        case EventType::tool_call:
            line += "call:" + std::to_string(e.tool_call.index) + "|" + std::string(e.tool_call.id.value_or("-")) + "|" +
                    std::string(e.tool_call.name.value_or("-")) + "|" + std::string(e.tool_call.arguments.value_or("-"));
            if (!e.tool_call.signature.empty()) line += "|" + std::string(e.tool_call.signature);
            break;
        case EventType::finish: line += "finish:" + std::string(e.text) + "/" + std::string(e.raw_reason); break;
        case EventType::usage:
            line += "usage:" + std::to_string(e.usage.prompt_tokens) + "/" + std::to_string(e.usage.completion_tokens) +
                    "/" + std::to_string(e.usage.total_tokens);
            break;
        }
        out.push_back(line);
    }
    return out;
}

/* A message for the reader, kept until the program ends: its events point into it. */
std::string_view keep(std::string text) {
    static std::deque<std::string> kept;
    kept.push_back(std::move(text));
    return kept.back();
}

/* One candidate's chunk with these parts (JSON) and extra candidate members. */
std::string_view chunk(std::string_view parts, std::string_view candidate_extra = "", std::string_view top_extra = "") {
    return keep(R"({"candidates": [{"content": {"parts": [)" + std::string(parts) + R"(], "role": "model"})" +
                std::string(candidate_extra) + R"(, "index": 0}])" + std::string(top_extra) + "}");
}

using Lines = std::vector<std::string>;

}  // namespace

// =================================================================================================
// Request bodies
// =================================================================================================

TEST_CASE("gemini: the URL names the model and asks for SSE; the key goes in x-goog-api-key") {
    Config config = gemini_config();
    config.api_key = "k";
    llm_stream::Request request;
    ENSURE(!llm_stream::build_request(config, {Message::user("hi")}, bare_options(), request));
    CHECK(request.url == "http://127.0.0.1:9/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
    bool has_key = false;
    for (const auto& header : request.headers) has_key = has_key || (header.first == "x-goog-api-key" && header.second == "k");
    CHECK(has_key);
}

TEST_CASE("gemini: system and developer messages become systemInstruction; user and assistant are user and model") {
    CHECK(body_of({Message::system("Be brief."), Message::user("hi"), Message::assistant("Hello!"),
                   Message::developer("No emoji."), Message::user("again")}) ==
          R"({"contents":[{"role":"user","parts":[{"text":"hi"}]},{"role":"model","parts":[{"text":"Hello!"}]},)"
          R"({"role":"user","parts":[{"text":"again"}]}],)"
          R"("systemInstruction":{"parts":[{"text":"Be brief."},{"text":"No emoji."}]}})");
    CHECK(body_of({Message::user("say \"hi\"\n")}) == R"({"contents":[{"role":"user","parts":[{"text":"say \"hi\"\n"}]}]})");
}

TEST_CASE("gemini: images by bytes and base64 data: URL as inlineData, http(s) URLs as fileData") {
    const Message m = Message::user("What is this?", {ContentPart::image_bytes("image/png", "\x89PNG", "high"),
                                                      ContentPart::image_url("data:image/jpeg;base64,/9j/4A=="),
                                                      ContentPart::image_url("https://example.com/cat.png")});
    CHECK(body_of({m}) ==
          R"({"contents":[{"role":"user","parts":[{"text":"What is this?"},)"
          R"({"inlineData":{"mimeType":"image/png","data":"iVBORw=="}},)"
          R"({"inlineData":{"mimeType":"image/jpeg","data":"/9j/4A=="}},)"
          R"({"fileData":{"fileUri":"https://example.com/cat.png"}}]}]})");
    check_refused({Message::user("x", {ContentPart::image_url("data:image/png,rawbytes")})}, bare_options(),
                  "messages[0].content[1].url");
}

TEST_CASE("gemini: tool calls as functionCall parts, results as functionResponse parts named through the call's id") {
    const std::vector<Message> conversation = {
        Message::user("Weather in Paris and Rome?"),
        assistant_calling({call("c1", "get_weather", R"({"city": "Paris"})"), call("c2", "get_weather", R"({"city":"Rome"})")},
                          "Checking."),
        Message::tool_result("c1", R"({"temp":21})"),
        Message::tool_result("c2", "sunny, 25"),
        Message::user("Thanks"),
    };
    CHECK(body_of(conversation) ==
          R"({"contents":[{"role":"user","parts":[{"text":"Weather in Paris and Rome?"}]},)"
          R"({"role":"model","parts":[{"text":"Checking."},)"
          R"({"functionCall":{"name":"get_weather","args":{"city": "Paris"}}},)"
          R"({"functionCall":{"name":"get_weather","args":{"city":"Rome"}}}]},)"
          R"({"role":"user","parts":[{"functionResponse":{"name":"get_weather","response":{"temp":21}}},)"
          R"({"functionResponse":{"name":"get_weather","response":{"output":"sunny, 25"}}}]},)"
          R"({"role":"user","parts":[{"text":"Thanks"}]}]})");
    // Without text, the call is the model turn's only part.
    CHECK(body_of({Message::user("x"), assistant_calling({call("c1", "f", "{}")})}) ==
          R"({"contents":[{"role":"user","parts":[{"text":"x"}]},{"role":"model","parts":[{"functionCall":{"name":"f","args":{}}}]}]})");
}

TEST_CASE("gemini: reasoning is not sent back; a message's extra_json members are merged into its content") {
    Message answer = Message::assistant("42");
    answer.reasoning = "thinking...";
    Message user = Message::user("q");
    user.extra_json = R"({"parts":[{"text":"mine"}]})";
    ChatOptions options = bare_options();
    options.send_reasoning = true;
    CHECK(body_of({user, answer}, options) ==
          R"({"contents":[{"role":"user","parts":[{"text":"mine"}]},{"role":"model","parts":[{"text":"42"}]}]})");
}

TEST_CASE("gemini: thought signatures go back on the call they came with and on the last text part") {
    ToolCall paris = call("c1", "get_weather", R"({"city":"Paris"})");
    paris.signature = "CiQB+call==";
    Message turn = assistant_calling({paris, call("c2", "get_weather", R"({"city":"Rome"})")}, "Checking.");
    turn.reasoning_signature = "Cs0B+text==";
    turn.reasoning = "not sent";
    CHECK(body_of({Message::user("x"), turn}) ==
          R"({"contents":[{"role":"user","parts":[{"text":"x"}]},{"role":"model","parts":[)"
          R"({"text":"Checking.","thoughtSignature":"Cs0B+text=="},)"
          R"({"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"CiQB+call=="},)"
          R"({"functionCall":{"name":"get_weather","args":{"city":"Rome"}}}]}]})");
    // No text part: the turn's own signature on an empty text part after the calls.
    turn.content.clear();
    CHECK(body_of({Message::user("x"), turn}) ==
          R"({"contents":[{"role":"user","parts":[{"text":"x"}]},{"role":"model","parts":[)"
          R"({"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"CiQB+call=="},)"
          R"({"functionCall":{"name":"get_weather","args":{"city":"Rome"}}},{"text":"","thoughtSignature":"Cs0B+text=="}]}]})");
}

TEST_CASE("gemini: reasoning asked for is thinkingConfig with includeThoughts and a level or a budget, not both") {
    ChatOptions options = bare_options();
    options.temperature = 0.5;
    options.reasoning_effort = "low";
    const std::string contents = R"({"contents":[{"role":"user","parts":[{"text":"hi"}]}],)";
    CHECK(body_of({Message::user("hi")}, options) ==
          contents + R"("generationConfig":{"temperature":0.5,"thinkingConfig":{"includeThoughts":true,"thinkingLevel":"low"}}})");
    options.reasoning_effort.clear();
    options.reasoning_budget = 2048;
    CHECK(body_of({Message::user("hi")}, options) ==
          contents + R"("generationConfig":{"temperature":0.5,"thinkingConfig":{"includeThoughts":true,"thinkingBudget":2048}}})");
    options.reasoning_effort = "high";
    check_refused({Message::user("hi")}, options, "reasoning_budget");
}

TEST_CASE("gemini: tools as functionDeclarations with parametersJsonSchema, tool_choice as functionCallingConfig") {
    ChatOptions options = bare_options();
    Tool bare;
    bare.name = "now";
    options.tools = {weather_tool(), bare};
    const std::string contents = R"({"contents":[{"role":"user","parts":[{"text":"hi"}]}],)";
    const std::string tools =
        R"("tools":[{"functionDeclarations":[{"name":"get_weather","description":"Weather of a city",)"
        R"("parametersJsonSchema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},)"
        R"({"name":"now"}]}])";
    CHECK(body_of({Message::user("hi")}, options) == contents + tools + "}");
    const std::pair<ToolChoice, std::string> choices[] = {
        {ToolChoice{ToolChoice::Mode::automatic, {}}, R"({"mode":"AUTO"})"},
        {ToolChoice{ToolChoice::Mode::none, {}}, R"({"mode":"NONE"})"},
        {ToolChoice{ToolChoice::Mode::required, {}}, R"({"mode":"ANY"})"},
        {ToolChoice::named("now"), R"({"mode":"ANY","allowedFunctionNames":["now"]})"},
    };
    for (const auto& [choice, config] : choices) {
        options.tool_choice = choice;
        CHECK(body_of({Message::user("hi")}, options) ==
              contents + tools + R"(,"toolConfig":{"functionCallingConfig":)" + config + "}}");
    }
    options.parallel_tool_calls = true;  // what Gemini does anyway
    CHECK(body_of({Message::user("hi")}, options).rfind("(error)", 0) == std::string::npos);
}

TEST_CASE("gemini: sampling, length, stop, seed and JSON output in generationConfig") {
    ChatOptions options = bare_options();
    options.temperature = 0.5;
    options.top_p = 0.9;
    options.max_tokens = 100;
    options.seed = 7;
    options.presence_penalty = 0.25;
    options.frequency_penalty = -0.5;
    options.stop = {"END", "\n\n"};
    const std::string contents = R"({"contents":[{"role":"user","parts":[{"text":"hi"}]}],)";
    CHECK(body_of({Message::user("hi")}, options) ==
          contents + R"("generationConfig":{"temperature":0.5,"topP":0.9,"maxOutputTokens":100,"seed":7,)"
                     R"("presencePenalty":0.25,"frequencyPenalty":-0.5,"stopSequences":["END","\n\n"]}})");
    ChatOptions json = bare_options();
    json.response_format.type = ResponseFormat::Type::json_object;
    CHECK(body_of({Message::user("hi")}, json) == contents + R"("generationConfig":{"responseMimeType":"application/json"}})");
    json.response_format = {ResponseFormat::Type::json_schema, "answer", R"( {"type":"object"} )", true};
    CHECK(body_of({Message::user("hi")}, json) ==
          contents + R"("generationConfig":{"responseMimeType":"application/json","responseJsonSchema":{"type":"object"}}})");
}

TEST_CASE("gemini: the request's extra_json merges into generationConfig, replaces other members; contents stays the client's") {
    ChatOptions options = bare_options();
    options.temperature = 1;
    options.extra_json = R"({"generationConfig":{"thinkingConfig":{"includeThoughts":true},"topK":20},"safetySettings":[]})";
    CHECK(body_of({Message::system("s"), Message::user("hi")}, options) ==
          R"({"contents":[{"role":"user","parts":[{"text":"hi"}]}],"systemInstruction":{"parts":[{"text":"s"}]},)"
          R"("generationConfig":{"temperature":1,"thinkingConfig":{"includeThoughts":true},"topK":20},"safetySettings":[]})");
    options.extra_json = R"({"generationConfig":null})";
    CHECK(body_of({Message::user("hi")}, options) ==
          R"({"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":null})");
    options.extra_json = R"({"contents":[]})";
    check_refused({Message::user("hi")}, options, "\"contents\"");
    options.extra_json = R"({"stream":true})";
    check_refused({Message::user("hi")}, options, "\"stream\"");
}

TEST_CASE("gemini: what Gemini cannot carry is refused, naming the field") {
    ChatOptions options = bare_options();
    options.user = "u1";
    check_refused({Message::user("hi")}, options, "user");
    options = bare_options();
    options.tools = {weather_tool()};
    options.parallel_tool_calls = false;
    check_refused({Message::user("hi")}, options, "parallel_tool_calls");
    Message named = Message::user("hi");
    named.name = "alice";
    check_refused({named}, bare_options(), "messages[0].name");
    check_refused({Message::system("s")}, bare_options(), "only system messages");
    check_refused({Message::user("x"), Message::tool_result("nowhere", "1")}, bare_options(), "messages[1].tool_call_id");
    check_refused({Message::user("x"), assistant_calling({call("c1", "f", "[1]")})}, bare_options(),
                  "messages[1].tool_calls[0].arguments");
}

// =================================================================================================
// Reader
// =================================================================================================

TEST_CASE("gemini reader: text, thoughts, and the cumulative usage once finished (thinking tokens are completion tokens)") {
    const auto reader = llm_stream::detail::make_gemini_reader();
    ENSURE(reader != nullptr);
    const std::string early = R"(, "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 98, "thoughtsTokenCount": 86})";
    CHECK(reader->read("", chunk(R"({"text": "Let me think", "thought": true})", "", early)) == Result::ok);
    CHECK(describe(reader->events()) == Lines{"reasoning:Let me think"});  // usage so far: not final
    const std::string last = R"(, "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 3, "totalTokenCount": 104, "thoughtsTokenCount": 89})";
    CHECK(reader->read("", chunk(R"({"text": "caf\u00e9 ", "thoughtSignature": "c2ln"}, {"text": "\ud83d\ude00", "thought": false})",
                                 R"(, "finishReason": "STOP")", last)) == Result::ok);
    CHECK(describe(reader->events()) == Lines{"content:café ", "signature:c2ln", "content:😀", "finish:stop/STOP", "usage:12/92/104"});
    // Usage that comes after the finish, in a message of its own, is passed on too.
    CHECK(reader->read("", R"({"usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 4, "totalTokenCount": 16}})") ==
          Result::ok);
    CHECK(describe(reader->events()) == Lines{"usage:12/4/16"});
}

TEST_CASE("gemini reader: a message shaped like the last one is read exactly as a fresh reader reads it") {
    const std::string usage = R"("usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 17, "totalTokenCount": 25}, )";
    const std::vector<llm_test::ShapeSeed> seeds = {
        {R"({"candidates": [{"content": {"parts": [{"text": )", R"("\u4f60\u597d")", R"(}], "role": "model"}, "index": 0}])",
         ", " + usage + R"("modelVersion": "gemini-2.5-flash", "responseId": "mL2vaMnGJZqW1MkP0Z3q4AI"})"},
        {R"({"candidates": [{"index": 2, "content": {"role": "model", "parts": [{"text": )", R"("a b")", "}]}}]", "}"},
    };
    const std::vector<std::string> texts = {R"("")", R"("x")", R"("\"q\\")", R"("\ud83d\ude00")", "\"\x01\"",
                                            "\"\xFF\"", R"("open)", "null", R"("a", "thought": true)"};
    const std::vector<std::string> tails = {"}", ", " + usage + "}", R"(, "candidates": [{"content": {"parts": [{"text": "z"}]}}]})",
                                            R"(, "error": {"code": 429, "message": "m"}})",
                                            R"(, "promptFeedback": {"blockReason": "SAFETY"}})", ",}", "}}", ""};
    const int quick = llm_test::check_known_shape(llm_stream::detail::make_gemini_reader, seeds, texts, tails, 20000);
    CHECK(quick > 2000);
}

TEST_CASE("gemini reader: a message whose tail differs only in its integers gives the usage of its own") {
    // After a finish the usage of every message is passed on, so the counts read from a known tail
    // (KnownTail) show in the events: whatever the integers are, they must be what a fresh reader reads.
    const std::string head = R"({"candidates": [{"content": {"parts": [{"text": )";
    auto usage = [](const std::string& prompt, const std::string& candidates, const std::string& total) {
        return R"("usageMetadata": {"promptTokenCount": )" + prompt + R"(, "candidatesTokenCount": )" + candidates +
               R"(, "totalTokenCount": )" + total + R"(, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8}]}, )"
               R"("modelVersion": "gemini-2.5-flash"})";
    };
    // A count too long to be read as one of the integers that may change keeps the tail from being known.
    const std::vector<llm_test::ShapeSeed> seeds = {
        {head, R"("hi")", R"(}], "role": "model"}, "index": 0}])", ", " + usage("8", "17", "25")},
        {head, R"("hi")", R"(}], "role": "model"}, "index": 0}])", ", " + usage("1234567890123456789", "17", "25")}};
    const std::vector<std::string> texts = {R"("x")", R"("")", R"("é")"};
    std::vector<std::string> tails;
    for (const char* n : {"0", "-3", "-0", "1.5", "08", "1e3", "123456789012345678", "1234567890123456789",
                          "99999999999999999999", "\"7\"", "null", " 9", "250"})
        for (int at = 0; at < 3; ++at)
            tails.push_back(", " + usage(at == 0 ? n : "8", at == 1 ? n : "17", at == 2 ? n : "25"));
    tails.push_back(R"(, "usageMetadata": {"promptTokenCount": 1}, "usageMetadata": {"totalTokenCount": 2}})");
    tails.push_back(R"(, "usageMetadata": {"thoughtsTokenCount": 5, "candidatesTokenCount": 3, "promptTokenCount": 8}})");
    const std::vector<std::string> finished = {
        R"({"candidates": [{"content": {"parts": [{"text": "done"}]}, "finishReason": "STOP", "index": 1}]})"};
    const int quick = llm_test::check_known_shape(llm_stream::detail::make_gemini_reader, seeds, texts, tails, 4000, finished);
    CHECK(quick > 400);
}

TEST_CASE("gemini reader: a blocked prompt (promptFeedback.blockReason, no candidates) is a content_filter finish") {
    const auto reader = llm_stream::detail::make_gemini_reader();
    CHECK(reader->read("", R"({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT", "safetyRatings": []},)"
                           R"( "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}})") == Result::ok);
    CHECK(describe(reader->events()) == Lines{"finish:content_filter/PROHIBITED_CONTENT", "usage:7/0/7"});
    CHECK(reader->read("", R"({"promptFeedback": {"safetyRatings": []}})") == Result::ok);  // not blocked
    CHECK(reader->events().empty());
}

TEST_CASE("gemini reader: whole function calls, indexed across messages, args written compactly") {
    const auto reader = llm_stream::detail::make_gemini_reader();
    CHECK(reader->read("", chunk(R"({"functionCall": {"name": "get_weather", "args": {"city": "Paris, FR", "days": [1, 2]}}})")) ==
          Result::ok);
    CHECK(describe(reader->events()) == Lines{R"(call:0||get_weather|{"city":"Paris, FR","days":[1,2]})"});
    CHECK(reader->read("", chunk(R"({"functionCall": {"id": "fc_1", "name": "now"}}, {"functionCall": {"name": "f", "args": {"q": "a \" b\\"}}})",
                                 R"(, "finishReason": "STOP")")) == Result::ok);
    CHECK(describe(reader->events()) ==
          Lines{"call:1|fc_1|now|{}", R"(call:2||f|{"q":"a \" b\\"})", "finish:tool_calls/STOP"});
}

TEST_CASE("gemini reader: finish reasons in the common vocabulary, the raw value kept") {
    const std::pair<const char*, const char*> reasons[] = {
        {"STOP", "stop"},           {"MAX_TOKENS", "length"},        {"SAFETY", "content_filter"},
        {"RECITATION", "content_filter"}, {"BLOCKLIST", "content_filter"}, {"PROHIBITED_CONTENT", "content_filter"},
        {"SPII", "content_filter"}, {"MALFORMED_FUNCTION_CALL", "MALFORMED_FUNCTION_CALL"}, {"OTHER", "OTHER"},
    };
    for (const auto& [raw, text] : reasons) {
        const auto reader = llm_stream::detail::make_gemini_reader();
        CHECK(reader->read("", chunk(R"({"text": "x"})", std::string(R"(, "finishReason": ")") + raw + "\"")) == Result::ok);
        CHECK(describe(reader->events()) == Lines{"content:x", std::string("finish:") + text + "/" + raw});
    }
}

TEST_CASE("gemini reader: a finish or block reason that decodes to nothing is none; the text stays") {
    for (const char* empty : {"", "\xff", "\\udc00"}) {  // empty, an invalid byte alone, a lone surrogate
        CAPTURE(empty);
        const auto reader = llm_stream::detail::make_gemini_reader();
        CHECK(reader->read("", chunk(R"({"text": "x"})", std::string(R"(, "finishReason": ")") + empty + "\"")) == Result::ok);
        CHECK(describe(reader->events()) == Lines{"content:x"});
        CHECK(reader->read("", std::string(R"({"promptFeedback": {"blockReason": ")") + empty + R"("}})") == Result::ok);
        CHECK(reader->events().empty());
    }
}

TEST_CASE("gemini reader: several candidates, each its own choice") {
    const auto reader = llm_stream::detail::make_gemini_reader();
    CHECK(reader->read("", R"({"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"},)"
                           R"({"index": 1, "content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]}, "finishReason": "STOP"}]})") ==
          Result::ok);
    CHECK(describe(reader->events()) == Lines{"content:a", "finish:stop/STOP", "1.call:0||f|{}", "1.finish:tool_calls/STOP"});
    CHECK(reader->read("", R"({"candidates": [{"index": 128, "content": {"parts": []}}]})") == Result::invalid);
    CHECK(reader->error().message.find("index") != std::string::npos);
}

TEST_CASE("gemini reader: a whole reply read without ?alt=sse is an array of responses") {
    const auto reader = llm_stream::detail::make_gemini_reader();
    CHECK(reader->read("", keep("[" + std::string(chunk(R"({"text": "Hel"})")) + ", " +
                                      std::string(chunk(R"({"text": "lo"})", R"(, "finishReason": "STOP")")) + "]")) ==
          Result::ok);
    CHECK(describe(reader->events()) == Lines{"content:Hel", "content:lo", "finish:stop/STOP"});
}

TEST_CASE("gemini reader: unknown fields, chunks without candidates and empty events are skipped silently") {
    const auto reader = llm_stream::detail::make_gemini_reader();
    CHECK(reader->read("", R"({"futureField": {"text": "no"}, "modelVersion": "m", "responseId": "r"})") == Result::ok);
    CHECK(reader->events().empty());
    CHECK(reader->read("", "  \r\n") == Result::ok);
    CHECK(reader->events().empty());
    CHECK(reader->read("", chunk(R"({"inlineData": {"mimeType": "image/png", "data": "AA=="}}, {"text": ""})",
                                 R"(, "safetyRatings": [{"category": "X", "probability": "LOW"}])")) == Result::ok);
    CHECK(reader->events().empty());
}

TEST_CASE("gemini reader: an error object at HTTP 200 is a server_error with the provider's message") {
    const auto reader = llm_stream::detail::make_gemini_reader();
    CHECK(reader->read("", R"({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})") ==
          Result::error_event);
    CHECK(reader->events().empty());
    const Error e = reader->error();
    CHECK(e.code == ErrorCode::server_error);
    CHECK(e.message == "server error: The model is overloaded. (status: UNAVAILABLE) (code: 503)");
    CHECK(reader->read("", "{\"error\": {\"message\": \"\xA0\"}}") == Result::error_event);  // nothing readable
    CHECK(reader->error().message == "server error: the server reported an error");
}

TEST_CASE("gemini reader: invalid JSON and wrong shapes are invalid, saying where") {
    const auto reader = llm_stream::detail::make_gemini_reader();
    for (const char* bad : {R"({"candidates": [)", R"("text")", R"({"a": 1} x)", R"([{"candidates": []}, 3])",
                            R"({"candidates": [{"content": {"parts": [{"text": "\x"}]}}]})",
                            R"({"error": {"code": 503, "message": "m"}, "candidates": [)"}) {
        CAPTURE(bad);
        CHECK(reader->read("", bad) == Result::invalid);
        CHECK(reader->events().empty());
        CHECK(reader->error().code == ErrorCode::protocol);
        CHECK(reader->error().message.find("at byte") != std::string::npos);
    }
}

// =================================================================================================
// Stub
// =================================================================================================

namespace {

using llm_test::stub_reply;

void check_same_as_openai_stub(const std::vector<Message>& messages, const ChatOptions& options) {
    llm_test::check_same_as_openai_stub(Api::gemini, messages, options, "STOP");
}

}  // namespace

TEST_CASE("gemini stub: asked to think, its call and its text carry a thoughtSignature that the next turn sends back") {
    ChatOptions options;
    options.tools = {weather_tool()};
    options.reasoning_effort = "low";
    const std::vector<Message> ask = {Message::user("Weather in Paris?")};
    check_same_as_openai_stub(ask, options);
    const llm_stream::Reply called = stub_reply(Api::gemini, ask, options);
    ENSURE(called.message().tool_calls.size() == 1);
    CHECK_FALSE(called.message().reasoning.empty());
    CHECK(called.message().tool_calls[0].signature == llm_stream::detail::stub_signature);
    std::vector<Message> turn = ask;
    turn.push_back(called.message());
    turn.push_back(Message::tool_result(called.message().tool_calls[0].id, "sunny"));
    const std::string next = body_of(turn, options);
    CHECK_MESSAGE(next.find(std::string(R"(}},"thoughtSignature":")") + llm_stream::detail::stub_signature + R"("}]})") !=
                      std::string::npos,
                  next);
    const llm_stream::Reply answered = stub_reply(Api::gemini, turn, options);
    CHECK(answered.message().reasoning_signature == llm_stream::detail::stub_signature);
    turn.push_back(answered.message());
    turn.push_back(Message::user("And Rome?"));
    std::string text_part = R"({"role":"model","parts":[{"text":)";
    llm_stream::detail::json_write_string(text_part, answered.message().content);
    text_part += std::string(R"(,"thoughtSignature":")") + llm_stream::detail::stub_signature + R"("}]})";
    CHECK(body_of(turn, options).find(text_part) != std::string::npos);
}

TEST_CASE("gemini stub: text decodes to the same reply as the chat-completions stub") {
    check_same_as_openai_stub({Message::system("s"), Message::user("请介绍运动鞋的特点 😀")}, ChatOptions{});
    CHECK(stub_reply(Api::gemini, {Message::user("hi")}, ChatOptions{}).choices[0].finish_reason == "stop");
}

TEST_CASE("gemini stub: a tool call, then the answer to its result, as the chat-completions stub makes them") {
    ChatOptions options;
    options.tools = {weather_tool()};
    const std::vector<Message> ask = {Message::user("Weather in Paris?")};
    check_same_as_openai_stub(ask, options);
    const llm_stream::Reply called = stub_reply(Api::gemini, ask, options);
    ENSURE(called.message().tool_calls.size() == 1);
    CHECK(called.choices[0].finish_reason == "tool_calls");
    std::vector<Message> turn = ask;
    turn.push_back(called.message());
    turn.push_back(Message::tool_result(called.message().tool_calls[0].id, "sunny"));
    check_same_as_openai_stub(turn, options);
}
