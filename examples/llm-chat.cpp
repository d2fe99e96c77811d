/* llm-chat — stream one chat completion to the terminal.

   The demo of llm_stream and a real tool: it reads LLM_BASE_URL / LLM_API_KEY / LLM_MODEL (environment,
   then .env), sends PROMPT and prints the reply as it arrives. Without LLM_BASE_URL it runs in stub mode
   and prints a simulated reply, so it works out of the box. Run `llm-chat --help` for the options.

   Exit status: 0 success, 1 the request failed, 2 bad usage, 130 interrupted by Ctrl-C. */

#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"
#include "cli_support.hpp"
#if defined(LLM_CHAT_OPENSSL)  // llm-chat-openssl: https:// through llm_stream_openssl.hpp, the TLS hook
#include "llm_stream_openssl.hpp"
#endif

#include <algorithm>
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

using cli::append_usage_members;
using cli::describe;
using cli::parse_int;
using cli::read_all;

constexpr const char* kSynopsis =
    "usage: llm-chat [--system TEXT] [--model NAME] [--temperature X] [--max-tokens N] [--extra JSON]\n"
    "                [--api NAME] [--header 'NAME: VALUE']... [--messages FILE] [--tools FILE] [--tool-choice CHOICE]\n"
    "                [--image PATH_OR_URL]... [--json] [--schema FILE] [--replay FILE]\n"
    "                [--timeout SECONDS] [--deadline SECONDS] [--retries N] [--cacert FILE] [--insecure]\n"
    "                [--events] [--stats] [--verbose] [--version] [--help] [PROMPT]\n";

constexpr const char* kHelp =
    "\n"
    "Streams a chat completion from an OpenAI-compatible server and prints the reply as it arrives.\n"
    "PROMPT '-' reads the prompt from standard input. Options also accept the --option=VALUE form;\n"
    "'--' ends the options (for a PROMPT that starts with '-').\n"
    "\n"
    "options:\n"
    "  --system TEXT        system message (default: \"You are a helpful sales assistant.\")\n"
    "  --model NAME         model name (default: $LLM_MODEL, else gpt-4o-mini)\n"
    "  --api NAME           the wire format: openai (default), responses, anthropic, gemini or\n"
    "                       ollama (default: $LLM_API)\n"
    "  --temperature X      sampling temperature, 0 to 2\n"
    "  --max-tokens N       upper bound on the tokens generated, N > 0\n"
    "  --extra JSON         a JSON object whose members are merged into the request body,\n"
    "                       e.g. '{\"top_p\":0.9,\"seed\":7}'\n"
    "  --header 'NAME: VALUE'  an extra request header (repeatable), e.g. 'api-key: ...' for Azure\n"
    "  --messages FILE      the conversation: an OpenAI-format JSON array of chat messages (roles system,\n"
    "                       developer, user, assistant, tool; text or parts content; tool_calls;\n"
    "                       tool_call_id; name); '-' reads standard input. PROMPT is then optional and,\n"
    "                       when given, appended as one more user message; --system is added only when\n"
    "                       the file has no system message\n"
    "  --tools FILE         the tools the model may call: an OpenAI-format JSON array\n"
    "                       ([{\"type\":\"function\",\"function\":{\"name\":...,\"parameters\":{...}}}])\n"
    "  --tool-choice CHOICE auto, none, required, or the NAME of one of the tools\n"
    "  --image PATH_OR_URL  attach an image to PROMPT (repeatable): an http(s):// or data: URL as given,\n"
    "                       or a .png, .jpg, .jpeg, .gif or .webp file, sent as a data: URL\n"
    "  --json               ask for a JSON object as the reply (say \"JSON\" in the prompt too)\n"
    "  --schema FILE        ask for a reply that follows the JSON Schema in FILE (strict, named\n"
    "                       after the file's base name)\n"
    "  --timeout SECONDS    connect and idle-read timeout of each attempt (default: 30)\n"
    "  --deadline SECONDS   limit on the whole request, retries included (default and 0: none)\n"
    "  --retries N          retries after a failed attempt (default: 3)\n"
    "  --cacert FILE        trust the CA certificates in this PEM file\n"
    "                       (default: $SSL_CERT_FILE, $SSL_CERT_DIR, else the system bundle)\n"
    "  --insecure           do not verify TLS certificates (dangerous)\n"
    "  --replay FILE        no network: decode FILE, a captured raw HTTP response (status line,\n"
    "                       headers, body as sent), as if it had just arrived; '-' reads standard\n"
    "                       input. PROMPT is then optional and not sent anywhere\n"
    "  --events             print one JSON object per line per event instead of the plain text; once\n"
    "                       the stream has ended, a last line {\"type\":\"message\",...} holds the\n"
    "                       assistant message, ready to append to a --messages conversation\n"
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


