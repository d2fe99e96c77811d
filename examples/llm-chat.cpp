/* llm-chat — stream one chat completion to the terminal.

   The demo of llm_stream and a real tool: it reads LLM_BASE_URL / LLM_API_KEY / LLM_MODEL (environment,
   then .env), sends PROMPT and prints the reply as it arrives. Without LLM_BASE_URL it runs in stub mode
   and prints a simulated reply, so it works out of the box. Run `llm-chat --help` for the options.

   Exit status: 0 success, 1 the request failed, 2 bad usage, 130 interrupted by Ctrl-C. */

#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#ifdef _WIN32
// After the library, which may need winsock2.h ahead of windows.h.
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#include <shellapi.h>  // after windows.h, whose types it uses
#include <fcntl.h>
#include <io.h>
#else
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace {

constexpr const char* kSynopsis =
    "usage: llm-chat [--system TEXT] [--model NAME] [--temperature X] [--max-tokens N] [--extra JSON]\n"
    "                [--timeout SECONDS] [--deadline SECONDS] [--retries N] [--cacert FILE] [--insecure]\n"
    "                [--replay FILE] [--events] [--stats] [--verbose] [--version] [PROMPT]\n";

constexpr const char* kHelp =
    "\n"
    "Streams a chat completion from an OpenAI-compatible server and prints the reply as it arrives.\n"
    "PROMPT '-' reads the prompt from standard input. Options also accept the --option=VALUE form;\n"
    "'--' ends the options (for a PROMPT that starts with '-').\n"
    "\n"
    "options:\n"
    "  --system TEXT        system message (default: \"You are a helpful sales assistant.\")\n"
    "  --model NAME         model name (default: $LLM_MODEL, else gpt-4o-mini)\n"
    "  --temperature X      sampling temperature, 0 to 2\n"
    "  --max-tokens N       upper bound on the tokens generated, N > 0\n"
    "  --extra JSON         a JSON object whose members are merged into the request body,\n"
    "                       e.g. '{\"top_p\":0.9,\"stream_options\":{\"include_usage\":true}}'\n"
    "  --timeout SECONDS    connect and idle-read timeout of each attempt (default: 30)\n"
    "  --deadline SECONDS   limit on the whole request, retries included (default and 0: none)\n"
    "  --retries N          retries after a failed attempt (default: 3)\n"
    "  --cacert FILE        trust the CA certificates in this PEM file\n"
    "                       (default: $SSL_CERT_FILE, $SSL_CERT_DIR, else the system bundle)\n"
    "  --insecure           do not verify TLS certificates (dangerous)\n"
    "  --replay FILE        no network: decode FILE, a captured raw HTTP response (status line,\n"
    "                       headers, body as sent), as if it had just arrived; '-' reads standard\n"
    "                       input. PROMPT is then optional and not sent anywhere\n"
    "  --events             print one JSON object per line per event instead of the plain text\n"
    "  --stats              print timing and size metrics to stderr at the end\n"
    "  --verbose            print the library's info-level logs to stderr\n"
    "  --version            print the library version and TLS backend, then exit\n"
    "  --help               print this help, then exit\n"
    "\n"
    "environment (read from ./.env for the variables the environment does not set):\n"
    "  LLM_BASE_URL         a base such as https://api.openai.com/v1 or a full .../chat/completions URL;\n"
    "                       unset: stub mode, a simulated reply without any network access\n"
    "  LLM_API_KEY          sent as a bearer token when set\n"
    "  LLM_MODEL            the default model\n"
    "  LLM_STUB_DELAY_MS    pause between simulated chunks in stub mode (default here: 30)\n"
    "\n"
    "exit status: 0 success, 1 the request failed, 2 bad usage, 130 interrupted\n";

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInterrupted = 130;  // the shell convention for death by SIGINT

// Timeouts are kept well inside what std::chrono and the library's clock arithmetic can add safely.
constexpr double kMaxSeconds = 1e6;

/* ------------------------------------------------------------------------------------------------
   Command line
   ------------------------------------------------------------------------------------------------ */

struct CommandLine {
    llm_stream::ChatOptions options;
    std::optional<std::string> model;
    std::optional<std::chrono::milliseconds> timeout;
    std::optional<std::chrono::milliseconds> deadline;
    std::optional<int> retries;
    std::optional<std::string> cacert;
    bool insecure = false;
    bool events = false;
    bool stats = false;
    bool verbose = false;
    bool show_help = false;
    bool show_version = false;
    std::optional<std::string> prompt;  // "-" means standard input
    std::optional<std::string> replay;  // a captured response to decode; "-" means standard input
};

enum class OptionId {
    system, model, temperature, max_tokens, extra, timeout, deadline, retries, cacert,
    insecure, replay, events, stats, verbose, version, help,
};

struct OptionSpec {
    const char* name;
    OptionId id;
    bool takes_value;
};

constexpr OptionSpec kOptions[] = {
    {"--system", OptionId::system, true},       {"--model", OptionId::model, true},
    {"--temperature", OptionId::temperature, true}, {"--max-tokens", OptionId::max_tokens, true},
    {"--extra", OptionId::extra, true},         {"--timeout", OptionId::timeout, true},
    {"--deadline", OptionId::deadline, true},   {"--retries", OptionId::retries, true},
    {"--cacert", OptionId::cacert, true},       {"--insecure", OptionId::insecure, false},
    {"--replay", OptionId::replay, true},
    {"--events", OptionId::events, false},      {"--stats", OptionId::stats, false},
    {"--verbose", OptionId::verbose, false},    {"--version", OptionId::version, false},
    {"--help", OptionId::help, false},          {"-h", OptionId::help, false},
};

// strtod and strtol skip leading white space and stop at junk; a flag value must be the number and
// nothing else, so both ends are checked here. Neither throws, unlike std::stod.
bool parse_double(const std::string& text, double& out) {
    if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
    errno = 0;
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() || errno == ERANGE || !std::isfinite(value)) return false;
    out = value;
    return true;
}

