/* agent — a tool-using loop: the model may call a calculator and ask for the local time. Each reply
   streams to stdout; each call it asks for is run and its result sent back; then the model answers
   again, until it stops without calls (at most 8 rounds).

   Configured like llm-chat (LLM_BASE_URL, LLM_API_KEY, LLM_MODEL, then .env); without LLM_BASE_URL
   the stub answers, calling a tool and then quoting its result.
   usage: agent [PROMPT]      exit status: 0 success, 1 the request failed (one line on stderr) */

#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

namespace {

constexpr int kMaxRounds = 8;

/* + - * / and parentheses on numbers, by recursive descent: an expression is a sum of products of
   factors. The value as text, or "error: ..." saying what is wrong. */
class Calculator {
public:
    static std::string evaluate(std::string expression) {
        Calculator c(std::move(expression));
        const double value = c.sum();
        if (c.peek() != '\0') c.fail("unexpected '" + c.text_.substr(c.pos_, 1) + "'");
        if (!c.error_.empty()) return "error: " + c.error_;
        char text[32];
        std::snprintf(text, sizeof text, "%.15g", value);
        return text;
    }

private:
    explicit Calculator(std::string text) : text_(std::move(text)) {}
    double sum() {
        for (double value = product();;) {
            if (take('+')) value += product();
            else if (take('-')) value -= product();
            else return value;
        }
    }
    double product() {
        for (double value = factor();;) {
            if (take('*')) value *= factor();
            else if (!take('/')) return value;
            else if (const double divisor = factor(); divisor != 0) value /= divisor;
            else return fail("division by zero");
        }
    }
    double factor() {
        if (depth_ == 100) return fail("too deeply nested");  // keeps the recursion off the stack's end
        ++depth_;
        const double value = take('-') ? -factor() : take('(') ? parenthesised() : number();
        --depth_;
        return value;
    }
    double parenthesised() {
        const double value = sum();
        if (!take(')')) fail("missing ')'");
        return value;
    }
    double number() {
        const char first = peek();
        const char* start = text_.c_str() + pos_;
        char* end = nullptr;
        const double value = first == '.' || std::isdigit(static_cast<unsigned char>(first)) ? std::strtod(start, &end) : 0;
        if (!end || end == start) return fail(first ? "expected a number at '" + text_.substr(pos_, 10) + "'" : "expected a number at the end");
        pos_ += static_cast<std::size_t>(end - start);
        return value;
    }
    char peek() {
        while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
        return pos_ < text_.size() ? text_[pos_] : '\0';
    }
    bool take(char c) { return peek() == c && (++pos_, true); }
    double fail(std::string why) {
        if (error_.empty()) error_ = std::move(why);
        return 0;
    }

    std::string text_, error_;
    std::size_t pos_ = 0;
    int depth_ = 0;
};

std::string local_time() {
    const std::time_t now = std::time(nullptr);
    char text[64];
    return std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&now)) ? text : "unknown";
}

std::string run_tool(const llm_stream::ToolCall& call, bool valid_json) {
    if (!valid_json) return "error: the arguments are not valid JSON";
    if (call.name == "local_time") return local_time();
    if (call.name != "calculator") return "error: there is no tool named " + call.name;
    const std::optional<std::string> expression = llm_stream::json_string_member(call.arguments, "expression");
    if (!expression) return "error: expression (a string) is missing";
    return Calculator::evaluate(*expression);
}

std::vector<llm_stream::Tool> tools() {
    return {{"calculator", "Evaluates an arithmetic expression: numbers, + - * / and parentheses.",
             R"({"type":"object","properties":{"expression":{"type":"string","description":"e.g. (2+3)*4"}},)"
             R"("required":["expression"],"additionalProperties":false})", true},
            {"local_time", "The local date and time.",
             R"({"type":"object","properties":{},"additionalProperties":false})", true}};
}

int fail(const std::string& message) {
    std::fprintf(stderr, "agent: error: %s\n", message.c_str());
    return 1;  // the exit status
}

/* One round: streams the reply, appends it and the results of the calls it asks for. */
bool run_round(llm_stream::Client& client, const llm_stream::ChatOptions& options,
               std::vector<llm_stream::Message>& messages, bool& more) {
    llm_stream::Stream stream = client.stream_chat(messages, options);
    for (std::string_view chunk : stream) {
        std::fwrite(chunk.data(), 1, chunk.size(), stdout);
        std::fflush(stdout);
    }
    if (stream.error()) {
        fail(stream.error().message);
        return false;
    }
    const llm_stream::Reply& reply = stream.reply();
    llm_stream::Message asked = reply.message();
    more = !asked.tool_calls.empty();
    if (!asked.content.empty()) std::putchar('\n');
    std::vector<llm_stream::Message> results;
    for (std::size_t i = 0; i < asked.tool_calls.size(); ++i) {
        llm_stream::ToolCall& call = asked.tool_calls[i];
        const std::vector<std::size_t>& invalid = reply.choices.front().invalid_tool_calls;
        const bool valid = std::find(invalid.begin(), invalid.end(), i) == invalid.end();
        const std::string result = run_tool(call, valid);
        std::printf("[%s %s -> %s]\n", call.name.c_str(), call.arguments.c_str(), result.c_str());
        if (!valid) call.arguments = "{}";  // requests refuse arguments that are not JSON; the result says why
        results.push_back(llm_stream::Message::tool_result(call.id, result));
    }
    messages.push_back(std::move(asked));
    messages.insert(messages.end(), results.begin(), results.end());
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    llm_stream::Config config = llm_stream::Config::from_env();
    if (config.env_error) return fail(config.env_error.message);
    if (config.stub_mode()) std::fputs("agent: stub mode (LLM_BASE_URL is not set): simulated replies\n", stderr);
    llm_stream::Client client(std::move(config));
    llm_stream::ChatOptions options;
    options.tools = tools();
    options.assemble_reply = true;  // stream.reply(): the assistant message to append
    std::vector<llm_stream::Message> messages = {
        llm_stream::Message::system("Use the calculator for arithmetic and local_time for the time. Be brief."),
        llm_stream::Message::user(argc > 1 ? argv[1] : "12 * (3 + 4) / 2")};
    bool more = true;
    for (int round = 0; more && round < kMaxRounds; ++round)
        if (!run_round(client, options, messages, more)) return 1;
    return more ? fail("no final answer after " + std::to_string(kMaxRounds) + " rounds") : 0;
}