// Timeouts are kept well inside what std::chrono and the library's clock arithmetic can add safely.
constexpr double kMaxSeconds = 1e6;

/* ------------------------------------------------------------------------------------------------
   Command line
   ------------------------------------------------------------------------------------------------ */

struct CommandLine {
    llm_stream::ChatOptions options;
    bool system_given = false;  // --system: with --messages, used only when the file has no system message
    std::optional<std::string> model;
    std::optional<llm_stream::Api> api;
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
    std::optional<std::string> messages;  // the conversation's file; "-" means standard input
    std::optional<std::string> tools;     // the tools' file
    std::optional<std::string> schema;    // the JSON Schema's file
    bool json = false;
    std::vector<std::string> images;      // paths or URLs
    std::vector<std::pair<std::string, std::string>> headers;
};

enum class OptionId {
    system, model, api, temperature, max_tokens, extra, header, messages, tools, tool_choice, image, json, schema,
    timeout, deadline, retries, cacert, insecure, replay, events, stats, verbose, version, help,
};

struct OptionSpec {
    const char* name;
    OptionId id;
    bool takes_value;
};

constexpr OptionSpec kOptions[] = {
    {"--system", OptionId::system, true},       {"--model", OptionId::model, true},
    {"--api", OptionId::api, true},
    {"--temperature", OptionId::temperature, true}, {"--max-tokens", OptionId::max_tokens, true},
    {"--extra", OptionId::extra, true},         {"--header", OptionId::header, true},
    {"--messages", OptionId::messages, true},   {"--tools", OptionId::tools, true},
    {"--tool-choice", OptionId::tool_choice, true}, {"--image", OptionId::image, true},
    {"--json", OptionId::json, false},          {"--schema", OptionId::schema, true},
    {"--timeout", OptionId::timeout, true},
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

/* What the library's request builder says of these messages, options and headers. A flag's mistake is
   bad usage, found before anything else happens: the library checks a request when its stream starts,
   and an offline (stub-mode) client would start one that is never read. */
llm_stream::Error library_check(const std::vector<llm_stream::Message>& messages,
                                const llm_stream::ChatOptions& options,
                                const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    llm_stream::Config config;
    config.headers = headers;
    llm_stream::Request request;
    return llm_stream::build_request(config, messages, options, request);
}

/* The library's own check of the extra JSON, in the command line's words ("--extra must be an object"). */
bool extra_is_usable(const llm_stream::ChatOptions& options, std::string& error) {
    if (options.extra_json.find_first_not_of(" \t\r\n") == std::string::npos) {
        error = "--extra needs a JSON object, e.g. '{\"top_p\":0.9}'";
        return false;
    }
    const llm_stream::Error why = library_check({llm_stream::Message::user("")}, options);
    if (!why) return true;
    static constexpr std::string_view library_words = "extra JSON ";
    error = why.message.compare(0, library_words.size(), library_words) == 0
                ? "--extra " + why.message.substr(library_words.size())
                : "--extra: " + why.message;
    return false;
}

/* 'NAME: VALUE' (blanks around VALUE trimmed), checked by the library as it checks Config::headers. */
bool add_header(const std::string& text, CommandLine& cl, std::string& error) {
    const std::size_t colon = text.find(':');
    if (colon == std::string::npos || colon == 0) {
        error = "--header needs 'NAME: VALUE', not '" + text + "'";
        return false;
    }
    const std::size_t first = text.find_first_not_of(" \t", colon + 1);
    const std::size_t last = text.find_last_not_of(" \t");
    std::pair<std::string, std::string> header(text.substr(0, colon),
                                               first == std::string::npos ? "" : text.substr(first, last + 1 - first));
    if (const llm_stream::Error why = library_check({llm_stream::Message::user("")}, {}, {header})) {
        error = "--header '" + text + "': " + why.message;
        return false;
    }
    cl.headers.push_back(std::move(header));
    return true;
}

bool set_tool_choice(const std::string& value, llm_stream::ToolChoice& out, std::string& error) {
    using Mode = llm_stream::ToolChoice::Mode;
    if (value.empty()) {
        error = "--tool-choice needs auto, none, required or the NAME of a tool";
        return false;
    }
    if (value == "auto") out.mode = Mode::automatic;
    else if (value == "none") out.mode = Mode::none;
    else if (value == "required") out.mode = Mode::required;
    else out = llm_stream::ToolChoice::named(value);  // checked against --tools once that is read
    return true;
}

bool set_path(const std::string& flag, const std::string& value, bool stdin_allowed,
              std::optional<std::string>& path, std::string& error) {
    if (value.empty()) {
        error = flag + (stdin_allowed ? " needs a FILE (or - for standard input)" : " needs a FILE");
        return false;
    }
    path = value;
    return true;
}

bool apply_option(OptionId id, const std::string& flag, const std::string& value, CommandLine& cl,
                  std::string& error) {
    switch (id) {
    case OptionId::system:
        cl.options.system = value;
        cl.system_given = true;
        return true;
    case OptionId::model:
        if (value.empty()) {
            error = "--model needs a non-empty NAME";
            return false;
        }
        cl.model = value;
        return true;
    case OptionId::api: {
        llm_stream::Api api = llm_stream::Api::openai;
        if (llm_stream::Error e = llm_stream::parse_api(value, api)) {
            error = "--api: " + e.message;
            return false;
        }
        cl.api = api;
        return true;
    }
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
    case OptionId::header: return add_header(value, cl, error);
    case OptionId::messages: return set_path(flag, value, true, cl.messages, error);
    case OptionId::tools: return set_path(flag, value, false, cl.tools, error);
    case OptionId::tool_choice: return set_tool_choice(value, cl.options.tool_choice, error);
    case OptionId::schema: return set_path(flag, value, false, cl.schema, error);
    case OptionId::image:
        if (value.empty()) {
            error = "--image needs a PATH or an http(s):// or data: URL";
            return false;
        }
        cl.images.push_back(value);
        return true;
    case OptionId::json: cl.json = true; return true;
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
    case OptionId::cacert: return set_path(flag, value, false, cl.cacert, error);
    case OptionId::replay: return set_path(flag, value, true, cl.replay, error);
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

/* What one flag cannot say alone: a missing PROMPT, standard input read twice, flags that exclude or
   need each other. */
bool flags_fit_together(const CommandLine& cl, std::string& error) {
    if (!cl.prompt && !cl.replay && !cl.messages) error = "missing PROMPT";
    std::vector<std::string> stdin_readers;
    if (cl.replay == "-") stdin_readers.push_back("--replay -");
    if (cl.messages == "-") stdin_readers.push_back("--messages -");
    if (cl.prompt == "-") stdin_readers.push_back("PROMPT -");
    if (stdin_readers.size() > 1) error = stdin_readers[0] + " and " + stdin_readers[1] + " cannot both read standard input";
    if (cl.json && cl.schema) error = "--json and --schema cannot be used together";
    if (cl.options.tool_choice.mode != llm_stream::ToolChoice::Mode::server_default && !cl.tools)
        error = "--tool-choice needs --tools";
    if (!cl.images.empty() && !cl.prompt) error = "--image needs a PROMPT to attach the images to";
    return error.empty();
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
    return flags_fit_together(cl, error);
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

// Like the shell's $(...): `echo hi | llm-chat -` should send "hi", not "hi\n".
std::string strip_trailing_newlines(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    return text;
}

/* The file a flag names ("-": standard input); on failure says why, naming both. */
bool read_flag_file(const char* flag, const std::string& path, std::string& out, std::string& error) {
    std::FILE* file = path == "-" ? stdin : std::fopen(path.c_str(), "rb");
    if (!file) {
        error = std::string(flag) + ": cannot open " + path + ": " + std::strerror(errno);
        return false;
    }
    const bool ok = read_all(file, out);
    const int read_errno = errno;
    if (file != stdin) std::fclose(file);
    if (!ok) error = std::string(flag) + ": cannot read " + path + ": " + std::strerror(read_errno);
    return ok;
}

/* ------------------------------------------------------------------------------------------------
   The conversation and its options, from the files and flags
   ------------------------------------------------------------------------------------------------ */

std::string lowercase(std::string text) {
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

// Where a path's base name starts ('/', and '\\' on Windows too, separate directories).
std::size_t base_name_start(const std::string& path) {
#ifdef _WIN32
    const std::size_t slash = path.find_last_of("/\\");
#else
    const std::size_t slash = path.find_last_of('/');
#endif
    return slash == std::string::npos ? 0 : slash + 1;
}

// The extension of a path's base name, without the dot; empty when it has none.
std::string extension_of(const std::string& path) {
    const std::size_t dot = path.find_last_of('.');
    return dot == std::string::npos || dot < base_name_start(path) ? "" : path.substr(dot + 1);
}

const char* image_mime_type(const std::string& path) {
    const std::string extension = lowercase(extension_of(path));
    if (extension == "png") return "image/png";
    if (extension == "jpg" || extension == "jpeg") return "image/jpeg";
    if (extension == "gif") return "image/gif";
    if (extension == "webp") return "image/webp";
    return nullptr;
}

/* --image: a URL goes as given, a file as its bytes with the MIME type of its extension. */
bool image_part(const std::string& source, llm_stream::ContentPart& part, std::string& error) {
    const std::string start = lowercase(source.substr(0, 8));
    if (start.rfind("http://", 0) == 0 || start.rfind("https://", 0) == 0 || start.rfind("data:", 0) == 0) {
        part = llm_stream::ContentPart::image_url(source);
        return true;
    }
    const char* mime_type = image_mime_type(source);
    if (!mime_type) {
        error = "--image " + source + ": not an http(s):// or data: URL, nor a .png, .jpg, .jpeg, .gif or .webp file";
        return false;
    }
    std::string bytes;
    if (!read_flag_file("--image", source, bytes, error)) return false;
    part = llm_stream::ContentPart::image_bytes(mime_type, std::move(bytes));
    return true;
}

/* --schema FILE's name for the server: the base name without its extension, in the characters a
   schema name may have (letters, digits, '_' and '-'; others become '_'), at most 64 of them. */
std::string schema_name(const std::string& path) {
    std::string name = path.substr(base_name_start(path));
    const std::size_t dot = name.find_last_of('.');
    if (dot != std::string::npos && dot > 0) name.resize(dot);
    for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') c = '_';
    name.resize(std::min<std::size_t>(name.size(), 64));
    return name;
}

/* The library's verdict on one flag's contribution, in that flag's name. */
bool accepted(const std::string& flag, const llm_stream::Error& why, std::string& error) {
    if (!why) return true;
    error = flag + ": " + why.message;
    return false;
}

/* --messages FILE, with --system when the file has no system message. */
bool read_conversation(const CommandLine& cl, std::vector<llm_stream::Message>& messages, std::string& error) {
    const std::string flag = "--messages " + *cl.messages;
    std::string json;
    if (!read_flag_file("--messages", *cl.messages, json, error)) return false;
    if (!accepted(flag, llm_stream::parse_messages(json, messages), error)) return false;
    const bool has_system = std::any_of(messages.begin(), messages.end(), [](const llm_stream::Message& m) {
        return m.role == llm_stream::Role::system;
    });
    if (cl.system_given && !has_system) messages.insert(messages.begin(), llm_stream::Message::system(cl.options.system));
    return true;
}

/* PROMPT as the last user message, with the --image attachments. */
bool add_prompt(const CommandLine& cl, std::string prompt, std::vector<llm_stream::Message>& messages,
                std::string& error) {
    std::vector<llm_stream::ContentPart> images(cl.images.size());
    for (std::size_t i = 0; i < images.size(); ++i)
        if (!image_part(cl.images[i], images[i], error)) return false;
    messages.push_back(images.empty() ? llm_stream::Message::user(std::move(prompt))
                                      : llm_stream::Message::user(std::move(prompt), std::move(images)));
    return true;
}

/* --tools FILE, and a --tool-choice NAME that must be one of them. */
bool read_tools(const CommandLine& cl, llm_stream::ChatOptions& options, std::string& error) {
    const std::string flag = "--tools " + *cl.tools;
    std::string json;
    if (!read_flag_file("--tools", *cl.tools, json, error)) return false;
    if (!accepted(flag, llm_stream::parse_tools(json, options.tools), error)) return false;
    llm_stream::ChatOptions tools_only;
    tools_only.tools = options.tools;
    if (!accepted(flag, library_check({llm_stream::Message::user("")}, tools_only), error)) return false;
    const llm_stream::ToolChoice& choice = options.tool_choice;
    const bool offered = std::any_of(options.tools.begin(), options.tools.end(),
                                     [&](const llm_stream::Tool& tool) { return tool.name == choice.name; });
    if (choice.mode == llm_stream::ToolChoice::Mode::function && !offered) {
        error = "--tool-choice " + choice.name + ": " + *cl.tools + " has no tool of that name";
        return false;
    }
    return true;
}

/* --json, or --schema FILE (strict, named after the file). */
bool set_response_format(const CommandLine& cl, llm_stream::ResponseFormat& format, std::string& error) {
    using Type = llm_stream::ResponseFormat::Type;
    if (cl.json) format.type = Type::json_object;
    if (!cl.schema) return true;
    format.type = Type::json_schema;
    format.name = schema_name(*cl.schema);
    format.strict = true;
    if (!read_flag_file("--schema", *cl.schema, format.schema, error)) return false;
    llm_stream::ChatOptions format_only;
    format_only.response_format = format;
    return accepted("--schema " + *cl.schema, library_check({llm_stream::Message::user("")}, format_only), error);
}

/* The messages and options to send, from PROMPT and the flags; false, saying why, on a bad file or flag. */
bool build_conversation(const CommandLine& cl, const std::optional<std::string>& prompt,
                        std::vector<llm_stream::Message>& messages, llm_stream::ChatOptions& options,
                        std::string& error) {
    options = cl.options;
    if (cl.messages && !read_conversation(cl, messages, error)) return false;
    if (!cl.messages && !options.system.empty()) messages.push_back(llm_stream::Message::system(options.system));
    if (prompt && !add_prompt(cl, *prompt, messages, error)) return false;
    if (cl.messages && !accepted("--messages " + *cl.messages, library_check(messages, {}), error)) return false;
    if (cl.tools && !read_tools(cl, options, error)) return false;
    return set_response_format(cl, options.response_format, error);
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
            if (sigwait(&set, &received) == 0) std::_Exit(cli::exit_interrupted);
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
    const std::size_t type_end = line.size();
    switch (event.type) {
    case EventType::content:
        line += "\"content\"";
        append_json_member(line, "text", event.text);
        break;
    case EventType::reasoning:
        // A signature alone (SPEC 3 has no line for it): it goes back in the message line.
        if (event.text.empty()) return {};
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
        // Other APIs' own value ("end_turn", "MAX_TOKENS") when it is not already the reason.
        if (event.raw_reason != event.text) append_json_member(line, "raw", event.raw_reason);
        break;
    case EventType::usage:
        line += "\"usage\",";
        append_usage_members(line, event.usage);
        break;
    }
    // Several choices (n > 1): each line but choice 0's says which it belongs to.
    if (event.choice != 0) line.insert(line.find(',', type_end), ",\"choice\":" + std::to_string(event.choice));
    line += "}\n";
    return line;
}

/* The last --events line: the assembled assistant message in OpenAI format, its finish reason and usage
   (null when the server sent none). The message has the reasoning's signatures when there were any
   (reasoning_signature, redacted_reasoning, a tool call's signature), so that appended to a
   --messages file it goes back to the model as it came. */
std::string message_to_json(const llm_stream::Reply& reply) {
    std::string line = "{\"type\":\"message\",\"message\":";
    llm_stream::write_message_json(line, reply.message());
    line += ",\"finish_reason\":";
    const std::string reason = reply.choices.empty() ? "" : reply.choices.front().finish_reason;
    if (reason.empty()) line += "null";
    else llm_stream::append_json_string(line, reason);
    line += ",\"usage\":";
    if (reply.has_usage) {
        line += "{";
        append_usage_members(line, reply.usage);
        line += "}";
    } else {
        line += "null";
    }
    line += "}\n";
    return line;
}

// Pieces are written as they arrive and stdout is flushed whenever the stream has nothing more for
// now: the reader sees each piece as soon as it is here, and a fast server does not cost a system
// call per chunk. In text mode only choice 0's content is printed (next_chunk()'s rule).
void print_stream(llm_stream::Stream& stream, OutputState& out, bool events) {
    for (;;) {
        const llm_stream::PollStatus status = stream.poll();
        if (status == llm_stream::PollStatus::event) {
            const llm_stream::Event& event = stream.current_event();
            const bool text = event.type == llm_stream::EventType::content && event.choice == 0;
            if (text) out.preview.add(event.text);
            const bool ok = events ? write_out(event_to_json(event), out) : !text || write_out(event.text, out);
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
    if (stats.first_byte_ms >= 0) details += ", first byte at " + format_ms(stats.first_byte_ms) + " ms";
    details += ", " + std::to_string(stats.received_bytes) + " bytes received, " +
               std::to_string(stats.events) + " events, " + std::to_string(stats.skipped_events) + " skipped";
    if (!stats.finish_reason.empty()) details += ", finish reason " + stats.finish_reason;
    if (stats.has_usage)
        details += ", usage: " + std::to_string(stats.usage.prompt_tokens) + " prompt + " +
                   std::to_string(stats.usage.completion_tokens) + " completion = " +
                   std::to_string(stats.usage.total_tokens) + " tokens";
    std::fprintf(stderr, "Stream details: %s\n", details.c_str());
}

void prepare_console() {
#ifdef _WIN32
    // Binary stdout: the reply's bytes must not be rewritten ("\n" to "\r\n" inside JSON lines), and a
    // UTF-8 console shows the reply as the UTF-8 it is.
    _setmode(_fileno(stdout), _O_BINARY);
    SetConsoleOutputCP(CP_UTF8);
#endif
}

/* Everything the request needs from PROMPT and the files the flags name; false, having said why
   (bad usage), when one of them is bad. */
struct Input {
    std::string replayed;  // --replay's captured response
    std::vector<llm_stream::Message> messages;
    llm_stream::ChatOptions options;
};

bool read_input(const CommandLine& cl, Input& in) {
    std::optional<std::string> prompt = cl.prompt;
    if (prompt == "-") {
        prompt->clear();
        if (!read_all(stdin, *prompt)) {
            std::fprintf(stderr, "llm-chat: cannot read the prompt from standard input: %s\n",
                         std::strerror(errno));
            return false;
        }
        *prompt = strip_trailing_newlines(std::move(*prompt));
    }
    std::string problem;
    const bool usable = cl.replay ? read_flag_file("--replay", *cl.replay, in.replayed, problem)
                                  : build_conversation(cl, prompt, in.messages, in.options, problem);
    if (!usable) print_usage_error(problem);
    return usable;
}

/* The environment's configuration (an error when it is broken) with the command line's settings. */
llm_stream::Error make_config(const CommandLine& cl, OutputState& out, llm_stream::Config& config) {
    if (llm_stream::Error error = llm_stream::Config::from_env(config)) return error;
    if (cl.model) config.model = *cl.model;
    if (cl.api) config.api = *cl.api;
    if (cl.timeout) config.connect_timeout = config.read_timeout = *cl.timeout;
    if (cl.deadline) config.deadline = *cl.deadline;
    if (cl.retries) config.retry.max_retries = *cl.retries;
    if (cl.cacert) config.tls.ca_file = *cl.cacert;
    config.headers.insert(config.headers.end(), cl.headers.begin(), cl.headers.end());
    if (cl.insecure) {
        config.tls.verify = false;
        std::fputs("llm-chat: warning: TLS certificate verification is OFF (--insecure): anyone on the "
                   "network path can read and alter this conversation, API key included\n",
                   stderr);
    }
#if defined(LLM_CHAT_OPENSSL)
    if (llm_stream::Error error = llm_stream::openssl::make_backend(config.tls, config.tls.backend)) return error;
#endif
    if (cl.verbose) config.log_level = llm_stream::LogLevel::info;
    config.log = log_to_stderr(out);
    if (config.stub_mode() && !cl.replay) {
        std::fputs("llm-chat: stub mode (LLM_BASE_URL is not set): printing a simulated reply\n", stderr);
        cli::pace_stub(config);
    }
    return {};
}

/* The command line, parsed; --help and --version answered. The exit status when that is all there is to
   do (those, or bad usage), nothing when a reply is wanted. */
std::optional<int> read_command_line(int argc, char** argv, CommandLine& cl) {
    std::string problem;
    if (!parse_command_line(utf8_arguments(argc, argv), cl, problem)) {
        print_usage_error(problem);
        return cli::exit_usage;
    }
    if (cl.show_help) {
        std::fputs(kSynopsis, stdout);
        std::fputs(kHelp, stdout);
        return cli::exit_ok;
    }
    if (cl.show_version) {
#if defined(LLM_CHAT_OPENSSL)
        std::printf("llm_stream " LLM_STREAM_VERSION_STRING " (tls: openssl, %s)\n", OpenSSL_version(OPENSSL_VERSION));
#else
        std::printf("%s\n", llm_stream::version_string());
#endif
        return cli::exit_ok;
    }
    return std::nullopt;
}

/* The stream printed as it comes (with --events, then the assembled reply), the closing newline and the
   --stats line; the error that ended it, if any. */
llm_stream::Error print_reply(const CommandLine& cl, llm_stream::Stream& stream, OutputState& out) {
    InterruptWatch::watch(&stream);
    static char stdout_buffer[1 << 16];  // flushes come from print_stream, not from a full small buffer
    std::setvbuf(stdout, stdout_buffer, _IOFBF, sizeof stdout_buffer);
    print_stream(stream, out, cl.events);
    InterruptWatch::watch(nullptr);

    const llm_stream::Error& error = stream.error();
    const bool failed = out.write_failed || bool(error) || InterruptWatch::interrupted();
    if (cl.events && !failed) write_out(message_to_json(stream.reply()), out) && flush_out(out);
    // Text mode ends the reply with a newline; so does a reply cut short, so that the shell prompt
    // and the error message start on lines of their own. Event lines carry their own newlines.
    const bool newline_owed = !out.line_ended_by_log && (!failed || out.printed) && !out.write_failed;
    if (!cl.events && newline_owed) write_out("\n", out) && flush_out(out);
    if (cl.stats) print_stats(stream.stats(), out.preview);
    return error;
}

/* How the command ends after a reply (or the attempt at one): the last word on stderr, and the exit status. */
int report_end(const OutputState& out, const llm_stream::Error& error) {
    if (InterruptWatch::interrupted()) {
        std::fputs("llm-chat: interrupted\n", stderr);
        return cli::exit_interrupted;
    }
    if (out.write_failed) {
        std::fprintf(stderr, "llm-chat: error: cannot write to standard output: %s\n",
                     std::strerror(out.write_errno));
        return cli::exit_failure;
    }
    if (error) {
        std::fprintf(stderr, "llm-chat: error: %s\n", describe(error).c_str());
        // Bad chat options can only have come from this command line, so they are bad usage.
        if (error.code == llm_stream::ErrorCode::invalid_argument && !out.printed) {
            std::fputs(kSynopsis, stderr);
            return cli::exit_usage;
        }
        return cli::exit_failure;
    }
    return cli::exit_ok;
}

}  // namespace

int main(int argc, char** argv) {
    prepare_console();
    CommandLine cl;
    if (const std::optional<int> exit_status = read_command_line(argc, argv, cl)) return *exit_status;
    Input input;
    if (!read_input(cl, input)) return cli::exit_usage;
    OutputState out;
    llm_stream::Config config;
    if (const llm_stream::Error error = make_config(cl, out, config)) {
        std::fprintf(stderr, "llm-chat: error: %s\n", describe(error).c_str());
        return cli::exit_failure;
    }

    InterruptWatch::install();
    llm_stream::Client client(config);
    input.options.assemble_reply = cl.events;  // for the last --events line
    llm_stream::Stream stream = cl.replay ? client.replay(std::move(input.replayed), input.options)
                                          : client.stream_chat(input.messages, input.options);
    const llm_stream::Error error = print_reply(cl, stream, out);
    return report_end(out, error);
}