bool parse_int(const std::string& text, int& out) {
    if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
    errno = 0;
    char* end = nullptr;
    const long value = std::strtol(text.c_str(), &end, 10);
    if (end != text.c_str() + text.size() || errno == ERANGE) return false;
    if (value < -2147483647L - 1 || value > 2147483647L) return false;
    out = static_cast<int>(value);
    return true;
}

bool parse_seconds(const std::string& flag, const std::string& text, std::chrono::milliseconds& out,
                   std::string& error) {
    double seconds = 0;
    if (!parse_double(text, seconds)) {
        error = flag + " needs a number of seconds, not '" + text + "'";
        return false;
    }
    if (seconds < 0) {
        error = flag + " cannot be negative ('" + text + "')";
        return false;
    }
    if (seconds > kMaxSeconds) {
        error = flag + " is too large ('" + text + "', at most 1000000 seconds)";
        return false;
    }
    // Rounded up so that a small positive value such as 0.0001 never turns into 0.
    out = std::chrono::milliseconds(static_cast<long long>(std::ceil(seconds * 1000.0)));
    return true;
}

/* A bad --extra is bad usage, found before anything else happens: the library checks chat options when
   a stream starts, so an offline (stub-mode) client starts one that is never read. Its messages
   ("extra JSON must be an object") are given in the command line's words. */
/* The library's own check of the extra JSON (through the request builder), worded for this flag. */
bool extra_is_usable(const llm_stream::ChatOptions& options, std::string& error) {
    if (options.extra_json.find_first_not_of(" \t\r\n") == std::string::npos) {
        error = "--extra needs a JSON object, e.g. '{\"top_p\":0.9}'";
        return false;
    }
    llm_stream::Request request;
    const llm_stream::Error why = llm_stream::build_request(llm_stream::Config{}, {llm_stream::Message::user("")}, options, request);
    if (!why) return true;
    static constexpr std::string_view library_words = "extra JSON ";
    error = why.message.compare(0, library_words.size(), library_words) == 0
                ? "--extra " + why.message.substr(library_words.size())
                : "--extra: " + why.message;
    return false;
}

