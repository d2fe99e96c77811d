/* agent — a tool-using loop: the model may call a calculator and ask for the local time. Each reply
   streams to stdout; each call it asks for is run and its result sent back; then the model answers
   again, until it stops without calls (at most 8 rounds).

   Configured like llm-chat (LLM_BASE_URL, LLM_API_KEY, LLM_MODEL, then .env); without LLM_BASE_URL
   the stub answers, calling a tool and then quoting its result.
   usage: agent [PROMPT]      exit status: 0 success, 1 the request failed (one line on stderr) */

#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

namespace {

/* + - * / and parentheses on numbers, by recursive descent: a sum of products of factors. */
struct Calculator {
    const char* p;
    std::string error;
    int depth = 0;

    char peek() {
        while (*p == ' ') ++p;
        return *p;
    }
    bool take(char c) { return peek() == c && (++p, true); }
    double fail(const std::string& why) { return error.empty() ? (error = why, 0.0) : 0.0; }
    double sum() {
        double v = product();
        while (peek() == '+' || peek() == '-') v = *p++ == '+' ? v + product() : v - product();
        return v;
    }
    double product() {
        double v = factor();
        while (peek() == '*' || peek() == '/') {
            const bool times = *p++ == '*';
            const double f = factor();
            v = times ? v * f : f != 0 ? v / f : fail("division by zero");
        }
        return v;
    }
    double factor() {
        if (depth == 100) return fail("too deeply nested");  // keeps the recursion off the stack's end
        ++depth;
        const double v = take('-') ? -factor() : take('(') ? parenthesised() : number();
        --depth;
        return v;
    }
    double parenthesised() {
        const double v = sum();
        return take(')') ? v : fail("missing ')'");
    }
    double number() {
        char* end = nullptr;
        const double v = peek() == '.' || (*p >= '0' && *p <= '9') ? std::strtod(p, &end) : 0;
        if (!end || end == p) return fail(*p ? "expected a number at '" + std::string(p).substr(0, 10) + "'" : "expected a number at the end");
        p = end;
        return v;
    }
};

std::string calculate(const std::string& expression) {
    Calculator c{expression.c_str(), {}};
    const double value = c.sum();
    if (c.peek() != '\0') c.fail(std::string("unexpected '") + c.peek() + "'");
    if (!c.error.empty()) return "error: " + c.error;
    char text[32];
    std::snprintf(text, sizeof text, "%.15g", value);
    return text;
}

std::string run_tool(const llm_stream::ToolCall& call) {
    if (call.name == "local_time") {
        const std::time_t now = std::time(nullptr);
        char text[64];
        return std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&now)) ? text : "unknown";
    }
    if (call.name != "calculator") return "error: there is no tool named " + call.name;
    const std::optional<std::string> expression = llm_stream::json_string_member(call.arguments, "expression");
    return expression ? calculate(*expression) : "error: expression (a string) is missing";
}

int fail(const std::string& message) {
    std::fprintf(stderr, "agent: error: %s\n", message.c_str());
    return 1;  // the exit status
}

/* One round: streams the reply, appends it and the results of the calls it asks for. */
llm_stream::Error run_round(llm_stream::Client& client, const llm_stream::ChatOptions& options,
                            std::vector<llm_stream::Message>& messages) {
    llm_stream::Stream stream = client.stream_chat(messages, options);
    for (std::string_view chunk : stream) {
        std::fwrite(chunk.data(), 1, chunk.size(), stdout);
        std::fflush(stdout);
    }
    if (stream.error()) return stream.error();
    const llm_stream::ReplyChoice& reply = stream.reply().choices.front();
    messages.push_back(reply.message);
    if (!reply.message.content.empty()) std::putchar('\n');
    for (std::size_t i = 0; i < reply.message.tool_calls.size(); ++i) {
        const llm_stream::ToolCall& call = reply.message.tool_calls[i];
        const bool valid = std::count(reply.invalid_tool_calls.begin(), reply.invalid_tool_calls.end(), i) == 0;
        const std::string result = valid ? run_tool(call) : "error: the arguments are not valid JSON";
        std::printf("[%s %s -> %s]\n", call.name.c_str(), call.arguments.c_str(), result.c_str());
        // Requests refuse arguments that are not JSON (servers parse them); the result says why.
        if (!valid) messages.back().tool_calls[i].arguments = "{}";
        messages.push_back(llm_stream::Message::tool_result(call.id, result));
    }
    return {};
}

}  // namespace

int main(int argc, char** argv) {
    llm_stream::Config config = llm_stream::Config::from_env();
    if (config.env_error) return fail(config.env_error.message);
    if (config.stub_mode()) std::fputs("agent: stub mode (LLM_BASE_URL is not set): simulated replies\n", stderr);
    llm_stream::Client client(std::move(config));
    llm_stream::ChatOptions options;
    options.tools = {{"calculator", "Evaluates an arithmetic expression: numbers, + - * / and parentheses.",
                      R"({"type":"object","properties":{"expression":{"type":"string","description":"e.g. (2+3)*4"}},)"
                      R"("required":["expression"],"additionalProperties":false})", true},
                     {"local_time", "The local date and time.",
                      R"({"type":"object","properties":{},"additionalProperties":false})", true}};
    options.assemble_reply = true;  // stream.reply(): the assistant message to append
    std::vector<llm_stream::Message> messages = {
        llm_stream::Message::system("Use the calculator for arithmetic and local_time for the time. Be brief."),
        llm_stream::Message::user(argc > 1 ? argv[1] : "12 * (3 + 4) / 2")};
    for (int round = 0; round < 8; ++round) {
        if (llm_stream::Error e = run_round(client, options, messages)) return fail(e.message);
        if (messages.back().role != llm_stream::Role::tool) return 0;  // an answer without calls
    }
    return fail("no final answer after 8 rounds");
}
