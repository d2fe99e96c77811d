/* What the command-line examples (llm-chat, llm-relay, llm-game-loop) share: exit statuses, number
   flags, the stub's pace, error messages on one line, usage as JSON members. Included after
   llm_stream.hpp, by one .cpp each. */
#ifndef LLM_STREAM_EXAMPLES_CLI_SUPPORT_HPP
#define LLM_STREAM_EXAMPLES_CLI_SUPPORT_HPP

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace cli {

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;
constexpr int exit_interrupted = 130;  // the shell convention for death by SIGINT

// strtol skips leading white space and stops at junk; a flag value must be the number and nothing
// else, so both ends are checked here. It does not throw, unlike std::stoi.
inline bool parse_int(const std::string& text, int& out) {
    if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
    errno = 0;
    char* end = nullptr;
    const long value = std::strtol(text.c_str(), &end, 10);
    if (end != text.c_str() + text.size() || errno == ERANGE) return false;
    if (value < -2147483647L - 1 || value > 2147483647L) return false;
    out = static_cast<int>(value);
    return true;
}

inline bool read_all(std::FILE* file, std::string& out) {
    char buffer[4096];
    std::size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) out.append(buffer, n);
    return !std::ferror(file);
}

/* Config::from_env() reads the variable from the environment or from .env; the 30 ms stub pause is a
   default for these demos only, so any explicit setting, even 0, must win over it. */
inline bool setting_present(const char* name) {
    if (std::getenv(name)) return true;
    std::FILE* file = std::fopen(".env", "rb");
    if (!file) return false;
    std::string text;
    const bool ok = read_all(file, text);
    std::fclose(file);
    bool found = false;
    // from_env() has already reported a malformed file; a read that fails now finds nothing.
    const bool parsed = ok && !llm_stream::parse_dotenv(text, [&](std::string_view key, std::string_view) {
        if (key == name) found = true;
    });
    return parsed && found;
}

/* In stub mode, paced like a real server (unless LLM_STUB_DELAY_MS says otherwise), so the demo shows
   streaming rather than one burst of text. */
inline void pace_stub(llm_stream::Config& config) {
    if (config.stub_mode() && !setting_present("LLM_STUB_DELAY_MS"))
        config.stub_chunk_delay = std::chrono::milliseconds(30);
}

/* One line, as promised: a server's message may carry line breaks of its own. */
inline std::string one_line(std::string text) {
    for (char& c : text)
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    return text;
}

inline bool mentions_number(const std::string& text, int number) {
    const std::string digits = std::to_string(number);
    for (std::size_t at = text.find(digits); at != std::string::npos; at = text.find(digits, at + 1)) {
        const bool digit_before = at > 0 && std::isdigit(static_cast<unsigned char>(text[at - 1]));
        const std::size_t after = at + digits.size();
        const bool digit_after = after < text.size() && std::isdigit(static_cast<unsigned char>(text[after]));
        if (!digit_before && !digit_after) return true;
    }
    return false;
}

/* An error as one line, with the HTTP status when the message does not already say it. */
inline std::string describe(const llm_stream::Error& error) {
    std::string message = one_line(error.message);
    if (message.empty()) message = llm_stream::to_string(error.code);
    if (error.http_status != 0 && !mentions_number(message, error.http_status))
        message += " (HTTP " + std::to_string(error.http_status) + ")";
    return message;
}

// "prompt_tokens":N,"completion_tokens":N,"total_tokens":N
inline void append_usage_members(std::string& out, const llm_stream::Usage& usage) {
    out += "\"prompt_tokens\":" + std::to_string(usage.prompt_tokens);
    out += ",\"completion_tokens\":" + std::to_string(usage.completion_tokens);
    out += ",\"total_tokens\":" + std::to_string(usage.total_tokens);
}

}  // namespace cli

#endif  // LLM_STREAM_EXAMPLES_CLI_SUPPORT_HPP