bool apply_option(OptionId id, const std::string& flag, const std::string& value, CommandLine& cl,
                  std::string& error) {
    switch (id) {
    case OptionId::system:
        cl.options.system = value;
        return true;
    case OptionId::model:
        if (value.empty()) {
            error = "--model needs a non-empty NAME";
            return false;
        }
        cl.model = value;
        return true;
    case OptionId::temperature: {
        double t = 0;
        if (!parse_double(value, t)) {
            error = "--temperature needs a number, not '" + value + "'";
            return false;
        }
        if (t < 0 || t > 2) {
            error = "--temperature must be between 0 and 2 (got '" + value + "')";
            return false;
        }
        cl.options.temperature = t;
        return true;
    }
    case OptionId::max_tokens: {
        int n = 0;
        if (!parse_int(value, n)) {
            error = "--max-tokens needs a whole number, not '" + value + "'";
            return false;
        }
        if (n <= 0) {
            error = "--max-tokens must be greater than 0 (got '" + value + "')";
            return false;
        }
        cl.options.max_tokens = n;
        return true;
    }
    case OptionId::extra:
        cl.options.extra_json = value;
        return extra_is_usable(cl.options, error);
    case OptionId::timeout: {
        std::chrono::milliseconds ms{0};
        if (!parse_seconds(flag, value, ms, error)) return false;
        // A deadline of 0 means "none" to the library, but a per-attempt timeout has no such value.
        if (ms.count() == 0) {
            error = "--timeout must be greater than 0";
            return false;
        }
        cl.timeout = ms;
        return true;
    }
    case OptionId::deadline: {
        std::chrono::milliseconds ms{0};
        if (!parse_seconds(flag, value, ms, error)) return false;
        cl.deadline = ms;
        return true;
    }
    case OptionId::retries: {
        int n = 0;
        if (!parse_int(value, n)) {
            error = "--retries needs a whole number, not '" + value + "'";
            return false;
        }
        if (n < 0) {
            error = "--retries cannot be negative (got '" + value + "')";
            return false;
        }
        cl.retries = n;
        return true;
    }
    case OptionId::cacert:
        if (value.empty()) {
            error = "--cacert needs a FILE";
            return false;
        }
        cl.cacert = value;
        return true;
    case OptionId::replay:
        if (value.empty()) {
            error = "--replay needs a FILE (or - for standard input)";
            return false;
        }
        cl.replay = value;
        return true;
    case OptionId::insecure: cl.insecure = true; return true;
    case OptionId::events: cl.events = true; return true;
    case OptionId::stats: cl.stats = true; return true;
    case OptionId::verbose: cl.verbose = true; return true;
    case OptionId::version: cl.show_version = true; return true;
    case OptionId::help: cl.show_help = true; return true;
    }
    return true;
}

const OptionSpec* find_option(std::string_view name) {
    for (const OptionSpec& spec : kOptions)
        if (name == spec.name) return &spec;
    return nullptr;
}

/* Options may come before or after PROMPT; the last of a repeated option wins. --help and --version
   act as soon as they are reached: nothing after them (not even a missing PROMPT) is an error. */
bool parse_command_line(const std::vector<std::string>& args, CommandLine& cl, std::string& error) {
    bool options_ended = false;
    for (std::size_t i = 1; i < args.size(); ++i) {
        const std::string& arg = args[i];
        const bool is_option = !options_ended && arg.size() > 1 && arg[0] == '-';
        if (!is_option) {
            if (cl.prompt) {
                error = "only one PROMPT is allowed (quote it if it has spaces): unexpected '" + arg + "'";
                return false;
            }
            cl.prompt = arg;
            continue;
        }
        if (arg == "--") {
            options_ended = true;
            continue;
        }
        const std::size_t eq = arg.find('=');
        const std::string name = arg.substr(0, eq);
        const OptionSpec* spec = find_option(name);
        if (!spec) {
            error = "unknown option '" + name + "'";
            return false;
        }
        std::string value;
        if (spec->takes_value) {
            if (eq != std::string::npos) {
                value = arg.substr(eq + 1);
            } else if (i + 1 < args.size()) {
                // Taken as is even when it starts with '-': "--temperature -1" is a bad value to
                // report as such, and "--system -" a legitimate one.
                value = args[++i];
            } else {
                error = name + " needs a value";
                return false;
            }
        } else if (eq != std::string::npos) {
            error = name + " does not take a value";
            return false;
        }
        if (!apply_option(spec->id, name, value, cl, error)) return false;
        if (cl.show_help || cl.show_version) return true;
    }
    if (!cl.prompt && !cl.replay) {
        error = "missing PROMPT";
        return false;
    }
    if (cl.replay && *cl.replay == "-" && cl.prompt && *cl.prompt == "-") {
        error = "--replay - and PROMPT - cannot both read standard input";
        return false;
    }
    return true;
}

void print_usage_error(const std::string& what) {
    std::fprintf(stderr, "llm-chat: %s\n%sRun 'llm-chat --help' for the options.\n", what.c_str(),
                 kSynopsis);
}

/* Windows hands main() the arguments in the ANSI code page, which cannot carry most prompts (the
   seed's are Chinese); the wide command line converted to UTF-8 can. */
std::vector<std::string> utf8_arguments(int argc, char** argv) {
    std::vector<std::string> args;
#ifdef _WIN32
    int count = 0;
    if (LPWSTR* wide = CommandLineToArgvW(GetCommandLineW(), &count)) {
        for (int i = 0; i < count; ++i) {
            const int size = WideCharToMultiByte(CP_UTF8, 0, wide[i], -1, nullptr, 0, nullptr, nullptr);
            std::string arg(size > 0 ? static_cast<std::size_t>(size) : 1u, '\0');
            if (size > 0)
                WideCharToMultiByte(CP_UTF8, 0, wide[i], -1, &arg[0], size, nullptr, nullptr);
            arg.resize(arg.size() - 1);  // the converted terminator
            args.push_back(std::move(arg));
        }
        LocalFree(wide);
        return args;
    }
#endif
    for (int i = 0; i < argc; ++i) args.emplace_back(argv[i]);
    return args;
}

bool read_all(std::FILE* file, std::string& out) {
    char buffer[4096];
    std::size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) out.append(buffer, n);
    return !std::ferror(file);
}

// Like the shell's $(...): `echo hi | llm-chat -` should send "hi", not "hi\n".
std::string strip_trailing_newlines(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    return text;
}

/* Config::from_env() reads the variable from the environment or from .env; the 30 ms stub pause is a
   default for this demo only, so any explicit setting, even 0, must win over it. */
bool setting_present(const char* name) {
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

/* The captured response for --replay; on failure says why (a usage error: the file is an argument). */
bool read_replay_file(const std::string& path, std::string& out) {
    std::FILE* file = path == "-" ? stdin : std::fopen(path.c_str(), "rb");
    if (!file) {
        std::fprintf(stderr, "llm-chat: --replay: cannot open %s: %s\n", path.c_str(), std::strerror(errno));
        return false;
    }
    const bool ok = read_all(file, out);
    const int read_errno = errno;
    if (file != stdin) std::fclose(file);
    if (!ok) std::fprintf(stderr, "llm-chat: --replay: cannot read %s: %s\n", path.c_str(), std::strerror(read_errno));
    return ok;
}

/* ------------------------------------------------------------------------------------------------
   Ctrl-C
   ------------------------------------------------------------------------------------------------ */

/* Stream::cancel() is safe from any thread but not from a signal handler (it may take a lock the
   interrupted thread holds), so Ctrl-C is turned into a call from an ordinary thread: on POSIX a
   watcher thread that receives SIGINT with sigwait(), on Windows the console's own handler thread. */
class InterruptWatch {
public:
    // Must run before the process has any other thread, so that every thread keeps SIGINT blocked.
    static void install() {
#ifdef _WIN32
        SetConsoleCtrlHandler(on_console_event, TRUE);
#else
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) return;
        // A handler that never runs, in place of the inherited disposition: a background job of a
        // non-interactive shell starts with SIGINT ignored, and an ignored signal may be discarded
        // before sigwait() can take it.
        std::signal(SIGINT, never_called);
        std::thread([set] {
            int received = 0;
            if (sigwait(&set, &received) != 0) return;
            interrupt();
            // The first Ctrl-C ends the reply cleanly; a second one does not wait for that.
            if (sigwait(&set, &received) == 0) std::_Exit(kExitInterrupted);
        }).detach();
#endif
    }

    // The stream to cancel on Ctrl-C; set back to nullptr before that stream is destroyed.
    static void watch(llm_stream::Stream* stream) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stream_ = stream;
        }
        if (stream && interrupted()) stream->cancel();  // Ctrl-C came before there was a stream
    }

    static bool interrupted() { return interrupted_.load(); }

private:
    static void interrupt() {
        interrupted_.store(true);
        std::lock_guard<std::mutex> lock(mutex_);
        if (stream_) stream_->cancel();
    }
#ifdef _WIN32
    static BOOL WINAPI on_console_event(DWORD type) {
        if (type != CTRL_C_EVENT && type != CTRL_BREAK_EVENT) return FALSE;
        if (interrupted()) return FALSE;  // a second Ctrl-C: the default handler ends the process
        interrupt();
        return TRUE;
    }
#else
    static void never_called(int) {}
#endif

    static inline std::mutex mutex_;
    static inline llm_stream::Stream* stream_ = nullptr;
    static inline std::atomic<bool> interrupted_{false};
};

/* ------------------------------------------------------------------------------------------------
   Output
   ------------------------------------------------------------------------------------------------ */

// The first characters of the reply, for the seed's "First chunk received: ..." line.
class ReplyPreview {
public:
    static constexpr std::size_t kMaxChars = 20;

    void add(std::string_view text) {
        for (char c : text) {
            const bool starts_char = (static_cast<unsigned char>(c) & 0xC0) != 0x80;
            if (starts_char && chars_ == kMaxChars) return;  // cut only between characters
            if (starts_char) ++chars_;
            // The preview lives inside one log line: line breaks and tabs become spaces.
            preview_ += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
        }
    }
    const std::string& text() const { return preview_; }

private:
    std::string preview_;
    std::size_t chars_ = 0;
};

struct OutputState {
    bool printed = false;        // something reached stdout
    bool unflushed = false;      // written since the last flush
    bool line_open = false;      // stdout's last byte is not a newline
    bool line_ended_by_log = false;  // a log line ended the reply's line on the shared terminal or file
    bool write_failed = false;   // stdout is gone (closed pipe, full disk): no point going on
    int write_errno = 0;
    ReplyPreview preview;
};

bool output_failed(OutputState& out) {
    out.write_failed = true;
    out.write_errno = errno;
    return false;
}

bool write_out(std::string_view bytes, OutputState& out) {
    if (bytes.empty()) return true;
    if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size()) return output_failed(out);
    out.printed = true;
    out.unflushed = true;
    out.line_open = bytes.back() != '\n';
    out.line_ended_by_log = false;
    return true;
}

bool flush_out(OutputState& out) {
    if (!out.unflushed) return true;
    out.unflushed = false;
    return std::fflush(stdout) == 0 || output_failed(out);
}

// True when stdout and stderr reach the same terminal, file or pipe (`2>&1`, or both on one terminal).
bool stdout_and_stderr_shared() {
#ifdef _WIN32
    return _isatty(_fileno(stdout)) && _isatty(_fileno(stderr));
#else
    struct stat out_info {}, err_info {};
    return fstat(STDOUT_FILENO, &out_info) == 0 && fstat(STDERR_FILENO, &err_info) == 0 &&
           out_info.st_dev == err_info.st_dev && out_info.st_ino == err_info.st_ino;
#endif
}

const char* level_name(llm_stream::LogLevel level) {
    switch (level) {
    case llm_stream::LogLevel::debug: return "debug";
    case llm_stream::LogLevel::info: return "info";
    case llm_stream::LogLevel::warning: return "warning";
    case llm_stream::LogLevel::error: return "error";
    case llm_stream::LogLevel::off: break;
    }
    return "log";
}

/* The library's log lines, each on a line of its own: the reply printed so far goes out first, and
   where stdout and stderr are one terminal or file, a reply line still open is ended before the log
   line (and counts as the reply's final newline if nothing follows). */
llm_stream::LogCallback log_to_stderr(OutputState& out) {
    const bool shared = stdout_and_stderr_shared();
    return [&out, shared](llm_stream::LogLevel level, std::string_view message) {
        flush_out(out);
        if (shared && out.line_open) {
            std::fputc('\n', stderr);
            out.line_open = false;
            out.line_ended_by_log = true;
        }
        std::fprintf(stderr, "llm_stream: %s: %.*s\n", level_name(level), static_cast<int>(message.size()),
                     message.data());
    };
}

void append_json_member(std::string& out, const char* key, std::string_view value) {
    out += ",\"";
    out += key;
    out += "\":";
    llm_stream::append_json_string(out, value);
}

void append_json_member(std::string& out, const char* key, long long value) {
    out += ",\"";
    out += key;
    out += "\":";
    out += std::to_string(value);
}

std::string event_to_json(const llm_stream::Event& event) {
    using llm_stream::EventType;
    std::string line = "{\"type\":";
    switch (event.type) {
    case EventType::content:
        line += "\"content\"";
        append_json_member(line, "text", event.text);
        break;
    case EventType::reasoning:
        line += "\"reasoning\"";
        append_json_member(line, "text", event.text);
        break;
    case EventType::tool_call: {
        const llm_stream::ToolCallDelta& call = event.tool_call;
        line += "\"tool_call\"";
        append_json_member(line, "index", call.index);
        if (call.id) append_json_member(line, "id", *call.id);
        if (call.name) append_json_member(line, "name", *call.name);
        if (call.arguments) append_json_member(line, "arguments", *call.arguments);
        break;
    }
    case EventType::finish:
        line += "\"finish\"";
        append_json_member(line, "reason", event.text);
        break;
    case EventType::usage:
        line += "\"usage\"";
        append_json_member(line, "prompt_tokens", static_cast<long long>(event.usage.prompt_tokens));
        append_json_member(line, "completion_tokens", static_cast<long long>(event.usage.completion_tokens));
        append_json_member(line, "total_tokens", static_cast<long long>(event.usage.total_tokens));
        break;
    }
    line += "}\n";
    return line;
}

// Pieces are written as they arrive and stdout is flushed whenever the stream has nothing more for
// now: the reader sees each piece as soon as it is here, and a fast server does not cost a system
// call per chunk.
void print_stream(llm_stream::Stream& stream, OutputState& out, bool events) {
    for (;;) {
        const llm_stream::PollStatus status = stream.poll();
        if (status == llm_stream::PollStatus::event) {
            const llm_stream::Event& event = stream.current_event();
            if (event.type == llm_stream::EventType::content) out.preview.add(event.text);
            const bool ok = events ? write_out(event_to_json(event), out)
                                   : event.type != llm_stream::EventType::content || write_out(event.text, out);
            if (!ok) return;
            continue;
        }
        if (!flush_out(out) || status != llm_stream::PollStatus::pending) return;
        stream.wait();
    }
}

std::string format_ms(double ms) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.2f", ms);
    return buffer;
}

// The seed's two metric lines, word for word, then what the library measures beyond the seed.
void print_stats(const llm_stream::Stats& stats, const ReplyPreview& preview) {
    if (stats.first_chunk_ms >= 0)
        std::fprintf(stderr, "First chunk received: %s... (%sms)\n", preview.text().c_str(),
                     format_ms(stats.first_chunk_ms).c_str());
    std::fprintf(stderr, "LLM stream completed: %s chunks, %s chars, %s ms\n",
                 std::to_string(stats.chunks).c_str(), std::to_string(stats.chars).c_str(),
                 format_ms(stats.total_ms).c_str());
    std::string details = std::to_string(stats.attempts) + (stats.attempts == 1 ? " attempt" : " attempts");
    details += ", " + std::to_string(stats.received_bytes) + " bytes received, " +
               std::to_string(stats.events) + " events, " + std::to_string(stats.skipped_events) + " skipped";
    if (!stats.finish_reason.empty()) details += ", finish reason " + stats.finish_reason;
    if (stats.has_usage)
        details += ", usage: " + std::to_string(stats.usage.prompt_tokens) + " prompt + " +
                   std::to_string(stats.usage.completion_tokens) + " completion = " +
                   std::to_string(stats.usage.total_tokens) + " tokens";
    std::fprintf(stderr, "Stream details: %s\n", details.c_str());
}

/* One line, as promised: a server's message may carry line breaks of its own. */
std::string one_line(std::string text) {
    for (char& c : text)
        if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    return text;
}

bool mentions_number(const std::string& text, int number) {
    const std::string digits = std::to_string(number);
    for (std::size_t at = text.find(digits); at != std::string::npos; at = text.find(digits, at + 1)) {
        const bool digit_before = at > 0 && std::isdigit(static_cast<unsigned char>(text[at - 1]));
        const std::size_t after = at + digits.size();
        const bool digit_after = after < text.size() && std::isdigit(static_cast<unsigned char>(text[after]));
        if (!digit_before && !digit_after) return true;
    }
    return false;
}

std::string describe(const llm_stream::Error& error) {
    std::string message = one_line(error.message);
    if (message.empty()) message = llm_stream::to_string(error.code);
    if (error.http_status != 0 && !mentions_number(message, error.http_status))
        message += " (HTTP " + std::to_string(error.http_status) + ")";
    return message;
}

void prepare_console() {
#ifdef _WIN32
    // Binary stdout: the reply's bytes must not be rewritten ("\n" to "\r\n" inside JSON lines), and a
    // UTF-8 console shows the reply as the UTF-8 it is.
    _setmode(_fileno(stdout), _O_BINARY);
    SetConsoleOutputCP(CP_UTF8);
#endif
}

}  // namespace

int main(int argc, char** argv) {
    prepare_console();

    CommandLine cl;
    std::string problem;
    if (!parse_command_line(utf8_arguments(argc, argv), cl, problem)) {
        print_usage_error(problem);
        return kExitUsage;
    }
    if (cl.show_help) {
        std::fputs(kSynopsis, stdout);
        std::fputs(kHelp, stdout);
        return kExitOk;
    }
    if (cl.show_version) {
        std::printf("%s\n", llm_stream::version_string());
        return kExitOk;
    }

    std::string replayed;
    if (cl.replay && !read_replay_file(*cl.replay, replayed)) return kExitUsage;
    std::string prompt = cl.prompt.value_or("");
    if (prompt == "-") {
        prompt.clear();
        if (!read_all(stdin, prompt)) {
            std::fprintf(stderr, "llm-chat: cannot read the prompt from standard input: %s\n",
                         std::strerror(errno));
            return kExitUsage;
        }
        prompt = strip_trailing_newlines(std::move(prompt));
    }

    llm_stream::Config config;
    if (const llm_stream::Error error = llm_stream::Config::from_env(config)) {
        std::fprintf(stderr, "llm-chat: error: %s\n", describe(error).c_str());
        return kExitFailure;
    }
    if (cl.model) config.model = *cl.model;
    if (cl.timeout) config.connect_timeout = config.read_timeout = *cl.timeout;
    if (cl.deadline) config.deadline = *cl.deadline;
    if (cl.retries) config.retry.max_retries = *cl.retries;
    if (cl.cacert) config.tls.ca_file = *cl.cacert;
    if (cl.insecure) {
        config.tls.verify = false;
        std::fputs("llm-chat: warning: TLS certificate verification is OFF (--insecure): anyone on the "
                   "network path can read and alter this conversation, API key included\n",
                   stderr);
    }
    if (cl.verbose) config.log_level = llm_stream::LogLevel::info;
    OutputState out;
    config.log = log_to_stderr(out);
    if (config.stub_mode() && !cl.replay) {
        std::fputs("llm-chat: stub mode (LLM_BASE_URL is not set): printing a simulated reply\n", stderr);
        // Paced like a real server, so the demo shows streaming rather than one burst of text.
        if (!setting_present("LLM_STUB_DELAY_MS")) config.stub_chunk_delay = std::chrono::milliseconds(30);
    }

    InterruptWatch::install();
    llm_stream::Client client(config);
    llm_stream::Stream stream =
        cl.replay ? client.replay(std::move(replayed)) : client.stream_chat(prompt, cl.options);
    InterruptWatch::watch(&stream);

    static char stdout_buffer[1 << 16];  // flushes come from print_stream, not from a full small buffer
    std::setvbuf(stdout, stdout_buffer, _IOFBF, sizeof stdout_buffer);
    print_stream(stream, out, cl.events);
    InterruptWatch::watch(nullptr);

    const llm_stream::Error& error = stream.error();
    const bool failed = out.write_failed || bool(error) || InterruptWatch::interrupted();
    // Text mode ends the reply with a newline; so does a reply cut short, so that the shell prompt
    // and the error message start on lines of their own. Event lines carry their own newlines.
    const bool newline_owed = !out.line_ended_by_log && (!failed || out.printed) && !out.write_failed;
    if (!cl.events && newline_owed) write_out("\n", out) && flush_out(out);
    if (cl.stats) print_stats(stream.stats(), out.preview);

    if (InterruptWatch::interrupted()) {
        std::fputs("llm-chat: interrupted\n", stderr);
        return kExitInterrupted;
    }
    if (out.write_failed) {
        std::fprintf(stderr, "llm-chat: error: cannot write to standard output: %s\n",
                     std::strerror(out.write_errno));
        return kExitFailure;
    }
    if (error) {
        std::fprintf(stderr, "llm-chat: error: %s\n", describe(error).c_str());
        // Bad chat options can only have come from this command line, so they are bad usage.
        if (error.code == llm_stream::ErrorCode::invalid_argument && !out.printed) {
            std::fputs(kSynopsis, stderr);
            return kExitUsage;
        }
        return kExitFailure;
    }
    return kExitOk;
}
