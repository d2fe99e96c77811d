/* llm_stream.hpp — a single-header C++17 client that streams chat completions from any
   OpenAI-compatible server (OpenAI, DashScope/Bailian, DeepSeek, Ollama, vLLM, llama.cpp, ...), and
   from OpenAI's Responses API, Anthropic, Gemini and Ollama's native API (Config::api).

   USAGE
     In exactly one .cpp file of your program:

         #define LLM_STREAM_IMPLEMENTATION
         #include "llm_stream.hpp"

     Everywhere else just `#include "llm_stream.hpp"`: it only declares the API and stays cheap.

         llm_stream::Client client = llm_stream::Client(llm_stream::Config::from_env());
         llm_stream::Stream stream = client.stream_chat("Tell me about running shoes");
         for (std::string_view chunk : stream)          // or: while (auto c = stream.next_chunk())
             std::fwrite(chunk.data(), 1, chunk.size(), stdout);
         if (stream.error()) std::fprintf(stderr, "%s\n", stream.error().message.c_str());

     Configuration comes from code or from the environment (LLM_API, LLM_API_KEY, LLM_BASE_URL, LLM_MODEL, then a
     `.env` file in the working directory; the environment wins). Without LLM_BASE_URL the client runs in
     stub mode: a simulated reply that goes through the same HTTP/SSE/JSON pipeline as a real one.

     A Stream hands out text as std::string_view into buffers it owns: valid until the next call on that
     stream. Typed events (reasoning, tool-call fragments, finish reason, usage) come from next_event().
     poll() never blocks, for game loops and event loops (built with LLM_STREAM_NO_DNS, it blocks while
     the system's resolver looks up a host name). No threads are started by the library, no
     exception is ever thrown by it, and RTTI is not used.

     Over your own HTTP stack (libcurl, WinHTTP, an engine's module): build_request() says what to
     send, and a Decoder turns the response's bytes into the same events (see examples/llm-curl.cpp).

   CONFIGURATION MACROS (define before the implementation include)
     LLM_STREAM_REALLOC(ptr, size)    allocation of stream buffers (default: std::realloc; define both
     LLM_STREAM_FREE(ptr)             or neither; default: std::free)
     LLM_STREAM_ASSERT(expr)          internal invariants (default: assert)
     LLM_STREAM_MBEDTLS               build the mbedTLS backend for https:// URLs
     LLM_STREAM_NO_SCHANNEL           Windows: no built-in TLS (else SChannel, the system's own TLS, is
                                      the backend when LLM_STREAM_MBEDTLS is not defined; it then
                                      defines LLM_STREAM_SCHANNEL)
     LLM_STREAM_NO_RESPONSES          leave out an API (its request, reader and stub): Api::responses,
     LLM_STREAM_NO_ANTHROPIC          Api::anthropic, ... chosen at run time is then an invalid_config
     LLM_STREAM_NO_GEMINI             error naming the macro ("api 'gemini' is not compiled in:
     LLM_STREAM_NO_OLLAMA             LLM_STREAM_NO_GEMINI") from build_request(), parse_api(), a
                                      Decoder and every stream; never another API's decoding
     LLM_STREAM_NO_STUB               leave out stub mode: a client without a base URL fails each stream
                                      with such an error instead of simulating a reply
     LLM_STREAM_MINIMAL               all five: OpenAI's chat completions (every compatible server)
                                      over the network only (README, "Small targets")
     LLM_STREAM_NO_DNS                leave out the built-in resolver: a host name is looked up by the
                                      system's getaddrinfo, which blocks poll() until it answers
                                      (version_string() says so); Config::dns set is then an
                                      invalid_config error naming the macro. Not part of MINIMAL

   LICENSE: MIT, see the end of this file.
*/
#ifndef LLM_STREAM_HPP
#define LLM_STREAM_HPP

#define LLM_STREAM_VERSION_MAJOR 0
#define LLM_STREAM_VERSION_MINOR 2
#define LLM_STREAM_VERSION_PATCH 0
#define LLM_STREAM_VERSION_STRING "0.2.0"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// The built-in TLS: mbedTLS when asked for; else on Windows SChannel, the system's own, unless
// LLM_STREAM_NO_SCHANNEL says none.
#if defined(LLM_STREAM_MBEDTLS)
#undef LLM_STREAM_SCHANNEL
#elif defined(_WIN32) && !defined(LLM_STREAM_NO_SCHANNEL) && !defined(LLM_STREAM_SCHANNEL)
#define LLM_STREAM_SCHANNEL
#elif defined(LLM_STREAM_SCHANNEL) && !defined(_WIN32)
#error "LLM_STREAM_SCHANNEL is Windows' own TLS: define LLM_STREAM_MBEDTLS for https:// here"
#endif

namespace llm_stream {
inline namespace v0_2 {  // two libraries that vendor different versions never merge silently

namespace detail {
struct ClientState;
class StreamImpl;
struct StreamSetState;
}  // namespace detail

#if defined(_WIN32)
using socket_handle = std::uintptr_t;  // a SOCKET
#else
using socket_handle = int;  // a file descriptor
#endif

/* ------------------------------------------------------------------------------------------------
   Errors
   ------------------------------------------------------------------------------------------------ */

enum class ErrorCode {
    none = 0,
    invalid_config,    // bad URL, bad option, unusable .env value
    invalid_argument,  // bad chat options (temperature, extra JSON, message roles, ...)
    dns,               // host name could not be resolved
    connect,           // TCP connection failed or was reset before a response
    tls,               // handshake or certificate verification failed, or https without TLS support
    timeout,           // connect, idle-read or total deadline expired
    http_status,       // the server answered with a non-2xx status
    protocol,          // malformed HTTP, SSE or a stream cut short
    limit_exceeded,    // a line, header block or event is larger than the configured limit
    server_error,      // an {"error": ...} event arrived inside the stream
    cancelled,         // Stream::cancel() was called
    io,                // any other transport failure
    out_of_memory,     // an allocation failed (LLM_STREAM_REALLOC returned null)
    proxy,             // the HTTP proxy refused the tunnel (407, CONNECT refused) or answered it wrongly; not retried
};

/* A short stable name for a code, such as "timeout". */
const char* to_string(ErrorCode code) noexcept;

struct Error {
    ErrorCode code = ErrorCode::none;
    int http_status = 0;  // the response status when there was one, else 0
    std::string message;  // for humans; includes the server's own error.message; never the API key

    explicit operator bool() const noexcept { return code != ErrorCode::none; }
};

/* ------------------------------------------------------------------------------------------------
   Logging
   ------------------------------------------------------------------------------------------------ */

enum class LogLevel { debug = 0, info = 1, warning = 2, error = 3, off = 4 };

/* Receives every message at or above Config::log_level. Called on the thread that drives the stream. */
using LogCallback = std::function<void(LogLevel level, std::string_view message)>;

/* ------------------------------------------------------------------------------------------------
   Configuration
   ------------------------------------------------------------------------------------------------ */

struct Limits {
    std::size_t receive_buffer_bytes = 64 * 1024;  // one read from the transport
    std::size_t max_header_bytes = 64 * 1024;      // status line + headers (and trailers)
    std::size_t max_line_bytes = 2 * 1024 * 1024;  // one SSE line
    std::size_t max_event_bytes = 2 * 1024 * 1024; // one SSE event's data
    std::size_t max_error_body_bytes = 64 * 1024;  // body of a non-2xx response kept for the message
};

struct RetryPolicy {
    int max_retries = 3;                                     // attempts = 1 + max_retries
    std::chrono::milliseconds initial_backoff{500};          // 0.5 s, 1 s, 2 s, ...
    std::chrono::milliseconds max_backoff{8000};
    double jitter = 0.25;                                    // +/- this fraction of each wait
    std::chrono::milliseconds max_retry_after{60000};        // cap on a server's Retry-After
};

/* ------------------------------------------------------------------------------------------------
   TLS hook: any TLS stack can carry https://. The built-in backend is mbedTLS (LLM_STREAM_MBEDTLS), or
   on Windows SChannel (by default).
   ------------------------------------------------------------------------------------------------ */

enum class TlsStatus { ok, want_read, want_write, closed, failed };

struct TlsResult {
    TlsStatus status = TlsStatus::ok;
    std::size_t bytes = 0;  // for read and write
};

/* One client TLS connection over a connected non-blocking socket. Every call returns at once. */
class TlsSession {
public:
    virtual ~TlsSession() = default;
    /* ok once the handshake, the certificate chain and the host name have all been checked. */
    virtual TlsResult handshake() = 0;
    virtual TlsResult read(char* buffer, std::size_t capacity) = 0;  // closed: the peer ended TLS
    virtual TlsResult write(const char* data, std::size_t size) = 0;
    /* After TlsStatus::failed: why (ErrorCode::tls; ErrorCode::out_of_memory when an allocation failed). */
    virtual const Error& error() const = 0;
};

class TlsBackend {
public:
    virtual ~TlsBackend() = default;
    virtual std::string name() const = 0;  // e.g. "mbedtls 2.28.3"
    /* A session over `socket` for the URL's `host`: a host name goes into SNI and must be named by the
       certificate; an IP address must be one of its IP address entries and is never sent as SNI
       (RFC 6066). An error (ErrorCode::tls) when it cannot start. */
    [[nodiscard]] virtual Error start(socket_handle socket, const std::string& host,
                                      std::unique_ptr<TlsSession>& session) = 0;
};

struct TlsOptions {
    bool verify = true;       // certificate chain and host name; false only by explicit choice
    std::string ca_file;      // PEM bundle; empty: SSL_CERT_FILE, then the system bundle
    std::string ca_dir;       // directory of PEM certificates; empty: SSL_CERT_DIR
    std::string ca_pem;       // in-memory PEM, used in addition to the above
    std::shared_ptr<TlsBackend> backend;  // empty: the built-in backend configured from the above
};

/* The built-in backend configured by `options` (trusted CAs loaded once, shared by connections); an
   error (ErrorCode::tls) when the CAs cannot be loaded or the library has no TLS compiled in. */
[[nodiscard]] Error make_default_tls_backend(const TlsOptions& options, std::shared_ptr<TlsBackend>& backend);

/* Where host names are looked up when Config::resolver is not set, without ever blocking poll(). POSIX:
   the hosts file first, then the name servers over UDP (TCP when an answer is truncated), A and AAAA
   at once; only the name as given is asked: resolv.conf's `search` and `ndots` are not applied (a base
   URL names its host in full). Windows: the system's resolver, asynchronously (GetAddrInfoExW, Windows
   8 and later), within timeout x attempts; it has its own servers and hosts file. Built with
   LLM_STREAM_NO_DNS: the system's getaddrinfo, blocking, and these must stay as they are. */
struct DnsOptions {
    /* "address" or "address:port" ("10.0.0.2", "127.0.0.1:5353", "[::1]:5353"), tried in turn.
       Empty: the `nameserver` lines of /etc/resolv.conf (the first 3), 127.0.0.1 when it has none. */
    std::vector<std::string> servers;
    std::string hosts_file = "/etc/hosts";  // names looked up there first; empty: none
    std::chrono::milliseconds timeout{0};   // per query; 0: resolv.conf's `options timeout:N`, else 5 s
    int attempts = 0;                       // rounds over the servers; 0: resolv.conf's `attempts:N`, else 2
};

/* The wire format spoken: each has its own path, auth header, request body and stream shape. */
enum class Api {
    openai,     // chat completions: OpenAI and every compatible server (DashScope, DeepSeek, vLLM, ...)
    responses,  // OpenAI's Responses API
    anthropic,  // Anthropic's Messages API
    gemini,     // Google Gemini's streamGenerateContent
    ollama,     // Ollama's native /api/chat (NDJSON)
};

/* "openai", "responses", "anthropic", "gemini" or "ollama". */
const char* api_name(Api api) noexcept;
/* The Api named `name` (as api_name() spells it); ErrorCode::invalid_config listing the names otherwise. */
[[nodiscard]] Error parse_api(std::string_view name, Api& out);

struct Config {
    Api api = Api::openai;  // LLM_API
    std::string api_key;    // sent in the API's auth header (Authorization: Bearer, x-api-key, ...) when not empty
    std::string base_url;   // empty: stub mode. A base (".../v1") or a full URL ending in the API's path
    std::string model = "gpt-4o-mini";

    std::chrono::milliseconds connect_timeout{30000};  // per attempt
    std::chrono::milliseconds read_timeout{30000};     // longest silence while waiting for bytes
    std::chrono::milliseconds deadline{0};             // whole request, retries included; 0: none
    RetryPolicy retry;
    Limits limits;
    TlsOptions tls;

    /* Extra request headers, e.g. {"api-key", key} for Azure OpenAI or {"HTTP-Referer", url} for
       OpenRouter. Names must be tokens and values must not contain CR or LF. */
    std::vector<std::pair<std::string, std::string>> headers;
    /* Numeric addresses ("10.0.0.7", "::1") for a host name, replacing `dns` altogether. Empty: the
       built-in resolver configured by `dns` (on Windows the system's, asked asynchronously), which never
       blocks poll(). */
    std::function<std::vector<std::string>(const std::string& host)> resolver;
    DnsOptions dns;
    /* The HTTP proxy requests go through: "http://[user:password@]host[:port]" (port 1080 when left
       out, as curl; the credentials percent-encoded, sent as Basic and never logged) or a bare
       "host:port". Empty: direct connections. An https:// origin is reached through a CONNECT tunnel
       with TLS to the origin inside it; an http:// one by absolute-form requests. Only http:// proxies:
       https:// and socks proxy URLs are refused (ErrorCode::invalid_config). from_env() fills it from
       the usual variables; the library never reads the environment behind the program's back, so
       clearing it after from_env() means "no proxy". */
    std::string proxy;
    /* Hosts reached directly although `proxy` is set, as curl's NO_PROXY: a comma list of names (each
       matches itself and its subdomains, with or without a leading dot, case-insensitively), IP
       addresses or CIDR blocks ("10.0.0.0/8", "fd00::/8"), "host:port" entries (that port only, as
       Go), or "*" for every host. Loopback ("localhost", 127.0.0.0/8, ::1) always goes direct, as in
       Go, unless the list holds the word "<-loopback>" (as Chrome's bypass list). */
    std::string no_proxy;
    std::size_t max_idle_connections = 4;               // kept for reuse by later requests
    std::chrono::milliseconds idle_connection_timeout{30000};  // older idle connections are closed

    LogLevel log_level = LogLevel::warning;
    LogCallback log;  // empty: messages go to stderr

    std::chrono::milliseconds stub_chunk_delay{0};  // pause between stub chunks (a demo nicety)

    /* LLM_API, LLM_API_KEY, LLM_BASE_URL, LLM_MODEL (and LLM_STUB_DELAY_MS) from the process environment, then
       from `dotenv_path` for the ones the environment does not set. A missing file is not an error;
       ErrorCode::invalid_config is: a file that cannot be read, a malformed one (".env line 3:
       unterminated double quote"), an LLM_BASE_URL that is set but empty (unset means stub mode).
       `out` holds what could be read either way.
       `proxy` and `no_proxy` come from the environment only (not the file), as curl reads them: for an
       https:// LLM_BASE_URL https_proxy, HTTPS_PROXY, all_proxy, ALL_PROXY; for an http:// one
       http_proxy (lower case only: CGI turns a request's Proxy: header into HTTP_PROXY), all_proxy,
       ALL_PROXY; the first set and not empty wins. no_proxy, then NO_PROXY. A malformed proxy URL is
       ErrorCode::invalid_config naming the variable. */
    [[nodiscard]] static Error from_env(Config& out, const std::string& dotenv_path = ".env");
    /* The same for initialisers (`Client client(Config::from_env());`): a problem is kept in
       `env_error`, and every stream_chat() of a client with this configuration fails with it. */
    static Config from_env(const std::string& dotenv_path = ".env");
    Error env_error;  // what from_env() found wrong; stream_chat() reports it

    bool stub_mode() const noexcept { return base_url.empty(); }

    /* The URL requests go to: base_url as is when it already ends in the API's path, else base_url +
       that path (one slash): /chat/completions, /responses, /messages, /api/chat, or for Gemini
       /models/{model}:streamGenerateContent with ?alt=sse. `model` overrides Config::model (Gemini
       names it in the path). Empty in stub mode. */
    std::string endpoint_url(std::string_view model = {}) const;
};

/* Parses the text of a .env file: KEY=VALUE lines, `export ` prefixes, # comments, single or double
   quotes (double quotes understand \n \t \" \\). Calls `visit` for each assignment, in order, up to
   the first malformed one: an unterminated quote, or anything but blanks and a # comment after a
   closing quote, is ErrorCode::invalid_config saying where ("line 3: unterminated double quote"). */
[[nodiscard]] Error parse_dotenv(std::string_view text,
                                 const std::function<void(std::string_view key, std::string_view value)>& visit);

/* ------------------------------------------------------------------------------------------------
   Requests: the conversation and the options
   A Message is a plain aggregate: write it with designated initialisers
   (`{.role = Role::tool, .content = "21", .tool_call_id = "call_1"}`) or the helpers below. Empty
   members are not sent. Image bytes are shared, so copying a conversation copies no image.
   ------------------------------------------------------------------------------------------------ */

enum class Role { system, developer, user, assistant, tool };

/* "system", "developer", "user", "assistant" or "tool". */
const char* role_name(Role role) noexcept;

/* One part of a message's content: text, or an image given by URL or by bytes. */
struct ContentPart {
    enum class Kind { text, image } kind = Kind::text;
    std::string text;                          // the text; for an image given by URL, the URL
    std::string mime_type;                     // an image given by bytes: "image/png", "image/jpeg", ...
    std::shared_ptr<const std::string> bytes;  // an image given by bytes: sent as a base64 data: URL
    std::string detail;                        // an image's detail hint ("low", "high", "auto"); empty: not sent

    static ContentPart text_part(std::string text);
    /* An http(s):// or data: URL, sent as given. */
    static ContentPart image_url(std::string url, std::string detail = {});
    static ContentPart image_bytes(std::string mime_type, std::string bytes, std::string detail = {});
};

/* A call of a tool by the model: sent back on the assistant message that asked for it. */
struct ToolCall {
    std::string id;         // "call_abc123": a tool message answers it by this id
    std::string name;       // the function's name
    std::string arguments;  // the arguments as JSON text, exactly as the model wrote them
    // Gemini's thoughtSignature for this call: sent back on its functionCall part. Initialised, so
    // that a call written {id, name, arguments} is still complete for -Wmissing-field-initializers.
    std::string signature = {};
};

struct Message {
    Role role = Role::user;
    std::string content;               // the text; ignored when `parts` is not empty
    std::vector<ContentPart> parts;    // content as parts (text and images)
    std::vector<ToolCall> tool_calls;  // assistant: the calls it asked for
    std::string tool_call_id;          // tool: the call this message answers
    std::string name;                  // an optional participant name
    std::string reasoning;             // assistant: sent as "reasoning_content" when ChatOptions::send_reasoning
    /* assistant: the provider's opaque token for its reasoning, sent back unchanged in that API's
       shape, so that a reasoning model keeps its thought across a tool-call turn. Anthropic: the
       thinking block's signature (the block goes back first, with `reasoning` as its text). Gemini:
       a text part's thoughtSignature (a call's is ToolCall::signature). Responses: the whole
       reasoning output item as JSON (its id, summary and encrypted_content), sent back as the input
       item before the calls: the API asks for the item itself, and one string keeps it verbatim. */
    std::string reasoning_signature;
    /* assistant, Anthropic: the data of each redacted_thinking block, sent back as it came after the
       thinking block (a turn may have several, each opaque: one string could not keep them apart). */
    std::vector<std::string> redacted_reasoning;
    std::string extra_json;            // a JSON object whose members are added to this message (provider-specific)

    static Message system(std::string text);
    static Message developer(std::string text);
    static Message user(std::string text);
    /* A user message with images after the text (each part from ContentPart::image_url/image_bytes). */
    static Message user(std::string text, std::vector<ContentPart> images);
    static Message assistant(std::string text);
    /* The result of the tool call `tool_call_id`, sent back to the model. */
    static Message tool_result(std::string tool_call_id, std::string text);
};

/* A function the model may call. */
struct Tool {
    std::string name;         // letters, digits, '_' and '-', at most 64
    std::string description;  // when to use it: the model reads this
    std::string parameters;   // a JSON Schema object as JSON text; empty: no parameters
    bool strict = false;      // ask the server to follow the schema exactly (OpenAI structured outputs)
};

struct ToolChoice {
    enum class Mode {
        server_default,  // not sent: the server decides (auto when tools are offered)
        automatic,       // "auto": the model decides
        none,            // no tool calls
        required,        // at least one tool call
        function,        // a call of the tool named `name`
    } mode = Mode::server_default;
    std::string name;

    static ToolChoice named(std::string name) { return {Mode::function, std::move(name)}; }
};

struct ResponseFormat {
    enum class Type {
        text,         // not sent: free text
        json_object,  // a JSON object (say so in the prompt too: OpenAI requires the word "JSON" there)
        json_schema,  // JSON that follows `schema`
    } type = Type::text;
    std::string name;     // json_schema: the schema's name (letters, digits, '_' and '-', at most 64)
    std::string schema;   // json_schema: a JSON Schema object as JSON text
    bool strict = true;   // json_schema: follow the schema exactly
};

struct ChatOptions {
    std::string system = "You are a helpful sales assistant.";  // ignored by the message-list overload
    std::string model;                  // overrides Config::model when not empty
    std::optional<double> temperature;  // 0..2
    std::optional<double> top_p;        // 0..1
    std::optional<int> max_tokens;      // > 0
    std::optional<std::int64_t> seed;
    std::optional<double> presence_penalty;   // -2..2
    std::optional<double> frequency_penalty;  // -2..2
    std::vector<std::string> stop;      // up to 4 sequences, none empty
    std::string user;                   // an end-user id for the provider's abuse monitoring

    std::vector<Tool> tools;
    ToolChoice tool_choice;
    std::optional<bool> parallel_tool_calls;  // sent only when set (and tools are offered)
    ResponseFormat response_format;

    /* Ask for a usage event at the end (stream_options.include_usage). On by default: OpenAI,
       DashScope, DeepSeek, vLLM, llama.cpp and Ollama's /v1 all accept it (see the README). */
    bool include_usage = true;
    /* Send Message::reasoning back as "reasoning_content" (DeepSeek wants it back within a tool-call
       turn; most servers reject or ignore it otherwise). */
    bool send_reasoning = false;
    /* Ask for reasoning: "low", "medium" or "high" (empty: not sent, the model's default), and/or
       a budget of thinking tokens. Each API in its own shape: openai "reasoning_effort"; responses
       "reasoning":{"effort","summary":"auto"} and "include":["reasoning.encrypted_content"] (the
       reasoning item then comes back to be sent back: store is false); anthropic "thinking" with
       budget_tokens (the budget, else 1024/4096/16384 for low/medium/high: the API wants at least
       1024 and less than max_tokens, so an unset max_tokens becomes the budget plus 4096 for the
       reply); gemini generationConfig.thinkingConfig with includeThoughts and thinkingLevel (Gemini
       3) or thinkingBudget (2.5), not both (the API refuses both); ollama "think" with the level. An
       API without a counterpart (a budget for openai, responses and ollama) is invalid_argument. */
    std::string reasoning_effort;
    std::optional<int> reasoning_budget;  // > 0; anthropic: >= 1024
    /* Assemble the reply as events arrive (Stream::reply()). Off by default: reading chunks then
       allocates nothing per event; assembling costs amortised O(log n) allocations per stream. */
    bool assemble_reply = false;

    /* A JSON object merged into the request body (e.g. {"top_k":20,"enable_thinking":false}): a
       member whose value is an object merges recursively into the object the options wrote under
       that name ({"generationConfig":{"topK":20}} keeps the temperature); any other replaces. */
    std::string extra_json;
};

/* Reads an OpenAI-format JSON array of chat messages (roles, text or parts content, tool_calls,
   tool_call_id, name, reasoning_content, and this library's reasoning_signature, redacted_reasoning
   and a tool call's signature; other members are kept in Message::extra_json) into `out`.
   ErrorCode::invalid_argument names the culprit ("messages[3].tool_calls[0].function.arguments must
   be a string"); `out` changes only on success. */
[[nodiscard]] Error parse_messages(std::string_view json, std::vector<Message>& out);
/* Reads an OpenAI-format JSON array of tools ([{"type":"function","function":{...}}]). */
[[nodiscard]] Error parse_tools(std::string_view json, std::vector<Tool>& out);
/* Writes one message in OpenAI format (as parse_messages reads it and as requests send it; the
   reasoning and its signatures only with_reasoning). An extra_json that is not a JSON object is left
   out (build_request refuses it). */
void write_message_json(std::string& out, const Message& message, bool with_reasoning = true);

/* ------------------------------------------------------------------------------------------------
   Events and statistics
   ------------------------------------------------------------------------------------------------ */

enum class EventType { content, reasoning, tool_call, finish, usage };

struct Usage {
    std::int64_t prompt_tokens = 0;
    std::int64_t completion_tokens = 0;
    std::int64_t total_tokens = 0;
};

/* One fragment of a tool call: `arguments` pieces with the same index concatenate to the JSON text. */
struct ToolCallDelta {
    int index = 0;
    std::optional<std::string_view> id;         // present in the fragment that opens the call
    std::optional<std::string_view> name;
    std::optional<std::string_view> arguments;
    std::string_view signature;                 // Gemini: the call's thoughtSignature, when it has one
};

/* Views point into the stream's buffers: valid until the next call on the stream. */
struct Event {
    EventType type = EventType::content;
    int choice = 0;           // the choice it belongs to (several only when the request asked for n > 1)
    /* Content or reasoning text; for `finish`, the reason in one vocabulary for every API: "stop",
       "length", "tool_calls", "content_filter", or the provider's own value when it has no match;
       never empty (a reason that decodes to nothing is no finish). */
    std::string_view text;
    std::string_view raw_reason;  // for `finish`: the provider's own value ("end_turn", "MAX_TOKENS", ...)
                                  // (for a signature: its kind, below)
    /* For `reasoning`: the provider's token for the reasoning (Message::reasoning_signature), in an
       event of its own with empty `text`; raw_reason "redacted_thinking" when it is the data of an
       Anthropic redacted_thinking block (Message::redacted_reasoning). */
    std::string_view signature;
    ToolCallDelta tool_call;  // for `tool_call`
    Usage usage;              // for `usage`
};

/* The assistant's reply in one choice, assembled from the events: ready to append to the
   conversation for the next turn. */
struct ReplyChoice {
    int index = 0;
    Message message = Message::assistant({});  // content, reasoning and the tool calls with their whole arguments
    std::string finish_reason;         // "stop", "length", "tool_calls", ... (Event::text); empty if none
    std::string raw_finish_reason;     // the provider's own value (Event::raw_reason)
    /* Positions in message.tool_calls whose arguments are not valid JSON (cut short by a length
       stop, or a model's mistake): kept as received, never dropped; answer them with an error. */
    std::vector<std::size_t> invalid_tool_calls;
};

struct Reply {
    std::vector<ReplyChoice> choices;  // by index; one unless the request asked for several (n)
    bool has_usage = false;
    Usage usage;
    /* The first choice's message (an empty assistant message before any event). */
    const Message& message() const noexcept;
};

/* Builds the Reply from events (Stream does it when ChatOptions::assemble_reply is set; Decoder users
   call add() for each event). Tool-call fragments are joined by (choice, index), the calls kept in
   the order they opened; a fragment with a new id at an index whose call has another id starts a
   new call (servers that number every call 0). Allocates amortised O(log n) times per stream. An
   event whose choice is outside 0..127 is ErrorCode::invalid_argument from add(); an allocation
   failure is ErrorCode::out_of_memory from add() when exceptions are enabled (under
   -fno-exceptions a failed allocation ends the program, as it does in the standard library). */
class ReplyAssembler {
public:
    [[nodiscard]] Error add(const Event& event);
    /* The reply so far; after finish(), with the tool calls' arguments checked. */
    const Reply& reply() const noexcept { return reply_; }
    /* The stream ended normally: checks every tool call's arguments (Reply::invalid_tool_calls).
       Empty arguments (a call of a function without parameters, as some servers send it) are
       valid, and kept empty as received. A call the server sent without an id (Gemini, Ollama)
       gets one made from its name and arguments ("call_1a2b3c4d_0"), so that the reply can go back
       into the conversation with its results. */
    void finish();
    void clear();

private:
    struct OpenCall {  // where fragments at (choice, index) go: that choice's tool_calls[position]
        int choice = 0;
        int index = 0;
        std::size_t position = 0;
    };
    Error add_event(const Event& event);
    ReplyChoice& choice(int index);
    static void add_reasoning(Message& message, const Event& event);
    void add_fragment(ReplyChoice& owner, const ToolCallDelta& fragment);
    ToolCall& call_for(ReplyChoice& owner, const ToolCallDelta& fragment);
    Reply reply_;
    std::vector<OpenCall> open_calls_;  // sorted by (choice, index)
};

struct Stats {
    double first_chunk_ms = -1;       // request start to the first content chunk; -1 before it
    double first_byte_ms = -1;        // request start to the response's first byte (curl's time_starttransfer),
                                      // of the last attempt; -1 before it
    double total_ms = 0;              // request start to the end (so far, while running)
    std::size_t chunks = 0;           // content chunks delivered
    std::size_t chars = 0;            // Unicode characters of content delivered
    std::size_t content_bytes = 0;    // UTF-8 bytes of content delivered
    std::size_t received_bytes = 0;   // bytes read from the transport, all attempts
    std::size_t events = 0;           // SSE events decoded
    std::size_t skipped_events = 0;   // events whose JSON could not be decoded
    int attempts = 0;                 // HTTP attempts made (1 + retries)
    bool has_usage = false;
    Usage usage;                      // when the server reported it
    std::string finish_reason;        // the last one reported, empty if none
};

/* ------------------------------------------------------------------------------------------------
   The sans-I/O core: build the request, decode the response, over any transport
   For programs whose platform dictates the HTTP stack (a console SDK, an engine's HTTP module,
   WinHTTP, libcurl already in the app): build_request() says what to send, a Decoder turns what
   comes back into the same events a Stream gives. No sockets, clocks, threads or logging inside.
   ------------------------------------------------------------------------------------------------ */

/* One HTTP request for a streamed chat completion. */
struct Request {
    std::string method;  // "POST"
    std::string url;     // the full URL
    std::vector<std::pair<std::string, std::string>> headers;  // Content-Type, Accept, auth, Config::headers
    std::string body;    // the JSON body
};

/* What to send for `messages` under `config` and `options`; invalid_argument or invalid_config when
   they cannot be sent (the message names the culprit). In stub mode the URL is empty. */
[[nodiscard]] Error build_request(const Config& config, const std::vector<Message>& messages,
                                  const ChatOptions& options, Request& request);

enum class DecodeStatus {
    need_more,  // every byte given was used: feed more (or finish() at the end of input)
    event,      // event() holds a new event
    warning,    // warning() says what was skipped or looks wrong; decoding goes on (feed the rest)
    done,       // the completion is over; later bytes are only the rest of the HTTP response
    failed,     // error() says why (an HTTP error status, a server error event, malformed bytes, ...)
};

struct DecodeStep {
    DecodeStatus status = DecodeStatus::need_more;
    std::size_t consumed = 0;  // bytes of the input used
};

namespace detail { class DecoderCore; }

/* Decodes one HTTP response (status line, headers, body as on the wire: chunked, Content-Length or
   close-delimited) into events, resumable at any byte. Call feed() with the bytes received, then
   again with what it did not consume, until it returns need_more; then receive more. Views in
   event() point into those bytes or into the decoder: keep the bytes unchanged until feed() has
   returned need_more for them, and use a view only until the next call. Memory is bounded by the
   Limits; decoding allocates nothing per event once warmed up. */
class Decoder {
public:
    explicit Decoder(const Limits& limits = {}, Api api = Api::openai);
    Decoder(Decoder&&) noexcept;
    Decoder& operator=(Decoder&&) noexcept;
    Decoder(const Decoder&) = delete;
    Decoder& operator=(const Decoder&) = delete;
    ~Decoder();

    DecodeStep feed(std::string_view bytes);
    /* The input ended (the connection closed): the end of a close-delimited body, else an error. */
    DecodeStep finish();
    /* For transports that parse HTTP themselves (libcurl, WinHTTP, ...): the response's status and
       Content-Type; from then on feed() takes body bytes only. */
    void start_body(int http_status, std::string_view content_type);
    /* Ready for another response (on a kept-alive connection), as a new decoder is, but keeping the
       room its buffers had up to their usual size: decoding the next response allocates nothing anew. */
    void reset();

    const Event& event() const noexcept;  // after DecodeStatus::event
    const Error& error() const noexcept;  // after DecodeStatus::failed
    int http_status() const noexcept;     // 0 until the head has arrived
    /* A response header (case-insensitive name), trimmed; empty when absent. */
    std::string_view header(std::string_view name) const noexcept;
    /* The whole HTTP response has been read, and the server lets the connection carry another one. */
    bool response_complete() const noexcept;
    bool keep_alive() const noexcept;
    std::size_t messages() const noexcept;          // SSE events (or whole JSON replies) decoded
    std::size_t skipped_messages() const noexcept;  // those skipped because their JSON was invalid
    std::string_view warning() const noexcept;      // after DecodeStatus::warning

private:
    std::unique_ptr<detail::DecoderCore> core_;
};

/* ------------------------------------------------------------------------------------------------
   Stream
   ------------------------------------------------------------------------------------------------ */

enum class PollStatus {
    pending,  // nothing yet: wait on wait_info() (or just call poll() again later)
    event,    // current_event() holds a new event
    done,     // the stream ended normally
    failed,   // error() says why
};

/* What a non-blocking caller should wait for before calling poll() again. */
struct WaitInfo {
    socket_handle socket = static_cast<socket_handle>(-1);  // -1 (INVALID_SOCKET): no socket to watch
    bool want_read = false;
    bool want_write = false;
    std::chrono::milliseconds timeout{0};  // call poll() again after at most this long
};

class Stream {
public:
    Stream() noexcept;
    Stream(Stream&&) noexcept;
    Stream& operator=(Stream&&) noexcept;
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    ~Stream();  // closes the connection at once

    /* Blocks until the next content chunk of the first choice (index 0; the others, when the
       request asked for n > 1, come from next_event()); std::nullopt at the end or on error (see
       error()). Other events are consumed on the way (their stats still count). */
    std::optional<std::string_view> next_chunk();

    /* Blocks until the next typed event; nullptr at the end or on error. */
    const Event* next_event();

    /* Never blocks: advances the stream as far as it can and says what happened. */
    PollStatus poll();
    const Event& current_event() const noexcept;  // after poll() returned PollStatus::event
    WaitInfo wait_info() const noexcept;
    /* After poll() returned pending: blocks until poll() may make progress (the socket is ready, a
       timer is due, or cancel() was called). A caller that batches output flushes before it. */
    void wait();

    /* Ends the stream with ErrorCode::cancelled. Safe from any thread; wakes a blocked call. */
    void cancel();

    bool finished() const noexcept;  // done or failed
    const Error& error() const noexcept;
    Stats stats() const;
    /* The reply assembled so far (complete once done) when ChatOptions::assemble_reply was set;
       otherwise empty. */
    const Reply& reply() const noexcept;

    /* Range-for over content chunks. */
    class iterator {
    public:
        using value_type = std::string_view;
        using difference_type = std::ptrdiff_t;
        using reference = const std::string_view&;
        using pointer = const std::string_view*;
        using iterator_category = std::input_iterator_tag;

        iterator() = default;
        reference operator*() const noexcept { return chunk_; }
        iterator& operator++();
        void operator++(int) { ++*this; }  // an input iterator: the old position is gone
        bool operator==(const iterator& other) const noexcept { return stream_ == other.stream_; }
        bool operator!=(const iterator& other) const noexcept { return stream_ != other.stream_; }

    private:
        friend class Stream;
        explicit iterator(Stream* stream) : stream_(stream) { ++*this; }
        Stream* stream_ = nullptr;
        std::string_view chunk_;
    };
    iterator begin() { return iterator(this); }
    iterator end() noexcept { return iterator(); }

    /* For the implementation (and tests): a stream around a ready state machine. */
    explicit Stream(std::unique_ptr<detail::StreamImpl> impl) noexcept;

private:
    friend struct detail::StreamSetState;  // tells one stream's end from the next one's in the same object
    std::unique_ptr<detail::StreamImpl> impl_;
};

/* A socket of the caller's own (a listening socket, a client's connection) that StreamSet::wait()
   watches along with the streams. */
struct SocketWatch {
    socket_handle socket = static_cast<socket_handle>(-1);
    bool want_read = false;
    bool want_write = false;
    bool ready = false;  // set by wait(): readable or writable as asked, or in error (a read will say)
};

/* Many streams driven from one thread, as curl's multi interface drives transfers: wait() blocks on
   every stream's socket and timer (its wait_info()) at once and says which ones poll() can advance.
   The set holds pointers: a stream must stay where it is (not moved, not destroyed) until it is
   removed or the set is gone. A stream that has ended without poll() saying so yet (one that failed as
   it was made) is returned once; one whose end poll() has returned never again. Remove finished
   streams at leisure, or move a new stream into the same Stream object, which the set then follows. One thread uses the set; wake() is
   the only call safe from others (a cancel() from another thread wakes the stream's own wait, not the
   set's: call wake() after it). No allocation per wait once the set has grown.
   Streams polled until pending in turn share one receive buffer, their thread's: a stream holds it
   only while it has bytes left to decode or an event out (about 9 KiB of heap per open stream). */
class StreamSet {
public:
    StreamSet();
    StreamSet(StreamSet&&) noexcept;
    StreamSet& operator=(StreamSet&&) noexcept;
    StreamSet(const StreamSet&) = delete;
    StreamSet& operator=(const StreamSet&) = delete;
    ~StreamSet();

    void add(Stream& stream);
    void remove(const Stream& stream);  // no effect when it is not in the set
    std::size_t size() const noexcept;

    /* Blocks until a stream can make progress (its socket is ready, its timer is due, it has events
       queued or has not started), one of `sockets` is ready, `timeout` has passed, or wake() was
       called; 0 only looks. Returns the streams to poll() (until pending) in the order they were
       added; the vector is the set's own and lives until the next wait(). */
    const std::vector<Stream*>& wait(std::chrono::milliseconds timeout);
    const std::vector<Stream*>& wait(std::chrono::milliseconds timeout, std::vector<SocketWatch>& sockets);
    /* Makes a wait() in progress (or the next one) return at once. Safe from any thread. */
    void wake();

private:
    std::unique_ptr<detail::StreamSetState> state_;
};

/* ------------------------------------------------------------------------------------------------
   Client
   ------------------------------------------------------------------------------------------------ */

/* Holds the configuration (and, for network use, a small pool of idle connections). Cheap to copy;
   copies share state. Safe to use from several threads at once; each Stream belongs to one thread. */
class Client {
public:
    explicit Client(Config config = Config::from_env());

    /* One user turn, with options.system as the system message. */
    Stream stream_chat(std::string_view prompt, const ChatOptions& options = {});
    /* A whole conversation, sent as given. */
    Stream stream_chat(const std::vector<Message>& messages, const ChatOptions& options = {});
    /* Decodes a captured HTTP response (status line, headers and body as sent on the wire) as if it
       had just arrived: the same events, stats and errors as a live stream; no network, no retry. */
    Stream replay(std::string response, const ChatOptions& options = {});  // options: assemble_reply

    const Config& config() const noexcept;

private:
    std::shared_ptr<detail::ClientState> state_;
};

/* The process-wide client, built from Config::from_env() on first use (thread-safe). */
Client& get_llm_client();

/* Appends text as a JSON string literal: quotes, backslashes and control characters escaped, UTF-8
   kept, invalid bytes dropped. For programs that pass events on as JSON (llm-chat --events, relays). */
void append_json_string(std::string& out, std::string_view text);

/* Reading JSON without a JSON library: a tool call's arguments, a reply in JSON mode. Each gives the
   member `name` of the JSON object `json` (the whole text validated; the last one when repeated), or
   std::nullopt when the text is not a valid JSON object, has no such member, or it has another type. */
std::optional<std::string> json_string_member(std::string_view json, std::string_view name);
std::optional<double> json_number_member(std::string_view json, std::string_view name);
std::optional<bool> json_bool_member(std::string_view json, std::string_view name);
/* The member's value as JSON text: an object or array to read further with these functions. */
std::optional<std::string_view> json_member(std::string_view json, std::string_view name);

/* "llm_stream 0.2.0 (tls: none)" or with the TLS backend's name and version; built with
   LLM_STREAM_NO_DNS, "(tls: none; dns: the system's, blocking)". */
const char* version_string() noexcept;

}  // inline namespace v0_2
}  // namespace llm_stream

#endif  // LLM_STREAM_HPP

/* ================================================================================================
   IMPLEMENTATION
   Sections, from the wire inwards, then outwards: support and logging → platform sockets → TLS
   (mbedTLS) → HTTP/1.1 response reader → SSE parser → NDJSON line splitter → JSON (validating cursor,
   chat-completions reader, writer) → decoder (those layers behind one feed()) → request (URL, headers,
   body) → retry policy → stub → the other APIs (Responses, Anthropic, Gemini, Ollama: each its body,
   reader and stub) → transports → stream (attempts, timers, retries) → public API.
   ================================================================================================ */
#if (defined(LLM_STREAM_IMPLEMENTATION) || defined(LLM_STREAM_INTERNALS)) && !defined(LLM_STREAM_INTERNALS_INCLUDED)
#define LLM_STREAM_INTERNALS_INCLUDED
/* LLM_STREAM_INTERNALS, for this repository's tests and fuzz targets: the detail:: section alone (all of
   it inline), without the public definitions after it, so a white-box test links the one
   LLM_STREAM_IMPLEMENTATION translation unit of its build instead of compiling its own. */

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <new>
#include <random>
#include <thread>
#include <type_traits>
#include <utility>

#if defined(_WIN32)
// Keep <windows.h> from defining min/max and pulling in everything, without changing the user's
// own choices (their definitions, if any, stay).
#ifndef NOMINMAX
#define NOMINMAX
#define LLM_STREAM_UNDEF_NOMINMAX
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#define LLM_STREAM_UNDEF_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#if defined(LLM_STREAM_SCHANNEL)
// SChannel: LEAN_AND_MEAN keeps wincrypt out of windows.h; SCH_CREDENTIALS (needed for TLS 1.3) is
// declared only with SCHANNEL_USE_BLACKLISTS and <subauth.h>.
#include <wincrypt.h>
#ifndef SECURITY_WIN32
#define SECURITY_WIN32
#define LLM_STREAM_UNDEF_SECURITY_WIN32
#endif
#ifndef SCHANNEL_USE_BLACKLISTS
#define SCHANNEL_USE_BLACKLISTS
#define LLM_STREAM_UNDEF_SCHANNEL_USE_BLACKLISTS
#endif
#include <subauth.h>
#include <schannel.h>
#include <security.h>
#ifdef LLM_STREAM_UNDEF_SECURITY_WIN32
#undef SECURITY_WIN32
#undef LLM_STREAM_UNDEF_SECURITY_WIN32
#endif
#ifdef LLM_STREAM_UNDEF_SCHANNEL_USE_BLACKLISTS
#undef SCHANNEL_USE_BLACKLISTS
#undef LLM_STREAM_UNDEF_SCHANNEL_USE_BLACKLISTS
#endif
#if defined(_MSC_VER)
#pragma comment(lib, "secur32.lib")
#pragma comment(lib, "crypt32.lib")
#endif
#endif
#ifdef LLM_STREAM_UNDEF_NOMINMAX
#undef NOMINMAX
#undef LLM_STREAM_UNDEF_NOMINMAX
#endif
#ifdef LLM_STREAM_UNDEF_LEAN_AND_MEAN
#undef WIN32_LEAN_AND_MEAN
#undef LLM_STREAM_UNDEF_LEAN_AND_MEAN
#endif
#if defined(_MSC_VER)
#pragma comment(lib, "ws2_32.lib")
#endif
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#endif

#if defined(LLM_STREAM_MBEDTLS)
#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#if MBEDTLS_VERSION_MAJOR >= 3
#include <psa/crypto.h>
#endif
#endif

#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define LLM_STREAM_SSE2 1
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#define LLM_STREAM_FORCE_INLINE __forceinline
#else
#define LLM_STREAM_FORCE_INLINE inline __attribute__((always_inline))
#endif

/* Code that runs once per request or client (configuration, URLs, proxies, name lookups, request
   writing and checks, retries): compiled for size, as its speed does not matter next to the network. */
#if defined(__GNUC__) || defined(__clang__)
#define LLM_STREAM_COLD __attribute__((cold))
#else
#define LLM_STREAM_COLD
#endif

#ifndef LLM_STREAM_REALLOC
#define LLM_STREAM_REALLOC(ptr, size) std::realloc(ptr, size)
#define LLM_STREAM_FREE(ptr) std::free(ptr)
#endif
#ifndef LLM_STREAM_ASSERT
#define LLM_STREAM_ASSERT(expr) assert(expr)
#endif

#if defined(LLM_STREAM_MINIMAL)  // OpenAI's chat completions over the network, and nothing else
#ifndef LLM_STREAM_NO_RESPONSES
#define LLM_STREAM_NO_RESPONSES
#endif
#ifndef LLM_STREAM_NO_ANTHROPIC
#define LLM_STREAM_NO_ANTHROPIC
#endif
#ifndef LLM_STREAM_NO_GEMINI
#define LLM_STREAM_NO_GEMINI
#endif
#ifndef LLM_STREAM_NO_OLLAMA
#define LLM_STREAM_NO_OLLAMA
#endif
#ifndef LLM_STREAM_NO_STUB
#define LLM_STREAM_NO_STUB
#endif
#endif

namespace llm_stream {
inline namespace v0_2 {  // two libraries that vendor different versions never merge silently
namespace detail {

/* ------------------------------------------------------------------------------------------------
   Support: byte buffers, UTF-8, small string helpers, time
   ------------------------------------------------------------------------------------------------ */

inline Error make_error(ErrorCode code, std::string message, int http_status = 0) {
    Error e;
    e.code = code;
    e.http_status = http_status;
    e.message = std::move(message);
    return e;
}

/* A feature left out of this build by `macro` (the CONFIGURATION MACROS): chosen at run time, it is
   this error, never a silent substitute. */
inline Error not_compiled_in(const std::string& feature, const char* macro) {
    return make_error(ErrorCode::invalid_config, feature + " is not compiled in: " + macro);
}

/* None when `api`'s request, reader and stub are in this build. */
inline Error api_compiled_in(Api api) {
    const char* macro = nullptr;
#if defined(LLM_STREAM_NO_RESPONSES)
    if (api == Api::responses) macro = "LLM_STREAM_NO_RESPONSES";
#endif
#if defined(LLM_STREAM_NO_ANTHROPIC)
    if (api == Api::anthropic) macro = "LLM_STREAM_NO_ANTHROPIC";
#endif
#if defined(LLM_STREAM_NO_GEMINI)
    if (api == Api::gemini) macro = "LLM_STREAM_NO_GEMINI";
#endif
#if defined(LLM_STREAM_NO_OLLAMA)
    if (api == Api::ollama) macro = "LLM_STREAM_NO_OLLAMA";
#endif
    if (!macro) return {};
    return not_compiled_in(std::string("api '") + api_name(api) + "'", macro);
}

/* A growable byte buffer through the allocation macros. Never shrinks, so a stream that has reached
   its working size allocates nothing more. */
class ByteBuffer {
public:
    ByteBuffer() = default;
    ByteBuffer(const ByteBuffer&) = delete;
    ByteBuffer& operator=(const ByteBuffer&) = delete;
    ByteBuffer(ByteBuffer&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)),
          capacity_(std::exchange(other.capacity_, 0)) {}
    ByteBuffer& operator=(ByteBuffer&& other) noexcept {
        if (this != &other) {
            LLM_STREAM_FREE(data_);
            data_ = std::exchange(other.data_, nullptr);
            size_ = std::exchange(other.size_, 0);
            capacity_ = std::exchange(other.capacity_, 0);
        }
        return *this;
    }
    ~ByteBuffer() { LLM_STREAM_FREE(data_); }

    char* data() noexcept { return data_; }
    const char* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    std::string_view view() const noexcept { return {data_, size_}; }
    void clear() noexcept { size_ = 0; }
    /* Counts n bytes written past size() into reserved room. */
    void resize_up_reserved(std::size_t n) noexcept { size_ += n; }

    bool reserve(std::size_t capacity) {
        if (capacity <= capacity_) return true;
        std::size_t grown = capacity_ ? capacity_ * 2 : 256;
        if (grown < capacity) grown = capacity + capacity / 2;  // headroom: the next one is likely bigger
        return reserve_exact(grown);
    }
    /* Room for `capacity` bytes and no more: for a size known in advance (a read's). */
    bool reserve_exact(std::size_t capacity) {
        if (capacity <= capacity_) return true;
        void* p = LLM_STREAM_REALLOC(data_, capacity);
        if (!p) return false;
        data_ = static_cast<char*>(p);
        capacity_ = capacity;
        return true;
    }
    bool append(const char* p, std::size_t n) {
        if (n == 0) return true;
        if (!reserve(size_ + n)) return false;
        std::memcpy(data_ + size_, p, n);
        size_ += n;
        return true;
    }
    bool append(std::string_view s) { return append(s.data(), s.size()); }
    bool push_back(char c) { return append(&c, 1); }
    bool assign(std::string_view s) { clear(); return append(s); }
    /* Empties it; its room is kept up to `usual` bytes, and one grown past that by a rare big
       message is given back, so that a buffer kept for reuse does not hold its peak. */
    void clear_to(std::size_t usual) noexcept {
        clear();
        if (capacity_ <= usual) return;
        LLM_STREAM_FREE(data_);
        data_ = nullptr;
        capacity_ = 0;
    }

private:
    char* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
};

/* The room a buffer kept for the next response or stream keeps (clear_to): more than a usual response
   head, whole-body reply or message needs. */
constexpr std::size_t usual_room_bytes = 4096;

/* SWAR (eight bytes in a 64-bit word): the high bit of each byte below n (n <= 0x80). Only the lowest
   such byte is certain to be one (a borrow may mark the bytes above it), but the result is nonzero
   exactly when the word has one, whatever the byte order: callers ask "any?" and find which byte
   one at a time. */
inline std::uint64_t swar_bytes_below(std::uint64_t word, unsigned n) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101u, high_bits = 0x8080808080808080u;
    return (word - ones * n) & ~word & high_bits;
}
/* Nonzero exactly when the word holds the byte c. */
inline std::uint64_t swar_bytes_equal(std::uint64_t word, char c) noexcept {
    return swar_bytes_below(word ^ (0x0101010101010101u * static_cast<unsigned char>(c)), 1);
}
/* The 8 bytes at p as a word: an unaligned load without undefined behaviour. */
inline std::uint64_t load_word(const char* p) noexcept {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    return word;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, at most
   U+10FFFF), or 0 when the bytes there are not one. */
inline std::size_t utf8_sequence_length(const unsigned char* p, const unsigned char* end) noexcept {
    const unsigned char c = p[0];
    if (c < 0x80) return 1;
    auto cont = [&](std::ptrdiff_t i, unsigned char lo, unsigned char hi) {
        return p + i < end && p[i] >= lo && p[i] <= hi;
    };
    if (c >= 0xC2 && c <= 0xDF) return cont(1, 0x80, 0xBF) ? 2 : 0;
    if (c == 0xE0) return cont(1, 0xA0, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
    if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
        return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
    if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2, 0x80, 0xBF) ? 3 : 0;
    if (c == 0xF0) return cont(1, 0x90, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    if (c >= 0xF1 && c <= 0xF3)
        return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    return 0;
}

inline bool utf8_word_is_ascii(const char* p) noexcept { return (load_word(p) & 0x8080808080808080u) == 0; }

/* True when [p, end) is entirely well-formed UTF-8. */
inline bool utf8_valid(const char* begin, const char* end) noexcept {
    // ASCII, the common case, eight bytes at a time; a string of 8 bytes or more ends with the word
    // that ends it (overlapping the one before), not byte by byte.
    const char* ascii_end = begin;  // the bytes before it are ASCII
    if (end - begin >= 8) {
        while (end - ascii_end > 8 && utf8_word_is_ascii(ascii_end)) ascii_end += 8;
        if (end - ascii_end <= 8 && utf8_word_is_ascii(end - 8)) return true;
    }
    auto p = reinterpret_cast<const unsigned char*>(ascii_end);
    auto e = reinterpret_cast<const unsigned char*>(end);
    while (p < e) {
        if (e - p >= 8 && utf8_word_is_ascii(reinterpret_cast<const char*>(p))) {
            p += 8;
            continue;
        }
        if (*p < 0x80) { ++p; continue; }
        // Most of the CJK and other scripts' text: a lead byte E1-EC or EE-EF and two continuation bytes.
        const unsigned char lead = *p;
        if (lead >= 0xE1 && lead <= 0xEF && lead != 0xED && e - p >= 3 && (p[1] & 0xC0) == 0x80 &&
            (p[2] & 0xC0) == 0x80) {
            p += 3;
            continue;
        }
        std::size_t n = utf8_sequence_length(p, e);
        if (n == 0) return false;
        p += n;
    }
    return true;
}

/* Copies the well-formed UTF-8 of [p, end) to out, dropping invalid bytes; returns bytes written. */
inline std::size_t utf8_repair(const char* p, const char* end, char* out) noexcept {
    char* o = out;
    while (p < end) {
        const std::size_t n = utf8_sequence_length(reinterpret_cast<const unsigned char*>(p),
                                                   reinterpret_cast<const unsigned char*>(end));
        if (n == 0) { ++p; continue; }
        std::memcpy(o, p, n);
        o += n;
        p += n;
    }
    return static_cast<std::size_t>(o - out);
}

/* Appends cp as UTF-8 to out (which has room for 4 bytes); returns the bytes written. */
inline std::size_t utf8_encode(std::uint32_t cp, char* out) noexcept {
    if (cp < 0x80) { out[0] = static_cast<char>(cp); return 1; }
    if (cp < 0x800) {
        out[0] = static_cast<char>(0xC0 | (cp >> 6));
        out[1] = static_cast<char>(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = static_cast<char>(0xE0 | (cp >> 12));
        out[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out[2] = static_cast<char>(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = static_cast<char>(0xF0 | (cp >> 18));
    out[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out[3] = static_cast<char>(0x80 | (cp & 0x3F));
    return 4;
}

/* Unicode characters in valid UTF-8: every byte that is not a continuation byte starts one. */
inline std::size_t utf8_count_chars(std::string_view s) noexcept {
    std::size_t n = 0;
    for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return n;
}

/* The longest prefix of valid UTF-8 s with at most max_chars characters. */
inline std::string_view utf8_prefix(std::string_view s, std::size_t max_chars) noexcept {
    std::size_t chars = 0, i = 0;
    for (; i < s.size(); ++i) {
        if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
            if (chars == max_chars) break;
            ++chars;
        }
    }
    return s.substr(0, i);
}

inline int hex_value(char c) noexcept {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

inline unsigned count_trailing_zeros(unsigned v) noexcept {
#if defined(_MSC_VER) && !defined(__clang__)
    unsigned long index;
    _BitScanForward(&index, v);
    return static_cast<unsigned>(index);
#else
    return static_cast<unsigned>(__builtin_ctz(v));
#endif
}

inline char ascii_lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

inline bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    return true;
}

inline bool is_http_space(char c) noexcept { return c == ' ' || c == '\t'; }

inline std::string_view trim_http_space(std::string_view s) noexcept {
    while (!s.empty() && is_http_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_http_space(s.back())) s.remove_suffix(1);
    return s;
}

inline std::string_view trim_ascii_space(std::string_view s) noexcept {
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (!s.empty() && space(s.front())) s.remove_prefix(1);
    while (!s.empty() && space(s.back())) s.remove_suffix(1);
    return s;
}

/* Calls visit(token) for each element of a comma-separated header list, trimmed, empties skipped. */
template <class Visit>
inline void for_each_list_token(std::string_view list, Visit visit) {
    while (!list.empty()) {
        std::size_t comma = list.find(',');
        std::string_view token = trim_http_space(list.substr(0, comma));
        if (!token.empty()) visit(token);
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
}

/* Non-negative decimal integer made only of digits, without overflow. */
inline bool parse_decimal(std::string_view s, std::uint64_t& out) noexcept {
    if (s.empty() || s.size() > 19) return false;
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    out = v;
    return true;
}

using Clock = std::chrono::steady_clock;

inline double elapsed_ms(Clock::time_point since, Clock::time_point now) noexcept {
    return std::chrono::duration<double, std::milli>(now - since).count();
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's civil-day algorithm). */
inline std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  // March-based month
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

/* An HTTP-date (RFC 9110 5.6.7) as seconds since the Unix epoch: IMF-fixdate
   "Sun, 06 Nov 1994 08:49:37 GMT", the obsolete RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" and
   asctime "Sun Nov  6 08:49:37 1994" forms. */
LLM_STREAM_COLD inline std::optional<std::int64_t> parse_http_date(std::string_view s) noexcept {
    static const char* const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                         "jul", "aug", "sep", "oct", "nov", "dec"};
    // Split into tokens on spaces, commas and dashes; the forms differ only in order.
    std::string_view tokens[8];
    std::size_t count = 0;
    std::size_t i = 0;
    while (i < s.size() && count < 8) {
        while (i < s.size() && (s[i] == ' ' || s[i] == ',' || s[i] == '-')) ++i;
        std::size_t start = i;
        while (i < s.size() && s[i] != ' ' && s[i] != ',' && s[i] != '-') ++i;
        if (i > start) tokens[count++] = s.substr(start, i - start);
    }
    auto month_of = [&](std::string_view t) -> int {
        if (t.size() != 3) return -1;
        for (int m = 0; m < 12; ++m)
            if (iequals(t, months[m])) return m + 1;
        return -1;
    };
    auto number = [](std::string_view t, std::uint64_t& v) { return parse_decimal(t, v); };
    std::string_view day_t, month_t, year_t, time_t_;
    if (count == 6 && iequals(tokens[5], "GMT")) {  // IMF-fixdate or RFC 850
        day_t = tokens[1]; month_t = tokens[2]; year_t = tokens[3]; time_t_ = tokens[4];
    } else if (count == 5) {  // asctime
        month_t = tokens[1]; day_t = tokens[2]; time_t_ = tokens[3]; year_t = tokens[4];
    } else {
        return std::nullopt;
    }
    std::uint64_t day = 0, year = 0, hh = 0, mm = 0, ss = 0;
    const int month = month_of(month_t);
    if (month < 0 || !number(day_t, day) || !number(year_t, year) || time_t_.size() != 8 ||
        time_t_[2] != ':' || time_t_[5] != ':' || !number(time_t_.substr(0, 2), hh) ||
        !number(time_t_.substr(3, 2), mm) || !number(time_t_.substr(6, 2), ss))
        return std::nullopt;
    if (year_t.size() == 2) year += year < 70 ? 2000 : 1900;  // RFC 850's two-digit years
    static const unsigned char month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    const unsigned last_day = month == 2 && !leap ? 28u : month_days[month - 1];
    if (day < 1 || day > last_day || hh > 23 || mm > 59 || ss > 60 || year < 1970 || year > 9999)
        return std::nullopt;
    return days_from_civil(static_cast<std::int64_t>(year), static_cast<unsigned>(month),
                           static_cast<unsigned>(day)) * 86400 +
           static_cast<std::int64_t>(hh * 3600 + mm * 60 + ss);
}

/* ------------------------------------------------------------------------------------------------
   Logging
   ------------------------------------------------------------------------------------------------ */

inline const char* log_level_name(LogLevel level) noexcept {
    switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warning: return "warning";
    case LogLevel::error: return "error";
    default: return "";
    }
}

/* Replaces every occurrence of the API key, so no message can leak it. */
inline void redact_secret(std::string& text, const std::string& secret) {
    if (secret.size() < 4) return;
    for (std::size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at))
        text.replace(at, secret.size(), "[redacted]");
}

inline void emit_log(const Config& config, LogLevel level, std::string message) {
    if (level < config.log_level || config.log_level == LogLevel::off) return;
    redact_secret(message, config.api_key);
    if (config.log) {
        config.log(level, message);
        return;
    }
    std::fprintf(stderr, "llm_stream: %s: %s\n", log_level_name(level), message.c_str());
}

/* Printable excerpt of untrusted bytes for a message: valid UTF-8, no control characters. */
inline std::string excerpt(std::string_view bytes, std::size_t max_chars) {
    std::string clean;
    std::string_view shown = bytes.substr(0, max_chars * 4);
    clean.resize(shown.size());
    clean.resize(utf8_repair(shown.data(), shown.data() + shown.size(), &clean[0]));
    for (char& c : clean)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) c = ' ';
    std::string_view cut = utf8_prefix(clean, max_chars);
    std::string out(cut);
    if (cut.size() < clean.size() || shown.size() < bytes.size()) out += "...";
    return out;
}

/* ------------------------------------------------------------------------------------------------
   Platform: sockets (POSIX, Winsock 2), name resolution, waiting
   Every socket is non-blocking; waiting happens only in wait_for_socket(), which a cancel() wakes.
   ------------------------------------------------------------------------------------------------ */

enum class IoStatus { ok, would_block, closed, failed };

struct IoResult {
    IoStatus status = IoStatus::ok;
    std::size_t bytes = 0;
};

#if defined(_WIN32)
using native_socket = SOCKET;
constexpr native_socket invalid_socket = INVALID_SOCKET;
inline int last_socket_error() noexcept { return WSAGetLastError(); }
inline bool is_would_block(int e) noexcept { return e == WSAEWOULDBLOCK; }
inline bool is_connect_pending(int e) noexcept { return e == WSAEWOULDBLOCK || e == WSAEINPROGRESS; }
inline void close_socket(native_socket s) noexcept { closesocket(s); }
inline bool network_startup() noexcept {
    static const bool started = [] {
        WSADATA data;
        return WSAStartup(MAKEWORD(2, 2), &data) == 0;
    }();
    return started;
}
inline std::string socket_error_text(int e) {
    char text[256] = {};
    FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, nullptr, static_cast<DWORD>(e), 0,
                   text, sizeof text, nullptr);
    std::string out = text;
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == '.')) out.pop_back();
    return out.empty() ? "socket error " + std::to_string(e) : out;
}
inline bool set_non_blocking(native_socket s) noexcept {
    u_long on = 1;
    return ioctlsocket(s, static_cast<long>(FIONBIO), &on) == 0;  // the SDK's FIONBIO is unsigned
}
inline int socket_send(native_socket s, const char* data, std::size_t size) noexcept {
    return send(s, data, static_cast<int>(std::min<std::size_t>(size, 1 << 30)), 0);
}
inline int socket_recv(native_socket s, char* buffer, std::size_t capacity) noexcept {
    return recv(s, buffer, static_cast<int>(std::min<std::size_t>(capacity, 1 << 30)), 0);
}
#else
using native_socket = int;
constexpr native_socket invalid_socket = -1;
inline int last_socket_error() noexcept { return errno; }
inline bool is_would_block(int e) noexcept { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR; }
inline bool is_connect_pending(int e) noexcept { return e == EINPROGRESS || e == EINTR; }
inline void close_socket(native_socket s) noexcept { ::close(s); }
inline bool network_startup() noexcept { return true; }
inline std::string socket_error_text(int e) { return std::strerror(e); }
inline bool set_non_blocking(native_socket s) noexcept {
    const int flags = fcntl(s, F_GETFL, 0);
    return flags >= 0 && fcntl(s, F_SETFL, flags | O_NONBLOCK) == 0 && fcntl(s, F_SETFD, FD_CLOEXEC) == 0;
}
inline ssize_t socket_send(native_socket s, const char* data, std::size_t size) noexcept {
#if defined(MSG_NOSIGNAL)
    return ::send(s, data, size, MSG_NOSIGNAL);  // a closed peer must not kill the process
#else
    return ::send(s, data, size, 0);  // SO_NOSIGPIPE is set on the socket instead
#endif
}
inline ssize_t socket_recv(native_socket s, char* buffer, std::size_t capacity) noexcept {
    return ::recv(s, buffer, capacity, 0);
}
#endif

/* A new socket that never blocks, is not inherited by child processes and never raises SIGPIPE, or
   invalid_socket. Where socket() takes the flags (Linux, the BSDs) that is one system call, not four:
   a frame that opens 32 connections makes 96 fewer. */
inline native_socket new_socket(int family, int type, int protocol) noexcept {
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    const native_socket s = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
#else
    native_socket s = ::socket(family, type, protocol);
    if (s != invalid_socket && !set_non_blocking(s)) {
        close_socket(s);
        s = invalid_socket;
    }
#endif
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
    if (s != invalid_socket) {  // socket_send() cannot say it per call here
        const int on = 1;
        setsockopt(s, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
    }
#endif
    return s;
}

inline IoResult socket_write(native_socket s, const char* data, std::size_t size, int& error) noexcept {
    const auto n = socket_send(s, data, size);
    if (n >= 0) return {IoStatus::ok, static_cast<std::size_t>(n)};
    error = last_socket_error();
    return {is_would_block(error) ? IoStatus::would_block : IoStatus::failed, 0};
}

inline IoResult socket_read(native_socket s, char* buffer, std::size_t capacity, int& error) noexcept {
    const auto n = socket_recv(s, buffer, capacity);
    if (n > 0) return {IoStatus::ok, static_cast<std::size_t>(n)};
    if (n == 0) return {IoStatus::closed, 0};
    error = last_socket_error();
    return {is_would_block(error) ? IoStatus::would_block : IoStatus::failed, 0};
}

/* A socket address from name resolution. */
struct SocketAddress {
    sockaddr_storage storage{};
    socklen_t length = 0;
};

/* The address of an AF_INET or AF_INET6 socket address as text ("10.0.0.7", "::1"). */
inline std::string numeric_host(const sockaddr* address) {
    char host[64] = "?";
    const void* raw = address->sa_family == AF_INET6
                          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr)
                          : static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(address)->sin_addr);
    inet_ntop(address->sa_family, const_cast<void*>(raw), host, sizeof host);
    return host;
}

inline std::string address_text(const SocketAddress& a) {
    const std::string host = numeric_host(reinterpret_cast<const sockaddr*>(&a.storage));
    return a.storage.ss_family == AF_INET6 ? "[" + host + "]" : host;
}

#if defined(_WIN32)
/* A UDP socket bound to 127.0.0.1 and connected to itself: fire() sends it a datagram, which leaves it
   readable for good, so WSAPoll sees the signal next to the socket it watches (WSAPoll takes sockets
   only: Windows has no pipe to poll). Chosen over WSAEventSelect and WSAWaitForMultipleEvents: that
   association would stay on the caller's socket (wait_info() hands it out) unless undone after every
   wait, and its FD_WRITE is edge-triggered (recorded after a connect or a send that would block, not
   when a wait begins on a socket that is writable already), while WSAPoll, as poll(), reports the
   socket's state as it is. fire() may come from any thread. */
class LoopbackSignal {
public:
    LoopbackSignal() = default;
    LoopbackSignal(const LoopbackSignal&) = delete;
    LoopbackSignal& operator=(const LoopbackSignal&) = delete;
    ~LoopbackSignal() {
        if (socket_ != invalid_socket) close_socket(socket_);
    }
    /* False when no loopback UDP socket can be made (socket() stays invalid_socket). */
    bool open() noexcept {
        if (!network_startup()) return false;
        const native_socket s = ::socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
        if (s == invalid_socket) return false;
        sockaddr_in self{};
        self.sin_family = AF_INET;
        self.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int length = sizeof self;
        if (::bind(s, reinterpret_cast<const sockaddr*>(&self), length) != 0 ||
            getsockname(s, reinterpret_cast<sockaddr*>(&self), &length) != 0 ||
            ::connect(s, reinterpret_cast<const sockaddr*>(&self), length) != 0 || !set_non_blocking(s)) {
            close_socket(s);
            return false;
        }
        socket_ = s;
        return true;
    }
    void fire() const noexcept {
        const char byte = 1;
        if (socket_ != invalid_socket) ::send(socket_, &byte, 1, 0);
    }
    native_socket socket() const noexcept { return socket_; }

private:
    native_socket socket_ = invalid_socket;
};
#endif

/* ------------------------------------------------------------------------------------------------
   DNS: queries and answers
   A stub resolver (RFC 1035) for the names that are neither IP addresses nor in the hosts file, so
   that opening a connection never blocks poll(): the A and AAAA queries go out at once over UDP (over
   TCP when an answer comes back truncated), and an answer is believed only once it matches its query.
   The writer and the reader are sans-I/O (fuzz/fuzz_dns.cpp); DnsLookup moves their bytes.
   LLM_STREAM_NO_DNS leaves it out: resolve_host() then asks the system's resolver, which blocks.
   ------------------------------------------------------------------------------------------------ */
#if !defined(LLM_STREAM_NO_DNS)

constexpr std::uint16_t dns_type_a = 1, dns_type_cname = 5, dns_type_aaaa = 28, dns_class_in = 1;
constexpr std::size_t dns_header_bytes = 12;
constexpr std::size_t dns_max_name_bytes = 255;  // in wire form, length bytes and the final 0 included
constexpr int dns_max_cname_hops = 8;

LLM_STREAM_COLD inline void dns_put_u16(std::string& out, std::uint16_t v) {
    out += static_cast<char>(v >> 8);
    out += static_cast<char>(v & 0xFF);
}

LLM_STREAM_COLD inline std::uint16_t dns_u16(std::string_view message, std::size_t at) noexcept {
    return static_cast<std::uint16_t>(static_cast<unsigned char>(message[at]) << 8 |
                                      static_cast<unsigned char>(message[at + 1]));
}

/* Appends `name` in wire form (length-prefixed labels, then 0); ErrorCode::dns naming it when it cannot
   be one. No IDNA: an internationalised name must be given in its xn-- form. */
LLM_STREAM_COLD inline Error dns_wire_name(std::string_view name, std::string& out) {
    auto refuse = [&](const char* why) {
        return make_error(ErrorCode::dns, "cannot look up \"" + excerpt(name, 80) + "\": " + why);
    };
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);  // an absolute name
    if (name.empty()) return refuse("the name is empty");
    const std::size_t start = out.size();
    std::size_t label = 0;
    for (std::size_t i = 0; i <= name.size(); ++i) {
        const unsigned char c = i < name.size() ? static_cast<unsigned char>(name[i]) : '.';
        if (c >= 0x80) return refuse("not an ASCII name (give an internationalised name in its xn-- form)");
        if (c <= ' ' || c == 0x7F) return refuse("a space or control character in the name");
        if (c != '.') continue;
        if (i == label) return refuse("an empty label");
        if (i - label > 63) return refuse("a label longer than 63 bytes");
        out += static_cast<char>(i - label);
        out.append(name.substr(label, i - label));
        label = i + 1;
    }
    out += '\0';
    if (out.size() - start > dns_max_name_bytes) return refuse("longer than 255 bytes");
    return {};
}

/* A standard query with recursion desired for the `type` records (dns_type_a, dns_type_aaaa) of `name`. */
LLM_STREAM_COLD inline Error write_dns_query(std::string_view name, std::uint16_t id, std::uint16_t type, std::string& out) {
    out.clear();
    dns_put_u16(out, id);
    dns_put_u16(out, 0x0100);  // QR 0, opcode 0 (a query), RD 1
    dns_put_u16(out, 1);       // one question
    out.append(6, '\0');       // no answer, authority or additional records
    if (Error e = dns_wire_name(name, out)) return e;
    dns_put_u16(out, type);
    dns_put_u16(out, dns_class_in);
    return {};
}

/* The name at `pos` in wire form, lower case, compression pointers followed; `pos` moves past it in
   place. False when malformed. A pointer must point before itself and the name stays within 255 bytes,
   so no chain of pointers can loop. */
LLM_STREAM_COLD inline bool dns_read_name(std::string_view message, std::size_t& pos, std::string& wire) {
    wire.clear();
    std::size_t at = pos;
    bool jumped = false;
    for (;;) {
        if (at >= message.size()) return false;
        const unsigned length = static_cast<unsigned char>(message[at]);
        if ((length & 0xC0) == 0xC0) {
            if (at + 1 >= message.size()) return false;
            const std::size_t target = (length & 0x3Fu) << 8 | static_cast<unsigned char>(message[at + 1]);
            if (target >= at) return false;
            if (!jumped) pos = at + 2;
            jumped = true;
            at = target;
            continue;
        }
        if ((length & 0xC0) != 0 || at + 1 + length > message.size()) return false;  // reserved label types
        if (wire.size() + 1 + length > dns_max_name_bytes) return false;
        wire += static_cast<char>(length);
        for (std::size_t i = at + 1; i < at + 1 + length; ++i) wire += ascii_lower(message[i]);
        at += 1 + length;
        if (length == 0) break;
    }
    if (!jumped) pos = at;
    return true;
}

/* What an answer says, for the query it was checked against. */
enum class DnsReply {
    addresses,      // the answer: `addresses` holds those of the asked type (none: the name has none)
    no_such_host,   // NXDOMAIN
    truncated,      // TC set: ask again over TCP
    server_failed,  // SERVFAIL, REFUSED, another error or a malformed answer (`why`): ask the next server
    not_ours,       // another id or question (late, or spoofed): keep waiting for the answer
};

/* One resource record of the answer section. */
struct DnsRecord {
    std::string owner;  // wire form, lower case
    std::uint16_t type = 0;
    std::size_t data = 0, data_length = 0;  // the RDATA's place in the message
};

/* The records of the answer section; false (with `why`) when one is malformed or the count lies. */
LLM_STREAM_COLD inline bool dns_answer_records(std::string_view message, std::size_t pos, std::size_t count,
                               std::vector<DnsRecord>& out, std::string& why) {
    for (std::size_t i = 0; i < count; ++i) {
        DnsRecord r;
        if (!dns_read_name(message, pos, r.owner) || pos + 10 > message.size()) {
            why = "answer record " + std::to_string(i + 1) + " is cut short or malformed";
            return false;
        }
        r.type = dns_u16(message, pos);
        r.data_length = dns_u16(message, pos + 8);
        r.data = pos + 10;  // after TYPE, CLASS, TTL, RDLENGTH
        if (r.data + r.data_length > message.size()) {
            why = "answer record " + std::to_string(i + 1) + " has a longer RDLENGTH than the message";
            return false;
        }
        pos = r.data + r.data_length;
        if (dns_u16(message, r.data - 8) == dns_class_in) out.push_back(std::move(r));
    }
    return true;
}

/* Follows `name` through the CNAME records to the addresses of `type` (dns_type_a or dns_type_aaaa). */
LLM_STREAM_COLD inline bool dns_follow_records(std::string_view message, const std::vector<DnsRecord>& records, std::string name,
                               std::uint16_t type, std::vector<std::string>& addresses, std::string& why) {
    const std::size_t size = type == dns_type_a ? 4 : 16;
    for (int hop = 0; hop <= dns_max_cname_hops; ++hop) {
        const DnsRecord* alias = nullptr;
        for (const DnsRecord& r : records) {
            if (r.owner != name) continue;
            if (r.type == dns_type_cname) alias = &r;
            if (r.type != type) continue;
            char text[64];
            if (r.data_length != size || !inet_ntop(size == 4 ? AF_INET : AF_INET6, message.data() + r.data, text, sizeof text)) {
                why = "an address record of " + std::to_string(r.data_length) + " bytes";
                return false;
            }
            addresses.push_back(text);
        }
        if (!addresses.empty() || !alias) return true;
        std::size_t at = alias->data;
        if (!dns_read_name(message, at, name) || at != alias->data + alias->data_length) {
            why = "a malformed CNAME record";
            return false;
        }
    }
    why = "a chain of more than " + std::to_string(dns_max_cname_hops) + " CNAME records";
    return false;
}

/* The header and question of `message` against those of `query`: the id, QR, one question that is the
   query's (names compared case-insensitively), whose name goes to `asked`; `pos` moves past it. */
LLM_STREAM_COLD inline bool dns_answers_query(std::string_view message, std::string_view query, std::size_t& pos, std::string& asked) {
    if (message.size() < dns_header_bytes || query.size() < dns_header_bytes + 5) return false;
    if (message.substr(0, 2) != query.substr(0, 2) || (message[2] & 0x80) == 0 || dns_u16(message, 4) != 1) return false;
    std::string answered;
    std::size_t query_pos = dns_header_bytes;
    pos = dns_header_bytes;
    if (!dns_read_name(query, query_pos, asked) || !dns_read_name(message, pos, answered) || asked != answered)
        return false;
    if (pos + 4 > message.size() || message.substr(pos, 4) != query.substr(query_pos, 4)) return false;
    pos += 4;
    return true;
}

/* Reads `message` as the answer to `query` (as write_dns_query wrote it). */
LLM_STREAM_COLD inline DnsReply read_dns_answer(std::string_view message, std::string_view query, std::vector<std::string>& addresses,
                                std::string& why) {
    addresses.clear();
    std::size_t pos = 0;
    std::string name;
    if (!dns_answers_query(message, query, pos, name)) return DnsReply::not_ours;
    const unsigned opcode = (static_cast<unsigned char>(message[2]) >> 3) & 0xF;
    const unsigned rcode = static_cast<unsigned char>(message[3]) & 0xF;
    if (opcode != 0) {
        why = "an answer with opcode " + std::to_string(opcode);
        return DnsReply::server_failed;
    }
    if (message[2] & 0x02) return DnsReply::truncated;
    if (rcode == 3) return DnsReply::no_such_host;
    if (rcode != 0) {
        why = rcode == 2 ? "SERVFAIL" : rcode == 5 ? "REFUSED" : "RCODE " + std::to_string(rcode);
        return DnsReply::server_failed;
    }
    std::vector<DnsRecord> records;
    if (!dns_answer_records(message, pos, dns_u16(message, 6), records, why) ||
        !dns_follow_records(message, records, name, dns_u16(query, query.size() - 4), addresses, why)) {
        addresses.clear();
        return DnsReply::server_failed;
    }
    return DnsReply::addresses;
}

/* Appends the addresses a hosts file (its text) gives `name`: "address name alias..." lines, #
   comments, names compared case-insensitively. */
LLM_STREAM_COLD inline void hosts_file_addresses(std::string_view text, std::string_view name, std::vector<std::string>& out) {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
    while (!text.empty()) {
        std::string_view line = text.substr(0, text.find('\n'));
        text.remove_prefix(std::min(text.size(), line.size() + 1));
        line = line.substr(0, line.find('#'));
        std::vector<std::string_view> fields;
        for (std::size_t i = 0; i < line.size();) {
            std::size_t end = i;
            while (end < line.size() && !space(line[end])) ++end;
            if (end > i) fields.push_back(line.substr(i, end - i));
            i = end + 1;
        }
        for (std::size_t f = 1; f < fields.size(); ++f)
            if (iequals(fields[f], name)) {
                out.push_back(std::string(fields[0]));
                break;
            }
    }
}

/* Where and how patiently DnsLookup asks. */
struct DnsSettings {
    std::vector<std::string> servers;  // as DnsOptions::servers
    std::chrono::milliseconds timeout{5000};
    int attempts = 2;
};

/* The nameserver lines (the first 3, as glibc) and `options timeout:N attempts:N` of a resolv.conf. */
LLM_STREAM_COLD inline void read_resolv_conf(std::string_view text, DnsSettings& out) {
    while (!text.empty()) {
        std::string_view line = text.substr(0, text.find('\n'));
        text.remove_prefix(std::min(text.size(), line.size() + 1));
        line = trim_ascii_space(line.substr(0, line.find_first_of("#;")));
        const std::size_t gap = std::min(line.size(), line.find_first_of(" \t"));
        const std::string_view keyword = line.substr(0, gap), rest = trim_ascii_space(line.substr(gap));
        if (keyword == "nameserver" && out.servers.size() < 3 && !rest.empty())
            out.servers.push_back(std::string(rest.substr(0, rest.find_first_of(" \t"))));
        if (keyword != "options") continue;
        for (std::size_t i = 0; i < rest.size();) {
            std::size_t end = std::min(rest.size(), rest.find_first_of(" \t", i));
            const std::string_view option = rest.substr(i, end - i);
            std::uint64_t n = 0;
            if (option.substr(0, 8) == "timeout:" && parse_decimal(option.substr(8), n))
                out.timeout = std::chrono::seconds(std::clamp<std::uint64_t>(n, 1, 30));
            if (option.substr(0, 9) == "attempts:" && parse_decimal(option.substr(9), n))
                out.attempts = static_cast<int>(std::clamp<std::uint64_t>(n, 1, 5));
            i = end + 1;
        }
    }
}

/* A name server's address: "address" (port 53) or "address:port", an IPv6 one in brackets with a port. */
LLM_STREAM_COLD inline bool dns_server_address(const std::string& text, SocketAddress& out) {
    std::string host = text, port = "53";
    const std::size_t colon = text.rfind(':');
    if (!text.empty() && text[0] == '[' && colon != std::string::npos && colon > 0 && text[colon - 1] == ']') {
        host = text.substr(1, colon - 2);
        port = text.substr(colon + 1);
    } else if (colon != std::string::npos && text.find(':') == colon) {
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    addrinfo hints{};
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_DGRAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || !found) return false;
    const bool fits = found->ai_addrlen <= sizeof out.storage;
    if (fits) {
        std::memcpy(&out.storage, found->ai_addr, found->ai_addrlen);
        out.length = static_cast<socklen_t>(found->ai_addrlen);
    }
    freeaddrinfo(found);
    return fits;
}

#endif  // LLM_STREAM_NO_DNS

/* The text of a small system file (at most 1 MiB read); empty when it cannot be read. */
LLM_STREAM_COLD inline std::string read_system_file(const std::string& path) {
    std::string text;
    std::FILE* f = path.empty() ? nullptr : std::fopen(path.c_str(), "rb");
    if (!f) return text;
    char buffer[4096];
    std::size_t got = 0;
    while (text.size() < (1u << 20) && (got = std::fread(buffer, 1, sizeof buffer, f)) > 0) text.append(buffer, got);
    std::fclose(f);
    return text;
}

#if !defined(LLM_STREAM_NO_DNS)
/* The settings `options` ask for: their servers, else resolv.conf's, else 127.0.0.1 (as glibc). */
LLM_STREAM_COLD inline DnsSettings dns_settings(const DnsOptions& options, const std::string& resolv_conf_path = "/etc/resolv.conf") {
    DnsSettings s;
    read_resolv_conf(read_system_file(resolv_conf_path), s);
    if (!options.servers.empty()) s.servers = options.servers;
    if (s.servers.empty()) s.servers.push_back("127.0.0.1");
    if (options.timeout.count() > 0) s.timeout = options.timeout;
    if (options.attempts > 0) s.attempts = options.attempts;
    return s;
}

/* How long until `end`, rounded up (a wait that long finds it passed); 0 once it has. */
LLM_STREAM_COLD inline std::chrono::milliseconds time_until(Clock::time_point end, Clock::time_point now) noexcept {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(end - now);
    return left.count() > 0 ? left : std::chrono::milliseconds(0);
}

#if !defined(_WIN32)
/* The A and AAAA lookup of one name over non-blocking sockets. Each try asks one server (over UDP, then
   TCP when an answer is truncated) and gives it `timeout`; the tries go round the servers `attempts`
   times. step() never blocks; between steps, wait on socket() for at most time_left(). */
class DnsLookup {
public:
    DnsLookup(std::string name, DnsSettings settings) : name_(std::move(name)), settings_(std::move(settings)) {
        queries_[0].type = dns_type_aaaa;
        queries_[1].type = dns_type_a;
    }
    DnsLookup(const DnsLookup&) = delete;
    DnsLookup& operator=(const DnsLookup&) = delete;
    ~DnsLookup() { close(); }

    /* would_block until it is over: ok (addresses(), ordered by finish()) or failed (error(), ErrorCode::dns). */
    IoResult step() {
        if (done_) return {error_ ? IoStatus::failed : IoStatus::ok, 0};
        if (tries_ == 0) return start_try();
        if (Clock::now() >= try_ends_) return next_try(server_name() + " did not answer within " +
                                                         std::to_string(settings_.timeout.count()) + " ms");
        return tcp_ ? step_tcp() : read_udp();
    }
    native_socket socket() const noexcept { return socket_; }
    bool wants_write() const noexcept { return connecting_ || sent_ < outgoing_.size(); }
    std::chrono::milliseconds time_left(Clock::time_point now) const noexcept { return time_until(try_ends_, now); }
    const std::vector<std::string>& addresses() const noexcept { return addresses_; }
    const Error& error() const noexcept { return error_; }

private:
    struct Query {
        std::uint16_t type = 0;
        std::string bytes;  // as sent (over TCP after a length)
        bool answered = false;
        std::vector<std::string> addresses;
    };
    static constexpr int reads_per_step = 8;  // bounded work per step, whatever a server floods us with

    const std::string& server_text() const { return settings_.servers[(tries_ - 1) % settings_.servers.size()]; }
    std::string server_name() const { return "the name server " + server_text(); }
    void close() {
        if (socket_ != invalid_socket) close_socket(socket_);
        socket_ = invalid_socket;
        tcp_ = connecting_ = false;
        outgoing_.clear();
        incoming_.clear();
        sent_ = 0;
    }
    IoResult fail(const std::string& why) {
        close();
        done_ = true;
        error_ = make_error(ErrorCode::dns, "cannot resolve " + name_ + ": " + why);
        return {IoStatus::failed, 0};
    }
    IoResult next_try(std::string why) {
        last_why_ = std::move(why);
        return start_try();
    }
    bool open_socket(int type);
    IoResult start_try();
    IoResult send_udp_queries();
    IoResult read_udp();
    IoResult start_tcp();
    IoResult step_tcp();
    IoResult read_tcp();
    IoResult take(std::string_view message);
    IoResult finish();

    std::string name_;
    DnsSettings settings_;
    Query queries_[2];  // AAAA, A
    std::random_device random_;  // the ids, so that an off-path attacker cannot guess them
    std::size_t tries_ = 0;
    SocketAddress server_;
    native_socket socket_ = invalid_socket;
    bool tcp_ = false, connecting_ = false, done_ = false;
    std::string outgoing_, incoming_;  // over TCP: the queries (each after its length), what arrived
    std::size_t sent_ = 0;
    Clock::time_point try_ends_{};
    std::string last_why_;
    std::vector<std::string> addresses_;
    Error error_;
};

/* A socket of `type` connected (or connecting, for TCP) to server_; false with last_why_ otherwise. */
LLM_STREAM_COLD inline bool DnsLookup::open_socket(int type) {
    close();
    socket_ = new_socket(server_.storage.ss_family, type, 0);
    if (socket_ == invalid_socket) {
        last_why_ = server_name() + ": " + socket_error_text(last_socket_error());
        return false;
    }
    if (::connect(socket_, reinterpret_cast<const sockaddr*>(&server_.storage), server_.length) == 0) return true;
    const int e = last_socket_error();
    connecting_ = type == SOCK_STREAM && is_connect_pending(e);
    if (!connecting_) last_why_ = server_name() + ": " + socket_error_text(e);
    return connecting_;
}

/* The next server in turn, asked over UDP; failed once every try has been made. */
LLM_STREAM_COLD inline IoResult DnsLookup::start_try() {
    const std::size_t tries = static_cast<std::size_t>(std::max(settings_.attempts, 1)) * settings_.servers.size();
    while (tries_ < tries) {
        ++tries_;
        try_ends_ = Clock::now() + settings_.timeout;
        if (!dns_server_address(server_text(), server_)) {
            last_why_ = "the name server \"" + server_text() + "\" is not an IP address (with an optional port)";
            continue;
        }
        if (!open_socket(SOCK_DGRAM)) continue;
        const IoResult r = send_udp_queries();
        if (r.status != IoStatus::failed || done_) return r;
    }
    return fail(last_why_ + " (" + std::to_string(tries) + (tries == 1 ? " try)" : " tries)"));
}

/* A new id for each query not answered yet, sent in one datagram each. */
LLM_STREAM_COLD inline IoResult DnsLookup::send_udp_queries() {
    for (Query& q : queries_) {
        if (q.answered) continue;
        if (Error e = write_dns_query(name_, static_cast<std::uint16_t>(random_() & 0xFFFF), q.type, q.bytes)) {
            close();
            done_ = true;
            error_ = std::move(e);
            return {IoStatus::failed, 0};
        }
        int error = 0;
        if (socket_write(socket_, q.bytes.data(), q.bytes.size(), error).status != IoStatus::ok) {
            last_why_ = server_name() + ": " + socket_error_text(error);
            return {IoStatus::failed, 0};
        }
    }
    return {IoStatus::would_block, 0};
}

LLM_STREAM_COLD inline IoResult DnsLookup::read_udp() {
    char datagram[4096];
    for (int reads = 0; reads < reads_per_step; ++reads) {
        int error = 0;
        const IoResult r = socket_read(socket_, datagram, sizeof datagram, error);
        if (r.status == IoStatus::would_block) break;
        if (r.status == IoStatus::failed) return next_try(server_name() + ": " + socket_error_text(error));
        const std::size_t try_before = tries_;
        const IoResult t = take({datagram, r.bytes});  // an empty datagram reads as closed: nothing to take
        if (t.status != IoStatus::would_block || tries_ != try_before || tcp_) return t;
    }
    return {IoStatus::would_block, 0};
}

/* The same server again over TCP, for the queries not answered yet (RFC 1035 4.2.2: each after its length). */
LLM_STREAM_COLD inline IoResult DnsLookup::start_tcp() {
    if (!open_socket(SOCK_STREAM)) return next_try(last_why_);
    tcp_ = true;
    try_ends_ = Clock::now() + settings_.timeout;
    for (const Query& q : queries_) {
        if (q.answered) continue;
        dns_put_u16(outgoing_, static_cast<std::uint16_t>(q.bytes.size()));
        outgoing_ += q.bytes;
    }
    return step_tcp();
}

LLM_STREAM_COLD inline IoResult DnsLookup::step_tcp() {
    if (connecting_) {
        pollfd probe = {socket_, POLLOUT, 0};
        if (::poll(&probe, 1, 0) == 0) return {IoStatus::would_block, 0};
        int error = 0;
        socklen_t length = sizeof error;
        if (getsockopt(socket_, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = last_socket_error();
        if (error != 0) return next_try(server_name() + " over TCP: " + socket_error_text(error));
        connecting_ = false;
    }
    while (sent_ < outgoing_.size()) {
        int error = 0;
        const IoResult w = socket_write(socket_, outgoing_.data() + sent_, outgoing_.size() - sent_, error);
        if (w.status == IoStatus::would_block) return w;
        if (w.status != IoStatus::ok) return next_try(server_name() + " over TCP: " + socket_error_text(error));
        sent_ += w.bytes;
    }
    return read_tcp();
}

/* Reads the answers, each after its 2-byte length, as they come. */
LLM_STREAM_COLD inline IoResult DnsLookup::read_tcp() {
    char buffer[4096];
    for (int reads = 0; reads < reads_per_step; ++reads) {
        int error = 0;
        const IoResult r = socket_read(socket_, buffer, sizeof buffer, error);
        if (r.status == IoStatus::would_block) break;
        if (r.status != IoStatus::ok)
            return next_try(server_name() + " closed the TCP connection before answering" +
                            (r.status == IoStatus::failed ? " (" + socket_error_text(error) + ")" : std::string()));
        incoming_.append(buffer, r.bytes);
        while (incoming_.size() >= 2 && incoming_.size() >= 2u + dns_u16(incoming_, 0)) {
            const std::size_t length = dns_u16(incoming_, 0), try_before = tries_;
            const std::string message = incoming_.substr(2, length);
            incoming_.erase(0, 2 + length);
            const IoResult t = take(message);
            if (t.status != IoStatus::would_block || tries_ != try_before) return t;
        }
    }
    return {IoStatus::would_block, 0};
}

/* One message from the server: an answer to one of the queries, or something to ignore. */
LLM_STREAM_COLD inline IoResult DnsLookup::take(std::string_view message) {
    for (Query& q : queries_) {
        if (q.answered) continue;
        std::string why;
        switch (read_dns_answer(message, q.bytes, q.addresses, why)) {
        case DnsReply::not_ours: continue;
        case DnsReply::addresses:
            q.answered = true;
            return queries_[0].answered && queries_[1].answered ? finish() : IoResult{IoStatus::would_block, 0};
        case DnsReply::no_such_host: return fail("no such host");
        case DnsReply::truncated:
            return tcp_ ? next_try(server_name() + " sent a truncated answer over TCP") : start_tcp();
        case DnsReply::server_failed: return next_try(server_name() + " answered " + why);
        }
    }
    return {IoStatus::would_block, 0};
}

/* Whether this host has a route to `numeric`: a UDP socket connect()s to it (no packet is sent), as
   getaddrinfo finds out when it sorts addresses (RFC 6724). */
LLM_STREAM_COLD inline bool dns_routable(const std::string& numeric) {
    SocketAddress a;
    if (!dns_server_address(numeric, a)) return false;
    const native_socket s = ::socket(a.storage.ss_family, SOCK_DGRAM, 0);
    if (s == invalid_socket) return false;
    const bool routable = ::connect(s, reinterpret_cast<const sockaddr*>(&a.storage), a.length) == 0;
    close_socket(s);
    return routable;
}

/* AAAA first, then A, as getaddrinfo orders them on a host that reaches IPv6; A first on one that
   does not (so that a connect does not wait on an unreachable address first). */
LLM_STREAM_COLD inline IoResult DnsLookup::finish() {
    close();
    const bool ipv6_first = !queries_[0].addresses.empty() && dns_routable(queries_[0].addresses.front());
    const Query& first = queries_[ipv6_first ? 0 : 1];
    const Query& second = queries_[ipv6_first ? 1 : 0];
    addresses_ = first.addresses;
    addresses_.insert(addresses_.end(), second.addresses.begin(), second.addresses.end());
    if (addresses_.empty()) return fail("the name has no address (no A or AAAA record)");
    done_ = true;
    return {IoStatus::ok, 0};
}
#else
/* The lookup of one name by the system's resolver (GetAddrInfoExW, overlapped: Windows 8 and later),
   which answers on a thread of its own and then fires a LoopbackSignal, so that socket() turns
   readable: the same interface as the POSIX lookup. step() never blocks. DnsSettings' timeout and
   attempts bound the wait (the system picks the servers). A lookup given up (timeout, cancel(),
   destruction) asks GetAddrInfoExCancel to stop, which wine 8 cannot (it lets the query run on): so the
   state the resolver writes into is shared, and whichever side finishes last frees it. */
class DnsLookup {
public:
    DnsLookup(std::string name, const DnsSettings& settings)
        : name_(std::move(name)), patience_(settings.timeout * std::max(settings.attempts, 1)) {}
    DnsLookup(const DnsLookup&) = delete;
    DnsLookup& operator=(const DnsLookup&) = delete;
    ~DnsLookup() {
        if (!pending_) return;
        if (!pending_->completed.load(std::memory_order_acquire)) cancel_system_lookup(&pending_->cancel);
        release(pending_);
    }

    /* would_block until it is over: ok (addresses(), in the system's order) or failed (error(), ErrorCode::dns). */
    IoResult step() {
        if (done_) return {error_ ? IoStatus::failed : IoStatus::ok, 0};
        if (!pending_) return start();
        if (pending_->completed.load(std::memory_order_acquire)) return finish();
        if (Clock::now() >= ends_)
            return fail("the system's resolver did not answer within " + std::to_string(patience_.count()) + " ms");
        return {IoStatus::would_block, 0};
    }
    native_socket socket() const noexcept { return pending_ ? pending_->signal.socket() : invalid_socket; }
    bool wants_write() const noexcept { return false; }
    std::chrono::milliseconds time_left(Clock::time_point now) const noexcept { return time_until(ends_, now); }
    const std::vector<std::string>& addresses() const noexcept { return addresses_; }
    const Error& error() const noexcept { return error_; }

private:
    /* Written by the resolver's thread until `completed`; OVERLAPPED first, so that the completion
       routine finds the whole from the OVERLAPPED it is given. */
    struct Pending {
        OVERLAPPED overlapped;
        ADDRINFOEXW* result;
        HANDLE cancel;
        int status;
        std::atomic<bool> completed;
        std::atomic<int> owners;  // the lookup, and the query while it runs
        LoopbackSignal signal;
    };

    static void release(Pending* p) noexcept {
        if (p->owners.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
        if (p->result) FreeAddrInfoExW(p->result);
        delete p;
    }
    static void CALLBACK on_completion(DWORD status, DWORD, LPWSAOVERLAPPED overlapped) noexcept {
        static_assert(std::is_standard_layout<Pending>::value, "the OVERLAPPED must convert to its Pending");
        Pending* p = reinterpret_cast<Pending*>(overlapped);
        p->status = static_cast<int>(status);
        p->completed.store(true, std::memory_order_release);
        p->signal.fire();
        release(p);
    }
    /* GetAddrInfoExCancel, found at run time: Windows 7 lacks it (an import would keep the program from
       starting there) and mingw-w64's headers do not declare it. */
    static void cancel_system_lookup(HANDLE* handle) noexcept {
        using Cancel = int(WSAAPI*)(HANDLE*);
        static const Cancel cancel = reinterpret_cast<Cancel>(reinterpret_cast<void (*)()>(
            GetProcAddress(GetModuleHandleW(L"ws2_32.dll"), "GetAddrInfoExCancel")));
        if (cancel) cancel(handle);
    }
    IoResult fail(const std::string& why) {
        done_ = true;
        error_ = make_error(ErrorCode::dns, "cannot resolve " + name_ + ": " + why);
        return {IoStatus::failed, 0};
    }
    IoResult start();
    IoResult finish();

    std::string name_;
    std::chrono::milliseconds patience_;
    Clock::time_point ends_{};
    Pending* pending_ = nullptr;
    bool done_ = false;
    std::vector<std::string> addresses_;
    Error error_;
};

/* Asks for the name as UTF-16, TCP addresses of the families this host has configured. */
LLM_STREAM_COLD inline IoResult DnsLookup::start() {
    const int length = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, name_.c_str(), -1, nullptr, 0);
    if (length <= 0) return fail("the name is not valid UTF-8");
    std::wstring wide(static_cast<std::size_t>(length), L'\0');
    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, name_.c_str(), -1, &wide[0], length);
    std::unique_ptr<Pending> pending(new Pending());
    if (!pending->signal.open()) return fail("no loopback socket to wait on: " + socket_error_text(last_socket_error()));
    pending->owners.store(2);
    pending_ = pending.release();
    ADDRINFOEXW hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_ADDRCONFIG;
    ends_ = Clock::now() + patience_;
    const int rc = GetAddrInfoExW(wide.c_str(), nullptr, NS_DNS, nullptr, &hints, &pending_->result, nullptr,
                                  &pending_->overlapped,
                                  reinterpret_cast<LPLOOKUPSERVICE_COMPLETION_ROUTINE>(&on_completion), &pending_->cancel);
    if (rc == WSA_IO_PENDING) return {IoStatus::would_block, 0};
    pending_->owners.store(1);  // over already: the completion routine is not called
    pending_->status = rc;
    pending_->completed.store(true);
    return finish();
}

LLM_STREAM_COLD inline IoResult DnsLookup::finish() {
    if (pending_->status != 0) return fail(socket_error_text(pending_->status));
    // The cast: mingw-w64's ws2tcpip.h spells ai_next's type addrinfoexW, a struct it never defines.
    for (const ADDRINFOEXW* a = pending_->result; a; a = reinterpret_cast<const ADDRINFOEXW*>(a->ai_next))
        if (a->ai_addr && (a->ai_family == AF_INET || a->ai_family == AF_INET6))
            addresses_.push_back(numeric_host(a->ai_addr));
    if (addresses_.empty()) return fail("the name has no address");
    done_ = true;
    return {IoStatus::ok, 0};
}
#endif
#endif  // LLM_STREAM_NO_DNS

/* ------------------------------------------------------------------------------------------------
   Platform: name resolution, waiting
   ------------------------------------------------------------------------------------------------ */

/* Appends the TCP socket addresses getaddrinfo gives `host` and `port` asked with `flags`; its status
   (0 when it gave some). */
LLM_STREAM_COLD inline int append_addresses(const std::string& host, std::uint16_t port, int flags,
                                            std::vector<SocketAddress>& out) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV | flags;
    addrinfo* list = nullptr;
    const int status = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list);
    if (status != 0) return status;
    for (addrinfo* a = list; a; a = a->ai_next) {
        if (a->ai_addrlen > sizeof(sockaddr_storage)) continue;
        SocketAddress address;
        std::memcpy(&address.storage, a->ai_addr, a->ai_addrlen);
        address.length = static_cast<socklen_t>(a->ai_addrlen);
        out.push_back(address);
    }
    freeaddrinfo(list);
    return 0;
}

/* Appends the socket addresses of `text` with `port` when it is an IP address (AI_NUMERICHOST never
   consults a name server); false otherwise. */
LLM_STREAM_COLD inline bool append_ip_address(const std::string& text, std::uint16_t port, std::vector<SocketAddress>& out) {
    return append_addresses(text, port, AI_NUMERICHOST, out) == 0;
}

/* The socket addresses of numeric addresses (those that are not are left out). */
LLM_STREAM_COLD inline void append_numeric_addresses(const std::vector<std::string>& numeric, std::uint16_t port,
                                     std::vector<SocketAddress>& out) {
    for (const std::string& address : numeric) append_ip_address(address, port, out);
}

#if defined(LLM_STREAM_NO_DNS)
/* The addresses of the name `host` from the system's resolver (getaddrinfo), which blocks until it
   answers: the built-in one is left out. DnsOptions set for it are refused, naming the macro. */
LLM_STREAM_COLD inline Error system_resolve(const std::string& host, std::uint16_t port, const DnsOptions& options,
                                            std::vector<SocketAddress>& out) {
    const DnsOptions unset;
    if (!options.servers.empty() || options.hosts_file != unset.hosts_file || options.timeout != unset.timeout ||
        options.attempts != unset.attempts)
        return not_compiled_in("the built-in resolver (Config::dns)", "LLM_STREAM_NO_DNS");
    const int status = append_addresses(host, port, AI_ADDRCONFIG, out);
    if (status == 0) return {};
#if defined(_WIN32)
    return make_error(ErrorCode::dns, "cannot resolve " + host + ": " + socket_error_text(status));
#else
    return make_error(ErrorCode::dns, "cannot resolve " + host + ": " + gai_strerror(status));
#endif
}
#endif

/* Addresses for host:port known without asking a name server: numeric hosts never touch DNS; names go
   to config.resolver when set, else to config.dns's hosts file (on POSIX; Windows' resolver reads its
   own). `ask_dns` when none of them knows the name: DnsLookup then asks. With LLM_STREAM_NO_DNS the
   system's resolver is asked at once instead, and `ask_dns` stays false. */
LLM_STREAM_COLD inline Error resolve_host(const std::string& host, std::uint16_t port, const Config& config,
                          std::vector<SocketAddress>& out, bool& ask_dns) {
    out.clear();
    ask_dns = false;
    if (append_ip_address(host, port, out)) return {};
    if (config.resolver) {
        append_numeric_addresses(config.resolver(host), port, out);
        if (out.empty()) return make_error(ErrorCode::dns, "cannot resolve " + host + ": the resolver returned no usable address");
        return {};
    }
#if defined(LLM_STREAM_NO_DNS)
    return system_resolve(host, port, config.dns, out);
#else
#if !defined(_WIN32)
    std::vector<std::string> listed;
    hosts_file_addresses(read_system_file(config.dns.hosts_file), host, listed);
    append_numeric_addresses(listed, port, out);
#endif
    ask_dns = out.empty();
    return {};
#endif
}

/* Wakes a thread blocked in wait_for_socket() from cancel(): something wait_for_socket() polls with
   the socket, made readable by wake(). POSIX: a pipe; Windows: a LoopbackSignal. */
class Waker {
public:
    Waker() = default;
    Waker(const Waker&) = delete;
    Waker& operator=(const Waker&) = delete;
    ~Waker() {
#if !defined(_WIN32)
        if (fds_[0] >= 0) ::close(fds_[0]);
        if (fds_[1] >= 0) ::close(fds_[1]);
#endif
    }
    /* Called by the waiting thread before its first wait. */
    void prepare() {
        std::lock_guard<std::mutex> lock(mutex_);
#if defined(_WIN32)
        if (signal_.socket() == invalid_socket) signal_.open();
#else
        if (fds_[0] >= 0) return;
        int fds[2];
        if (::pipe(fds) == 0) {
            set_non_blocking(fds[0]);
            set_non_blocking(fds[1]);
            fds_[0] = fds[0];
            fds_[1] = fds[1];
        }
#endif
    }
    void wake() {
        std::lock_guard<std::mutex> lock(mutex_);
#if defined(_WIN32)
        signal_.fire();
#else
        if (fds_[1] >= 0) {
            const char byte = 1;
            [[maybe_unused]] const auto n = ::write(fds_[1], &byte, 1);
        }
#endif
    }
    /* Takes back the wakes sent so far, for a waiter that goes on waiting after one (StreamSet). */
    void drain() noexcept {
        char bytes[64];
#if defined(_WIN32)
        while (signal_.socket() != invalid_socket && ::recv(signal_.socket(), bytes, sizeof bytes, 0) > 0) {}
#else
        while (fds_[0] >= 0 && ::read(fds_[0], bytes, sizeof bytes) > 0) {}
#endif
    }
    /* What to poll for readability; invalid_socket before prepare() (or when it could not make one). */
    native_socket readable() const noexcept {
#if defined(_WIN32)
        return signal_.socket();
#else
        return fds_[0];
#endif
    }

private:
    std::mutex mutex_;
#if defined(_WIN32)
    LoopbackSignal signal_;
#else
    int fds_[2] = {-1, -1};
#endif
};

/* One socket of a poll set (poll() on POSIX, WSAPoll() on Windows: both report a socket's state as
   it is, not edges) and the wait on a set. */
#if defined(_WIN32)
using PollEntry = WSAPOLLFD;
constexpr short poll_readable = POLLRDNORM;
constexpr short poll_writable = POLLWRNORM;
inline void poll_entries(PollEntry* entries, std::size_t count, int ms) noexcept {
    WSAPoll(entries, static_cast<ULONG>(count), ms);
}
#else
using PollEntry = pollfd;
constexpr short poll_readable = POLLIN;
constexpr short poll_writable = POLLOUT;
inline void poll_entries(PollEntry* entries, std::size_t count, int ms) noexcept {
    ::poll(entries, static_cast<nfds_t>(count), ms);
}
#endif

inline PollEntry poll_entry(socket_handle socket, bool want_read, bool want_write) noexcept {
    PollEntry e{};
    e.fd = static_cast<native_socket>(socket);
    e.events = static_cast<short>((want_read ? poll_readable : 0) | (want_write ? poll_writable : 0));
    return e;
}

/* Blocks until the socket is ready in the wanted direction, the waker fires, or the timeout ends. */
inline void wait_for_socket(native_socket s, bool want_read, bool want_write, std::chrono::milliseconds timeout,
                            const Waker& waker) noexcept {
    const auto ms = std::clamp<std::chrono::milliseconds::rep>(timeout.count(), 0, 1 << 30);
    PollEntry entries[2] = {poll_entry(static_cast<socket_handle>(s), want_read, want_write),
                            poll_entry(static_cast<socket_handle>(waker.readable()), true, false)};
    poll_entries(entries, waker.readable() != invalid_socket ? 2 : 1, static_cast<int>(ms));
}

/* ------------------------------------------------------------------------------------------------
   TLS: what the built-in backends share (which CAs to trust, how a refusal is worded)
   ------------------------------------------------------------------------------------------------ */
#if defined(LLM_STREAM_MBEDTLS) || defined(LLM_STREAM_SCHANNEL)

inline Error tls_error(std::string message) {
    Error e;
    e.code = ErrorCode::tls;
    e.message = std::move(message);
    return e;
}

/* The bytes of an IP address literal ("127.0.0.1", "::1"): 4 or 16, or 0 for a host name. */
inline std::size_t ip_literal_bytes(const std::string& host, unsigned char (&out)[16]) {
    addrinfo hints{};
    hints.ai_flags = AI_NUMERICHOST;
    hints.ai_family = AF_UNSPEC;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || !found) return 0;
    std::size_t size = 0;
    if (found->ai_family == AF_INET) {
        sockaddr_in v4{};
        std::memcpy(&v4, found->ai_addr, sizeof v4);
        std::memcpy(out, &v4.sin_addr, size = 4);
    } else if (found->ai_family == AF_INET6) {
        sockaddr_in6 v6{};
        std::memcpy(&v6, found->ai_addr, sizeof v6);
        std::memcpy(out, &v6.sin6_addr, size = 16);
    }
    freeaddrinfo(found);
    return size;
}

/* Why a certificate does not fit the URL's host, in the words of every built-in backend. */
inline std::string host_mismatch_reason(const std::string& host, bool is_ip) {
    return is_ip ? "the certificate does not match the IP address " + host + " (not among its subjectAltName IP addresses)"
                 : "the certificate does not match the host name " + host;
}

/* Loads the CA sources that `options` name: ca_file and ca_dir, else SSL_CERT_FILE and SSL_CERT_DIR
   (ca_pem is each backend's own). `named` says whether there were any: if not, the system's trust
   applies. `load_file` and `load_dir` take a path and say whether they could read it. */
template <class LoadFile, class LoadDir>
Error load_named_cas(const TlsOptions& options, LoadFile load_file, LoadDir load_dir, bool& named) {
    named = true;
    if (!options.ca_file.empty() || !options.ca_dir.empty()) {
        if (!options.ca_file.empty() && !load_file(options.ca_file))
            return tls_error("cannot read CA certificates from " + options.ca_file);
        if (!options.ca_dir.empty() && !load_dir(options.ca_dir))
            return tls_error("cannot read CA certificates from the directory " + options.ca_dir);
        return {};
    }
    const char* env_file = std::getenv("SSL_CERT_FILE");
    const char* env_dir = std::getenv("SSL_CERT_DIR");
    if ((env_file && *env_file) || (env_dir && *env_dir)) {
        if (env_file && *env_file && !load_file(env_file))
            return tls_error(std::string("cannot read CA certificates from SSL_CERT_FILE=") + env_file);
        if (env_dir && *env_dir && !load_dir(env_dir))
            return tls_error(std::string("cannot read CA certificates from SSL_CERT_DIR=") + env_dir);
        return {};
    }
    named = false;
    return {};
}

#endif

/* ------------------------------------------------------------------------------------------------
   TLS: the built-in mbedTLS backend (written for 2.28 and 3.x)
   One backend holds the configuration, the trusted CAs (parsed once) and the random generator;
   sessions share it. Sockets stay non-blocking: want-read/want-write go back to the state machine.
   ------------------------------------------------------------------------------------------------ */
#if defined(LLM_STREAM_MBEDTLS)

inline std::string mbedtls_error_text(int rc) {
    char text[200];
    mbedtls_strerror(rc, text, sizeof text);
    char code[24];
    std::snprintf(code, sizeof code, " (-0x%04x)", static_cast<unsigned>(-rc));
    return std::string(text) + code;
}

/* Whether an mbedTLS error code (a high-level part plus a low-level part) says an allocation failed. */
inline bool mbedtls_allocation_failed(int rc) noexcept {
    const int high = -(-rc & 0x7F80), low = -(-rc & 0x007F);
    return high == MBEDTLS_ERR_SSL_ALLOC_FAILED || high == MBEDTLS_ERR_X509_ALLOC_FAILED ||
           high == MBEDTLS_ERR_PK_ALLOC_FAILED || high == MBEDTLS_ERR_ECP_ALLOC_FAILED ||
           high == MBEDTLS_ERR_MD_ALLOC_FAILED || high == MBEDTLS_ERR_CIPHER_ALLOC_FAILED ||
           low == MBEDTLS_ERR_MPI_ALLOC_FAILED || low == MBEDTLS_ERR_ASN1_ALLOC_FAILED;
}

/* `what` and mbedTLS's text for rc, as ErrorCode::tls, or out_of_memory when that is what rc says. */
inline Error mbedtls_failure(int rc, const std::string& what) {
    Error e = tls_error(what + mbedtls_error_text(rc));
    if (mbedtls_allocation_failed(rc)) e.code = ErrorCode::out_of_memory;
    return e;
}

/* One DER element: its tag and its contents. */
struct DerElement {
    unsigned char tag = 0;
    unsigned char* begin = nullptr;
    unsigned char* end = nullptr;
};

/* The first element with `tag` among the contents of `parent`, from `from` on (`from` moves past it).
   The certificate was parsed by mbedTLS already: a malformed element only ends the search. */
inline bool der_find(const DerElement& parent, unsigned char*& from, unsigned char tag, DerElement& found) {
    while (from < parent.end) {
        found.tag = *from++;
        std::size_t length = 0;
        if (mbedtls_asn1_get_len(&from, parent.end, &length) != 0) return false;
        found.begin = from;
        found.end = from = found.begin + length;
        if (found.tag == tag) return true;
    }
    return false;
}

inline bool der_child(const DerElement& parent, unsigned char tag, DerElement& found) {
    unsigned char* from = parent.begin;
    return der_find(parent, from, tag, found);
}

/* Whether the certificate's subjectAltName has an iPAddress entry equal to `ip` (4 or 16 bytes).
   mbedTLS 2.28 keeps only dNSName and otherName entries, so this reads the DER (RFC 5280 4.2.1.6):
   Certificate > tbsCertificate > [3] extensions > subjectAltName's OCTET STRING > GeneralNames. */
inline bool certificate_lists_ip(const mbedtls_x509_crt& certificate, const unsigned char* ip, std::size_t ip_size) {
    constexpr unsigned char sequence = MBEDTLS_ASN1_SEQUENCE | MBEDTLS_ASN1_CONSTRUCTED;
    constexpr unsigned char extensions_tag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 3;
    constexpr unsigned char ip_tag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_IP_ADDRESS;
    static constexpr char san_oid[] = MBEDTLS_OID_SUBJECT_ALT_NAME;
    const DerElement whole{0, certificate.raw.p, certificate.raw.p + certificate.raw.len};
    DerElement outer, tbs, wrapper, extensions, extension, field, names, name;
    if (!der_child(whole, sequence, outer) || !der_child(outer, sequence, tbs) ||
        !der_child(tbs, extensions_tag, wrapper) || !der_child(wrapper, sequence, extensions))
        return false;
    for (unsigned char* next = extensions.begin; der_find(extensions, next, sequence, extension);) {
        unsigned char* in_extension = extension.begin;
        if (!der_find(extension, in_extension, MBEDTLS_ASN1_OID, field)) continue;
        const auto oid_size = static_cast<std::size_t>(field.end - field.begin);
        if (oid_size != sizeof san_oid - 1 || std::memcmp(field.begin, san_oid, oid_size) != 0) continue;
        // The value follows the OID and an optional `critical` flag.
        if (!der_find(extension, in_extension, MBEDTLS_ASN1_OCTET_STRING, field) || !der_child(field, sequence, names))
            return false;
        for (unsigned char* at = names.begin; der_find(names, at, ip_tag, name);)
            if (static_cast<std::size_t>(name.end - name.begin) == ip_size && std::memcmp(name.begin, ip, ip_size) == 0)
                return true;
        return false;
    }
    return false;
}

/* Where a TLS session may be resumed: the host it was verified for and the peer's address and port
   (through a CONNECT tunnel, the proxy's). */
inline std::string tls_resumption_key(native_socket socket, const std::string& host) {
    sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    std::string key = host;
    if (getpeername(socket, reinterpret_cast<sockaddr*>(&peer), &length) == 0)
        key.append(reinterpret_cast<const char*>(&peer), static_cast<std::size_t>(length));
    return key;
}

/* Saved sessions (serialized), one per resumption key, the most recent few: a new connection to the
   same origin resumes instead of paying for a full handshake. Shared by the threads of a client. */
class TlsSessionCache {
public:
    std::string find(const std::string& key) const {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& entry : entries_)
            if (entry.first == key) return entry.second;
        return {};
    }
    void keep(const std::string& key, std::string session) {
        std::lock_guard<std::mutex> lock(mutex_);
        remove(key);
        if (entries_.size() >= capacity) entries_.erase(entries_.begin());  // the oldest goes
        entries_.emplace_back(key, std::move(session));
    }
    void forget(const std::string& key) {
        std::lock_guard<std::mutex> lock(mutex_);
        remove(key);
    }

private:
    void remove(const std::string& key) {
        entries_.erase(std::remove_if(entries_.begin(), entries_.end(), [&](const auto& e) { return e.first == key; }),
                       entries_.end());
    }

    static constexpr std::size_t capacity = 32;
    mutable std::mutex mutex_;
    std::vector<std::pair<std::string, std::string>> entries_;  // oldest first
};

/* The library's cipher suites with the fastest first: ECDHE with ChaCha20-Poly1305, then AES-GCM (TLS
   1.3's suites lead the same way with mbedTLS 3); the rest keep their order. mbedTLS's GCM works one
   block at a time even with AES-NI: on an x86-64 with AES-NI and PCLMULQDQ, mbedTLS 2.28 decrypts 16 KiB
   records 1.3-1.5x faster with ChaCha20-Poly1305 than with AES-128-GCM (bench/bench_aead.cpp). */
inline std::vector<int> mbedtls_suites_fastest_first() {
    static const int preferred[] = {
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
        MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256, MBEDTLS_TLS1_3_AES_128_GCM_SHA256, MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
#endif
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,       MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,       MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384};
    const int* available = mbedtls_ssl_list_ciphersuites();
    auto is_available = [&](int id) {
        for (const int* a = available; *a != 0; ++a)
            if (*a == id) return true;
        return false;
    };
    std::vector<int> suites;
    for (int id : preferred)
        if (is_available(id)) suites.push_back(id);
    for (const int* a = available; *a != 0; ++a)
        if (std::find(suites.begin(), suites.end(), *a) == suites.end()) suites.push_back(*a);
    suites.push_back(0);
    return suites;
}

/* Key exchange groups, fastest first: X25519 and P-256, then P-384; P-521 (several milliseconds a
   handshake) last. mbedTLS 3.1 names groups by their TLS numbers, earlier versions by curve. */
inline void mbedtls_prefer_fast_groups(mbedtls_ssl_config& config) {
#if MBEDTLS_VERSION_NUMBER >= 0x03010000
    static const std::uint16_t groups[] = {MBEDTLS_SSL_IANA_TLS_GROUP_X25519, MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
                                           MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1, MBEDTLS_SSL_IANA_TLS_GROUP_SECP521R1,
                                           MBEDTLS_SSL_IANA_TLS_GROUP_NONE};
    mbedtls_ssl_conf_groups(&config, groups);
#else
    static const mbedtls_ecp_group_id curves[] = {
#if defined(MBEDTLS_ECP_DP_CURVE25519_ENABLED)
        MBEDTLS_ECP_DP_CURVE25519,
#endif
#if defined(MBEDTLS_ECP_DP_SECP256R1_ENABLED)
        MBEDTLS_ECP_DP_SECP256R1,
#endif
#if defined(MBEDTLS_ECP_DP_SECP384R1_ENABLED)
        MBEDTLS_ECP_DP_SECP384R1,
#endif
#if defined(MBEDTLS_ECP_DP_SECP521R1_ENABLED)
        MBEDTLS_ECP_DP_SECP521R1,
#endif
        MBEDTLS_ECP_DP_NONE};
    mbedtls_ssl_conf_curves(&config, curves);
#endif
}

class MbedTlsBackend final : public TlsBackend, public std::enable_shared_from_this<MbedTlsBackend> {
public:
    MbedTlsBackend() {
        mbedtls_ssl_config_init(&config_);
        mbedtls_x509_crt_init(&trusted_);
        mbedtls_entropy_init(&entropy_);
        mbedtls_ctr_drbg_init(&random_);
    }
    ~MbedTlsBackend() override {
        mbedtls_ssl_config_free(&config_);
        mbedtls_x509_crt_free(&trusted_);
        mbedtls_ctr_drbg_free(&random_);
        mbedtls_entropy_free(&entropy_);
    }
    MbedTlsBackend(const MbedTlsBackend&) = delete;
    MbedTlsBackend& operator=(const MbedTlsBackend&) = delete;

    [[nodiscard]] Error init(const TlsOptions& options);
    std::string name() const override { return "mbedtls " MBEDTLS_VERSION_STRING; }
    [[nodiscard]] Error start(socket_handle socket, const std::string& host,
                              std::unique_ptr<TlsSession>& session) override;

    const mbedtls_ssl_config* config() const noexcept { return &config_; }
    TlsSessionCache& sessions() const noexcept { return sessions_; }

private:
    [[nodiscard]] Error load_trusted(const TlsOptions& options);
    // Sessions on several threads draw from one generator.
    static int random(void* self, unsigned char* out, std::size_t size) {
        auto* backend = static_cast<MbedTlsBackend*>(self);
        std::lock_guard<std::mutex> lock(backend->random_mutex_);
        return mbedtls_ctr_drbg_random(&backend->random_, out, size);
    }

    mbedtls_ssl_config config_;
    mbedtls_x509_crt trusted_;
    mbedtls_entropy_context entropy_;
    mbedtls_ctr_drbg_context random_;
    std::mutex random_mutex_;
    std::vector<int> suites_;  // the configuration points at it
    mutable TlsSessionCache sessions_;
};

class MbedTlsSession final : public TlsSession {
public:
    MbedTlsSession(std::shared_ptr<const MbedTlsBackend> backend, native_socket socket)
        : backend_(std::move(backend)), socket_(socket) {
        mbedtls_ssl_init(&ssl_);
    }
    ~MbedTlsSession() override {
        if (handshake_done_) mbedtls_ssl_close_notify(&ssl_);  // best effort, never waits
        mbedtls_ssl_free(&ssl_);
    }
    MbedTlsSession(const MbedTlsSession&) = delete;
    MbedTlsSession& operator=(const MbedTlsSession&) = delete;

    [[nodiscard]] Error setup(const std::string& host) {
        host_ = host;
        ip_size_ = ip_literal_bytes(host, ip_);
        int rc = mbedtls_ssl_setup(&ssl_, backend_->config());
        // SNI carries host names only (RFC 6066). Without a name mbedTLS matches none, and an IP
        // address is checked against the certificate's IP entries by verify_ip instead.
        if (rc == 0) rc = mbedtls_ssl_set_hostname(&ssl_, ip_size_ ? nullptr : host.c_str());
        if (rc != 0) return mbedtls_failure(rc, "TLS setup failed: ");
        if (ip_size_) mbedtls_ssl_set_verify(&ssl_, &MbedTlsSession::verify_ip, this);
        mbedtls_ssl_set_bio(&ssl_, this, &MbedTlsSession::send_callback, &MbedTlsSession::receive_callback, nullptr);
        resumption_key_ = tls_resumption_key(socket_, host);
        offer_saved_session();
        return {};
    }

    TlsResult handshake() override {
        const int rc = mbedtls_ssl_handshake(&ssl_);
        if (rc == 0) {
            handshake_done_ = true;
            if (!tls13()) keep_session();  // TLS 1.3 tickets come later, while reading
            return {TlsStatus::ok, 0};
        }
        if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) return verification_failed();
        return from_code(rc, "TLS handshake failed: ");
    }
    TlsResult read(char* buffer, std::size_t capacity) override {
        auto* into = reinterpret_cast<unsigned char*>(buffer);
        int rc = mbedtls_ssl_read(&ssl_, into, capacity);
#if defined(MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
        for (; rc == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET; rc = mbedtls_ssl_read(&ssl_, into, capacity))
            keep_session();  // TLS 1.3: a ticket to resume with; the data may follow at once
#endif
        if (rc > 0) return {TlsStatus::ok, static_cast<std::size_t>(rc)};
        if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) return {TlsStatus::closed, 0};
        return from_code(rc, "TLS read failed: ");
    }
    TlsResult write(const char* data, std::size_t size) override {
        const int rc = mbedtls_ssl_write(&ssl_, reinterpret_cast<const unsigned char*>(data), size);
        if (rc >= 0) return {TlsStatus::ok, static_cast<std::size_t>(rc)};
        return from_code(rc, "TLS write failed: ");
    }
    const Error& error() const override { return error_; }

private:
    bool tls13() const noexcept {
#if MBEDTLS_VERSION_NUMBER >= 0x03020000 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
        return mbedtls_ssl_get_version_number(&ssl_) == MBEDTLS_SSL_VERSION_TLS1_3;
#else
        return false;
#endif
    }
    // The session saved from an earlier connection to the same origin, if any: the server may resume
    // it (no certificate exchange, no key exchange) or decline it (a full handshake).
    void offer_saved_session() {
        const std::string saved = backend_->sessions().find(resumption_key_);
        if (saved.empty()) return;
        mbedtls_ssl_session session;
        mbedtls_ssl_session_init(&session);
        int rc = mbedtls_ssl_session_load(&session, reinterpret_cast<const unsigned char*>(saved.data()), saved.size());
        if (rc == 0) rc = mbedtls_ssl_set_session(&ssl_, &session);
        mbedtls_ssl_session_free(&session);
        if (rc != 0) backend_->sessions().forget(resumption_key_);  // unusable: not offered again
    }
    void keep_session() {
        mbedtls_ssl_session session;
        mbedtls_ssl_session_init(&session);
        std::string saved;
        std::size_t size = 0;
        if (mbedtls_ssl_get_session(&ssl_, &session) == 0 &&
            mbedtls_ssl_session_save(&session, nullptr, 0, &size) == MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL) {
            saved.resize(size);
            if (mbedtls_ssl_session_save(&session, reinterpret_cast<unsigned char*>(&saved[0]), size, &size) != 0)
                saved.clear();
        }
        mbedtls_ssl_session_free(&session);
        if (!saved.empty()) backend_->sessions().keep(resumption_key_, std::move(saved));
    }

    // The chain is verified by mbedTLS; at the leaf (depth 0), an IP address the certificate does not
    // list counts as a name mismatch.
    static int verify_ip(void* self, mbedtls_x509_crt* certificate, int depth, std::uint32_t* flags) {
        const auto* session = static_cast<const MbedTlsSession*>(self);
        if (depth == 0 && !certificate_lists_ip(*certificate, session->ip_, session->ip_size_))
            *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
        return 0;
    }

    TlsResult verification_failed() {
        std::uint32_t flags = mbedtls_ssl_get_verify_result(&ssl_);
        std::string reasons;
        if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
            reasons = host_mismatch_reason(host_, ip_size_ != 0);
            flags &= ~static_cast<std::uint32_t>(MBEDTLS_X509_BADCERT_CN_MISMATCH);
        }
        if (flags) {
            char info[512];
            mbedtls_x509_crt_verify_info(info, sizeof info, "", flags);
            std::string others = info;
            for (char& c : others)
                if (c == '\n') c = ';';
            while (!others.empty() && (others.back() == ';' || others.back() == ' ')) others.pop_back();
            reasons += (reasons.empty() ? "" : "; ") + others;
        }
        error_ = tls_error("certificate verification failed: " + reasons);
        return {TlsStatus::failed, 0};
    }

    TlsResult from_code(int rc, const char* what) {
        if (rc == MBEDTLS_ERR_SSL_WANT_READ) return {TlsStatus::want_read, 0};
        if (rc == MBEDTLS_ERR_SSL_WANT_WRITE) return {TlsStatus::want_write, 0};
#if defined(MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
        if (rc == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) return {TlsStatus::want_read, 0};  // TLS 1.3
#endif
        if (rc == MBEDTLS_ERR_SSL_CONN_EOF) return {TlsStatus::closed, 0};
        const bool socket_failed = rc == MBEDTLS_ERR_NET_SEND_FAILED || rc == MBEDTLS_ERR_NET_RECV_FAILED;
        error_ = socket_failed && socket_error_ ? tls_error(what + socket_error_text(socket_error_)) : mbedtls_failure(rc, what);
        return {TlsStatus::failed, 0};
    }
    static int send_callback(void* self, const unsigned char* data, std::size_t size) {
        auto* session = static_cast<MbedTlsSession*>(self);
        session->socket_error_ = 0;  // only a failure of this very call explains a later error
        const IoResult r = socket_write(session->socket_, reinterpret_cast<const char*>(data), size, session->socket_error_);
        if (r.status == IoStatus::ok) return static_cast<int>(r.bytes);
        if (r.status == IoStatus::would_block) session->socket_error_ = 0;
        return r.status == IoStatus::would_block ? MBEDTLS_ERR_SSL_WANT_WRITE : MBEDTLS_ERR_NET_SEND_FAILED;
    }
    static int receive_callback(void* self, unsigned char* buffer, std::size_t capacity) {
        auto* session = static_cast<MbedTlsSession*>(self);
        session->socket_error_ = 0;
        const IoResult r = socket_read(session->socket_, reinterpret_cast<char*>(buffer), capacity, session->socket_error_);
        if (r.status == IoStatus::ok) return static_cast<int>(r.bytes);
        if (r.status == IoStatus::would_block) session->socket_error_ = 0;
        if (r.status == IoStatus::closed) return 0;
        return r.status == IoStatus::would_block ? MBEDTLS_ERR_SSL_WANT_READ : MBEDTLS_ERR_NET_RECV_FAILED;
    }

    std::shared_ptr<const MbedTlsBackend> backend_;
    native_socket socket_;
    mbedtls_ssl_context ssl_;
    bool handshake_done_ = false;
    int socket_error_ = 0;
    std::string host_;
    std::string resumption_key_;
    unsigned char ip_[16] = {};
    std::size_t ip_size_ = 0;  // 4 or 16 when host_ is an IP address
    Error error_;
};

inline Error MbedTlsBackend::load_trusted(const TlsOptions& options) {
    bool any = false;
    if (!options.ca_pem.empty()) {
        // The PEM parser wants the terminating NUL counted.
        const int rc = mbedtls_x509_crt_parse(&trusted_, reinterpret_cast<const unsigned char*>(options.ca_pem.c_str()),
                                              options.ca_pem.size() + 1);
        if (rc < 0) return mbedtls_failure(rc, "cannot parse the in-memory CA PEM: ");
        any = true;
    }
    auto load_file = [&](const std::string& path) { return mbedtls_x509_crt_parse_file(&trusted_, path.c_str()) >= 0; };
    auto load_dir = [&](const std::string& path) { return mbedtls_x509_crt_parse_path(&trusted_, path.c_str()) >= 0; };
    bool named = false;
    if (Error e = load_named_cas(options, load_file, load_dir, named)) return e;
    if (named) return {};
    // The usual system bundles: Debian/Ubuntu, Fedora/RHEL, openSUSE, Alpine/BSD/macOS.
    static const char* const bundles[] = {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                                          "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem",
                                          "/usr/local/etc/openssl/cert.pem"};
    for (const char* bundle : bundles)
        if (load_file(bundle)) return {};
    if (load_dir("/etc/ssl/certs")) return {};
    if (!any && options.verify)
        return tls_error("no trusted CA certificates found (give a CA file, or set SSL_CERT_FILE)");
    return {};
}

inline Error MbedTlsBackend::init(const TlsOptions& options) {
#if MBEDTLS_VERSION_MAJOR >= 3 && defined(MBEDTLS_PSA_CRYPTO_C)
    if (psa_crypto_init() != PSA_SUCCESS)  // TLS 1.3 in mbedTLS 3 runs on PSA
        return tls_error("PSA crypto initialisation failed");
#endif
    static const char personalisation[] = "llm_stream";
    int rc = mbedtls_ctr_drbg_seed(&random_, mbedtls_entropy_func, &entropy_,
                                   reinterpret_cast<const unsigned char*>(personalisation), sizeof personalisation - 1);
    if (rc == 0)
        rc = mbedtls_ssl_config_defaults(&config_, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                         MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0) return mbedtls_failure(rc, "TLS initialisation failed: ");
    if (options.verify)
        if (Error e = load_trusted(options)) return e;
    mbedtls_ssl_conf_authmode(&config_, options.verify ? MBEDTLS_SSL_VERIFY_REQUIRED : MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_ca_chain(&config_, &trusted_, nullptr);
    mbedtls_ssl_conf_rng(&config_, &MbedTlsBackend::random, this);
    suites_ = mbedtls_suites_fastest_first();
    mbedtls_ssl_conf_ciphersuites(&config_, suites_.data());
    mbedtls_prefer_fast_groups(config_);
#if MBEDTLS_VERSION_NUMBER >= 0x03020000 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
    mbedtls_ssl_conf_max_tls_version(&config_, MBEDTLS_SSL_VERSION_TLS1_3);
#endif
#if defined(MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED)
    // mbedTLS 3.6.1 and later pass TLS 1.3 tickets by only when asked to hand them over.
    mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(&config_, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
#endif
    return {};
}

inline Error MbedTlsBackend::start(socket_handle socket, const std::string& host,
                                   std::unique_ptr<TlsSession>& session) {
    auto created = std::make_unique<MbedTlsSession>(shared_from_this(), static_cast<native_socket>(socket));
    if (Error e = created->setup(host)) return e;
    session = std::move(created);
    return {};
}

#endif  // LLM_STREAM_MBEDTLS

/* ------------------------------------------------------------------------------------------------
   TLS: the built-in SChannel backend (Windows)
   Windows' own TLS through SSPI, with the certificate checked here, not by SChannel: its automatic
   validation accepts an untrusted CA, a wrong host name and an expired certificate (measured under
   wine), and the SSL policy alone passes a chain whose root is unknown. So: manual validation, then the
   chain's trust status, the SSL policy with the host name, and our own match of an IP host against the
   certificate's IP entries. Custom CAs go into a chain engine whose exclusive root store holds only them
   (else, on systems without exclusive roots, an additional store whose root must be one of them).
   The backend holds the credentials and the trust; sessions share it. Sockets stay non-blocking.
   ------------------------------------------------------------------------------------------------ */
#if defined(LLM_STREAM_SCHANNEL)

// SSPI's handle macros cast the C way: the same, typed.
inline void invalidate_handle(SecHandle& handle) noexcept { handle.dwLower = handle.dwUpper = ~ULONG_PTR(0); }
inline bool valid_handle(const SecHandle& handle) noexcept {
    return handle.dwLower != ~ULONG_PTR(0) || handle.dwUpper != ~ULONG_PTR(0);
}

/* "SEC_E_INTERNAL_ERROR (0x80090304): The Local Security Authority cannot be contacted" for an SSPI or
   CryptoAPI status. */
inline std::string sspi_status_text(long status) {
    static const struct {
        long status;
        const char* name;
    } names[] = {{SEC_E_INTERNAL_ERROR, "SEC_E_INTERNAL_ERROR"},
                 {SEC_E_ILLEGAL_MESSAGE, "SEC_E_ILLEGAL_MESSAGE"},
                 {SEC_E_ALGORITHM_MISMATCH, "SEC_E_ALGORITHM_MISMATCH"},
                 {SEC_E_INVALID_TOKEN, "SEC_E_INVALID_TOKEN"},
                 {SEC_E_DECRYPT_FAILURE, "SEC_E_DECRYPT_FAILURE"},
                 {SEC_E_MESSAGE_ALTERED, "SEC_E_MESSAGE_ALTERED"},
                 {SEC_E_INSUFFICIENT_MEMORY, "SEC_E_INSUFFICIENT_MEMORY"},
                 {SEC_E_UNSUPPORTED_FUNCTION, "SEC_E_UNSUPPORTED_FUNCTION"}};
    std::string text;
    for (const auto& known : names)
        if (known.status == status) text = std::string(known.name) + " ";
    char code[16];
    std::snprintf(code, sizeof code, "(0x%08lx)", static_cast<unsigned long>(status));
    text += code;
    const std::string system = socket_error_text(static_cast<int>(status));  // FormatMessage's words, if any
    if (system.rfind("socket error ", 0) != 0) text += ": " + system;
    return text;
}

/* `what` and the status's text as ErrorCode::tls, or out_of_memory when that is what it says. */
inline Error sspi_failure(long status, const std::string& what) {
    Error e = tls_error(what + sspi_status_text(status));
    if (status == SEC_E_INSUFFICIENT_MEMORY) e.code = ErrorCode::out_of_memory;
    return e;
}

/* Adds the certificates of PEM text to `store`; how many there were, or -1 when a block is no
   certificate. */
inline int add_pem_certificates(HCERTSTORE store, const std::string& pem) {
    static const std::string begin = "-----BEGIN CERTIFICATE-----", end = "-----END CERTIFICATE-----";
    int added = 0;
    for (std::size_t at = pem.find(begin); at != std::string::npos; at = pem.find(begin, at)) {
        const std::size_t stop = pem.find(end, at);
        if (stop == std::string::npos) return -1;
        const char* block = pem.data() + at;
        const auto block_size = static_cast<DWORD>(stop + end.size() - at);
        DWORD der_size = 0;
        std::vector<BYTE> der;
        if (!CryptStringToBinaryA(block, block_size, CRYPT_STRING_BASE64HEADER, nullptr, &der_size, nullptr, nullptr))
            return -1;
        der.resize(der_size);
        if (!CryptStringToBinaryA(block, block_size, CRYPT_STRING_BASE64HEADER, der.data(), &der_size, nullptr, nullptr) ||
            !CertAddEncodedCertificateToStore(store, X509_ASN_ENCODING | PKCS_7_ASN_ENCODING, der.data(), der_size,
                                              CERT_STORE_ADD_ALWAYS, nullptr))
            return -1;
        ++added;
        at = stop + end.size();
    }
    return added;
}

/* Whether the certificate's subjectAltName has an iPAddress entry equal to `ip` (4 or 16 bytes). A CN
   is never one (RFC 6125). */
inline bool certificate_lists_ip(PCCERT_CONTEXT certificate, const unsigned char* ip, std::size_t ip_size) {
    const CERT_INFO& info = *certificate->pCertInfo;
    const CERT_EXTENSION* extension = CertFindExtension(szOID_SUBJECT_ALT_NAME2, info.cExtension, info.rgExtension);
    CERT_ALT_NAME_INFO* names = nullptr;
    DWORD size = 0;
    if (!extension || !CryptDecodeObjectEx(X509_ASN_ENCODING, X509_ALTERNATE_NAME, extension->Value.pbData,
                                           extension->Value.cbData, CRYPT_DECODE_ALLOC_FLAG, nullptr, &names, &size))
        return false;
    bool listed = false;
    for (DWORD i = 0; i < names->cAltEntry && !listed; ++i) {
        const CERT_ALT_NAME_ENTRY& entry = names->rgAltEntry[i];
        listed = entry.dwAltNameChoice == CERT_ALT_NAME_IP_ADDRESS && entry.IPAddress.cbData == ip_size &&
                 std::memcmp(entry.IPAddress.pbData, ip, ip_size) == 0;
    }
    LocalFree(names);
    return listed;
}

/* The Windows 7 layout of CERT_CHAIN_ENGINE_CONFIG, up to hExclusiveTrustedPeople: Windows 7 and later
   accept this size, while the SDK's (Windows 8's dwExclusiveFlags added) is refused by some systems
   (wine: E_INVALIDARG), and older SDKs declare no exclusive root at all. */
struct ChainEngineConfigWin7 {
    DWORD cbSize;
    HCERTSTORE hRestrictedRoot, hRestrictedTrust, hRestrictedOther;
    DWORD cAdditionalStore;
    HCERTSTORE* rghAdditionalStore;
    DWORD dwFlags, dwUrlRetrievalTimeout, MaximumCachedCertificates, CycleDetectionModulus;
    HCERTSTORE hExclusiveRoot, hExclusiveTrustedPeople;
};

/* What the chain and the SSL policy said of a server certificate. */
struct ChainVerdict {
    bool built = false;
    DWORD build_error = 0;   // GetLastError() when the chain could not be built
    DWORD trust_errors = 0;  // the chain's TrustStatus.dwErrorStatus, revocation bits aside
    DWORD policy_error = 0;  // CertVerifyCertificateChainPolicy's dwError
    int time_validity = 0;   // +1 expired, -1 not yet valid (CertVerifyTimeValidity of the culprit)

    bool trusted() const noexcept { return built && trust_errors == 0 && policy_error == 0; }
    bool only_untrusted_root() const noexcept {
        constexpr DWORD root = CERT_TRUST_IS_UNTRUSTED_ROOT | CERT_TRUST_IS_PARTIAL_CHAIN;
        return built && trust_errors != 0 && (trust_errors & ~root) == 0;
    }
};

/* Why a chain with this verdict is refused, or empty; the host name part comes from the caller. */
inline std::string chain_refusal(const ChainVerdict& v) {
    if (!v.built)
        return "the certificate chain could not be built (" + sspi_status_text(static_cast<long>(v.build_error)) + ")";
    std::string reasons;
    auto add = [&](const std::string& reason) { reasons += (reasons.empty() ? "" : "; ") + reason; };
    DWORD rest = v.trust_errors;
    auto take = [&](DWORD bits) { const bool had = (rest & bits) != 0; rest &= ~bits; return had; };
    if (take(CERT_TRUST_IS_NOT_TIME_VALID) || v.policy_error == static_cast<DWORD>(CERT_E_EXPIRED))
        add(v.time_validity < 0 ? "the certificate is not yet valid" : "the certificate has expired");
    if (take(CERT_TRUST_IS_UNTRUSTED_ROOT | CERT_TRUST_IS_PARTIAL_CHAIN) ||
        v.policy_error == static_cast<DWORD>(CERT_E_UNTRUSTEDROOT) || v.policy_error == static_cast<DWORD>(CERT_E_CHAINING))
        add("the certificate is not signed by a trusted CA");
    if (take(CERT_TRUST_IS_NOT_SIGNATURE_VALID)) add("a signature in the certificate chain is not valid");
    if (take(CERT_TRUST_IS_REVOKED)) add("the certificate is revoked");
    if (take(CERT_TRUST_IS_NOT_VALID_FOR_USAGE)) add("the certificate is not valid for server authentication");
    if (take(CERT_TRUST_INVALID_BASIC_CONSTRAINTS)) add("a certificate of the chain may not issue certificates");
    if (rest) {
        char bits[64];
        std::snprintf(bits, sizeof bits, "the chain's trust status is 0x%08lx", static_cast<unsigned long>(rest));
        add(bits);
    }
    if (reasons.empty() && v.policy_error)
        add("the SSL policy says " + sspi_status_text(static_cast<long>(v.policy_error)));
    return reasons;
}

/* +1 when a certificate of the chain has expired, -1 when one is not valid yet, else 0. */
inline int chain_time_validity(PCCERT_CHAIN_CONTEXT chain) {
    const CERT_SIMPLE_CHAIN* simple = chain->rgpChain[0];
    for (DWORD i = 0; i < simple->cElement; ++i)
        if (const LONG t = CertVerifyTimeValidity(nullptr, simple->rgpElement[i]->pCertContext->pCertInfo)) return t;
    return 0;
}

class SchannelBackend final : public TlsBackend, public std::enable_shared_from_this<SchannelBackend> {
public:
    SchannelBackend() { invalidate_handle(credentials_); }
    ~SchannelBackend() override {
        if (valid_handle(credentials_)) FreeCredentialsHandle(&credentials_);
        if (engine_) CertFreeCertificateChainEngine(engine_);
        if (given_) CertCloseStore(given_, 0);
    }
    SchannelBackend(const SchannelBackend&) = delete;
    SchannelBackend& operator=(const SchannelBackend&) = delete;

    [[nodiscard]] Error init(const TlsOptions& options);
    std::string name() const override { return "schannel"; }
    [[nodiscard]] Error start(socket_handle socket, const std::string& host,
                              std::unique_ptr<TlsSession>& session) override;

    CredHandle* credentials() noexcept { return &credentials_; }
    bool verifies() const noexcept { return verify_; }
    /* Why the server's certificate (the leaf, with the intermediates it sent in its store) is refused
       for `host`, or empty when it is trusted. */
    std::string refusal(PCCERT_CONTEXT leaf, const std::string& host) const;

private:
    [[nodiscard]] Error load_trusted(const TlsOptions& options);
    bool load_ca_dir(const std::string& path);
    [[nodiscard]] Error acquire_credentials();
    ChainVerdict check(PCCERT_CONTEXT leaf, const wchar_t* host, bool with_given) const;
    void judge(PCCERT_CHAIN_CONTEXT chain, const wchar_t* host, bool additional, ChainVerdict& v) const;
    bool root_is_given(PCCERT_CHAIN_CONTEXT chain) const;

    bool verify_ = true;
    HCERTSTORE given_ = nullptr;         // the CAs given, or null: the system's
    bool given_only_ = false;            // files or SSL_CERT_*: only those; ca_pem alone: the system's too
    HCERTCHAINENGINE engine_ = nullptr;  // exclusive root = given_; null: additional-store mode
    CredHandle credentials_;
};

/* One client TLS connection over SSPI. The receive buffer holds whole TLS records: DecryptMessage
   decrypts in place, so the plaintext and the next records are spans inside it. */
class SchannelSession final : public TlsSession {
public:
    SchannelSession(std::shared_ptr<SchannelBackend> backend, native_socket socket, const std::string& host)
        : backend_(std::move(backend)), socket_(socket), host_(host), in_(kRecordBufferBytes) {
        invalidate_handle(context_);
        unsigned char ip[16];
        if (!ip_literal_bytes(host, ip)) target_.assign(host.begin(), host.end());  // SNI: host names only
    }
    ~SchannelSession() override;
    SchannelSession(const SchannelSession&) = delete;
    SchannelSession& operator=(const SchannelSession&) = delete;

    TlsResult handshake() override;
    TlsResult read(char* buffer, std::size_t capacity) override;
    TlsResult write(const char* data, std::size_t size) override;
    const Error& error() const override { return error_; }

private:
    enum class State { start, handshaking, handshaken, open, closed, failed };
    // A whole record: header, 16 KiB, trailer (256 at most), and room for the start of the next one.
    static constexpr std::size_t kRecordBufferBytes = 5 + 16384 + 256 + 2048;

    TlsResult fail(Error e) {
        error_ = std::move(e);
        state_ = State::failed;
        return {TlsStatus::failed, 0};
    }
    TlsResult initiate();
    TlsResult handshake_step();
    TlsResult finish_handshake();
    SECURITY_STATUS call_isc(SecBufferDesc* input, SecBufferDesc* output);
    void keep_extra(const SecBuffer& extra);
    TlsResult receive(const char* what);
    TlsResult flush(const char* what);
    TlsResult decrypt();
    TlsResult hand_out(char* buffer, std::size_t capacity);
    void next_records();
    void send_close_notify();

    std::shared_ptr<SchannelBackend> backend_;
    native_socket socket_;
    std::string host_;
    std::wstring target_;  // the name for SNI and SSPI, empty for an IP address
    CtxtHandle context_;
    State state_ = State::start;
    bool heard_ = false;  // the server's first bytes have come
    bool retried_credentials_ = false;
    SecPkgContext_StreamSizes sizes_{};
    std::vector<char> in_;          // bytes from the socket: [0, in_used_)
    std::size_t in_used_ = 0;
    bool need_input_ = true;        // what is in in_ is no whole record (or nothing)
    char* plain_ = nullptr;         // decrypted bytes not handed out yet, inside in_
    std::size_t plain_size_ = 0;
    std::size_t extra_at_ = 0, extra_size_ = 0;  // the undecrypted bytes after them
    std::string out_;               // bytes for the socket: handshake tokens, records, close_notify
    std::size_t out_sent_ = 0;
    std::size_t pending_plain_ = 0; // plaintext of the record in out_, reported once it is sent
    int socket_error_ = 0;
    Error error_;
};

constexpr unsigned long kSchannelRequest = ISC_REQ_SEQUENCE_DETECT | ISC_REQ_REPLAY_DETECT | ISC_REQ_CONFIDENTIALITY |
                                           ISC_REQ_EXTENDED_ERROR | ISC_REQ_ALLOCATE_MEMORY | ISC_REQ_STREAM |
                                           ISC_REQ_MANUAL_CRED_VALIDATION | ISC_REQ_USE_SUPPLIED_CREDS;

inline SECURITY_STATUS SchannelSession::call_isc(SecBufferDesc* input, SecBufferDesc* output) {
    const bool first = !valid_handle(context_);
    unsigned long attributes = 0;
    auto* name = target_.empty() ? nullptr : const_cast<wchar_t*>(target_.c_str());
    const SECURITY_STATUS status =
        InitializeSecurityContextW(backend_->credentials(), first ? nullptr : &context_, name, kSchannelRequest, 0, 0,
                                   input, 0, first ? &context_ : nullptr, output, &attributes, nullptr);
    // The tokens to send (and an alert on failure) were allocated by SSPI: into out_ at once.
    for (unsigned long i = 0; i < output->cBuffers; ++i) {
        SecBuffer& b = output->pBuffers[i];
        if (b.pvBuffer && b.cbBuffer) out_.append(static_cast<const char*>(b.pvBuffer), b.cbBuffer);
        if (b.pvBuffer) FreeContextBuffer(b.pvBuffer);
        b.pvBuffer = nullptr;
    }
    return status;
}

inline TlsResult SchannelSession::initiate() {
    SecBuffer token[2] = {};
    token[0].BufferType = SECBUFFER_TOKEN;
    token[1].BufferType = SECBUFFER_ALERT;
    SecBufferDesc output{SECBUFFER_VERSION, 2, token};
    const SECURITY_STATUS status = call_isc(nullptr, &output);
    if (status != SEC_I_CONTINUE_NEEDED) return fail(sspi_failure(status, "TLS handshake failed: "));
    state_ = State::handshaking;
    return {TlsStatus::ok, 0};
}

/* The unprocessed bytes SSPI reports at the end of the input move to the front; none: all consumed. */
inline void SchannelSession::keep_extra(const SecBuffer& extra) {
    const std::size_t keep = extra.BufferType == SECBUFFER_EXTRA ? extra.cbBuffer : 0;
    std::memmove(in_.data(), in_.data() + in_used_ - keep, keep);
    in_used_ = keep;
    need_input_ = keep == 0;
}

/* One InitializeSecurityContext call on what the server sent (reading it first when needed). SSPI
   takes one record per call, so with bytes left over the next step goes on without reading. */
inline TlsResult SchannelSession::handshake_step() {
    if (need_input_)
        if (TlsResult r = receive("TLS handshake failed: "); r.status != TlsStatus::ok) return r;
    if (!heard_ && in_[0] != 0x16 && in_[0] != 0x15)  // the server's first record: a handshake or an alert
        return fail(tls_error("TLS handshake failed: the server did not answer with TLS (is this an https port?)"));
    heard_ = true;
    SecBuffer input[2] = {};
    input[0].BufferType = SECBUFFER_TOKEN;
    input[0].pvBuffer = in_.data();
    input[0].cbBuffer = static_cast<unsigned long>(in_used_);
    input[1].BufferType = SECBUFFER_EMPTY;
    SecBuffer token[3] = {};
    token[0].BufferType = SECBUFFER_TOKEN;
    token[1].BufferType = SECBUFFER_ALERT;
    token[2].BufferType = SECBUFFER_EMPTY;
    SecBufferDesc in_desc{SECBUFFER_VERSION, 2, input}, out_desc{SECBUFFER_VERSION, 3, token};
    const SECURITY_STATUS status = call_isc(&in_desc, &out_desc);
    if (status == SEC_E_INCOMPLETE_MESSAGE) {
        need_input_ = true;  // its SECBUFFER_MISSING count is not to be trusted (wine gives a record's size)
    } else if (status == SEC_I_INCOMPLETE_CREDENTIALS && !retried_credentials_) {
        retried_credentials_ = true;  // a server asking for a client certificate gets none: same input again
    } else if (status == SEC_I_CONTINUE_NEEDED || status == SEC_E_OK) {
        keep_extra(input[1]);
        if (status == SEC_E_OK) state_ = State::handshaken;
    } else {
        flush("TLS handshake failed: ");  // the alert, best effort
        return fail(sspi_failure(status, "TLS handshake failed: "));
    }
    return {TlsStatus::ok, 0};
}

/* The record sizes, then the certificate; once only: a post-handshake message (TLS 1.3, after
   SEC_I_RENEGOTIATE) changes neither. */
inline TlsResult SchannelSession::finish_handshake() {
    if (sizes_.cbMaximumMessage) {
        state_ = State::open;
        return {TlsStatus::ok, 0};
    }
    if (QueryContextAttributesW(&context_, SECPKG_ATTR_STREAM_SIZES, &sizes_) != SEC_E_OK)
        return fail(tls_error("TLS handshake failed: SChannel gives no record sizes"));
    const std::size_t record = std::size_t(sizes_.cbHeader) + sizes_.cbMaximumMessage + sizes_.cbTrailer;
    if (in_.size() < record) in_.resize(record);
    if (backend_->verifies()) {
        PCCERT_CONTEXT leaf = nullptr;
        if (QueryContextAttributesW(&context_, SECPKG_ATTR_REMOTE_CERT_CONTEXT, &leaf) != SEC_E_OK || !leaf)
            return fail(tls_error("certificate verification failed: the server sent no certificate"));
        const std::string why = backend_->refusal(leaf, host_);
        CertFreeCertificateContext(leaf);
        if (!why.empty()) return fail(tls_error("certificate verification failed: " + why));
    }
    state_ = State::open;
    return {TlsStatus::ok, 0};
}

inline TlsResult SchannelSession::handshake() {
    for (;;) {
        if (state_ == State::failed) return {TlsStatus::failed, 0};
        if (TlsResult r = flush("TLS handshake failed: "); r.status != TlsStatus::ok) return r;
        TlsResult r;
        switch (state_) {
        case State::start: r = initiate(); break;
        case State::handshaking: r = handshake_step(); break;
        case State::handshaken: return finish_handshake();
        case State::open: return {TlsStatus::ok, 0};
        default: return {state_ == State::closed ? TlsStatus::closed : TlsStatus::failed, 0};
        }
        if (r.status != TlsStatus::ok) return r;
    }
}

/* More bytes from the socket after in_used_. */
inline TlsResult SchannelSession::receive(const char* what) {
    if (in_used_ == in_.size()) return fail(tls_error(std::string(what) + "a TLS record larger than the receive buffer"));
    socket_error_ = 0;
    const IoResult r = socket_read(socket_, in_.data() + in_used_, in_.size() - in_used_, socket_error_);
    if (r.status == IoStatus::would_block) return {TlsStatus::want_read, 0};
    if (r.status == IoStatus::failed) return fail(tls_error(what + socket_error_text(socket_error_)));
    if (r.status == IoStatus::closed) {
        if (state_ != State::open) return fail(tls_error(std::string(what) + "the server closed the connection"));
        if (in_used_) return fail(tls_error(std::string(what) + "the connection closed inside a TLS record"));
        state_ = State::closed;  // without close_notify: whether the body is whole is HTTP's business
        return {TlsStatus::closed, 0};
    }
    in_used_ += r.bytes;
    need_input_ = false;
    return {TlsStatus::ok, 0};
}

/* Sends what out_ holds; ok once all of it is gone. */
inline TlsResult SchannelSession::flush(const char* what) {
    while (out_sent_ < out_.size()) {
        socket_error_ = 0;
        const IoResult r = socket_write(socket_, out_.data() + out_sent_, out_.size() - out_sent_, socket_error_);
        if (r.status == IoStatus::would_block) return {TlsStatus::want_write, 0};
        if (r.status != IoStatus::ok) return fail(tls_error(what + socket_error_text(socket_error_)));
        out_sent_ += r.bytes;
    }
    out_.clear();
    out_sent_ = 0;
    return {TlsStatus::ok, 0};
}

/* One DecryptMessage on the records in in_: plaintext, the end of TLS, or the need for more bytes. */
inline TlsResult SchannelSession::decrypt() {
    const char content_type = in_[0];  // TLS 1.2 record headers are not encrypted
    SecBuffer b[4] = {};
    b[0].BufferType = SECBUFFER_DATA;
    b[0].pvBuffer = in_.data();
    b[0].cbBuffer = static_cast<unsigned long>(in_used_);
    for (int i = 1; i < 4; ++i) b[i].BufferType = SECBUFFER_EMPTY;
    SecBufferDesc desc{SECBUFFER_VERSION, 4, b};
    const SECURITY_STATUS status = DecryptMessage(&context_, &desc, 0, nullptr);
    if (status == SEC_E_INCOMPLETE_MESSAGE) {
        need_input_ = true;  // its SECBUFFER_MISSING count is not to be trusted (wine gives a record's size)
        return {TlsStatus::ok, 0};
    }
    if (status == SEC_I_CONTEXT_EXPIRED) {  // close_notify, as Windows reports it
        state_ = State::closed;
        return {TlsStatus::closed, 0};
    }
    if (status != SEC_E_OK && status != SEC_I_RENEGOTIATE) return fail(sspi_failure(status, "TLS read failed: "));
    extra_size_ = 0;
    for (const SecBuffer& x : b) {
        if (x.BufferType == SECBUFFER_DATA) {
            plain_ = static_cast<char*>(x.pvBuffer);
            plain_size_ = x.cbBuffer;
        } else if (x.BufferType == SECBUFFER_EXTRA) {
            extra_at_ = in_used_ - x.cbBuffer;
            extra_size_ = x.cbBuffer;
        }
    }
    if (status == SEC_I_RENEGOTIATE) {  // a post-handshake message (TLS 1.3): the EXTRA bytes go to SSPI
        plain_size_ = 0;
        state_ = State::handshaking;
    }
    if (plain_size_ == 0 && content_type == 21 && status == SEC_E_OK) {  // close_notify, as wine reports it
        state_ = State::closed;
        return {TlsStatus::closed, 0};
    }
    if (plain_size_ == 0) next_records();  // nothing to hand out: on to the next record
    return {TlsStatus::ok, 0};
}

// Up to `capacity` bytes of the decrypted plaintext; once it is all out, on to the next records.
inline TlsResult SchannelSession::hand_out(char* buffer, std::size_t capacity) {
    const std::size_t n = std::min(capacity, plain_size_);
    if (n) std::memcpy(buffer, plain_, n);
    plain_ += n;
    plain_size_ -= n;
    if (plain_size_ == 0) next_records();
    return {TlsStatus::ok, n};
}

// The records after the one just handed out (SSPI's EXTRA bytes) move to the front of in_.
inline void SchannelSession::next_records() {
    std::memmove(in_.data(), in_.data() + extra_at_, extra_size_);
    in_used_ = extra_size_;
    extra_size_ = 0;
    need_input_ = in_used_ == 0;
}

inline TlsResult SchannelSession::read(char* buffer, std::size_t capacity) {
    for (;;) {
        if (state_ == State::handshaking || state_ == State::handshaken)  // after SEC_I_RENEGOTIATE
            if (TlsResult r = handshake(); r.status != TlsStatus::ok) return r;
        if (state_ != State::open) return {state_ == State::closed ? TlsStatus::closed : TlsStatus::failed, 0};
        if (plain_size_) return hand_out(buffer, capacity);
        if (need_input_)
            if (TlsResult r = receive("TLS read failed: "); r.status != TlsStatus::ok) return r;
        if (TlsResult r = decrypt(); r.status != TlsStatus::ok) return r;
    }
}

/* As mbedTLS: after want_write the caller repeats the same call, which then reports the bytes. */
inline TlsResult SchannelSession::write(const char* data, std::size_t size) {
    if (state_ != State::open) return {state_ == State::closed ? TlsStatus::closed : TlsStatus::failed, 0};
    if (pending_plain_ == 0) {
        if (TlsResult r = flush("TLS write failed: "); r.status != TlsStatus::ok) return r;  // what is queued goes first
        const std::size_t n = std::min<std::size_t>(size, sizes_.cbMaximumMessage);
        out_.resize(sizes_.cbHeader + n + sizes_.cbTrailer);
        std::memcpy(&out_[sizes_.cbHeader], data, n);
        SecBuffer b[4] = {};
        b[0].BufferType = SECBUFFER_STREAM_HEADER;
        b[0].pvBuffer = &out_[0];
        b[0].cbBuffer = sizes_.cbHeader;
        b[1].BufferType = SECBUFFER_DATA;
        b[1].pvBuffer = &out_[sizes_.cbHeader];
        b[1].cbBuffer = static_cast<unsigned long>(n);
        b[2].BufferType = SECBUFFER_STREAM_TRAILER;
        b[2].pvBuffer = &out_[sizes_.cbHeader + n];
        b[2].cbBuffer = sizes_.cbTrailer;
        b[3].BufferType = SECBUFFER_EMPTY;
        SecBufferDesc desc{SECBUFFER_VERSION, 4, b};
        const SECURITY_STATUS status = EncryptMessage(&context_, 0, &desc, 0);
        if (status != SEC_E_OK) return fail(sspi_failure(status, "TLS write failed: "));
        // What EncryptMessage wrote: the trailer is shorter than its maximum.
        out_.resize(std::size_t(b[0].cbBuffer) + b[1].cbBuffer + b[2].cbBuffer);
        pending_plain_ = n;
    }
    if (TlsResult r = flush("TLS write failed: "); r.status != TlsStatus::ok) return r;
    const std::size_t sent = pending_plain_;
    pending_plain_ = 0;
    return {TlsStatus::ok, sent};
}

/* Our close_notify: one non-blocking send, best effort; never waits. */
inline void SchannelSession::send_close_notify() {
    DWORD shutdown = SCHANNEL_SHUTDOWN;
    SecBuffer control{sizeof shutdown, SECBUFFER_TOKEN, &shutdown};
    SecBufferDesc control_desc{SECBUFFER_VERSION, 1, &control};
    if (ApplyControlToken(&context_, &control_desc) != SEC_E_OK) return;
    SecBuffer token{0, SECBUFFER_TOKEN, nullptr};
    SecBufferDesc output{SECBUFFER_VERSION, 1, &token};
    out_.clear();
    out_sent_ = 0;
    if (call_isc(nullptr, &output) == SEC_E_OK) flush("");
}

inline SchannelSession::~SchannelSession() {
    if (state_ == State::open) send_close_notify();
    if (valid_handle(context_)) DeleteSecurityContext(&context_);
}

/* The PEM certificates of a directory's files (others are skipped, as by mbedTLS); false when it
   cannot be listed. */
inline bool SchannelBackend::load_ca_dir(const std::string& path) {
    WIN32_FIND_DATAA found;
    const HANDLE listing = FindFirstFileA((path + "\\*").c_str(), &found);
    if (listing == INVALID_HANDLE_VALUE) return false;
    do {
        if (!(found.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY))
            (void)add_pem_certificates(given_, read_system_file(path + "\\" + found.cFileName));
    } while (FindNextFileA(listing, &found));
    FindClose(listing);
    return true;
}

/* The CAs given (files, SSL_CERT_*, PEM) into given_, and the engine that trusts only them. */
inline Error SchannelBackend::load_trusted(const TlsOptions& options) {
    given_ = CertOpenStore(CERT_STORE_PROV_MEMORY, 0, 0, CERT_STORE_CREATE_NEW_FLAG, nullptr);
    if (!given_) return tls_error("TLS initialisation failed: cannot make a certificate store");
    auto load_file = [&](const std::string& path) { return add_pem_certificates(given_, read_system_file(path)) > 0; };
    auto load_dir = [&](const std::string& path) { return load_ca_dir(path); };
    if (Error e = load_named_cas(options, load_file, load_dir, given_only_)) return e;
    if (!options.ca_pem.empty() && add_pem_certificates(given_, options.ca_pem) <= 0)
        return tls_error("cannot parse the in-memory CA PEM: no certificate in it decodes");
    if (!given_only_ && options.ca_pem.empty()) {
        CertCloseStore(given_, 0);
        given_ = nullptr;  // the system's trust alone
        return {};
    }
    ChainEngineConfigWin7 config = {};
    config.cbSize = sizeof config;
    config.hExclusiveRoot = given_;
    if (!CertCreateCertificateChainEngine(reinterpret_cast<CERT_CHAIN_ENGINE_CONFIG*>(&config), &engine_))
        engine_ = nullptr;  // before Windows 7: the additional-store check instead
    return {};
}

/* Credentials for every session: no client certificate, and no validation by SChannel (done here). */
inline Error SchannelBackend::acquire_credentials() {
    constexpr DWORD flags = SCH_CRED_MANUAL_CRED_VALIDATION | SCH_CRED_NO_DEFAULT_CREDS | SCH_USE_STRONG_CRYPTO;
    auto* package = const_cast<wchar_t*>(UNISP_NAME_W);
    SECURITY_STATUS status = SEC_E_UNSUPPORTED_FUNCTION;
#if defined(SCH_CREDENTIALS_VERSION)
    SCH_CREDENTIALS current = {};  // what TLS 1.3 needs; systems before Windows 10 1809 refuse it
    current.dwVersion = SCH_CREDENTIALS_VERSION;
    current.dwFlags = flags;
    status = AcquireCredentialsHandleW(nullptr, package, SECPKG_CRED_OUTBOUND, nullptr, &current, nullptr, nullptr,
                                       &credentials_, nullptr);
#endif
    if (status != SEC_E_OK) {
        SCHANNEL_CRED legacy = {};
        legacy.dwVersion = SCHANNEL_CRED_VERSION;
        legacy.dwFlags = flags;
        status = AcquireCredentialsHandleW(nullptr, package, SECPKG_CRED_OUTBOUND, nullptr, &legacy, nullptr, nullptr,
                                           &credentials_, nullptr);
    }
    if (status != SEC_E_OK) {
        invalidate_handle(credentials_);
        return sspi_failure(status, "TLS initialisation failed: AcquireCredentialsHandle: ");
    }
    return {};
}

inline Error SchannelBackend::init(const TlsOptions& options) {
    verify_ = options.verify;
    if (verify_)
        if (Error e = load_trusted(options)) return e;
    return acquire_credentials();
}

inline Error SchannelBackend::start(socket_handle socket, const std::string& host, std::unique_ptr<TlsSession>& session) {
    session = std::make_unique<SchannelSession>(shared_from_this(), static_cast<native_socket>(socket), host);
    return {};  // nothing is sent before the first handshake() call
}

/* Whether the chain ends in one of the CAs given (the additional-store check). */
inline bool SchannelBackend::root_is_given(PCCERT_CHAIN_CONTEXT chain) const {
    const CERT_SIMPLE_CHAIN* simple = chain->rgpChain[0];
    const CERT_CONTEXT* root = simple->rgpElement[simple->cElement - 1]->pCertContext;
    const CERT_CONTEXT* found = CertFindCertificateInStore(given_, X509_ASN_ENCODING | PKCS_7_ASN_ENCODING, 0,
                                                           CERT_FIND_EXISTING, root, nullptr);
    if (found) CertFreeCertificateContext(found);
    return found != nullptr;
}

/* The chain of `leaf` built by the system's trust, or with the given CAs; the SSL policy for `host`
   (null: no name check, for an IP address). Never fetches over the network: poll() must not block. */
inline ChainVerdict SchannelBackend::check(PCCERT_CONTEXT leaf, const wchar_t* host, bool with_given) const {
    static char server_auth[] = szOID_PKIX_KP_SERVER_AUTH;
    char* usages[] = {server_auth};
    CERT_CHAIN_PARA para = {};
    para.cbSize = sizeof para;
    para.RequestedUsage.dwType = USAGE_MATCH_TYPE_AND;
    para.RequestedUsage.Usage.cUsageIdentifier = 1;
    para.RequestedUsage.Usage.rgpszUsageIdentifier = usages;
    const bool additional = with_given && !engine_;
    HCERTSTORE collection = additional ? CertOpenStore(CERT_STORE_PROV_COLLECTION, 0, 0, 0, nullptr) : nullptr;
    if (collection) {  // what the server sent, and the given CAs
        CertAddStoreToCollection(collection, leaf->hCertStore, 0, 0);
        CertAddStoreToCollection(collection, given_, 0, 0);
    }
    ChainVerdict v;
    PCCERT_CHAIN_CONTEXT chain = nullptr;
    v.built = CertGetCertificateChain(with_given ? engine_ : nullptr, leaf, nullptr,
                                      collection ? collection : leaf->hCertStore, &para,
                                      CERT_CHAIN_CACHE_ONLY_URL_RETRIEVAL, nullptr, &chain) != FALSE;
    if (collection) CertCloseStore(collection, 0);
    if (!v.built) {
        v.build_error = GetLastError();
        return v;
    }
    judge(chain, host, additional, v);
    CertFreeCertificateChain(chain);
    return v;
}

/* The chain's trust status and the SSL policy's verdict for `host`, into v. In the additional-store
   mode an unknown root is expected: it must be one of the given CAs, and the policy then ignores it. */
inline void SchannelBackend::judge(PCCERT_CHAIN_CONTEXT chain, const wchar_t* host, bool additional,
                                   ChainVerdict& v) const {
    constexpr DWORD revocation = CERT_TRUST_REVOCATION_STATUS_UNKNOWN | CERT_TRUST_IS_OFFLINE_REVOCATION;
    v.trust_errors = chain->TrustStatus.dwErrorStatus & ~revocation;  // no revocation check is asked for
    const bool given_root = additional && v.trust_errors == CERT_TRUST_IS_UNTRUSTED_ROOT && root_is_given(chain);
    if (given_root) v.trust_errors = 0;
    SSL_EXTRA_CERT_CHAIN_POLICY_PARA ssl = {};
    ssl.cbSize = sizeof ssl;
    ssl.dwAuthType = AUTHTYPE_SERVER;
    ssl.fdwChecks = given_root ? 0x100 : 0;  // SECURITY_FLAG_IGNORE_UNKNOWN_CA, of <wininet.h>
    ssl.pwszServerName = const_cast<wchar_t*>(host);
    CERT_CHAIN_POLICY_PARA policy = {};
    policy.cbSize = sizeof policy;
    policy.pvExtraPolicyPara = &ssl;
    CERT_CHAIN_POLICY_STATUS status = {};
    status.cbSize = sizeof status;
    if (!CertVerifyCertificateChainPolicy(CERT_CHAIN_POLICY_SSL, chain, &policy, &status)) status.dwError = GetLastError();
    v.policy_error = status.dwError;
    v.time_validity = chain_time_validity(chain);
}

inline std::string SchannelBackend::refusal(PCCERT_CONTEXT leaf, const std::string& host) const {
    unsigned char ip[16];
    const std::size_t ip_size = ip_literal_bytes(host, ip);
    const std::wstring name(host.begin(), host.end());  // URL hosts are ASCII (IDNs come as punycode)
    const wchar_t* policy_name = ip_size ? nullptr : name.c_str();  // the policy never matches IP entries
    ChainVerdict v;
    if (!given_only_) v = check(leaf, policy_name, false);
    if (given_ && (given_only_ || v.only_untrusted_root())) v = check(leaf, policy_name, true);
    constexpr auto name_error = static_cast<DWORD>(CERT_E_CN_NO_MATCH);
    const bool mismatch = ip_size ? !certificate_lists_ip(leaf, ip, ip_size) : v.policy_error == name_error;
    if (v.policy_error == name_error) v.policy_error = 0;
    std::string reasons = mismatch ? host_mismatch_reason(host, ip_size != 0) : std::string();
    if (!v.trusted()) reasons += (reasons.empty() ? "" : "; ") + chain_refusal(v);
    return reasons;
}

#endif  // LLM_STREAM_SCHANNEL

/* ------------------------------------------------------------------------------------------------
   HTTP/1.1 response reader (RFC 9112), sans-I/O
   Feed it bytes as they arrive; it answers with the head, spans of body bytes (pointing into the
   input, framing removed), the end of the message, or a precise error. Resumable at any byte.
   ------------------------------------------------------------------------------------------------ */

struct HttpLimits {
    std::size_t max_header_bytes = 64 * 1024;  // head, and separately the trailer section
    std::size_t max_chunk_line_bytes = 4096;   // chunk size plus extensions
};

class HttpResponseReader {
public:
    enum class Status { need_more, head, body, end, error };
    struct Step {
        Status status = Status::need_more;
        std::size_t consumed = 0;  // bytes of the input used; feed the rest again
        std::string_view body;     // for Status::body: points into the input
    };

    explicit HttpResponseReader(HttpLimits limits = {}) : limits_(limits) {}
    void reset(HttpLimits limits) {
        limits_ = limits;
        reset_message();
    }

    /* Reads from the start of `input`; `consumed` says how far. Pass the rest again. */
    Step feed(std::string_view input);
    /* The transport reached end of input: the end for a close-delimited body, else an error. */
    Step finish();

    // Known after Status::head (the final, non-1xx head):
    int status() const noexcept { return status_; }
    bool chunked() const noexcept { return chunked_; }
    std::int64_t content_length() const noexcept { return content_length_; }  // -1: none
    bool keep_alive() const noexcept { return keep_alive_; }
    std::string_view content_type() const noexcept { return header("content-type"); }
    /* First value of a header (case-insensitive name), trimmed; empty when absent. */
    std::string_view header(std::string_view name) const noexcept;
    /* Calls visit(name, value) for every header line, in order. */
    template <class Visit> void for_each_header(Visit visit) const;

    /* The message is complete (its end is reported by the next feed(), even with no bytes). */
    bool complete() const noexcept { return state_ == State::done; }
    /* After Status::error: what was wrong; ErrorCode::none before. */
    Error error() const { return make_error(error_code_, error_message_); }

private:
    enum class State {
        head, body_length, body_close, chunk_size, chunk_size_ws, chunk_ext, chunk_size_lf, chunk_data,
        chunk_data_cr, chunk_data_lf, trailers, done, failed
    };
    void reset_message() {
        state_ = State::head;
        head_.clear_to(usual_room_bytes);  // room kept for the next response's head
        head_line_length_ = 0;
        status_ = 0;
        chunked_ = false;
        content_length_ = -1;
        keep_alive_ = false;
        no_body_ = false;
        remaining_ = 0;
        chunk_line_bytes_ = 0;
        chunk_digits_ = 0;
        trailer_bytes_ = 0;
        trailer_line_length_ = 0;
        error_code_ = ErrorCode::none;
        error_message_ = "";
    }
    Step fail(ErrorCode code, const char* message, std::size_t consumed) {
        state_ = State::failed;
        error_code_ = code;
        error_message_ = message;
        return {Status::error, consumed, {}};
    }
    bool parse_head();  // false: error set
    void clean_head();
    bool parse_status_line(std::string_view line);
    struct FramingHeaders;
    bool read_framing(std::string_view headers, FramingHeaders& framing);
    bool use_framing(const FramingHeaders& framing);
    void start_body();
    // Each reads from p, advancing it: a Step to return, or nothing to go on with the next state.
    std::optional<Step> read_head(const char* data, const char*& p, const char* end);
    std::optional<Step> read_chunk_size(const char* data, const char*& p, const char* end);
    bool read_plain_chunk_size(const char*& p, const char* end) noexcept;
    std::optional<Step> read_chunk_line_rest(const char* data, const char*& p);
    std::optional<Step> read_chunk_end(const char* data, const char*& p, const char* end);
    std::optional<Step> read_trailers(const char* data, const char*& p, const char* end);
    static std::size_t offset(const char* data, const char* p) noexcept { return static_cast<std::size_t>(p - data); }
    // Up to `remaining_` body bytes from p, handed out in place; then `next`.
    Step take_body(const char* data, const char* p, const char* end, State next) {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, static_cast<std::uint64_t>(end - p)));
        remaining_ -= n;
        if (remaining_ == 0) state_ = next;
        return {Status::body, static_cast<std::size_t>(p + n - data), {p, n}};
    }
    Step chunk_line_too_long(const char* data, const char* p) {
        return fail(ErrorCode::limit_exceeded, "chunk-size line exceeds the limit", static_cast<std::size_t>(p - data));
    }
    void end_chunk_line() {
        chunk_line_bytes_ = 0;
        chunk_digits_ = 0;
        if (remaining_ == 0) {  // the last chunk: trailers follow
            state_ = State::trailers;
            trailer_bytes_ = 0;
            trailer_line_length_ = 0;
        } else {
            state_ = State::chunk_data;
        }
    }

    HttpLimits limits_;
    State state_ = State::head;
    ByteBuffer head_;               // status line and headers of the current head, as received
    std::size_t head_line_length_ = 0;
    std::size_t header_start_ = 0;  // offset of the first header line in head_
    int status_ = 0;
    int minor_version_ = 1;
    bool chunked_ = false;
    std::int64_t content_length_ = -1;
    bool keep_alive_ = false;
    bool no_body_ = false;
    std::uint64_t remaining_ = 0;   // body or chunk bytes still expected
    std::size_t chunk_line_bytes_ = 0;
    int chunk_digits_ = 0;          // significant hex digits seen in the chunk size
    std::size_t trailer_bytes_ = 0;
    std::size_t trailer_line_length_ = 0;
    ErrorCode error_code_ = ErrorCode::none;
    const char* error_message_ = "";
};

inline std::string_view HttpResponseReader::header(std::string_view name) const noexcept {
    std::string_view found;
    bool have = false;
    for_each_header([&](std::string_view n, std::string_view v) {
        if (!have && iequals(n, name)) { found = v; have = true; }
    });
    return found;
}

template <class Visit>
void HttpResponseReader::for_each_header(Visit visit) const {
    std::string_view rest = head_.view().substr(std::min(header_start_, head_.size()));
    while (!rest.empty()) {
        std::size_t nl = rest.find('\n');
        std::string_view line = rest.substr(0, nl);
        rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        std::size_t colon = line.find(':');
        if (line.empty() || is_http_space(line[0]) || colon == std::string_view::npos) continue;
        visit(line.substr(0, colon), trim_http_space(line.substr(colon + 1)));
    }
}

inline bool is_token_char(char c) noexcept {
    // RFC 9110 tchar
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

/* RFC 9112 5.2 and 2.2: an obs-fold (a line break before SP/HT) and a bare CR or a NUL inside a
   field become spaces, so every later reader of the head sees one clean line per field. */
inline void HttpResponseReader::clean_head() {
    char* h = head_.data();
    const std::size_t n = head_.size();
    const std::size_t status_line_end = head_.view().find('\n');
    for (std::size_t i = 0; i < n; ++i) {
        if (h[i] == '\0') h[i] = ' ';
        else if (h[i] == '\r' && (i + 1 >= n || h[i + 1] != '\n')) h[i] = ' ';
        else if (h[i] == '\n' && i + 1 < n && (h[i + 1] == ' ' || h[i + 1] == '\t') && i > status_line_end) {
            h[i] = ' ';
            if (i > 0 && h[i - 1] == '\r') h[i - 1] = ' ';
        }
    }
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] */
inline bool HttpResponseReader::parse_status_line(std::string_view line) {
    auto digit = [](char c, char low) { return c >= low && c <= '9'; };
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || !digit(line[7], '0') || line[8] != ' ' ||
        !digit(line[9], '1') || !digit(line[10], '0') || !digit(line[11], '0') || (line.size() > 12 && line[12] != ' ')) {
        fail(ErrorCode::protocol, "malformed HTTP status line", 0);
        return false;
    }
    minor_version_ = line[7] - '0';
    status_ = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    return true;
}

/* What the headers say about the body's framing and the connection. */
struct HttpResponseReader::FramingHeaders {
    bool connection_close = false, connection_keep_alive = false;
    bool te_seen = false, te_chunked = false, te_other = false;
    bool content_length_seen = false, bad_content_length = false, bad_encoding = false;
};

inline bool HttpResponseReader::read_framing(std::string_view rest, FramingHeaders& f) {
    while (!rest.empty()) {
        const std::size_t end = rest.find('\n');
        std::string_view l = rest.substr(0, end);
        rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        if (l.empty() || is_http_space(l[0])) continue;  // an obs-fold continuation: no header we read uses it
        const std::size_t colon = l.find(':');
        const std::string_view name = l.substr(0, colon);
        if (colon == std::string_view::npos || colon == 0 || !std::all_of(name.begin(), name.end(), is_token_char)) {
            fail(ErrorCode::protocol, "malformed HTTP header line", 0);
            return false;
        }
        const std::string_view value = trim_http_space(l.substr(colon + 1));
        if (iequals(name, "content-length")) {
            f.content_length_seen = true;
            if (value.empty()) f.bad_content_length = true;
            for_each_list_token(value, [&](std::string_view token) {
                std::uint64_t length = 0;
                if (!parse_decimal(token, length) || length > (std::uint64_t(1) << 62) ||
                    (content_length_ >= 0 && static_cast<std::uint64_t>(content_length_) != length))
                    f.bad_content_length = true;
                else
                    content_length_ = static_cast<std::int64_t>(length);
            });
        } else if (iequals(name, "transfer-encoding")) {
            f.te_seen = true;
            for_each_list_token(value, [&](std::string_view token) {
                if (f.te_chunked) f.te_other = true;  // chunked must be the final coding
                if (iequals(token, "chunked")) f.te_chunked = true;
                else if (!iequals(token, "identity")) f.te_other = true;
            });
        } else if (iequals(name, "connection")) {
            for_each_list_token(value, [&](std::string_view token) {
                if (iequals(token, "close")) f.connection_close = true;
                if (iequals(token, "keep-alive")) f.connection_keep_alive = true;
            });
        } else if (iequals(name, "content-encoding")) {
            for_each_list_token(value, [&](std::string_view token) {
                if (!iequals(token, "identity")) f.bad_encoding = true;
            });
        }
    }
    return true;
}

inline bool HttpResponseReader::use_framing(const FramingHeaders& f) {
    const char* why = f.bad_content_length && !f.te_seen ? "invalid Content-Length header"
                      : f.te_other ? "unsupported Transfer-Encoding (only chunked is understood)"
                      : f.bad_encoding ? "unsupported Content-Encoding (the request asked for none)"
                                       : nullptr;
    if (why) {
        fail(ErrorCode::protocol, why, 0);
        return false;
    }
    chunked_ = f.te_chunked;
    if (f.te_seen) content_length_ = -1;  // Transfer-Encoding overrides Content-Length (RFC 9112 6.3)
    no_body_ = status_ == 204 || status_ == 304;
    const bool delimited = no_body_ || chunked_ || content_length_ >= 0;
    // Both framings at once is a smuggling sign: use the message, but not the connection again.
    // Transfer-Encoding in an HTTP/1.0 message is faulty framing (RFC 9112 6.1): read, then close.
    const bool both_framings = (f.te_seen && f.content_length_seen) || (f.te_seen && minor_version_ == 0);
    keep_alive_ = delimited && !both_framings && !f.connection_close &&
                  (minor_version_ >= 1 || f.connection_keep_alive);
    return true;
}

inline bool HttpResponseReader::parse_head() {
    clean_head();
    const std::string_view head = head_.view();
    const std::size_t nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    header_start_ = nl + 1;
    if (!parse_status_line(line)) return false;
    FramingHeaders framing;
    return read_framing(head.substr(header_start_), framing) && use_framing(framing);
}

inline void HttpResponseReader::start_body() {
    if (no_body_) state_ = State::done;
    else if (chunked_) {
        state_ = State::chunk_size;
        remaining_ = 0;
        chunk_digits_ = 0;
        chunk_line_bytes_ = 0;
    }
    else if (content_length_ >= 0) {
        remaining_ = static_cast<std::uint64_t>(content_length_);
        state_ = remaining_ == 0 ? State::done : State::body_length;
    } else state_ = State::body_close;
}

/* Bytes go into head_ until an empty line; CRs are not counted in a line's length. Interim (1xx)
   heads are read and dropped: the real head follows. */
inline std::optional<HttpResponseReader::Step> HttpResponseReader::read_head(const char* data, const char*& p,
                                                                             const char* end) {
    while (p < end) {
        const char c = *p++;
        if (head_.empty() && (c == '\r' || c == '\n')) continue;  // stray CRLF before a head
        if (head_.size() >= limits_.max_header_bytes)
            return fail(ErrorCode::limit_exceeded, "HTTP header block exceeds the limit", offset(data, p));
        if (!head_.push_back(c)) return fail(ErrorCode::out_of_memory, "out of memory", offset(data, p));
        if (c == '\r') continue;
        if (c != '\n' || head_line_length_ != 0) {
            head_line_length_ = c == '\n' ? 0 : head_line_length_ + 1;
            continue;
        }
        if (!parse_head()) return Step{Status::error, offset(data, p), {}};
        if (status_ >= 200) {
            start_body();
            return Step{Status::head, offset(data, p), {}};
        }
        if (status_ == 101) return fail(ErrorCode::protocol, "unexpected 101 Switching Protocols", offset(data, p));
        head_.clear();
        content_length_ = -1;
    }
    return std::nullopt;
}

/* The usual chunk-size line, hex digits and CRLF, whole in the input: read in one go, with the
   checks made once for the line. False (nothing read) for anything else, which read_chunk_size()
   then reads a byte at a time: a line split across inputs, extensions, 16 digits or more (15 cannot
   overflow), a line over the limit, an error. */
inline bool HttpResponseReader::read_plain_chunk_size(const char*& p, const char* end) noexcept {
    const char* q = p;
    std::uint64_t size = 0;
    int digit = 0;
    while (q < end && q - p < 15 && (digit = hex_value(*q)) >= 0) {
        size = size * 16 + static_cast<unsigned>(digit);
        ++q;
    }
    const std::size_t digits = static_cast<std::size_t>(q - p);
    if (digits == 0 || end - q < 2 || q[0] != '\r' || q[1] != '\n' || digits + 1 > limits_.max_chunk_line_bytes)
        return false;
    remaining_ = size;
    p = q + 2;
    end_chunk_line();
    return true;
}

/* chunk-size = 1*HEXDIG, then optional whitespace and ";ext" up to CRLF (or a bare LF). */
inline std::optional<HttpResponseReader::Step> HttpResponseReader::read_chunk_size(const char* data, const char*& p,
                                                                                   const char* end) {
    if (chunk_line_bytes_ == 0 && read_plain_chunk_size(p, end)) return std::nullopt;
    // The digits in one loop, not one state-machine step each: this runs once per chunk, and a
    // server may send every event in its own chunk.
    int digit = -1;
    char c = 0;
    do {
        c = *p++;
        if (++chunk_line_bytes_ > limits_.max_chunk_line_bytes) return chunk_line_too_long(data, p);
        digit = hex_value(c);
        if (digit < 0) break;
        if (chunk_line_bytes_ != static_cast<std::size_t>(chunk_digits_) + 1)
            return fail(ErrorCode::protocol, "malformed chunk size", offset(data, p));
        ++chunk_digits_;
        if (remaining_ >> 58)  // the next digit would overflow 62 bits
            return fail(ErrorCode::protocol, "chunk size overflows", offset(data, p));
        remaining_ = remaining_ * 16 + static_cast<unsigned>(digit);
    } while (p < end);
    if (digit >= 0) return std::nullopt;  // the input ended inside the digits
    if (chunk_digits_ == 0) return fail(ErrorCode::protocol, "malformed chunk size", offset(data, p));
    if (c == ';') state_ = State::chunk_ext;
    else if (c == '\r' && p < end && *p == '\n') {  // the usual CRLF, both bytes at once
        ++p;
        end_chunk_line();
    }
    else if (c == '\r') state_ = State::chunk_size_lf;
    else if (c == '\n') end_chunk_line();
    else if (is_http_space(c)) state_ = State::chunk_size_ws;
    else return fail(ErrorCode::protocol, "malformed chunk size", offset(data, p));
    return std::nullopt;
}

/* After the size: whitespace, extensions (which carry nothing we use), the line end. */
inline std::optional<HttpResponseReader::Step> HttpResponseReader::read_chunk_line_rest(const char* data,
                                                                                        const char*& p) {
    const char c = *p++;
    if (state_ == State::chunk_size_lf) {
        if (c != '\n') return fail(ErrorCode::protocol, "malformed chunk size line (CR without LF)", offset(data, p));
        end_chunk_line();
        return std::nullopt;
    }
    if (++chunk_line_bytes_ > limits_.max_chunk_line_bytes) return chunk_line_too_long(data, p);
    if (c == '\r') state_ = State::chunk_size_lf;
    else if (c == '\n') end_chunk_line();
    else if (state_ == State::chunk_size_ws && c == ';') state_ = State::chunk_ext;
    else if (state_ == State::chunk_size_ws && !is_http_space(c))
        return fail(ErrorCode::protocol, "malformed chunk size line", offset(data, p));
    return std::nullopt;
}

/* The CRLF (or bare LF) after a chunk's data. */
inline std::optional<HttpResponseReader::Step> HttpResponseReader::read_chunk_end(const char* data, const char*& p,
                                                                                  const char* end) {
    if (state_ == State::chunk_data_cr && *p == '\r') {
        ++p;
        state_ = State::chunk_data_lf;
        if (p == end) return std::nullopt;  // else its LF is read at once
    }
    if (*p != '\n') return fail(ErrorCode::protocol, "missing CRLF after chunk data", offset(data, p));
    ++p;
    state_ = State::chunk_size;
    return std::nullopt;
}

/* Trailer fields are read and ignored; the section ends with an empty line. */
inline std::optional<HttpResponseReader::Step> HttpResponseReader::read_trailers(const char* data, const char*& p,
                                                                                 const char* end) {
    while (p < end) {
        const char c = *p++;
        if (++trailer_bytes_ > limits_.max_header_bytes)
            return fail(ErrorCode::limit_exceeded, "HTTP trailer section exceeds the limit", offset(data, p));
        if (c == '\r') continue;
        if (c != '\n') {
            ++trailer_line_length_;
        } else if (trailer_line_length_ != 0) {
            trailer_line_length_ = 0;
        } else {
            state_ = State::done;
            return Step{Status::end, offset(data, p), {}};
        }
    }
    return std::nullopt;
}

inline HttpResponseReader::Step HttpResponseReader::feed(std::string_view input) {
    const char* const data = input.data();
    const char* const end = data + input.size();
    const char* p = data;
    while (p < end) {
        std::optional<Step> step;
        switch (state_) {
        case State::head: step = read_head(data, p, end); break;
        case State::body_length: return take_body(data, p, end, State::done);
        case State::body_close: return {Status::body, input.size(), {p, offset(p, end)}};
        case State::chunk_size: step = read_chunk_size(data, p, end); break;
        case State::chunk_size_ws:
        case State::chunk_ext:
        case State::chunk_size_lf: step = read_chunk_line_rest(data, p); break;
        case State::chunk_data: return take_body(data, p, end, State::chunk_data_cr);
        case State::chunk_data_cr:
        case State::chunk_data_lf: step = read_chunk_end(data, p, end); break;
        case State::trailers: step = read_trailers(data, p, end); break;
        case State::done: return {Status::end, offset(data, p), {}};
        case State::failed: return {Status::error, 0, {}};
        }
        if (step) return *step;
    }
    if (state_ == State::done) return {Status::end, input.size(), {}};
    if (state_ == State::failed) return {Status::error, 0, {}};
    return {Status::need_more, input.size(), {}};
}

inline HttpResponseReader::Step HttpResponseReader::finish() {
    switch (state_) {
    case State::done:
    case State::body_close:
        state_ = State::done;
        return {Status::end, 0, {}};
    case State::failed:
        return {Status::error, 0, {}};
    case State::head:
        return fail(ErrorCode::protocol,
                    head_.empty() ? "connection closed before the response"
                                  : "connection closed inside the response headers",
                    0);
    case State::body_length:
        return fail(ErrorCode::protocol, "connection closed before the end of the body (Content-Length)", 0);
    default:
        return fail(ErrorCode::protocol, "connection closed inside the chunked body (truncated)", 0);
    }
}

/* ------------------------------------------------------------------------------------------------
   Server-Sent Events parser (WHATWG HTML, "event stream interpretation"), sans-I/O
   Lines end in LF, CRLF or a lone CR (a CRLF split across inputs included); a leading BOM is
   dropped; ':' lines are comments; "field:value" loses one leading space; data lines join with LF;
   a blank line dispatches. An event made of one data line inside the input is handed out without a
   copy; anything else is assembled in a buffer that is reused from event to event.
   ------------------------------------------------------------------------------------------------ */

struct SseLimits {
    std::size_t max_line_bytes = 2 * 1024 * 1024;
    std::size_t max_event_bytes = 2 * 1024 * 1024;
};

class SseParser {
public:
    enum class Status { need_more, event, error };
    struct Step {
        Status status = Status::need_more;
        std::size_t consumed = 0;  // bytes of the input used; feed the rest again
    };

    explicit SseParser(SseLimits limits = {}) : limits_(limits) {}
    void reset(SseLimits limits) {
        limits_ = limits;
        // Room for ordinary events from the start: a line split across reads may come at any time,
        // and should not be what makes a long-running stream allocate. (Failure just defers it.) A chat
        // chunk's line is a few hundred bytes; rarer long ones grow the buffers once, to their size,
        // and give that back here when the parser is reset for another stream.
        const std::size_t usual_line = std::min<std::size_t>(limits.max_line_bytes, 2048);
        const std::size_t usual_data = std::min<std::size_t>(limits.max_event_bytes, 2048);
        line_.clear_to(usual_line);
        data_.clear_to(usual_data);
        line_.reserve_exact(usual_line);
        data_.reserve_exact(usual_data);
        pending_ = {};
        pending_in_input_ = false;
        has_data_ = false;
        skip_lf_ = false;
        bom_matched_ = 0;
        at_start_ = true;
        event_type_length_ = 0;
        dispatched_type_length_ = 0;
        error_code_ = ErrorCode::none;
        error_message_ = "";
    }

    /* Reads from the start of `input`, stopping after one event is dispatched; `consumed` says how
       far. data() may point into the input: keep that alive until the next call. */
    Step feed(std::string_view input) {
        const char* p = input.data();
        const Status status = next(p, p + input.size());
        return {status, static_cast<std::size_t>(p - input.data())};
    }

    std::string_view data() const noexcept { return dispatched_; }
    /* The event's "event:" field, empty when none (the "message" type). */
    std::string_view event_type() const noexcept { return {dispatched_type_, dispatched_type_length_}; }
    /* True when input ended inside an event that was never dispatched (WHATWG drops it). */
    bool has_partial_event() const noexcept { return has_data_ || !line_.empty(); }

    /* After Status::error: what was wrong; ErrorCode::none before. */
    Error error() const { return make_error(error_code_, error_message_); }

private:
    Status next(const char*& p, const char* end);
    bool skip_bom(const char*& p, const char* end);
    Status fail(ErrorCode code, const char* message) {
        error_code_ = code;
        error_message_ = message;
        return Status::error;
    }
    // Returns true when the line dispatched an event.
    bool process_line(std::string_view line, bool line_in_input, Status& status);
    const char* take_data_event(const char* line, const char* eol, const char* end);
    bool add_data(std::string_view value, bool value_in_input);
    // Copies a data line still pointing into the input into data_, before the input goes away.
    bool materialize_pending() {
        if (!pending_in_input_) return true;
        pending_in_input_ = false;
        return data_.assign(pending_);
    }

    SseLimits limits_;
    ByteBuffer line_;             // a line split across inputs
    ByteBuffer data_;             // the data buffer of the event being assembled
    std::string_view pending_;    // the event's only data line so far, still in the input
    bool pending_in_input_ = false;
    std::string_view dispatched_;
    bool has_data_ = false;
    bool skip_lf_ = false;        // the previous line ended in CR: a following LF belongs to it
    int bom_matched_ = 0;
    bool at_start_ = true;
    char event_type_[64] = {};
    std::size_t event_type_length_ = 0;
    char dispatched_type_[64] = {};
    std::size_t dispatched_type_length_ = 0;
    ErrorCode error_code_ = ErrorCode::none;
    const char* error_message_ = "";
};

inline bool SseParser::add_data(std::string_view value, bool value_in_input) {
    if (!has_data_) {
        has_data_ = true;
        if (value_in_input) {
            pending_ = value;
            pending_in_input_ = true;
            return true;
        }
        return data_.assign(value);
    }
    return materialize_pending() && data_.push_back('\n') && data_.append(value);
}

/* Inlined into next(), its one caller: it runs for every line of every event. */
LLM_STREAM_FORCE_INLINE bool SseParser::process_line(std::string_view line, bool line_in_input, Status& status) {
    if (line.empty()) {  // dispatch
        if (!has_data_) {
            event_type_length_ = 0;
            return false;
        }
        dispatched_ = pending_in_input_ ? pending_ : data_.view();
        std::memcpy(dispatched_type_, event_type_, event_type_length_);
        dispatched_type_length_ = event_type_length_;
        event_type_length_ = 0;
        pending_in_input_ = false;
        has_data_ = false;
        status = Status::event;
        return true;
    }
    if (line[0] == ':') return false;  // comment
    // Pointer arithmetic and fixed-size compares: this runs for every line of every event.
    const char* const colon = static_cast<const char*>(std::memchr(line.data(), ':', line.size()));
    const char* const line_end = line.data() + line.size();
    const char* const field_end = colon ? colon : line_end;  // "data" alone: an empty value
    const std::size_t field_size = static_cast<std::size_t>(field_end - line.data());
    const char* value_begin = colon ? colon + 1 : line_end;
    if (value_begin < line_end && *value_begin == ' ') ++value_begin;
    const std::string_view value(value_begin, static_cast<std::size_t>(line_end - value_begin));
    if (field_size == 4 && std::memcmp(line.data(), "data", 4) == 0) {
        const std::size_t so_far = !has_data_ ? 0 : pending_in_input_ ? pending_.size() + 1 : data_.size() + 1;
        if (so_far + value.size() > limits_.max_event_bytes) {
            status = fail(ErrorCode::limit_exceeded, "SSE event exceeds the limit");
            return true;
        }
        if (!add_data(value, line_in_input)) {
            status = fail(ErrorCode::out_of_memory, "out of memory");
            return true;
        }
    } else if (field_size == 5 && std::memcmp(line.data(), "event", 5) == 0) {
        // Event types are short names; a longer one is kept cut, never grown without bound.
        event_type_length_ = std::min(value.size(), sizeof event_type_);
        std::memcpy(event_type_, value.data(), event_type_length_);
    }
    // "id" and "retry" steer reconnection by EventSource, which a chat completion never uses.
    return false;
}

/* The usual event, one `data:` line and the blank line after it, both whole in the input: handed
   out in place at once, without the general line handling. Returns where the next line starts, or
   null when [line, eol) is anything else (which the general handling then reads). */
LLM_STREAM_FORCE_INLINE const char* SseParser::take_data_event(const char* line, const char* eol, const char* end) {
    const std::size_t size = static_cast<std::size_t>(eol - line);
    if (end - eol < 2 || eol[0] != '\n' || eol[1] != '\n' || has_data_ || !line_.empty() || size < 5 ||
        std::memcmp(line, "data:", 5) != 0 || size > limits_.max_line_bytes)
        return nullptr;
    const char* const value = line + (size > 5 && line[5] == ' ' ? 6 : 5);
    const std::size_t value_size = static_cast<std::size_t>(eol - value);
    if (value_size > limits_.max_event_bytes) return nullptr;
    dispatched_ = std::string_view(value, value_size);
    if (event_type_length_ != 0) std::memcpy(dispatched_type_, event_type_, event_type_length_);
    dispatched_type_length_ = event_type_length_;
    event_type_length_ = 0;
    return eol + 2;
}

/* The first LF or CR in [p, end), or end: one pass that stops at the line's end (two memchr calls
   would each scan on to the end of the input when that byte is absent, as CR mostly is). [floor, p)
   is readable too: a short tail is then read as the last 16 bytes before end, not byte by byte. */
inline const char* find_line_break(const char* p, const char* end, const char* floor) noexcept {
#if LLM_STREAM_SSE2
    auto breaks = [](const char* block) {  // one bit per LF or CR of the 16 bytes at block
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block));
        return static_cast<unsigned>(_mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\n')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\r')))));
    };
    for (; end - p >= 32; p += 32) {  // 32 bytes a step: a data line is often hundreds of bytes
        const unsigned mask = breaks(p) | breaks(p + 16) << 16;
        if (mask) return p + count_trailing_zeros(mask);
    }
    for (; end - p >= 16; p += 16)
        if (const unsigned mask = breaks(p)) return p + count_trailing_zeros(mask);
    if (p < end && end - floor >= 16) {  // the bytes before p in that block are shifted out
        const unsigned mask = breaks(end - 16) >> (16 - (end - p));
        return mask ? p + count_trailing_zeros(mask) : end;
    }
#else
    (void)floor;
#endif
    while (p < end && *p != '\n' && *p != '\r') ++p;
    return p;
}

/* A UTF-8 BOM may open the stream, possibly split across inputs: true once it is behind. */
inline bool SseParser::skip_bom(const char*& p, const char* end) {
    static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
    while (p < end && bom_matched_ < 3) {
        if (static_cast<unsigned char>(*p) != bom[bom_matched_]) {
            // Not a BOM after all: the bytes matched so far start the first line.
            if (!line_.append(reinterpret_cast<const char*>(bom), static_cast<std::size_t>(bom_matched_))) {
                fail(ErrorCode::out_of_memory, "out of memory");
                return false;
            }
            bom_matched_ = 3;
            break;
        }
        ++bom_matched_;
        ++p;
    }
    at_start_ = bom_matched_ < 3;
    return !at_start_;
}

inline SseParser::Status SseParser::next(const char*& p, const char* end) {
    const char* const input = p;  // readable from here: find_line_break may look back
    if (error_code_ != ErrorCode::none) return Status::error;
    dispatched_ = {};
    if (at_start_ && !skip_bom(p, end)) return error_code_ != ErrorCode::none ? Status::error : Status::need_more;
    while (p < end) {
        if (skip_lf_) {
            skip_lf_ = false;
            if (*p == '\n') { ++p; continue; }
        }
        const std::size_t avail = static_cast<std::size_t>(end - p);
        const char* const eol = find_line_break(p, end, input);
        if (eol == end) {  // the line continues in the next input
            if (line_.size() + avail > limits_.max_line_bytes)
                return fail(ErrorCode::limit_exceeded, "SSE line exceeds the limit");
            if (!line_.append(p, avail)) return fail(ErrorCode::out_of_memory, "out of memory");
            p = end;
            break;
        }
        if (const char* const next_line = take_data_event(p, eol, end)) {
            p = next_line;
            return Status::event;
        }
        std::string_view line(p, static_cast<std::size_t>(eol - p));
        bool in_input = true;
        if (!line_.empty()) {
            if (line_.size() + line.size() > limits_.max_line_bytes)
                return fail(ErrorCode::limit_exceeded, "SSE line exceeds the limit");
            if (!line_.append(line)) return fail(ErrorCode::out_of_memory, "out of memory");
            line = line_.view();
            in_input = false;
        } else if (line.size() > limits_.max_line_bytes) {
            return fail(ErrorCode::limit_exceeded, "SSE line exceeds the limit");
        }
        if (*eol == '\r') skip_lf_ = true;
        p = eol + 1;
        Status status = Status::need_more;
        const bool stop = process_line(line, in_input, status);
        line_.clear();
        if (stop) return status;
    }
    if (!materialize_pending()) return fail(ErrorCode::out_of_memory, "out of memory");
    return Status::need_more;
}

/* ------------------------------------------------------------------------------------------------
   NDJSON line splitter (one JSON text per line, lines ending in LF or CRLF), sans-I/O
   A line that lies within one input is handed out in place; only a line split across inputs is
   assembled, in a buffer that keeps its capacity, so splitting allocates nothing per line once
   warmed up. Blank lines are skipped; the last line's newline is optional (finish()).
   ------------------------------------------------------------------------------------------------ */

class LineSplitter {
public:
    enum class Status { need_more, line, error };
    struct Step {
        Status status = Status::need_more;
        std::size_t consumed = 0;  // bytes of the input used
    };

    void reset(std::size_t max_line_bytes) {
        max_line_bytes_ = max_line_bytes;
        partial_.clear_to(2048);  // a line split across reads is usually far shorter
        line_in_partial_ = false;
        line_ = {};
        error_ = {};
    }
    Step feed(std::string_view input);
    /* The input ended: a last line without its newline (the newline is optional), if any. */
    Step finish() {
        if (error_ || line_in_partial_ || partial_.empty()) return {error_ ? Status::error : Status::need_more, 0};
        line_in_partial_ = true;
        return hand_out(partial_.view(), 0);
    }
    std::string_view line() const noexcept { return line_; }  // after Status::line, without its line break
    const Error& error() const noexcept { return error_; }

private:
    Step fail(Error e) {
        error_ = std::move(e);
        return {Status::error, 0};
    }
    /* Keeps the start of a line that goes on in the next input. */
    Step keep(std::string_view rest, std::size_t consumed);
    Step hand_out(std::string_view line, std::size_t consumed);

    std::size_t max_line_bytes_ = 0;
    ByteBuffer partial_;            // a line split across inputs
    bool line_in_partial_ = false;  // line_ points into partial_, to be cleared on the next feed
    std::string_view line_;
    Error error_;
};

inline LineSplitter::Step LineSplitter::keep(std::string_view rest, std::size_t consumed) {
    if (partial_.size() + rest.size() > max_line_bytes_ + 1)  // + 1: a CRLF's CR; hand_out() is exact
        return fail(make_error(ErrorCode::limit_exceeded, "NDJSON line exceeds the limit"));
    if (!partial_.append(rest)) return fail(make_error(ErrorCode::out_of_memory, "out of memory"));
    return {Status::need_more, consumed};
}

inline LineSplitter::Step LineSplitter::hand_out(std::string_view line, std::size_t consumed) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > max_line_bytes_) return fail(make_error(ErrorCode::limit_exceeded, "NDJSON line exceeds the limit"));
    if (trim_ascii_space(line).empty()) {  // a blank line: nothing to hand out
        partial_.clear();
        line_in_partial_ = false;
        return {Status::need_more, consumed};
    }
    line_ = line;
    return {Status::line, consumed};
}

inline LineSplitter::Step LineSplitter::feed(std::string_view input) {
    if (error_) return {Status::error, 0};
    if (line_in_partial_) {  // the line handed out last time has been used
        partial_.clear();
        line_in_partial_ = false;
    }
    for (std::size_t pos = 0; pos < input.size();) {
        const void* newline = std::memchr(input.data() + pos, '\n', input.size() - pos);
        if (!newline) return keep(input.substr(pos), input.size());
        const std::size_t end = static_cast<std::size_t>(static_cast<const char*>(newline) - input.data());
        const std::string_view piece = input.substr(pos, end - pos);
        pos = end + 1;
        if (partial_.empty()) {
            const Step s = hand_out(piece, pos);
            if (s.status != Status::need_more) return s;
            continue;
        }
        if (Step s = keep(piece, pos); s.status == Status::error) return s;
        line_in_partial_ = true;
        const Step s = hand_out(partial_.view(), pos);
        if (s.status != Status::need_more) return s;
    }
    return {Status::need_more, input.size()};
}

/* ------------------------------------------------------------------------------------------------
   JSON (RFC 8259): a validating cursor, the chat.completion.chunk delta extractor, a writer
   The extractor validates the whole event in one pass while it notes where the fields it wants
   are; only when the event is valid does it decode them, so an invalid event is never half-used.
   Strings without escapes that are valid UTF-8 are handed out in place; others are decoded into a
   reused arena (escapes resolved, lone surrogates and invalid bytes dropped). A surrogate pair
   whose halves end one event's string and open the next one's (servers that slice by UTF-16 code
   units) is joined: the high half waits, per field, for the next message.
   ------------------------------------------------------------------------------------------------ */

constexpr int json_max_depth = 64;

/* A string token between its quotes, undecoded. */
struct JsonSpan {
    const char* begin = nullptr;
    const char* end = nullptr;
    bool escaped = false;  // contains backslash escapes
    bool present() const noexcept { return begin != nullptr; }
    std::size_t size() const noexcept { return static_cast<std::size_t>(end - begin); }
};

inline std::uint32_t read_hex4(const char* p) noexcept {
    return static_cast<std::uint32_t>(hex_value(p[0]) << 12 | hex_value(p[1]) << 8 | hex_value(p[2]) << 4 |
                                      hex_value(p[3]));
}

/* Decodes the body of a validated JSON string into out (room for end - begin bytes, which decoding
   never exceeds). Lone surrogates and invalid UTF-8 are dropped; a high surrogate that ends the string
   is also stored in *trailing_high when given (its low half may open the next string of a stream).
   Returns the bytes written. */
inline std::size_t json_decode_string(const char* p, const char* end, char* out,
                                      std::uint32_t* trailing_high = nullptr) noexcept {
    char* o = out;
    while (p < end) {
        const unsigned char c = static_cast<unsigned char>(*p);
        if (c == '\\') {
            const char e = p[1];
            p += 2;
            switch (e) {
            case 'b': *o++ = '\b'; break;
            case 'f': *o++ = '\f'; break;
            case 'n': *o++ = '\n'; break;
            case 'r': *o++ = '\r'; break;
            case 't': *o++ = '\t'; break;
            case 'u': {
                std::uint32_t cp = read_hex4(p);
                p += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (p == end && trailing_high) *trailing_high = cp;
                    if (end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                        const std::uint32_t low = read_hex4(p + 2);
                        if (low >= 0xDC00 && low <= 0xDFFF) {
                            p += 6;
                            o += utf8_encode(0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00), o);
                        }
                    }
                    break;  // a high surrogate without its low half is dropped
                }
                if (cp >= 0xDC00 && cp <= 0xDFFF) break;  // a lone low surrogate is dropped
                o += utf8_encode(cp, o);
                break;
            }
            default: *o++ = e; break;  // \" \\ \/
            }
        } else if (c < 0x80) {
            *o++ = static_cast<char>(c);
            ++p;
        } else {
            const std::size_t n = utf8_sequence_length(reinterpret_cast<const unsigned char*>(p),
                                                       reinterpret_cast<const unsigned char*>(end));
            if (n == 0) { ++p; continue; }  // invalid byte: dropped
            std::memcpy(o, p, n);
            o += n;
            p += n;
        }
    }
    return static_cast<std::size_t>(o - out);
}

/* Where the scan of a string's body stops: the first quote, backslash or control character in
   [p, end), or end. The scalar scan is the reference; the block scans below skip whole blocks free
   of those bytes and leave the exact byte to it. */
inline const char* json_string_stop_scalar(const char* p, const char* end) noexcept {
    while (p < end && *p != '"' && *p != '\\' && static_cast<unsigned char>(*p) >= 0x20) ++p;
    return p;
}

/* Whether an 8-byte word holds a quote, a backslash or a byte below 0x20 (exact as a whole, whatever
   the byte order: the caller then finds which byte one at a time). */
inline bool json_word_has_stop(std::uint64_t word) noexcept {
    return (swar_bytes_below(word, 0x20) | swar_bytes_equal(word, '"') | swar_bytes_equal(word, '\\')) != 0;
}

/* Eight bytes at a time, for CPUs without SSE2. */
inline const char* json_string_stop_swar(const char* p, const char* end) noexcept {
    for (; end - p >= 8; p += 8)
        if (json_word_has_stop(load_word(p))) break;
    return json_string_stop_scalar(p, end);
}

#if LLM_STREAM_SSE2
/* Sixteen bytes at a time; [floor, p) is readable too, so that a short tail (a string that ends
   near the end of the text, as a message's last one does) is read as the last 16 bytes before end. */
LLM_STREAM_FORCE_INLINE const char* json_string_stop_sse2(const char* p, const char* end, const char* floor) noexcept {
    auto stops = [](const char* block) {  // one bit per quote, backslash or control byte of the 16 at block
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block));
        const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                                      _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                                         _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v));
        return static_cast<unsigned>(_mm_movemask_epi8(hit));
    };
    for (; end - p >= 16; p += 16)
        if (const unsigned mask = stops(p)) return p + count_trailing_zeros(mask);
    if (p < end && end - floor >= 16) {  // the bytes before p in that block are shifted out
        const unsigned mask = stops(end - 16) >> (16 - (end - p));
        return mask ? p + count_trailing_zeros(mask) : end;
    }
    return json_string_stop_scalar(p, end);
}
#endif

LLM_STREAM_FORCE_INLINE const char* json_string_stop(const char* p, const char* end, const char* floor) noexcept {
#if LLM_STREAM_SSE2
    return json_string_stop_sse2(p, end, floor);
#else
    (void)floor;
    return json_string_stop_swar(p, end);
#endif
}

/* A caller's callable seen through one pointer, so that a walk below is compiled once rather than once
   per caller (each copy would hold the inlined string scan); the callable is called out of line
   either way. Valid while the callable lives. */
template <class... Args>
class JsonVisitor {
public:
    template <class F>
    explicit JsonVisitor(F& f) noexcept
        : callable_(&f), call_([](void* callable, Args... args) { return (*static_cast<F*>(callable))(args...); }) {}
    bool operator()(Args... args) const { return call_(callable_, args...); }

private:
    void* callable_;
    bool (*call_)(void*, Args...);
};

using JsonMemberVisitor = JsonVisitor<const JsonSpan&, int>;
using JsonElementVisitor = JsonVisitor<int>;

/* Walks one JSON text, validating as it goes. Every method leaves p just past what it read and
   returns false on invalid input (then `why` says what was expected). */
class JsonCursor {
public:
    JsonCursor(const char* first, const char* last) noexcept : p(first), start(first), end(last) {}

    const char* p;
    const char* const start;
    const char* const end;
    const char* why = "";

    bool fail(const char* reason) noexcept {
        why = reason;
        return false;
    }
    LLM_STREAM_FORCE_INLINE void skip_ws() noexcept {
        // Most tokens follow one another directly: one comparison rules whitespace out.
        while (p < end && static_cast<unsigned char>(*p) <= ' ' &&
               (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
            ++p;
    }
    bool at(char c) const noexcept { return p < end && *p == c; }

    bool string(JsonSpan& out) noexcept;  // at '"'
    /* string() compiled into the caller: for the strings of every message (member names, a known
       shape's text); elsewhere a copy of the scan per call site only adds code. */
    bool string_inlined(JsonSpan& out) noexcept;
    bool number(std::int64_t* as_int, bool* is_int) noexcept;
    bool fraction_and_exponent() noexcept;
    bool literal(const char* word, std::size_t length) noexcept {
        if (static_cast<std::size_t>(end - p) < length || std::memcmp(p, word, length) != 0)
            return fail("invalid literal");
        p += length;
        return true;
    }
    template <std::size_t N> bool literal(const char (&word)[N]) noexcept { return literal(word, N - 1); }
    bool skip_value(int depth) noexcept;

    /* Calls on_member(key, depth) for each member; it must read exactly the member's value. */
    template <class OnMember> bool object(int depth, OnMember on_member) {
        return object(depth, JsonMemberVisitor(on_member));
    }
    /* The rest of an object whose opening and first members were read another way (the cursor just
       after a member's value): its remaining members, as object() reads them, and its closing brace. */
    template <class OnMember> bool object_rest(int depth, OnMember on_member) {
        return object_rest(depth, JsonMemberVisitor(on_member));
    }
    /* Calls on_element(depth) for each element; it must read exactly one value. */
    template <class OnElement> bool array(int depth, OnElement on_element) {
        return array(depth, JsonElementVisitor(on_element));
    }
    bool object(int depth, JsonMemberVisitor on_member);
    bool object_rest(int depth, JsonMemberVisitor on_member);
    bool array(int depth, JsonElementVisitor on_element);
    /* object_rest() with the walk compiled into the caller, for the one walk per message of a known
       shape's tail, where a call through a JsonVisitor per member shows in the instructions per event. */
    template <class OnMember> bool object_rest_inlined(int depth, OnMember& on_member);

private:
    template <class OnMember> bool members(int depth, OnMember& on_member);  // from a name to the '}'
};

inline bool JsonCursor::string(JsonSpan& out) noexcept { return string_inlined(out); }

LLM_STREAM_FORCE_INLINE bool JsonCursor::string_inlined(JsonSpan& out) noexcept {
    ++p;  // the opening quote
    const char* const begin = p;
    bool escaped = false;
    for (;;) {
        p = json_string_stop(p, end, start);
        if (p >= end) return fail("unterminated string");
        const char c = *p;
        if (c == '"') {
            out.begin = begin;
            out.end = p;
            out.escaped = escaped;
            ++p;
            return true;
        }
        if (c != '\\') return fail("control character in string");
        escaped = true;
        if (end - p < 2) return fail("unterminated string");
        switch (p[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            p += 2;
            break;
        case 'u':
            if (end - p < 6 || hex_value(p[2]) < 0 || hex_value(p[3]) < 0 || hex_value(p[4]) < 0 ||
                hex_value(p[5]) < 0)
                return fail("invalid \\u escape");
            p += 6;
            break;
        default:
            return fail("invalid escape in string");
        }
    }
}

inline bool JsonCursor::number(std::int64_t* as_int, bool* is_int) noexcept {
    const char* const begin = p;
    // The integer part (the whole of most numbers) with a local cursor, which stays in a register.
    const char* q = p;
    const bool negative = q < end && *q == '-';
    if (negative) ++q;
    const char* const digits = q;
    std::uint64_t magnitude = 0;  // exact up to 19 digits; longer ones go to from_chars
    if (q < end && *q == '0') ++q;
    else
        for (; q < end && *q >= '0' && *q <= '9'; ++q) magnitude = magnitude * 10 + static_cast<unsigned>(*q - '0');
    p = q;
    if (q == digits) return fail("invalid number");
    const bool integral = !(at('.') || at('e') || at('E'));
    if (!integral && !fraction_and_exponent()) return false;
    if (as_int && integral && p - digits <= 18) {  // fits: no from_chars call for indexes and counts
        const auto value = static_cast<std::int64_t>(magnitude);
        *as_int = negative ? -value : value;
        if (is_int) *is_int = true;
    } else if (as_int && integral) {
        const auto r = std::from_chars(begin, p, *as_int);
        if (is_int) *is_int = r.ec == std::errc() && r.ptr == p;
    }
    return true;
}

/* A number's fraction and exponent, after its integer part. */
inline bool JsonCursor::fraction_and_exponent() noexcept {
    auto digit = [this] { return p < end && *p >= '0' && *p <= '9'; };
    if (at('.')) {
        ++p;
        if (!digit()) return fail("invalid number");
        while (digit()) ++p;
    }
    if (at('e') || at('E')) {
        ++p;
        if (at('+') || at('-')) ++p;
        if (!digit()) return fail("invalid number");
        while (digit()) ++p;
    }
    return true;
}

inline bool JsonCursor::object(int depth, JsonMemberVisitor on_member) {
    if (depth > json_max_depth) return fail("nesting too deep");
    ++p;  // '{'
    skip_ws();
    if (at('}')) { ++p; return true; }
    return members(depth, on_member);
}

inline bool JsonCursor::object_rest(int depth, JsonMemberVisitor on_member) {
    return object_rest_inlined(depth, on_member);
}

template <class OnMember>
bool JsonCursor::object_rest_inlined(int depth, OnMember& on_member) {
    skip_ws();
    if (at('}')) { ++p; return true; }
    if (!at(',')) return fail("expected ',' or '}'");
    ++p;
    skip_ws();
    return members(depth, on_member);
}

template <class OnMember>
bool JsonCursor::members(int depth, OnMember& on_member) {
    JsonSpan key;  // string() sets it whole: no fresh one per member
    for (;;) {
        if (!at('"')) return fail("expected a member name");
        if (!string_inlined(key)) return false;
        if (!at(':')) skip_ws();  // the colon mostly follows the name directly
        if (!at(':')) return fail("expected ':'");
        ++p;
        skip_ws();
        if (p >= end) return fail("expected a value");
        if (!on_member(key, depth)) return false;
        skip_ws();
        if (at(',')) { ++p; skip_ws(); continue; }
        if (at('}')) { ++p; return true; }
        return fail("expected ',' or '}'");
    }
}

inline bool JsonCursor::array(int depth, JsonElementVisitor on_element) {
    if (depth > json_max_depth) return fail("nesting too deep");
    ++p;  // '['
    skip_ws();
    if (at(']')) { ++p; return true; }
    for (;;) {
        if (p >= end) return fail("expected a value");
        if (!on_element(depth)) return false;
        skip_ws();
        if (at(',')) { ++p; skip_ws(); continue; }
        if (at(']')) { ++p; return true; }
        return fail("expected ',' or ']'");
    }
}

inline bool JsonCursor::skip_value(int depth) noexcept {
    if (p >= end) return fail("expected a value");
    switch (*p) {
    case '{': return object(depth + 1, [this](const JsonSpan&, int d) { return skip_value(d); });
    case '[': return array(depth + 1, [this](int d) { return skip_value(d); });
    case '"': { JsonSpan s; return string(s); }
    case 't': return literal("true", 4);
    case 'f': return literal("false", 5);
    case 'n': return literal("null", 4);
    default: return number(nullptr, nullptr);
    }
}

/* Compares an escaped member name with a literal ("\u0063ontent" is "content"). */
inline bool json_escaped_key_is(const JsonSpan& key, std::string_view name) noexcept {
    char decoded[128];  // room for a 21-character name written entirely in \u escapes
    if (key.size() > sizeof decoded) return false;
    const std::size_t n = json_decode_string(key.begin, key.end, decoded);
    return std::string_view(decoded, n) == name;
}

/* Compares a member name with a literal; the fixed size lets the compiler inline the comparison. */
template <std::size_t N>
LLM_STREAM_FORCE_INLINE bool json_key_is(const JsonSpan& key, const char (&name)[N]) noexcept {
    if (!key.escaped) return key.size() == N - 1 && std::memcmp(key.begin, name, N - 1) == 0;
    return json_escaped_key_is(key, std::string_view(name, N - 1));
}

/* Whether text is one valid JSON value (with surrounding whitespace): none, or what is wrong and where. */
inline Error check_json(std::string_view text) {
    JsonCursor c(text.data(), text.data() + text.size());
    c.skip_ws();
    bool ok = c.skip_value(0);
    if (ok) {
        c.skip_ws();
        if (c.p != c.end) ok = c.fail("unexpected text after the value");
    }
    if (ok) return {};
    return make_error(ErrorCode::protocol, std::string(c.why) + " at byte " + std::to_string(c.p - c.start));
}

/* Reads a wire message: one JSON object and nothing else but whitespace, each member handed to
   on_member(key, depth), which must read exactly its value. */
template <class OnMember>
bool json_read_message(JsonCursor& c, OnMember on_member) {
    c.skip_ws();
    if (!c.at('{')) return c.fail("an event's JSON must be an object");
    if (!c.object(1, on_member)) return false;
    c.skip_ws();
    return c.p == c.end || c.fail("unexpected text after the object");
}

/* What most of a stream is: messages that differ only in one string (the text) and in members after
   the one that holds it (a sequence number, a token count, OpenAI's "obfuscation"). A reader keeps the
   bytes of the last such message it read in full, up to the text's opening quote (the prefix) and from
   its closing quote to the end of the member that holds it (the middle). A message with the very same
   bytes there parses the same up to that point, so only its text and the members after the middle
   need reading, and they are validated as strictly as ever. */
class KnownShape {
public:
    /* Keeps `json`'s shape around `text`, a string token of it that ends before `middle_end`. */
    void learn(std::string_view json, const JsonSpan& text, const char* middle_end) {
        prefix_ = 0;
        const std::size_t prefix = static_cast<std::size_t>(text.begin - json.data());
        const std::size_t middle = static_cast<std::size_t>(middle_end - text.end);
        if (!bytes_.assign(json.substr(0, prefix)) || !bytes_.append(text.end, middle)) return;
        prefix_ = prefix;
        middle_ = middle;
    }
    void forget() noexcept { prefix_ = 0; }
    /* Forgets it for another stream, keeping up to `usual` bytes of room for the next shape. */
    void clear_to(std::size_t usual) noexcept {
        forget();
        bytes_.clear_to(usual);
    }
    /* Where the members after the middle begin when `json` has the shape (and its text in `text`);
       nullptr when it has not. */
    const char* match(std::string_view json, JsonSpan& text) const noexcept {
        if (prefix_ == 0 || json.size() < prefix_ + middle_ || std::memcmp(json.data(), bytes_.data(), prefix_) != 0)
            return nullptr;
        JsonCursor c(json.data() + prefix_ - 1, json.data() + json.size());  // at the text's opening quote
        if (!c.string_inlined(text) || static_cast<std::size_t>(c.end - text.end) < middle_ ||
            std::memcmp(text.end, bytes_.data() + prefix_, middle_) != 0)
            return nullptr;
        return text.end + middle_;
    }

private:
    ByteBuffer bytes_;  // the prefix, then the middle
    std::size_t prefix_ = 0;  // 0: no shape known
    std::size_t middle_ = 0;
};

/* The members after a KnownShape's middle, to the end of the message, when only integers among them
   change from message to message (Gemini's usage counts): the bytes around those integers compared as
   KnownShape compares its own, each integer read by JSON's grammar, so that such a tail is read
   without the general walk. The integers that may change are the tail's members and the members of
   an object that is one of them; the reader says which of them it wants, by their names, as a slot
   0..3 (for the tail's own members `outer` is empty). */
class KnownTail {
public:
    static constexpr std::size_t slots = 4;
    /* Keeps `tail`, valid JSON: the rest of an object after a member's value. slot_of(outer, name)
       is the slot of the integer member `name` of the tail's member `outer`, or -1. */
    template <class SlotOf>
    void learn(std::string_view tail, SlotOf slot_of) {
        known_ = false;
        holes_size_ = 0;
        if (!bytes_.assign(tail)) return;
        JsonCursor c(bytes_.data(), bytes_.data() + bytes_.size());
        const bool ok = c.object_rest(1, [&](const JsonSpan& outer, int d) {
            if (!c.at('{')) return note_integer(c, d, slot_of(JsonSpan(), outer));
            return c.object(d + 1, [&](const JsonSpan& name, int dd) { return note_integer(c, dd, slot_of(outer, name)); });
        });
        c.skip_ws();
        known_ = ok && c.p == c.end;
    }
    void forget() noexcept { known_ = false; }
    /* Forgets it for another stream, keeping up to `usual` bytes of room for the next tail. */
    void clear_to(std::size_t usual) noexcept {
        forget();
        bytes_.clear_to(usual);
    }
    /* Whether `tail` has the kept bytes around its integers; then values[slot] is each wanted one. */
    bool match(std::string_view tail, std::int64_t (&values)[slots]) const noexcept;

private:
    struct Hole {
        std::size_t at = 0, size = 0;  // in bytes_
        int slot = -1;
    };
    static constexpr std::size_t max_holes = 8;  // more integers are kept as bytes like the rest
    bool note_integer(JsonCursor& c, int depth, int slot) noexcept {
        const char* const begin = c.p;  // a value: members() checked that one begins here
        if (*begin != '-' && (*begin < '0' || *begin > '9')) return c.skip_value(depth);
        std::int64_t value = 0;
        bool is_int = false;
        if (!c.number(&value, &is_int)) return false;
        const std::size_t size = static_cast<std::size_t>(c.p - begin);
        if (!is_int) return true;  // kept as bytes: the reader takes nothing from a fraction
        // Kept as bytes too, unless the reader wants it: then the tail is not kept at all.
        if (size > max_integer_bytes || holes_size_ == max_holes) return slot < 0;
        Hole& hole = holes_[holes_size_++];
        hole.at = static_cast<std::size_t>(begin - bytes_.data());
        hole.size = size;
        hole.slot = slot;
        return true;
    }
    static constexpr std::size_t max_integer_bytes = 18;  // fits in 64 bits, sign included
    static bool read_integer(const char*& p, const char* end, std::int64_t& value) noexcept;

    ByteBuffer bytes_;
    Hole holes_[max_holes];
    std::size_t holes_size_ = 0;
    bool known_ = false;
};

/* A JSON integer at p of up to max_integer_bytes; what follows it is the caller's to check (the kept
   bytes after an integer start with a byte that ends a number). */
inline bool KnownTail::read_integer(const char*& p, const char* end, std::int64_t& value) noexcept {
    const char* q = p;
    const bool negative = q < end && *q == '-';
    if (negative) ++q;
    const char* const digits = q;
    std::int64_t magnitude = 0;
    if (q < end && *q == '0') ++q;
    else
        for (; q < end && q - p < static_cast<std::ptrdiff_t>(max_integer_bytes) && *q >= '0' && *q <= '9'; ++q)
            magnitude = magnitude * 10 + (*q - '0');
    if (q == digits) return false;
    value = negative ? -magnitude : magnitude;
    p = q;
    return true;
}

inline bool KnownTail::match(std::string_view tail, std::int64_t (&values)[slots]) const noexcept {
    if (!known_) return false;
    const char* p = tail.data();
    const char* const end = p + tail.size();
    std::int64_t read[max_holes] = {};
    std::size_t from = 0;  // in bytes_
    for (std::size_t i = 0;; ++i) {
        const std::size_t to = i < holes_size_ ? holes_[i].at : bytes_.size();
        if (static_cast<std::size_t>(end - p) < to - from || std::memcmp(p, bytes_.data() + from, to - from) != 0)
            return false;
        p += to - from;
        if (i == holes_size_) break;
        if (!read_integer(p, end, read[i])) return false;
        from = to + holes_[i].size;
    }
    if (p != end) return false;
    for (std::size_t i = 0; i < holes_size_; ++i)
        if (holes_[i].slot >= 0) values[holes_[i].slot] = read[i];
    return true;
}

/* Choices per completion: OpenAI accepts n up to 128. A choice index outside 0..max_choices-1 makes
   the event invalid, which bounds what the extractor and ReplyAssembler keep per stream. */
constexpr int max_choices = 128;

/* The wire format of OpenAI's chat completions: one message of the body (an SSE event's name and
   data, or a whole JSON reply) in, typed events out, every choice's in the order the JSON has them.
   Other wire formats are other readers with the same read() and the decoder picks one. */
/* A wire format's reader: one message of a body (an SSE event's name and data, an NDJSON line, or a
   whole JSON reply) in, typed events out. One per API; the Decoder picks it. */
class WireReader {
public:
    enum class Result {
        ok,             // events() holds this message's events (possibly none)
        end,            // the same, and the completion is over after them ("[DONE]", message_stop, ...)
        invalid,        // not valid JSON, or not the expected shape: error() says what and where
        error_event,    // the server reported an error: error() holds it
        out_of_memory,  // the events could not be decoded
    };
    virtual ~WireReader() = default;
    virtual Result read(std::string_view event_name, std::string_view data) = 0;
    virtual const std::vector<Event>& events() const noexcept = 0;
    /* After invalid: what and at which byte; after error_event: the server's own message. */
    virtual Error error() const = 0;
    /* Ready for another stream, as a new reader is, with the room its buffers had (up to their usual
       size): a decoder kept with a pooled connection allocates nothing anew for the next response.
       What it learned of the last stream's messages (KnownShape, KnownTail) is forgotten too. */
    virtual void reset() = 0;
};

/* The reader of the APIs other than OpenAI's chat completions (nullptr for Api::openai). */
inline std::unique_ptr<WireReader> make_wire_reader(Api api);
/* Each other API's reader, in that API's section (after the stub's). */
inline std::unique_ptr<WireReader> make_responses_reader();
inline std::unique_ptr<WireReader> make_anthropic_reader();
inline std::unique_ptr<WireReader> make_gemini_reader();
inline std::unique_ptr<WireReader> make_ollama_reader();

class DeltaExtractor final : public WireReader {
public:
    /* One message of a stream. A UTF-16 surrogate pair split between two messages (a high half
       ending one string, its low half opening the same field's next non-empty string) is joined. */
    Result read(std::string_view event_name, std::string_view data) override;
    /* One chat.completion.chunk (or a whole chat.completion, or an error object), on its own: no
       half of a surrogate pair is carried in from an earlier message. */
    Result extract(std::string_view json);
    const std::vector<Event>& events() const noexcept override { return events_; }
    Error error() const override;
    std::string_view server_message() const noexcept { return error_message_; }  // after error_event
    std::size_t error_offset() const noexcept { return error_offset_; }           // after invalid
    void reset() override;

private:
    struct ChoiceFields {
        std::int64_t index = 0;
        JsonSpan content, reasoning_content, reasoning, finish_reason;
        std::size_t tools_begin = 0, tools_end = 0;  // its tool calls in tools_
    };
    struct ToolFields {
        std::int64_t index = 0;
        JsonSpan id, name, arguments;
    };
    struct UsageFields {
        bool present = false;
        std::int64_t prompt = 0, completion = 0, total = 0;
    };
    /* A field whose strings concatenate across messages: a choice's content or reasoning, or the
       arguments of one of its tool calls. */
    struct TextField {
        EventType type = EventType::content;  // content, reasoning or tool_call (arguments)
        std::int64_t choice = 0;
        std::int64_t tool = 0;  // the tool call's index, for arguments
        bool operator==(const TextField& o) const noexcept {
            return type == o.type && choice == o.choice && tool == o.tool;
        }
    };
    /* A high surrogate that ended a field's last string, waiting for its low half. */
    struct PendingHalf {
        TextField field;
        std::uint32_t high = 0;
    };
    // More fields waiting at once than any real stream has (n choices of content and reasoning, a
    // few calls each): beyond it a new half is dropped, so memory stays bounded.
    static constexpr std::size_t max_pending_halves = 256;

    Result extract_message(std::string_view json);
    void forget_message() noexcept;  // the fields of the last message read
    bool read_known_shape(std::string_view json, JsonSpan& content);
    void learn_shape(std::string_view json);
    bool parse_top(JsonCursor& c);
    bool parse_top_member(JsonCursor& c, const JsonSpan& key, int depth);
    bool parse_choice(JsonCursor& c, int depth);
    bool parse_delta(JsonCursor& c, int depth, ChoiceFields& choice);
    bool parse_tool_call(JsonCursor& c, int depth);
    bool parse_usage(JsonCursor& c, int depth, UsageFields& usage);
    bool parse_error(JsonCursor& c, int depth);
    // Notes a string (or null, which stays absent); other types are read and ignored.
    bool string_or_null(JsonCursor& c, int depth, JsonSpan& out);
    std::string_view decode(const JsonSpan& s);
    /* decode() for a text field: joins a pending high surrogate, keeps a trailing one pending. */
    std::string_view decode_text(const JsonSpan& s, const TextField& field);
    std::uint32_t take_pending(const TextField& field) noexcept;
    [[nodiscard]] bool build_events();  // false: out of memory
    [[nodiscard]] bool build_content_event(const JsonSpan& content);  // false: out of memory
    void add_choice_events(const ChoiceFields& choice);
    void add_text_event(EventType type, int choice, std::string_view text);
    [[nodiscard]] bool note_error_message();

    std::vector<ChoiceFields> choices_;  // capacity kept between events, as for the vectors below
    std::vector<ToolFields> tools_;      // of every choice, in order
    UsageFields usage_, choice_usage_;
    bool have_error_ = false;
    JsonSpan error_message_span_, error_type_, error_code_;
    std::string_view error_code_number_;
    ByteBuffer arena_;
    std::vector<Event> events_;
    std::vector<PendingHalf> pending_;  // carried from one message to the next
    KnownShape shape_;                    // of a chunk that is one choice's content
    std::int64_t shape_choice_ = 0;       // that choice
    std::size_t choices_members_ = 0;     // "choices" members of the message read
    const char* choices_end_ = nullptr;   // where the last one's value ended
    const char* why_ = "";
    std::size_t error_offset_ = 0;
    std::string error_message_;  // only for error events: once per stream, not per chunk
};

/* Whether the value at the cursor is a number. */
inline bool json_at_number(const JsonCursor& c) noexcept {
    return c.at('-') || (c.p < c.end && *c.p >= '0' && *c.p <= '9');
}

/* Reads a whole number into out (a fraction is read and left out; a value of another type skipped):
   how every reader takes counts and indexes. */
inline bool json_integer_or_skip(JsonCursor& c, int depth, std::int64_t& out) {
    if (!json_at_number(c)) return c.skip_value(depth);
    std::int64_t v = 0;
    bool is_int = false;
    if (!c.number(&v, &is_int)) return false;
    if (is_int) out = v;
    return true;
}

inline bool DeltaExtractor::string_or_null(JsonCursor& c, int depth, JsonSpan& out) {
    if (c.at('"')) return c.string(out);
    if (c.at('n')) {
        out = {};
        return c.literal("null", 4);
    }
    return c.skip_value(depth);
}

inline bool DeltaExtractor::parse_usage(JsonCursor& c, int depth, UsageFields& usage) {
    if (!c.at('{')) return c.skip_value(depth);
    usage.present = true;
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "prompt_tokens")) return json_integer_or_skip(c, d, usage.prompt);
        if (json_key_is(key, "completion_tokens")) return json_integer_or_skip(c, d, usage.completion);
        if (json_key_is(key, "total_tokens")) return json_integer_or_skip(c, d, usage.total);
        return c.skip_value(d);
    });
}

inline bool DeltaExtractor::parse_tool_call(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    ToolFields tool;
    const bool ok = c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "index")) return json_integer_or_skip(c, d, tool.index);
        if (json_key_is(key, "id")) return string_or_null(c, d, tool.id);
        if (json_key_is(key, "function")) {
            if (!c.at('{')) return c.skip_value(d);
            return c.object(d + 1, [&](const JsonSpan& k, int dd) {
                if (json_key_is(k, "name")) return string_or_null(c, dd, tool.name);
                if (json_key_is(k, "arguments")) return string_or_null(c, dd, tool.arguments);
                return c.skip_value(dd);
            });
        }
        return c.skip_value(d);
    });
    if (ok) tools_.push_back(tool);
    return ok;
}

inline bool DeltaExtractor::parse_delta(JsonCursor& c, int depth, ChoiceFields& choice) {
    if (!c.at('{')) return c.skip_value(depth);
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "content")) return string_or_null(c, d, choice.content);
        if (json_key_is(key, "reasoning_content")) return string_or_null(c, d, choice.reasoning_content);
        if (json_key_is(key, "reasoning")) return string_or_null(c, d, choice.reasoning);
        if (json_key_is(key, "tool_calls")) {
            if (!c.at('[')) return c.skip_value(d);
            return c.array(d + 1, [&](int dd) { return parse_tool_call(c, dd); });
        }
        return c.skip_value(d);
    });
}

inline bool DeltaExtractor::parse_choice(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    ChoiceFields choice;
    choice.tools_begin = tools_.size();
    UsageFields usage;
    const bool ok = c.object(depth + 1, [&](const JsonSpan& key, int d) {
        // "message" is the same shape in a non-streamed reply, read whole when a server ignores "stream".
        if (json_key_is(key, "delta") || json_key_is(key, "message")) return parse_delta(c, d, choice);
        if (json_key_is(key, "finish_reason")) return string_or_null(c, d, choice.finish_reason);
        if (json_key_is(key, "index")) return json_integer_or_skip(c, d, choice.index);
        if (json_key_is(key, "usage")) return parse_usage(c, d, usage);  // some servers put it here
        return c.skip_value(d);
    });
    if (!ok) return false;
    static_assert(max_choices == 128, "the message below names the range");
    if (choice.index < 0 || choice.index >= max_choices) return c.fail("a choice's index must be from 0 to 127");
    choice.tools_end = tools_.size();
    choices_.push_back(choice);
    if (usage.present && !choice_usage_.present) choice_usage_ = usage;
    return true;
}

inline bool DeltaExtractor::parse_error(JsonCursor& c, int depth) {
    if (c.at('n')) return c.literal("null", 4);
    have_error_ = true;
    if (c.at('"')) return c.string(error_message_span_);
    if (!c.at('{')) return c.skip_value(depth);
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "message")) return string_or_null(c, d, error_message_span_);
        if (json_key_is(key, "type")) return string_or_null(c, d, error_type_);
        if (json_key_is(key, "code")) {
            if (c.at('"') || c.at('n')) return string_or_null(c, d, error_code_);
            const char* begin = c.p;
            if (!c.skip_value(d)) return false;
            error_code_number_ = std::string_view(begin, static_cast<std::size_t>(c.p - begin));
            return true;
        }
        return c.skip_value(d);
    });
}

inline bool DeltaExtractor::parse_top_member(JsonCursor& c, const JsonSpan& key, int d) {
    if (json_key_is(key, "choices")) {
        if (!c.at('[')) return c.skip_value(d);
        ++choices_members_;
        const bool ok = c.array(d + 1, [&](int dd) { return parse_choice(c, dd); });
        choices_end_ = c.p;
        return ok;
    }
    if (json_key_is(key, "usage")) return parse_usage(c, d, usage_);
    if (json_key_is(key, "error")) return parse_error(c, d);
    return c.skip_value(d);
}

inline bool DeltaExtractor::parse_top(JsonCursor& c) {
    return json_read_message(c, [&](const JsonSpan& key, int d) { return parse_top_member(c, key, d); });
}

/* A chunk of the known shape: its content, then the rest of the top-level object, which must hold
   nothing more to extract. False: read it in full. */
inline bool DeltaExtractor::read_known_shape(std::string_view json, JsonSpan& content) {
    const char* const rest = shape_.match(json, content);
    if (!rest) return false;
    JsonCursor c(rest, json.data() + json.size());
    auto member = [&](const JsonSpan& key, int d) { return parse_top_member(c, key, d); };
    if (!c.object_rest_inlined(1, member)) return false;
    c.skip_ws();
    return c.p == c.end && choices_.empty() && !usage_.present && !have_error_;
}

/* Keeps the shape of a chunk just read in full when it is one choice's content and nothing else. */
inline void DeltaExtractor::learn_shape(std::string_view json) {
    shape_.forget();
    if (choices_members_ != 1 || choices_.size() != 1 || !tools_.empty() || usage_.present ||
        choice_usage_.present || have_error_)
        return;
    const ChoiceFields& ch = choices_.front();
    // An empty finish reason ("", no finish) may be in the shape: its bytes are compared literally.
    if (ch.content.size() == 0 || ch.reasoning_content.present() || ch.reasoning.present() ||
        ch.finish_reason.size() != 0 || ch.content.end >= choices_end_)
        return;
    shape_.learn(json, ch.content, choices_end_);
    shape_choice_ = ch.index;
}

/* A string token's text: a view of the input when it needs no decoding, else decoded into the
   arena's reserved room (decoding never lengthens it). The readers of every wire format use it. */
inline std::string_view decode_in_arena(const JsonSpan& s, ByteBuffer& arena) {
    if (!s.escaped && utf8_valid(s.begin, s.end)) return {s.begin, s.size()};
    char* out = arena.data() + arena.size();  // room was reserved for every span
    const std::size_t n = json_decode_string(s.begin, s.end, out);
    arena.resize_up_reserved(n);
    return {out, n};
}

inline std::string_view DeltaExtractor::decode(const JsonSpan& s) { return decode_in_arena(s, arena_); }

inline std::uint32_t DeltaExtractor::take_pending(const TextField& field) noexcept {
    for (std::size_t i = 0; i < pending_.size(); ++i) {
        if (!(pending_[i].field == field)) continue;
        const std::uint32_t high = pending_[i].high;
        pending_[i] = pending_.back();
        pending_.pop_back();
        return high;
    }
    return 0;
}

inline std::string_view DeltaExtractor::decode_text(const JsonSpan& s, const TextField& field) {
    if (s.size() == 0) return {s.begin, 0};  // nothing comes between the halves of a pair
    const std::uint32_t high = pending_.empty() ? 0 : take_pending(field);  // used now or dropped
    if (!s.escaped) return decode(s);  // no escape: no half of a pair at either end
    char* const out = arena_.data() + arena_.size();
    const char* p = s.begin;
    std::size_t n = 0;
    // Validated: a backslash and a 'u' open an escape with its four hex digits.
    const std::uint32_t low = p[0] == '\\' && p[1] == 'u' ? read_hex4(p + 2) : 0;
    if (high != 0 && low >= 0xDC00 && low <= 0xDFFF) {  // 4 bytes out for 6 in: the room still holds
        n = utf8_encode(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00), out);
        p += 6;
    }
    std::uint32_t trailing_high = 0;
    n += json_decode_string(p, s.end, out + n, &trailing_high);
    if (trailing_high != 0 && pending_.size() < max_pending_halves) {
        // Growth stops at the most fields ever waiting at once: no allocation per event after it.
        PendingHalf half;
        half.field = field;
        half.high = trailing_high;
        pending_.push_back(half);
    }
    arena_.resize_up_reserved(n);
    return {out, n};
}

inline void DeltaExtractor::add_text_event(EventType type, int choice, std::string_view text) {
    if (text.empty()) return;  // e.g. only a half of a pair, or invalid bytes
    Event& e = events_.emplace_back();  // built in place: an Event is large, and this runs per event
    e.type = type;
    e.choice = choice;
    e.text = text;
}

/* A choice's events: reasoning, content, tool-call fragments, finish reason. */
inline void DeltaExtractor::add_choice_events(const ChoiceFields& ch) {
    const int choice = static_cast<int>(ch.index);
    TextField field;
    field.choice = ch.index;
    // One text per event: reasoning_content (DashScope, DeepSeek) wins over reasoning when it has any.
    const JsonSpan& reasoning = ch.reasoning_content.size() ? ch.reasoning_content : ch.reasoning;
    if (reasoning.size()) {
        field.type = EventType::reasoning;
        add_text_event(EventType::reasoning, choice, decode_text(reasoning, field));
    }
    if (ch.content.size()) {
        field.type = EventType::content;
        add_text_event(EventType::content, choice, decode_text(ch.content, field));
    }
    field.type = EventType::tool_call;
    for (std::size_t i = ch.tools_begin; i < ch.tools_end; ++i) {
        const ToolFields& t = tools_[i];
        Event e;
        e.type = EventType::tool_call;
        e.choice = choice;
        e.tool_call.index = static_cast<int>(t.index);
        if (t.id.present()) e.tool_call.id = decode(t.id);
        if (t.name.present()) e.tool_call.name = decode(t.name);
        field.tool = t.index;
        if (t.arguments.present()) e.tool_call.arguments = decode_text(t.arguments, field);
        events_.push_back(e);
    }
    // A reason that decodes to nothing is none, as null is: sglang 0.4.3 and Ollama's /v1 sent
    // "finish_reason":"" on every chunk, which is no finish.
    const std::string_view reason = ch.finish_reason.present() ? decode(ch.finish_reason) : std::string_view();
    if (!reason.empty()) {
        Event e;
        e.type = EventType::finish;
        e.choice = choice;
        e.text = e.raw_reason = reason;  // this API's values are the vocabulary
        events_.push_back(e);
    }
}

inline bool DeltaExtractor::build_events() {
    // Decoding never lengthens a string, so one reservation keeps every view stable.
    std::size_t room = 0;
    for (const ChoiceFields& ch : choices_)
        room += ch.content.size() + ch.reasoning_content.size() + ch.reasoning.size() + ch.finish_reason.size();
    for (const ToolFields& t : tools_) room += t.id.size() + t.name.size() + t.arguments.size();
    arena_.clear();
    if (!arena_.reserve(room)) return false;  // nothing can be decoded safely
    for (const ChoiceFields& ch : choices_) add_choice_events(ch);
    const UsageFields& usage = usage_.present ? usage_ : choice_usage_;
    if (usage.present) {
        Event e;
        e.type = EventType::usage;
        e.usage.prompt_tokens = usage.prompt;
        e.usage.completion_tokens = usage.completion;
        e.usage.total_tokens = usage.total;
        events_.push_back(e);
    }
    return true;
}

/* The one event of a chunk of the known shape, without build_events()'s general walk. */
inline bool DeltaExtractor::build_content_event(const JsonSpan& content) {
    arena_.clear();
    if (!arena_.reserve(content.size())) return false;
    TextField field;
    field.choice = shape_choice_;
    field.type = EventType::content;
    add_text_event(EventType::content, static_cast<int>(shape_choice_), decode_text(content, field));
    return true;
}

inline DeltaExtractor::Result DeltaExtractor::extract(std::string_view json) {
    pending_.clear();
    return extract_message(json);
}

inline void DeltaExtractor::forget_message() noexcept {
    choices_.clear();
    tools_.clear();
    usage_ = {};
    choice_usage_ = {};
    have_error_ = false;
    error_message_span_ = error_type_ = error_code_ = {};
    error_code_number_ = {};
    choices_members_ = 0;
    choices_end_ = nullptr;
}

inline DeltaExtractor::Result DeltaExtractor::extract_message(std::string_view json) {
    events_.clear();
    why_ = "";
    error_offset_ = 0;
    error_message_.clear();
    forget_message();
    JsonSpan content;
    if (read_known_shape(json, content)) return build_content_event(content) ? Result::ok : Result::out_of_memory;
    forget_message();

    JsonCursor c(json.data(), json.data() + json.size());
    if (!parse_top(c)) {
        why_ = c.why;
        error_offset_ = static_cast<std::size_t>(c.p - c.start);
        return Result::invalid;
    }
    if (have_error_) return note_error_message() ? Result::error_event : Result::out_of_memory;
    learn_shape(json);
    return build_events() ? Result::ok : Result::out_of_memory;
}

/* The server's error as one line: its message, then its type and code when it gave them. */
inline bool DeltaExtractor::note_error_message() {
    arena_.clear();
    if (!arena_.reserve(error_message_span_.size() + error_type_.size() + error_code_.size())) return false;
    const std::string_view message = error_message_span_.present() ? decode(error_message_span_) : "";
    const std::string_view type = error_type_.present() ? decode(error_type_) : "";
    const std::string_view code = error_code_.present() ? decode(error_code_) : error_code_number_;
    error_message_.assign(message.empty() ? std::string_view("the server reported an error") : message);
    if (!type.empty() || !code.empty()) {
        error_message_ += " (";
        if (!type.empty()) error_message_.append("type: ").append(type);
        if (!type.empty() && !code.empty()) error_message_ += ", ";
        if (!code.empty()) error_message_.append("code: ").append(code);
        error_message_ += ")";
    }
    return true;
}

// The items a reader's vectors keep for its next stream: far more than a usual message needs.
constexpr std::size_t reader_usual_items = 16;
/* Empties `from` and gives its room to `to` (an empty vector) unless a rare message grew it past the
   usual items. */
template <class T>
void keep_room(std::vector<T>& from, std::vector<T>& to) noexcept {
    from.clear();
    if (from.capacity() <= reader_usual_items) from.swap(to);
}
/* The same for bytes (a ByteBuffer, a KnownShape, a KnownTail): `to` gets `from`, emptied, with its
   room up to usual_room_bytes. */
template <class Bytes>
void keep_room(Bytes& from, Bytes& to) noexcept {
    from.clear_to(usual_room_bytes);
    to = std::move(from);
}
/* A reader's reset(): `to`, a new reader, gets the room of each of `from`'s buffers named. */
template <class Reader, class... Buffers>
void keep_rooms(Reader& from, Reader& to, Buffers Reader::*... buffers) noexcept {
    (keep_room(from.*buffers, to.*buffers), ...);
}
/* Makes a reader with no room reserved: the one reset() fills with the room of the reader it replaces. */
struct Unreserved {};

inline void DeltaExtractor::reset() {
    DeltaExtractor next;
    keep_rooms(*this, next, &DeltaExtractor::choices_, &DeltaExtractor::tools_, &DeltaExtractor::events_,
               &DeltaExtractor::pending_, &DeltaExtractor::arena_, &DeltaExtractor::shape_);
    *this = std::move(next);
}

inline DeltaExtractor::Result DeltaExtractor::read(std::string_view event_name, std::string_view data) {
    events_.clear();
    const std::string_view trimmed = trim_ascii_space(data);
    if (trimmed == "[DONE]") return Result::end;
    if (trimmed.empty()) return Result::ok;  // a keep-alive
    const Result result = extract_message(data);
    if (result == Result::invalid && event_name == "error") {  // "event: error" with a plain-text message
        error_message_ = excerpt(trimmed, 200);
        return Result::error_event;
    }
    return result;
}

inline Error DeltaExtractor::error() const {
    if (!error_message_.empty()) return make_error(ErrorCode::server_error, "server error: " + error_message_);
    return make_error(ErrorCode::protocol,
                      std::string(why_) + " at byte " + std::to_string(error_offset_));
}

/* The inside of a JSON string for s: quotes, backslashes and control characters escaped, UTF-8 passed
   through, invalid bytes dropped. A string written in pieces is escaped piece by piece. */
inline void json_write_escaped(std::string& out, std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    const char* p = s.data();
    const char* const end = p + s.size();
    while (p < end) {
        const unsigned char c = static_cast<unsigned char>(*p);
        if (c >= 0x80) {
            const std::size_t n = utf8_sequence_length(reinterpret_cast<const unsigned char*>(p),
                                                       reinterpret_cast<const unsigned char*>(end));
            if (n) out.append(p, n);
            p += n ? n : 1;
            continue;
        }
        ++p;
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
            if (c < 0x20) {
                const char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                out.append(esc, 6);
            } else {
                out += static_cast<char>(c);
            }
        }
    }
}

/* Writes s as a JSON string. */
inline void json_write_string(std::string& out, std::string_view s) {
    out += '"';
    json_write_escaped(out, s);
    out += '"';
}

/* Shortest text that reads back as the same double, independent of the C locale. */
inline void json_write_number(std::string& out, double value) {
    if (!std::isfinite(value)) {  // JSON has no NaN or infinity
        out += "null";
        return;
    }
    char buffer[32];
    const auto r = std::to_chars(buffer, buffer + sizeof buffer, value);
    out.append(buffer, static_cast<std::size_t>(r.ptr - buffer));
}

/* Copies validated JSON without the whitespace between tokens, string contents untouched but for
   invalid UTF-8, which is dropped (as decoding does); returns the length, never more than the input's. */
inline std::size_t json_compact(const char* p, const char* end, char* out) noexcept {
    std::size_t n = 0;
    bool in_string = false;
    while (p < end) {
        const char c = *p;
        if (!in_string && (c == ' ' || c == '\n' || c == '\r' || c == '\t')) {
            ++p;
            continue;
        }
        std::size_t length = utf8_sequence_length(reinterpret_cast<const unsigned char*>(p),
                                                  reinterpret_cast<const unsigned char*>(end));
        if (in_string && c == '\\') length = 2;  // an escape, of a quote among others
        else if (c == '"') in_string = !in_string;
        std::memcpy(out + n, p, length);
        n += length;
        p += length ? length : 1;
    }
    return n;
}

/* ------------------------------------------------------------------------------------------------
   Decoder: HTTP response reader → body framing (SSE events, NDJSON lines, or one whole JSON reply) →
   wire format (one message in, typed events out) → a queue handed out one event per call
   ------------------------------------------------------------------------------------------------ */

inline std::unique_ptr<WireReader> make_wire_reader(Api api) {
    switch (api) {
    case Api::openai: break;  // the Decoder's own DeltaExtractor
#if !defined(LLM_STREAM_NO_RESPONSES)
    case Api::responses: return make_responses_reader();
#endif
#if !defined(LLM_STREAM_NO_ANTHROPIC)
    case Api::anthropic: return make_anthropic_reader();
#endif
#if !defined(LLM_STREAM_NO_GEMINI)
    case Api::gemini: return make_gemini_reader();
#endif
#if !defined(LLM_STREAM_NO_OLLAMA)
    case Api::ollama: return make_ollama_reader();
#endif
    default: break;  // an API compiled out: refused before (api_compiled_in)
    }
    return nullptr;
}

class DecoderCore {
public:
    DecoderCore(const Limits& limits, Api api)
        : limits_(limits), api_(api), other_(make_wire_reader(api)),
          reader_events_(other_ ? &other_->events() : &format_.events()) {
        reset_parsers();
        error_ = api_compiled_in(api);  // then every call fails with it
    }
    DecoderCore(const DecoderCore&) = delete;  // reader_events_ points into it
    DecoderCore& operator=(const DecoderCore&) = delete;
    void reset();

    DecodeStep feed(std::string_view input);
    DecodeStep finish();
    void start_body(int http_status, std::string_view content_type);

    const Event& event() const noexcept { return event_; }
    const Error& error() const noexcept { return error_; }
    int http_status() const noexcept { return status_; }
    std::string_view header(std::string_view name) const noexcept { return http_.header(name); }
    bool response_complete() const noexcept { return response_complete_; }
    bool keep_alive() const noexcept { return http_framed_ && http_.keep_alive(); }
    std::size_t messages() const noexcept { return messages_; }
    std::size_t skipped_messages() const noexcept { return skipped_; }
    std::string_view warning() const noexcept { return warning_; }

private:
    /* How a body is read: as SSE events, as NDJSON lines, or kept whole (a non-streamed JSON reply,
       an error body). */
    enum class Framing { sse, ndjson, whole_json, error_body };

    void reset_parsers() {
        http_.reset({limits_.max_header_bytes, 4096});
        sse_.reset({limits_.max_line_bytes, limits_.max_event_bytes});
        lines_.reset(limits_.max_event_bytes);
    }
    DecodeStep idle() const noexcept {
        return {completion_over_ ? DecodeStatus::done : DecodeStatus::need_more, 0};
    }
    DecodeStep fail(Error e) {
        if (e.http_status == 0) e.http_status = status_;
        error_ = std::move(e);
        return {DecodeStatus::failed, 0};
    }
    DecodeStep warn(std::string message) {
        warning_ = std::move(message);
        return {DecodeStatus::warning, 0};
    }
    DecodeStep deliver() {
        event_ = reader_events()[next_queued_++];
        if (event_.type == EventType::finish) finish_seen_ = true;
        return {DecodeStatus::event, 0};
    }
    /* The API's reader: the chat-completions one is called directly (it is the hot path). */
    WireReader::Result read_message(std::string_view name, std::string_view data) {
        return other_ ? other_->read(name, data) : format_.read(name, data);
    }
    const std::vector<Event>& reader_events() const noexcept { return *reader_events_; }
    Error reader_error() const { return other_ ? other_->error() : format_.error(); }
    /* After a message that ended the completion and brought events: done once they are handed out. */
    std::optional<DecodeStep> due_done() {
        if (!done_due_ || next_queued_ < queued_) return std::nullopt;
        done_due_ = false;
        end_with_done();
        return DecodeStep{DecodeStatus::done, 0};
    }
    /* [DONE] may be the body's last bytes: then the response is complete as well. */
    void end_with_done() {
        if (body_pending_ != 0 || !http_framed_ || !http_.complete() || response_complete_) return;
        http_.feed({});
        on_response_end();  // after [DONE] it has nothing to add
    }
    [[nodiscard]] Error choose_framing(std::string_view content_type);
    DecodeStep read_http(std::string_view input, std::size_t& pos);
    DecodeStep read_body(std::string_view body, std::size_t& used);
    DecodeStep read_lines(std::string_view body, std::size_t& used);
    DecodeStep keep_whole(std::string_view body);
    DecodeStep on_message(std::string_view name, std::string_view data);
    DecodeStep on_response_end();
    DecodeStep http_error();

    Limits limits_;
    Api api_;
    HttpResponseReader http_;
    bool http_framed_ = true;        // false after start_body(): the input is body bytes
    int status_ = 0;
    Framing framing_ = Framing::sse;
    SseParser sse_;
    LineSplitter lines_;
    DeltaExtractor format_;                 // OpenAI's chat completions, and every API's error bodies
    std::unique_ptr<WireReader> other_;     // another API's reader
    // The reader's events, found once: not a virtual call per event.
    const std::vector<Event>* reader_events_;
    ByteBuffer whole_body_;
    std::size_t body_pending_ = 0;   // body bytes at the start of the next input, HTTP framing removed
    std::size_t queued_ = 0;         // events of the last message
    std::size_t next_queued_ = 0;    // the next of them to hand out
    bool completion_over_ = false;   // [DONE], or the end of the response
    bool done_seen_ = false;
    bool done_due_ = false;          // the completion ended with events still to hand out
    bool finish_seen_ = false;
    bool response_complete_ = false;
    std::size_t messages_ = 0;
    std::size_t skipped_ = 0;
    Event event_;
    Error error_;
    std::string warning_;            // only when something was skipped: never per event
};

/* Each part back to where a new decoder starts, keeping the room its buffers had (up to their usual
   size). */
inline void DecoderCore::reset() {
    reset_parsers();
    format_.reset();
    if (other_) other_->reset();  // its events stay where reader_events_ points
    http_framed_ = true;
    status_ = 0;
    framing_ = Framing::sse;
    whole_body_.clear_to(usual_room_bytes);
    body_pending_ = queued_ = next_queued_ = 0;
    completion_over_ = done_seen_ = done_due_ = finish_seen_ = response_complete_ = false;
    messages_ = skipped_ = 0;
    event_ = Event();
    error_ = api_compiled_in(api_);  // an API compiled out stays refused
    warning_.clear();
}

inline DecodeStep DecoderCore::feed(std::string_view input) {
    if (error_) return {DecodeStatus::failed, 0};
    if (next_queued_ < queued_) return deliver();
    if (const std::optional<DecodeStep> done = due_done()) return *done;
    std::size_t pos = 0;
    for (;;) {
        if (body_pending_ > 0 && pos < input.size()) {
            std::size_t used = 0;
            const DecodeStep s = read_body(input.substr(pos, std::min(body_pending_, input.size() - pos)), used);
            pos += used;
            body_pending_ -= used;
            if (s.status == DecodeStatus::done) end_with_done();
            if (s.status != DecodeStatus::need_more) return {s.status, pos};
            continue;
        }
        if (body_pending_ > 0) return {idle().status, pos};
        if (!http_framed_) {
            if (pos == input.size()) return {idle().status, pos};
            body_pending_ = input.size() - pos;
            continue;
        }
        if (response_complete_ || (pos == input.size() && !http_.complete())) return {idle().status, pos};
        const DecodeStep s = read_http(input, pos);
        if (s.status != DecodeStatus::need_more) return {s.status, pos};
    }
}

/* One step of the HTTP reader from input[pos]: the head, a span of body bytes (left in place for
   read_body), or the end of the response. */
inline DecodeStep DecoderCore::read_http(std::string_view input, std::size_t& pos) {
    const HttpResponseReader::Step h = http_.feed(input.substr(pos));
    pos += h.consumed;
    switch (h.status) {
    case HttpResponseReader::Status::need_more:
        break;
    case HttpResponseReader::Status::head:
        status_ = http_.status();
        if (Error e = choose_framing(http_.content_type())) return fail(std::move(e));
        break;
    case HttpResponseReader::Status::body:
        pos -= h.body.size();  // the span ends where the reader stopped
        body_pending_ = h.body.size();
        break;
    case HttpResponseReader::Status::end:
        return on_response_end();
    case HttpResponseReader::Status::error:
        return fail(http_.error());
    }
    return {DecodeStatus::need_more, 0};
}

inline DecodeStep DecoderCore::finish() {
    if (error_) return {DecodeStatus::failed, 0};
    if (next_queued_ < queued_) return deliver();
    if (const std::optional<DecodeStep> done = due_done()) return *done;
    if (response_complete_ || done_seen_) return idle();  // after [DONE] nothing the caller needs is missing
    if (!http_framed_) return on_response_end();
    const HttpResponseReader::Step h = http_.finish();
    if (h.status == HttpResponseReader::Status::end) return on_response_end();
    return fail(http_.error());
}

inline void DecoderCore::start_body(int http_status, std::string_view content_type) {
    http_framed_ = false;
    status_ = http_status;
    if (Error e = choose_framing(content_type)) fail(std::move(e));
}

/* A redirect, an error status, a 2xx that is no completion (a web page at the base URL, 204). */
inline Error DecoderCore::choose_framing(std::string_view content_type) {
    const std::string status = "HTTP " + std::to_string(status_);
    if (status_ >= 300 && status_ < 400)
        return make_error(ErrorCode::http_status,
                          status + ": redirects are not followed (Location: " + excerpt(http_.header("location"), 200) +
                              "); point the base URL at the final address",
                          status_);
    if (status_ < 200 || status_ > 299) {
        framing_ = Framing::error_body;
        return {};
    }
    if (status_ == 204 || status_ == 205)
        return make_error(ErrorCode::protocol, status + ": the server answered with no content, not a completion");
    const std::string_view type = trim_http_space(content_type.substr(0, content_type.find(';')));
    if (iequals(type, "text/html") || iequals(type, "application/xhtml+xml"))
        return make_error(ErrorCode::protocol, status + " with Content-Type " + excerpt(type, 60) +
                                                   ": a web page, not a completion stream (is the base URL the API's address?)");
    if (iequals(type, "application/json")) framing_ = Framing::whole_json;
    else if (iequals(type, "application/x-ndjson") || api_ == Api::ollama) framing_ = Framing::ndjson;
    else framing_ = Framing::sse;
    return {};
}

inline DecodeStep DecoderCore::read_body(std::string_view body, std::size_t& used) {
    if (framing_ == Framing::whole_json || framing_ == Framing::error_body) {
        used = body.size();
        return keep_whole(body);
    }
    if (completion_over_) {  // after [DONE] the rest of the body is read and ignored
        used = body.size();
        return {DecodeStatus::need_more, 0};
    }
    if (framing_ == Framing::ndjson) return read_lines(body, used);
    const SseParser::Step s = sse_.feed(body);
    used = s.consumed;
    if (s.status == SseParser::Status::error) return fail(sse_.error());
    if (s.status == SseParser::Status::event) return on_message(sse_.event_type(), sse_.data());
    return {DecodeStatus::need_more, 0};
}

inline DecodeStep DecoderCore::read_lines(std::string_view body, std::size_t& used) {
    const LineSplitter::Step s = lines_.feed(body);
    used = s.consumed;
    if (s.status == LineSplitter::Status::error) return fail(lines_.error());
    if (s.status == LineSplitter::Status::line) return on_message({}, lines_.line());
    return {DecodeStatus::need_more, 0};
}

inline DecodeStep DecoderCore::keep_whole(std::string_view body) {
    const bool error_body = framing_ == Framing::error_body;
    const std::size_t cap = error_body ? limits_.max_error_body_bytes : limits_.max_event_bytes;
    const std::size_t n = std::min(cap - std::min(cap, whole_body_.size()), body.size());
    if (!whole_body_.append(body.data(), n)) return fail(make_error(ErrorCode::out_of_memory, "out of memory"));
    if (n == body.size()) return {DecodeStatus::need_more, 0};
    if (error_body) return http_error();  // what was kept is enough to explain it
    return fail(make_error(ErrorCode::limit_exceeded, "the JSON reply exceeds Limits::max_event_bytes"));
}

inline DecodeStep DecoderCore::on_message(std::string_view name, std::string_view data) {
    ++messages_;
    const WireReader::Result result = read_message(name, data);
    switch (result) {
    case WireReader::Result::ok:
    case WireReader::Result::end:
        queued_ = reader_events().size();
        next_queued_ = 0;
        if (result == WireReader::Result::end) {
            completion_over_ = done_seen_ = true;
            if (queued_ == 0) return {DecodeStatus::done, 0};
            done_due_ = true;
        }
        if (queued_ > 0) return deliver();
        return {DecodeStatus::need_more, 0};
    case WireReader::Result::error_event:
        return fail(reader_error());
    case WireReader::Result::out_of_memory:
        return fail(make_error(ErrorCode::out_of_memory, "out of memory while decoding an event"));
    case WireReader::Result::invalid:
        break;
    }
    ++skipped_;
    return warn("skipped an event whose JSON could not be decoded (" + reader_error().message + "): " +
                excerpt(data, 80));
}

inline DecodeStep DecoderCore::on_response_end() {
    response_complete_ = true;
    if (framing_ == Framing::error_body) return http_error();
    const bool was_over = completion_over_;
    completion_over_ = true;
    if (framing_ == Framing::whole_json) {
        const DecodeStep s = on_message({}, whole_body_.view());
        if (s.status == DecodeStatus::warning)
            return fail(make_error(ErrorCode::protocol, "the JSON reply could not be decoded: " + warning_));
        return s.status == DecodeStatus::need_more ? idle() : s;
    }
    if (framing_ == Framing::ndjson && !was_over) {  // NDJSON's last newline is optional
        const LineSplitter::Step last = lines_.finish();
        if (last.status == LineSplitter::Status::error) return fail(lines_.error());
        if (last.status == LineSplitter::Status::line) return on_message({}, lines_.line());
    }
    if (messages_ == 0)
        return fail(make_error(ErrorCode::protocol, "the response ended without any completion data"));
    if (sse_.has_partial_event() && !was_over)
        return warn("the stream ended inside an event; that partial event was dropped");
    if (!done_seen_ && !finish_seen_)
        return warn("the stream ended without [DONE] or a finish reason; it may be incomplete");
    return idle();
}

inline DecodeStep DecoderCore::http_error() {
    std::string message = "HTTP " + std::to_string(status_);
    const std::string_view body = trim_ascii_space(whole_body_.view());
    const DeltaExtractor::Result read = format_.extract(body);
    queued_ = next_queued_ = 0;  // whatever the extractor made of it is not this response's events
    if (read == DeltaExtractor::Result::out_of_memory)  // never the raw body standing in for its message
        return fail(make_error(ErrorCode::out_of_memory, message + ": out of memory while decoding the error body"));
    if (read == DeltaExtractor::Result::error_event) {
        message += ": ";
        message.append(format_.server_message());
    } else if (!body.empty()) {
        message += ": " + excerpt(body, 200);
    }
    return fail(make_error(ErrorCode::http_status, std::move(message), status_));
}

/* ------------------------------------------------------------------------------------------------
   Request: URL, body
   ------------------------------------------------------------------------------------------------ */

/* The messages of a conversation wherever they are kept (a vector, an array on the stack), as the
   checks and the body writers read them: stream_chat(prompt) needs no vector. */
class MessageList {
public:
    // Implicit: every vector of messages is one.
    MessageList(const std::vector<Message>& messages) noexcept : first_(messages.data()), size_(messages.size()) {}
    MessageList(const Message* first, std::size_t size) noexcept : first_(first), size_(size) {}

    const Message* begin() const noexcept { return first_; }
    const Message* end() const noexcept { return first_ + size_; }
    std::reverse_iterator<const Message*> rbegin() const noexcept { return std::reverse_iterator<const Message*>(end()); }
    std::reverse_iterator<const Message*> rend() const noexcept { return std::reverse_iterator<const Message*>(begin()); }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    const Message& operator[](std::size_t i) const noexcept { return first_[i]; }
    const Message& back() const noexcept { return first_[size_ - 1]; }

private:
    const Message* first_;
    std::size_t size_;
};

struct Url {
    bool https = false;
    std::string host;         // without brackets for IPv6
    std::uint16_t port = 0;
    std::string target;       // path and query, at least "/"
    std::string host_header;  // host[:port] as the Host header wants it
};

LLM_STREAM_COLD inline Error parse_url(std::string_view url, Url& out) {
    auto bad = [](const char* why) { return make_error(ErrorCode::invalid_config, why); };
    auto starts_with_ci = [&](std::string_view prefix) {
        return url.size() >= prefix.size() && iequals(url.substr(0, prefix.size()), prefix);
    };
    std::string_view rest;
    if (starts_with_ci("https://")) { out.https = true; rest = url.substr(8); }
    else if (starts_with_ci("http://")) { out.https = false; rest = url.substr(7); }
    else return bad("the URL must start with http:// or https://");
    const std::size_t authority_end = std::min(rest.find_first_of("/?#"), rest.size());
    std::string_view authority = rest.substr(0, authority_end);
    std::string_view path = rest.substr(authority_end);
    if (authority.find('@') != std::string_view::npos) return bad("credentials in the URL are not supported (use LLM_API_KEY)");
    std::string_view host, port;
    bool has_port = false;
    if (!authority.empty() && authority[0] == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos) return bad("unterminated IPv6 address in the URL");
        host = authority.substr(1, close - 1);
        std::string_view after = authority.substr(close + 1);
        if (!after.empty() && after[0] != ':') return bad("unexpected text after the IPv6 address");
        has_port = !after.empty();
        if (has_port) port = after.substr(1);
        for (char c : host)
            if (!(hex_value(c) >= 0 || c == ':' || c == '.')) return bad("invalid IPv6 address in the URL");
        if (host.find(':') == std::string_view::npos) return bad("invalid IPv6 address in the URL");
    } else {
        const std::size_t colon = authority.rfind(':');
        host = authority.substr(0, colon);
        has_port = colon != std::string_view::npos;
        if (has_port) port = authority.substr(colon + 1);
        for (char c : host)
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                  c == '.' || c == '_')) return bad("invalid host name in the URL");
    }
    if (host.empty()) return bad("the URL has no host");
    std::uint64_t port_number = out.https ? 443 : 80;
    if (has_port) {
        if (!parse_decimal(port, port_number) || port_number == 0 || port_number > 65535) return bad("invalid port in the URL");
    }
    const std::size_t fragment = path.find('#');
    if (fragment != std::string_view::npos) path = path.substr(0, fragment);
    for (char c : path)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) return bad("the URL path contains spaces or control characters");
    out.host.assign(host);
    out.port = static_cast<std::uint16_t>(port_number);
    out.target = path.empty() || path[0] == '?' ? "/" + std::string(path) : std::string(path);
    const bool v6 = host.find(':') != std::string_view::npos;
    out.host_header = v6 ? "[" + out.host + "]" : out.host;
    if (port_number != (out.https ? 443u : 80u)) out.host_header += ":" + std::to_string(port_number);
    return {};
}

LLM_STREAM_COLD inline Error invalid_argument(std::string message) { return make_error(ErrorCode::invalid_argument, std::move(message)); }

/* A decoded JSON string token. */
LLM_STREAM_COLD inline std::string json_string_text(const JsonSpan& s) {
    std::string out(s.size(), '\0');
    out.resize(json_decode_string(s.begin, s.end, &out[0]));
    return out;
}

/* The members of an extra_json object (the request's or one message's), as text to splice into the
   object written, and their names, which the writer then leaves out. */
struct ExtraMembers {
    std::string_view object;  // the whole object, trimmed
    std::string_view text;    // between the braces, trimmed
    std::vector<std::string> keys;
    std::vector<std::string> merged;  // the request's object-valued members: merged, not replacing
    bool has(std::string_view key) const { return std::find(keys.begin(), keys.end(), key) != keys.end(); }
    bool replaces(std::string_view key) const {
        return has(key) && std::find(merged.begin(), merged.end(), key) == merged.end();
    }
};

/* `what` names the JSON in errors ("extra JSON", "messages[2].extra_json"). */
LLM_STREAM_COLD inline Error read_extra_members(std::string_view extra_json, const std::string& what, ExtraMembers& out) {
    const std::string_view extra = trim_ascii_space(extra_json);
    if (extra.empty()) return {};
    if (Error e = check_json(extra)) return invalid_argument(what + " is not valid JSON: " + e.message);
    if (extra.front() != '{') return invalid_argument(what + " must be an object");
    JsonCursor c(extra.data(), extra.data() + extra.size());
    const bool ok = c.object(1, [&](const JsonSpan& key, int depth) {
        out.keys.push_back(json_string_text(key));
        return c.skip_value(depth);
    });
    LLM_STREAM_ASSERT(ok);  // check_json() said so
    (void)ok;
    out.object = extra;
    out.text = trim_ascii_space(extra.substr(1, extra.size() - 2));
    return {};
}

using JsonMembers = std::vector<std::pair<std::string, std::string_view>>;

/* A valid JSON object's members: each name decoded, and its value as the JSON text written. False
   only when it nests deeper than the parser goes (json_max_depth) from `depth`. */
LLM_STREAM_COLD inline bool json_members(std::string_view object, int depth, JsonMembers& members) {
    JsonCursor c(object.data(), object.data() + object.size());
    c.skip_ws();
    return c.object(depth, [&](const JsonSpan& key, int d) {
        const char* const begin = c.p;
        if (!c.skip_value(d)) return false;
        members.emplace_back(json_string_text(key), std::string_view(begin, static_cast<std::size_t>(c.p - begin)));
        return true;
    });
}

/* Writes the object `base` with the members of the object `patch` (both valid JSON): a member that
   is an object in both merges recursively, any other of patch's replaces base's in its place or
   follows base's members. False when base nests too deep to read (see json_members). */
LLM_STREAM_COLD inline bool json_merge_object(std::string_view base, std::string_view patch, int depth, std::string& out) {
    JsonMembers patches, members;
    if (!json_members(patch, depth, patches) || !json_members(base, depth, members)) return false;
    std::vector<bool> used(patches.size(), false);
    out += '{';
    auto open = [&out](const std::string& name) {
        if (out.back() != '{') out += ',';
        json_write_string(out, name);
        out += ':';
    };
    for (const auto& member : members) {
        open(member.first);
        const auto same = std::find_if(patches.begin(), patches.end(),
                                       [&member](const auto& p) { return p.first == member.first; });
        if (same == patches.end()) {
            out.append(member.second.data(), member.second.size());
            continue;
        }
        used[static_cast<std::size_t>(same - patches.begin())] = true;
        const std::string_view value = same->second;
        if (member.second.front() != '{' || value.front() != '{') out.append(value.data(), value.size());
        else if (!json_merge_object(member.second, value, depth + 1, out)) return false;
    }
    for (std::size_t k = 0; k < patches.size(); ++k) {
        if (used[k]) continue;
        open(patches[k].first);
        out.append(patches[k].second.data(), patches[k].second.size());
    }
    out += '}';
    return true;
}

/* ChatOptions::extra_json: any member but the two the client must own. */
LLM_STREAM_COLD inline Error read_request_extra(std::string_view extra_json, ExtraMembers& out) {
    if (Error e = read_extra_members(extra_json, "extra JSON", out)) return e;
    for (const char* key : {"stream", "messages"})
        if (out.has(key)) return invalid_argument("extra JSON may not set \"" + std::string(key) + "\": the client sets it");
    JsonMembers members;
    if (out.object.empty() || !json_members(out.object, 1, members)) return {};  // never false: check_json() read it
    for (const auto& member : members)
        if (member.second.front() == '{') out.merged.push_back(member.first);
    return {};
}

/* Closes a request body with extra_json's members: those the writers left out are added, and an
   object-valued one merges into the object written under its name (one more pass over the body,
   only then: reading it again can find it too deep, where a JSON Schema nests close to the limit). */
[[nodiscard]] LLM_STREAM_COLD inline Error end_body(std::string& body, const ExtraMembers& extra) {
    if (extra.merged.empty()) {
        if (!extra.text.empty()) body.append(",").append(extra.text.data(), extra.text.size());
        body += '}';
        return {};
    }
    body += '}';
    std::string merged;
    merged.reserve(body.size() + extra.object.size());
    if (!json_merge_object(body, extra.object, 0, merged))
        return invalid_argument("extra JSON: the request nests too deep (over " + std::to_string(json_max_depth) +
                                " levels) to merge its objects into");
    body.swap(merged);
    return {};
}

/* Appends bytes in base64 (RFC 4648 section 4, padded), written in place at the end of out. */
LLM_STREAM_COLD inline void base64_append(std::string& out, std::string_view bytes) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const std::size_t start = out.size();
    out.resize(start + (bytes.size() + 2) / 3 * 4);
    char* o = &out[start];
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const std::size_t whole = bytes.size() / 3 * 3;
    auto put = [&](std::uint32_t v, int sextets) {
        for (int k = 0; k < 4; ++k) *o++ = k < sextets ? alphabet[v >> (18 - 6 * k) & 63] : '=';
    };
    for (std::size_t i = 0; i < whole; i += 3)
        put(static_cast<std::uint32_t>(p[i] << 16 | p[i + 1] << 8 | p[i + 2]), 4);
    const std::size_t rest = bytes.size() - whole;
    if (rest == 1) put(static_cast<std::uint32_t>(p[whole] << 16), 2);
    if (rest == 2) put(static_cast<std::uint32_t>(p[whole] << 16 | p[whole + 1] << 8), 3);
}

/* Writes `,"name":` unless extra_json replaces that member; says whether the value follows. */
LLM_STREAM_COLD inline bool open_member(std::string& out, const ExtraMembers& extra, std::string_view name) {
    if (extra.replaces(name)) return false;
    out += ",\"";
    out += name;
    out += "\":";
    return true;
}

/* An image part's URL as a JSON string: its own, or its bytes as a base64 data: URL. */
LLM_STREAM_COLD inline void write_image_url(std::string& out, const ContentPart& part) {
    if (!part.bytes) {
        json_write_string(out, part.text);
        return;
    }
    out += "\"data:";
    out += part.mime_type;  // checked: image/ and token characters, nothing to escape
    out += ";base64,";
    base64_append(out, *part.bytes);
    out += '"';
}

LLM_STREAM_COLD inline void write_content_part(std::string& out, const ContentPart& part) {
    if (part.kind == ContentPart::Kind::text) {
        out += "{\"type\":\"text\",\"text\":";
        json_write_string(out, part.text);
        out += '}';
        return;
    }
    out += "{\"type\":\"image_url\",\"image_url\":{\"url\":";
    write_image_url(out, part);
    if (!part.detail.empty()) {
        out += ",\"detail\":";
        json_write_string(out, part.detail);
    }
    out += "}}";
}

/* The content: parts, text, or null for an assistant message that only calls tools (as OpenAI
   sends it back). */
LLM_STREAM_COLD inline void write_message_content(std::string& out, const Message& m) {
    if (!m.parts.empty()) {
        out += '[';
        for (std::size_t k = 0; k < m.parts.size(); ++k) {
            if (k) out += ',';
            write_content_part(out, m.parts[k]);
        }
        out += ']';
    } else if (m.role == Role::assistant && m.content.empty() && !m.tool_calls.empty()) {
        out += "null";
    } else {
        json_write_string(out, m.content);
    }
}

/* The calls; with_signature, a call's "signature" (Gemini's, kept for a --messages file). */
LLM_STREAM_COLD inline void write_tool_calls(std::string& out, const std::vector<ToolCall>& calls, bool with_signature) {
    out += '[';
    for (std::size_t k = 0; k < calls.size(); ++k) {
        out += k ? ",{\"id\":" : "{\"id\":";
        json_write_string(out, calls[k].id);
        out += ",\"type\":\"function\",\"function\":{\"name\":";
        json_write_string(out, calls[k].name);
        out += ",\"arguments\":";
        json_write_string(out, calls[k].arguments);
        out += '}';
        if (with_signature && !calls[k].signature.empty()) {
            out += ",\"signature\":";
            json_write_string(out, calls[k].signature);
        }
        out += '}';
    }
    out += ']';
}

LLM_STREAM_COLD inline void write_string_member(std::string& out, const ExtraMembers& extra, std::string_view name,
                                std::string_view value) {
    if (!value.empty() && open_member(out, extra, name)) json_write_string(out, value);
}

LLM_STREAM_COLD inline void write_string_array_member(std::string& out, const ExtraMembers& extra, std::string_view name,
                                      const std::vector<std::string>& strings);

/* reasoning_content and the signatures that go back with it (this library's members: an OpenAI
   server sees them only with ChatOptions::send_reasoning). */
LLM_STREAM_COLD inline void write_reasoning_members(std::string& out, const ExtraMembers& extra, const Message& m) {
    write_string_member(out, extra, "reasoning_content", m.reasoning);
    write_string_member(out, extra, "reasoning_signature", m.reasoning_signature);
    write_string_array_member(out, extra, "redacted_reasoning", m.redacted_reasoning);
}

/* One message in OpenAI format; members of its extra_json replace the ones written here (an
   extra_json that is not a JSON object is left out: build_request refuses it before this). */
LLM_STREAM_COLD inline void write_message(std::string& out, const Message& m, bool with_reasoning) {
    ExtraMembers extra;
    if (read_extra_members(m.extra_json, "extra_json", extra)) extra = ExtraMembers{};
    out += "{\"role\":";
    json_write_string(out, role_name(m.role));
    if (open_member(out, extra, "content")) write_message_content(out, m);
    if (with_reasoning) write_reasoning_members(out, extra, m);
    if (!m.tool_calls.empty() && open_member(out, extra, "tool_calls")) write_tool_calls(out, m.tool_calls, with_reasoning);
    write_string_member(out, extra, "tool_call_id", m.tool_call_id);
    write_string_member(out, extra, "name", m.name);
    if (!extra.text.empty()) {
        out += ',';
        out.append(extra.text.data(), extra.text.size());
    }
    out += '}';
}

/* A function's members: name, description, its JSON Schema as `schema_key` (`no_schema` when it has
   none; nothing when that is empty too), strict. Every API describes a tool with these. */
LLM_STREAM_COLD inline void write_function_members(std::string& out, const Tool& tool, std::string_view schema_key,
                                   std::string_view no_schema = {}) {
    out += "\"name\":";
    json_write_string(out, tool.name);
    if (!tool.description.empty()) {
        out += ",\"description\":";
        json_write_string(out, tool.description);
    }
    std::string_view schema = trim_ascii_space(tool.parameters);
    if (schema.empty()) schema = no_schema;
    if (!schema.empty()) out.append(",\"").append(schema_key).append("\":").append(schema);
    if (tool.strict) out += ",\"strict\":true";
}

LLM_STREAM_COLD inline void write_tools(std::string& out, const std::vector<Tool>& tools) {
    out += '[';
    for (std::size_t i = 0; i < tools.size(); ++i) {
        out += i ? ",{\"type\":\"function\",\"function\":{" : "{\"type\":\"function\",\"function\":{";
        write_function_members(out, tools[i], "parameters");
        out += "}}";
    }
    out += ']';
}

LLM_STREAM_COLD inline void write_tool_choice(std::string& out, const ToolChoice& choice) {
    switch (choice.mode) {
    case ToolChoice::Mode::server_default:  // not written: the caller checks
    case ToolChoice::Mode::automatic: out += "\"auto\""; break;
    case ToolChoice::Mode::none: out += "\"none\""; break;
    case ToolChoice::Mode::required: out += "\"required\""; break;
    case ToolChoice::Mode::function:
        out += "{\"type\":\"function\",\"function\":{\"name\":";
        json_write_string(out, choice.name);
        out += "}}";
        break;
    }
}

LLM_STREAM_COLD inline void write_response_format(std::string& out, const ResponseFormat& format) {
    if (format.type == ResponseFormat::Type::json_object) {
        out += "{\"type\":\"json_object\"}";
        return;
    }
    out += "{\"type\":\"json_schema\",\"json_schema\":{\"name\":";
    json_write_string(out, format.name);
    out += ",\"schema\":";
    const std::string_view schema = trim_ascii_space(format.schema);
    out.append(schema.data(), schema.size());
    out += format.strict ? ",\"strict\":true}}" : ",\"strict\":false}}";
}

LLM_STREAM_COLD inline void write_number_member(std::string& out, const ExtraMembers& extra, std::string_view name,
                                const std::optional<double>& value) {
    if (value && open_member(out, extra, name)) json_write_number(out, *value);
}

/* `,"name":[...]` when the strings are not empty and extra_json does not replace the member. */
LLM_STREAM_COLD inline void write_string_array_member(std::string& out, const ExtraMembers& extra, std::string_view name,
                                      const std::vector<std::string>& strings) {
    if (strings.empty() || !open_member(out, extra, name)) return;
    out += '[';
    for (std::size_t i = 0; i < strings.size(); ++i) {
        if (i) out += ',';
        json_write_string(out, strings[i]);
    }
    out += ']';
}

LLM_STREAM_COLD inline void write_sampling_options(std::string& out, const ChatOptions& options, const ExtraMembers& extra) {
    write_number_member(out, extra, "temperature", options.temperature);
    write_number_member(out, extra, "top_p", options.top_p);
    if (options.max_tokens && open_member(out, extra, "max_tokens")) out += std::to_string(*options.max_tokens);
    if (options.seed && open_member(out, extra, "seed")) out += std::to_string(*options.seed);
    write_number_member(out, extra, "presence_penalty", options.presence_penalty);
    write_number_member(out, extra, "frequency_penalty", options.frequency_penalty);
    write_string_array_member(out, extra, "stop", options.stop);
    write_string_member(out, extra, "user", options.user);
}

LLM_STREAM_COLD inline void write_tool_options(std::string& out, const ChatOptions& options, const ExtraMembers& extra) {
    if (options.tools.empty()) return;  // then tool_choice can only be none, which is what no tools mean
    if (open_member(out, extra, "tools")) write_tools(out, options.tools);
    if (options.tool_choice.mode != ToolChoice::Mode::server_default && open_member(out, extra, "tool_choice"))
        write_tool_choice(out, options.tool_choice);
    if (options.parallel_tool_calls && open_member(out, extra, "parallel_tool_calls"))
        out += *options.parallel_tool_calls ? "true" : "false";
}

/* Room for the body, so that it is written in one pass without reallocating in the common case
   (escapes may still grow it). */
LLM_STREAM_COLD inline std::size_t body_size_estimate(MessageList messages, const ChatOptions& options) {
    std::size_t size = 512 + options.extra_json.size() + options.response_format.schema.size();
    for (const Message& m : messages) {
        size += 64 + m.content.size() + m.reasoning.size() + m.reasoning_signature.size() + m.extra_json.size() + m.name.size();
        for (const ContentPart& part : m.parts)
            size += 96 + part.text.size() + part.mime_type.size() + (part.bytes ? part.bytes->size() / 3 * 4 + 4 : 0);
        for (const ToolCall& call : m.tool_calls) size += 80 + call.id.size() + call.name.size() + call.arguments.size();
    }
    for (const Tool& tool : options.tools) size += 80 + tool.name.size() + tool.description.size() + tool.parameters.size();
    for (const std::string& stop : options.stop) size += 4 + stop.size();
    return size;
}

/* A body's opening: '{' and the model (unless extra_json sets it), with room for the rest. */
LLM_STREAM_COLD inline void begin_body(std::string& body, std::size_t size_estimate, const std::string& model, const ExtraMembers& extra) {
    body.clear();
    body.reserve(size_estimate);
    body += '{';
    if (!extra.has("model")) {
        body += "\"model\":";
        json_write_string(body, model);
        body += ',';
    }
}

/* The JSON body of a streamed chat completion, after check_chat_options(). Members of extra_json
   replace the ones written here or merge into them (end_body), so no key appears twice. */
LLM_STREAM_COLD inline Error write_chat_body(MessageList messages, const ChatOptions& options,
                            const std::string& model, const ExtraMembers& extra, std::string& body) {
    begin_body(body, body_size_estimate(messages, options), model, extra);
    body += "\"messages\":[";
    for (std::size_t i = 0; i < messages.size(); ++i) {
        if (i) body += ',';
        write_message(body, messages[i], options.send_reasoning);
    }
    body += "],\"stream\":true";
    if (options.include_usage && open_member(body, extra, "stream_options")) body += "{\"include_usage\":true}";
    write_sampling_options(body, options, extra);
    write_string_member(body, extra, "reasoning_effort", options.reasoning_effort);
    write_tool_options(body, options, extra);
    if (options.response_format.type != ResponseFormat::Type::text && open_member(body, extra, "response_format"))
        write_response_format(body, options.response_format);
    return end_body(body, extra);
}

/* A message's text: its content, or its text parts one after the other. */
LLM_STREAM_COLD inline std::string message_text(const Message& m) {
    if (m.parts.empty()) return m.content;
    std::string text;
    for (const ContentPart& part : m.parts)
        if (part.kind == ContentPart::Kind::text) text += part.text;
    return text;
}

LLM_STREAM_COLD inline bool message_text_empty(const Message& m) {
    if (m.parts.empty()) return m.content.empty();
    return std::all_of(m.parts.begin(), m.parts.end(), [](const ContentPart& part) {
        return part.kind != ContentPart::Kind::text || part.text.empty();
    });
}

/* message_text(m) escaped into a JSON string being written, without a copy of it. */
LLM_STREAM_COLD inline void write_message_text_escaped(std::string& out, const Message& m) {
    if (m.parts.empty()) return json_write_escaped(out, m.content);
    for (const ContentPart& part : m.parts)
        if (part.kind == ContentPart::Kind::text) json_write_escaped(out, part.text);
}

/* message_text(m) as a JSON string. */
LLM_STREAM_COLD inline void write_message_text(std::string& out, const Message& m) {
    out += '"';
    write_message_text_escaped(out, m);
    out += '"';
}

/* The name of the tool that the tool result messages[index] answers: that of the nearest earlier call
   with its tool_call_id (ids are unique only within a turn); empty when no earlier message made it. */
LLM_STREAM_COLD inline std::string_view called_tool_name(MessageList messages, std::size_t index) {
    const std::string& id = messages[index].tool_call_id;
    for (std::size_t i = index; i-- > 0;)
        for (const ToolCall& call : messages[i].tool_calls)
            if (call.id == id) return call.name;
    return {};
}

/* Each other API's body, in that API's section (after the stub's): the same conversation and options
   in that API's shape; invalid_argument naming an option the API cannot carry. */
LLM_STREAM_COLD inline Error write_responses_body(MessageList messages, const ChatOptions& options,
                                  const std::string& model, const ExtraMembers& extra, std::string& body);
LLM_STREAM_COLD inline Error write_anthropic_body(MessageList messages, const ChatOptions& options,
                                  const std::string& model, const ExtraMembers& extra, std::string& body);
LLM_STREAM_COLD inline Error write_gemini_body(MessageList messages, const ChatOptions& options,
                               const std::string& model, const ExtraMembers& extra, std::string& body);
LLM_STREAM_COLD inline Error write_ollama_body(MessageList messages, const ChatOptions& options,
                               const std::string& model, const ExtraMembers& extra, std::string& body);

/* A known effort, and a positive budget only where the API takes one (anthropic's lower bound is
   checked in its section). */
LLM_STREAM_COLD inline Error check_reasoning_options(Api api, const ChatOptions& options) {
    const std::string& effort = options.reasoning_effort;
    if (!effort.empty() && effort != "low" && effort != "medium" && effort != "high")
        return invalid_argument("reasoning_effort must be \"low\", \"medium\" or \"high\" (got \"" + excerpt(effort, 40) + "\")");
    if (!options.reasoning_budget) return {};
    if (*options.reasoning_budget <= 0) return invalid_argument("reasoning_budget must be positive");
    if (api == Api::anthropic || api == Api::gemini) return {};
    return invalid_argument(std::string("reasoning_budget: the ") + api_name(api) +
                            " API takes no thinking budget; give reasoning_effort");
}

/* The request body in `api`'s shape, after check_chat_options(). */
LLM_STREAM_COLD inline Error write_request_body(Api api, MessageList messages, const ChatOptions& options,
                                const std::string& model, const ExtraMembers& extra, std::string& body) {
    if (Error e = check_reasoning_options(api, options)) return e;
    switch (api) {
    case Api::openai: break;
#if !defined(LLM_STREAM_NO_RESPONSES)
    case Api::responses: return write_responses_body(messages, options, model, extra, body);
#endif
#if !defined(LLM_STREAM_NO_ANTHROPIC)
    case Api::anthropic: return write_anthropic_body(messages, options, model, extra, body);
#endif
#if !defined(LLM_STREAM_NO_GEMINI)
    case Api::gemini: return write_gemini_body(messages, options, model, extra, body);
#endif
#if !defined(LLM_STREAM_NO_OLLAMA)
    case Api::ollama: return write_ollama_body(messages, options, model, extra, body);
#endif
    default: break;  // an API compiled out: refused before (api_compiled_in)
    }
    return write_chat_body(messages, options, model, extra, body);
}

/* "messages[2]": where a culprit sits, in the JSON the server would see. */
LLM_STREAM_COLD inline std::string indexed(std::string_view name, std::size_t index) {
    std::string out(name);
    out += '[';
    out += std::to_string(index);
    out += ']';
    return out;
}

/* Letters, digits, '_' and '-', 1 to 64 of them: OpenAI's rule for function and schema names. */
LLM_STREAM_COLD inline bool valid_function_name(std::string_view name) noexcept {
    return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
}

LLM_STREAM_COLD inline Error check_function_name(std::string_view name, const std::string& field) {
    if (name.empty()) return invalid_argument(field + " is empty");
    if (!valid_function_name(name))
        return invalid_argument(field + " \"" + excerpt(name, 70) +
                                "\" is not a valid name: letters, digits, '_' and '-', at most 64");
    return {};
}

/* JSON text that must be one object: a tool's parameters, a response format's schema. */
LLM_STREAM_COLD inline Error check_json_object(std::string_view text, const std::string& field) {
    const std::string_view trimmed = trim_ascii_space(text);
    if (Error e = check_json(trimmed)) return invalid_argument(field + " is not valid JSON: " + e.message);
    if (trimmed.front() != '{') return invalid_argument(field + " must be a JSON object");
    return {};
}

LLM_STREAM_COLD inline bool starts_with(std::string_view s, std::string_view prefix) noexcept {
    return s.substr(0, prefix.size()) == prefix;
}

/* "image/png": a MIME type that a data: URL can carry. */
LLM_STREAM_COLD inline bool image_mime_type(std::string_view type) noexcept {
    if (!starts_with(type, "image/") || type.size() == 6) return false;
    const std::string_view subtype = type.substr(6);
    return std::all_of(subtype.begin(), subtype.end(), is_token_char);
}

/* A "data:<type>;base64,<payload>" URL split into its MIME type and payload; false for any other URL
   (the APIs that take images as bytes take them from such a URL). */
LLM_STREAM_COLD inline bool split_base64_data_url(std::string_view url, std::string_view& media_type, std::string_view& payload) noexcept {
    const std::size_t comma = url.find(',');
    if (!starts_with(url, "data:") || comma == std::string_view::npos) return false;
    const std::string_view head = url.substr(5, comma - 5);
    if (head.size() < 7 || head.substr(head.size() - 7) != ";base64") return false;
    media_type = head.substr(0, head.size() - 7);
    payload = url.substr(comma + 1);
    return true;
}

LLM_STREAM_COLD inline Error check_image_part(const ContentPart& part, const std::string& at) {
    const bool has_url = !part.text.empty();
    const bool has_bytes = part.bytes != nullptr;
    if (!has_url && !has_bytes) return invalid_argument(at + " is an image with neither a URL nor bytes");
    if (has_url && has_bytes) return invalid_argument(at + " is an image with both a URL and bytes: give one");
    if (has_url && !starts_with(part.text, "http://") && !starts_with(part.text, "https://") &&
        !starts_with(part.text, "data:"))
        return invalid_argument(at + ".url must start with http://, https:// or data: (got \"" + excerpt(part.text, 40) + "\")");
    if (has_bytes && !image_mime_type(part.mime_type))
        return invalid_argument(at + ".mime_type must be an image type such as image/png (got \"" +
                                excerpt(part.mime_type, 40) + "\")");
    if (!part.detail.empty() && part.detail != "auto" && part.detail != "low" && part.detail != "high")
        return invalid_argument(at + ".detail must be auto, low or high (got \"" + excerpt(part.detail, 40) + "\")");
    return {};
}

LLM_STREAM_COLD inline Error check_content_parts(const Message& m, const std::string& at) {
    for (std::size_t k = 0; k < m.parts.size(); ++k) {
        if (m.parts[k].kind != ContentPart::Kind::image) continue;
        const std::string part_at = at + "." + indexed("content", k);
        if (m.role != Role::user)
            return invalid_argument(part_at + " is an image in a " + role_name(m.role) +
                                    " message: only user messages carry images");
        if (Error e = check_image_part(m.parts[k], part_at)) return e;
    }
    return {};
}

LLM_STREAM_COLD inline Error check_tool_calls(const Message& m, const std::string& at) {
    if (!m.tool_calls.empty() && m.role != Role::assistant)
        return invalid_argument(at + ".tool_calls is set on a " + role_name(m.role) +
                                " message: only assistant messages make calls");
    for (std::size_t k = 0; k < m.tool_calls.size(); ++k) {
        const ToolCall& call = m.tool_calls[k];
        const std::string call_at = at + "." + indexed("tool_calls", k);
        if (call.id.empty()) return invalid_argument(call_at + ".id is empty: a tool message answers a call by its id");
        if (call.name.empty()) return invalid_argument(call_at + ".name is empty: say which function was called");
        if (trim_ascii_space(call.arguments).empty())
            return invalid_argument(call_at + ".arguments is empty: a call without arguments sends {}");
        if (Error e = check_json(call.arguments))
            return invalid_argument(call_at + ".arguments is not valid JSON: " + e.message);
    }
    return {};
}

LLM_STREAM_COLD inline Error check_message(const Message& m, std::size_t index) {
    const std::string at = indexed("messages", index);
    if (m.role == Role::tool && m.tool_call_id.empty())
        return invalid_argument(at + ".tool_call_id is empty: a tool message must say which call it answers");
    if (m.role != Role::tool && !m.tool_call_id.empty())
        return invalid_argument(at + ".tool_call_id is set on a " + std::string(role_name(m.role)) +
                                " message: only tool messages answer calls");
    if (Error e = check_tool_calls(m, at)) return e;
    if (Error e = check_content_parts(m, at)) return e;
    if (trim_ascii_space(m.extra_json).empty()) return {};  // nothing to read: no culprit's name to make
    ExtraMembers extra;
    if (Error e = read_extra_members(m.extra_json, at + ".extra_json", extra)) return e;
    if (extra.has("role")) return invalid_argument(at + ".extra_json may not set \"role\": Message::role does");
    return {};
}

LLM_STREAM_COLD inline Error check_tools(const std::vector<Tool>& tools) {
    for (std::size_t i = 0; i < tools.size(); ++i) {
        const std::string at = indexed("tools", i);
        if (Error e = check_function_name(tools[i].name, at + ".name")) return e;
        for (std::size_t j = 0; j < i; ++j)
            if (tools[j].name == tools[i].name)
                return invalid_argument(at + ".name \"" + tools[i].name + "\" is already the name of " + indexed("tools", j));
        if (!trim_ascii_space(tools[i].parameters).empty())
            if (Error e = check_json_object(tools[i].parameters, at + ".parameters")) return e;
    }
    return {};
}

LLM_STREAM_COLD inline Error check_tool_use(const ChatOptions& options) {
    const ToolChoice& choice = options.tool_choice;
    const bool asks_for_tools = choice.mode != ToolChoice::Mode::server_default && choice.mode != ToolChoice::Mode::none;
    if (options.tools.empty() && asks_for_tools) return invalid_argument("tool_choice is set but no tools are offered");
    if (options.tools.empty() && options.parallel_tool_calls)
        return invalid_argument("parallel_tool_calls is set but no tools are offered");
    if (choice.mode != ToolChoice::Mode::function) return {};
    for (const Tool& tool : options.tools)
        if (tool.name == choice.name) return {};
    return invalid_argument("tool_choice names \"" + excerpt(choice.name, 70) + "\", which is not among the tools");
}

LLM_STREAM_COLD inline Error check_response_format(const ResponseFormat& format) {
    if (format.type != ResponseFormat::Type::json_schema) return {};
    if (Error e = check_function_name(format.name, "response_format.json_schema.name")) return e;
    if (trim_ascii_space(format.schema).empty()) return invalid_argument("response_format.json_schema.schema is empty");
    return check_json_object(format.schema, "response_format.json_schema.schema");
}

LLM_STREAM_COLD inline bool in_range(const std::optional<double>& value, double low, double high) noexcept {
    return !value || (*value >= low && *value <= high);  // NaN is out of every range
}

LLM_STREAM_COLD inline Error check_sampling(const ChatOptions& options) {
    if (!in_range(options.temperature, 0.0, 2.0)) return invalid_argument("temperature must be between 0 and 2");
    if (!in_range(options.top_p, 0.0, 1.0)) return invalid_argument("top_p must be between 0 and 1");
    if (!in_range(options.presence_penalty, -2.0, 2.0))
        return invalid_argument("presence_penalty must be between -2 and 2");
    if (!in_range(options.frequency_penalty, -2.0, 2.0))
        return invalid_argument("frequency_penalty must be between -2 and 2");
    if (options.max_tokens && *options.max_tokens <= 0) return invalid_argument("max_tokens must be positive");
    if (options.stop.size() > 4)
        return invalid_argument("stop has " + std::to_string(options.stop.size()) + " sequences: at most 4");
    for (std::size_t i = 0; i < options.stop.size(); ++i)
        if (options.stop[i].empty()) return invalid_argument(indexed("stop", i) + " is empty");
    return {};
}

/* Everything a server would refuse, refused before sending, with the field named. */
LLM_STREAM_COLD inline Error check_chat_options(MessageList messages, const ChatOptions& options,
                                const std::string& model) {
    if (messages.empty()) return invalid_argument("the conversation has no messages");
    for (std::size_t i = 0; i < messages.size(); ++i)
        if (Error e = check_message(messages[i], i)) return e;
    if (Error e = check_sampling(options)) return e;
    if (Error e = check_tools(options.tools)) return e;
    if (Error e = check_tool_use(options)) return e;
    if (Error e = check_response_format(options.response_format)) return e;
    if (model.empty()) return invalid_argument("no model is set (LLM_MODEL or ChatOptions::model)");
    return {};
}

/* Reads OpenAI-format messages and tools (parse_messages, parse_tools). The text has passed
   check_json(), so the cursor stops only where the reader does: at a member of the wrong type or
   value, which error names ("messages[3].role: unknown role \"robot\""). */
class ConversationReader {
public:
    explicit ConversationReader(std::string_view json) noexcept : c_(json.data(), json.data() + json.size()) {
        c_.skip_ws();
    }
    bool messages(std::vector<Message>& out);
    bool tools(std::vector<Tool>& out);
    Error error;

private:
    JsonCursor c_;

    bool fail(std::string message) {
        error = invalid_argument(std::move(message));
        return false;
    }
    bool unknown(const std::string& at, const std::string& name, const char* what) {
        return fail(at + "." + excerpt(name, 40) + ": not a member of " + what);
    }
    template <class OnElement> bool array(const std::string& at, int depth, OnElement on_element);
    template <class OnMember> bool object(const std::string& at, int depth, OnMember on_member);
    bool string(std::string& out, const std::string& at);
    bool optional_string(std::string& out, const std::string& at);
    bool raw_object(std::string& out, const std::string& at, int depth);
    void keep_member(const JsonSpan& key, int depth, std::string& members);
    bool message(Message& m, const std::string& at, int depth);
    bool role(Role& out, const std::string& at);
    bool content(Message& m, const std::string& at, int depth, bool& is_null);
    bool part(ContentPart& out, const std::string& at, int depth);
    bool tool_call(ToolCall& out, const std::string& at, int depth);
    bool tool(Tool& out, const std::string& at, int depth);
    bool function(Tool& out, const std::string& at, int depth);
};

template <class OnElement>
bool ConversationReader::array(const std::string& at, int depth, OnElement on_element) {
    if (!c_.at('[')) return fail(at + " must be an array");
    std::size_t index = 0;
    return c_.array(depth, [&](int d) { return on_element(index++, d); });
}

/* Calls on_member(key, name, depth): the name decoded, so that an escaped name is the same name. */
template <class OnMember>
bool ConversationReader::object(const std::string& at, int depth, OnMember on_member) {
    if (!c_.at('{')) return fail(at + " must be an object");
    return c_.object(depth, [&](const JsonSpan& key, int d) { return on_member(key, json_string_text(key), d); });
}

LLM_STREAM_COLD inline bool ConversationReader::string(std::string& out, const std::string& at) {
    JsonSpan s;
    if (!c_.at('"')) return fail(at + " must be a string");
    if (!c_.string(s)) return false;
    out = json_string_text(s);
    return true;
}

// A string, or null for none.
LLM_STREAM_COLD inline bool ConversationReader::optional_string(std::string& out, const std::string& at) {
    if (c_.at('n')) return c_.literal("null", 4);
    return string(out, at);
}

// A JSON object kept as its text (a JSON Schema).
LLM_STREAM_COLD inline bool ConversationReader::raw_object(std::string& out, const std::string& at, int depth) {
    if (!c_.at('{')) return fail(at + " must be a JSON object");
    const char* const begin = c_.p;
    if (!c_.skip_value(depth)) return false;
    out.assign(begin, c_.p);
    return true;
}

// A member the model does not know, kept as written: `"key":value` added to a JSON object's text.
LLM_STREAM_COLD inline void ConversationReader::keep_member(const JsonSpan& key, int depth, std::string& members) {
    members += members.empty() ? '{' : ',';
    members.append(key.begin - 1, key.size() + 2);  // the name with its quotes, escapes as they were
    members += ':';
    const char* const begin = c_.p;
    const bool ok = c_.skip_value(depth);
    LLM_STREAM_ASSERT(ok);  // check_json() said so
    (void)ok;
    members.append(begin, c_.p);
}

LLM_STREAM_COLD inline bool ConversationReader::messages(std::vector<Message>& out) {
    return array("messages", 1, [&](std::size_t i, int depth) {
        out.emplace_back();
        return message(out.back(), indexed("messages", i), depth + 1);
    });
}

LLM_STREAM_COLD inline bool ConversationReader::message(Message& m, const std::string& at, int depth) {
    bool has_role = false, has_content = false, null_content = false;
    const bool ok = object(at, depth, [&](const JsonSpan& key, const std::string& name, int d) {
        if (name == "role") {
            has_role = true;
            return role(m.role, at + ".role");
        }
        if (name == "content") {
            has_content = true;
            return content(m, at + ".content", d, null_content);
        }
        if (name == "name") return optional_string(m.name, at + ".name");
        if (name == "tool_call_id") return optional_string(m.tool_call_id, at + ".tool_call_id");
        if (name == "reasoning_content") return optional_string(m.reasoning, at + ".reasoning_content");
        if (name == "reasoning_signature") return optional_string(m.reasoning_signature, at + ".reasoning_signature");
        if (name == "redacted_reasoning") {
            m.redacted_reasoning.clear();
            return array(at + ".redacted_reasoning", d + 1, [&](std::size_t k, int) {
                m.redacted_reasoning.emplace_back();
                return string(m.redacted_reasoning.back(), at + "." + indexed("redacted_reasoning", k));
            });
        }
        if (name == "tool_calls") {
            if (c_.at('n')) return c_.literal("null", 4);
            m.tool_calls.clear();  // a repeated member: the last one counts, as for the others
            return array(at + ".tool_calls", d + 1, [&](std::size_t k, int element_depth) {
                m.tool_calls.emplace_back();
                return tool_call(m.tool_calls.back(), at + "." + indexed("tool_calls", k), element_depth + 1);
            });
        }
        keep_member(key, d, m.extra_json);
        return true;
    });
    if (!ok) return false;
    if (!m.extra_json.empty()) m.extra_json += '}';
    if (!has_role) return fail(at + " has no role");
    if (m.role == Role::assistant) return true;  // content may be null or left out when it calls tools
    if (!has_content) return fail(at + " has no content");
    if (null_content) return fail(at + ".content is null: only an assistant message may have none");
    return true;
}

LLM_STREAM_COLD inline bool ConversationReader::role(Role& out, const std::string& at) {
    std::string name;
    if (!string(name, at)) return false;
    for (Role r : {Role::system, Role::developer, Role::user, Role::assistant, Role::tool})
        if (name == role_name(r)) {
            out = r;
            return true;
        }
    return fail(at + ": unknown role \"" + excerpt(name, 40) + "\"");
}

LLM_STREAM_COLD inline bool ConversationReader::content(Message& m, const std::string& at, int depth, bool& is_null) {
    m.content.clear();
    m.parts.clear();
    is_null = c_.at('n');
    if (is_null) return c_.literal("null", 4);
    if (c_.at('"')) return string(m.content, at);
    if (!c_.at('[')) return fail(at + " must be a string, an array of parts or null");
    return array(at, depth + 1, [&](std::size_t k, int d) {
        m.parts.push_back(ContentPart());  // the vector instance Message::user grows parts with
        return part(m.parts.back(), at + "[" + std::to_string(k) + "]", d + 1);
    });
}

// {"type":"text","text":...} or {"type":"image_url","image_url":{"url":...,"detail":...}}
LLM_STREAM_COLD inline bool ConversationReader::part(ContentPart& out, const std::string& at, int depth) {
    std::string type, text;
    bool has_text = false, has_image = false;
    const bool ok = object(at, depth, [&](const JsonSpan&, const std::string& name, int d) {
        if (name == "type") return string(type, at + ".type");
        if (name == "text") {
            has_text = true;
            return string(text, at + ".text");
        }
        if (name != "image_url") return unknown(at, name, "a content part");
        has_image = true;
        return object(at + ".image_url", d + 1, [&](const JsonSpan&, const std::string& image_name, int) {
            if (image_name == "url") return string(out.text, at + ".image_url.url");
            if (image_name == "detail") return string(out.detail, at + ".image_url.detail");
            return unknown(at + ".image_url", image_name, "an image_url");
        });
    });
    if (!ok) return false;
    if (type == "text" && has_text && !has_image) {
        out.kind = ContentPart::Kind::text;
        out.text = std::move(text);
        return true;
    }
    if (type == "image_url" && has_image && !has_text && !out.text.empty()) {
        out.kind = ContentPart::Kind::image;
        return true;
    }
    if (type.empty()) return fail(at + " has no type (text or image_url)");
    if (type != "text" && type != "image_url")
        return fail(at + ".type: unknown part type \"" + excerpt(type, 40) + "\" (text or image_url)");
    return fail(at + (type == "text" ? " must have a text and nothing else" : " must have an image_url.url and no text"));
}

// {"id":...,"type":"function","function":{"name":...,"arguments":"<JSON text>"}}
LLM_STREAM_COLD inline bool ConversationReader::tool_call(ToolCall& out, const std::string& at, int depth) {
    std::string type = "function";
    return object(at, depth, [&](const JsonSpan&, const std::string& name, int d) {
        if (name == "id") return string(out.id, at + ".id");
        if (name == "signature") return string(out.signature, at + ".signature");
        if (name == "type") {
            if (!string(type, at + ".type")) return false;
            return type == "function" || fail(at + ".type: only \"function\" calls are supported");
        }
        if (name != "function") return unknown(at, name, "a tool call");
        return object(at + ".function", d + 1, [&](const JsonSpan&, const std::string& function_name, int) {
            if (function_name == "name") return string(out.name, at + ".function.name");
            if (function_name == "arguments") return string(out.arguments, at + ".function.arguments");
            return unknown(at + ".function", function_name, "a function call");
        });
    });
}

LLM_STREAM_COLD inline bool ConversationReader::tools(std::vector<Tool>& out) {
    return array("tools", 1, [&](std::size_t i, int depth) {
        out.emplace_back();
        return tool(out.back(), indexed("tools", i), depth + 1);
    });
}

// {"type":"function","function":{...}}
LLM_STREAM_COLD inline bool ConversationReader::tool(Tool& out, const std::string& at, int depth) {
    bool has_function = false;
    const bool ok = object(at, depth, [&](const JsonSpan&, const std::string& name, int d) {
        if (name == "type") {
            std::string type;
            if (!string(type, at + ".type")) return false;
            return type == "function" || fail(at + ".type: only \"function\" tools are supported");
        }
        if (name != "function") return unknown(at, name, "a tool");
        has_function = true;
        return function(out, at + ".function", d + 1);
    });
    return ok && (has_function || fail(at + " has no function"));
}

// {"name":...,"description":...,"parameters":{JSON Schema},"strict":true}
LLM_STREAM_COLD inline bool ConversationReader::function(Tool& out, const std::string& at, int depth) {
    return object(at, depth, [&](const JsonSpan&, const std::string& name, int d) {
        if (name == "name") return string(out.name, at + ".name");
        if (name == "description") return optional_string(out.description, at + ".description");
        if (name == "parameters") return raw_object(out.parameters, at + ".parameters", d);
        if (name != "strict") return unknown(at, name, "a function");
        if (!c_.at('t') && !c_.at('f')) return fail(at + ".strict must be true or false");
        out.strict = c_.at('t');
        return out.strict ? c_.literal("true", 4) : c_.literal("false", 5);
    });
}

/* parse_messages and parse_tools: the text checked whole, then read. */
template <class Read>
LLM_STREAM_COLD Error read_conversation_json(std::string_view json, const char* what, Read read) {
    if (Error e = check_json(json)) return invalid_argument(std::string(what) + " are not valid JSON: " + e.message);
    ConversationReader reader(json);
    if (read(reader)) return {};
    LLM_STREAM_ASSERT(reader.error);  // the text is valid JSON: only the reader stops the cursor
    return reader.error;
}

LLM_STREAM_COLD inline bool safe_header_value(std::string_view v) noexcept {
    return v.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

/* One more header: every caller through one signature, so the vector's growth is compiled once (an
   emplace_back per argument types would compile it once for each). */
LLM_STREAM_COLD inline void add_header(std::vector<std::pair<std::string, std::string>>& headers, std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
}

/* The request's headers: what the decoder can read (SSE, no content coding), the key, the user's. */
LLM_STREAM_COLD inline Error write_request_headers(const Config& config, std::vector<std::pair<std::string, std::string>>& headers) {
    auto invalid = [](std::string message) { return make_error(ErrorCode::invalid_config, std::move(message)); };
    if (!safe_header_value(config.api_key)) return invalid("the API key contains a line break or NUL");
    headers = {{"Content-Type", "application/json"},
               {"Accept", config.api == Api::ollama ? "application/x-ndjson" : "text/event-stream"},
               {"Accept-Encoding", "identity"},
               {"User-Agent", "llm_stream/" LLM_STREAM_VERSION_STRING}};
    if (config.api == Api::anthropic) add_header(headers, "anthropic-version", "2023-06-01");  // required, key or not
    if (!config.api_key.empty()) {
        switch (config.api) {
        case Api::anthropic: add_header(headers, "x-api-key", config.api_key); break;
        case Api::gemini: add_header(headers, "x-goog-api-key", config.api_key); break;
        case Api::openai:
        case Api::responses:
        case Api::ollama: add_header(headers, "Authorization", "Bearer " + config.api_key); break;
        }
    }
    for (const auto& header : config.headers) {
        if (header.first.empty() || !std::all_of(header.first.begin(), header.first.end(), is_token_char))
            return invalid("invalid request header name: " + excerpt(header.first, 40));
        if (!safe_header_value(header.second))
            return invalid("the value of request header " + header.first + " contains a line break or NUL");
        add_header(headers, header.first, header.second);  // the one instance that grows the list
    }
    return {};
}

/* What build_request() and a client's requests share before the body: the checks, extra_json read. */
LLM_STREAM_COLD inline Error check_request(MessageList messages, const ChatOptions& options, const std::string& model,
                           ExtraMembers& extra) {
    if (Error e = check_chat_options(messages, options, model)) return e;
    return read_request_extra(options.extra_json, extra);
}

/* The bytes of an HTTP/1.1 request, after check_request(), in `out` alone: the body is written first
   into room reserved for the whole request, then the head is put before it (its Content-Length is
   known only then): "POST <target> HTTP/1.1", `header_lines` (each with its CRLF), Content-Length. */
LLM_STREAM_COLD inline Error write_http_request(Api api, std::string_view target, std::string_view header_lines, MessageList messages,
                                const ChatOptions& options, const std::string& model, const ExtraMembers& extra,
                                std::string& out) {
    constexpr std::string_view method = "POST ", version = " HTTP/1.1\r\n", length_name = "Content-Length: ",
                               head_end = "\r\n\r\n";
    constexpr std::size_t length_digits = 20;  // any std::size_t
    const std::size_t fixed = method.size() + version.size() + length_name.size() + head_end.size();
    out.clear();
    out.reserve(fixed + target.size() + header_lines.size() + length_digits + body_size_estimate(messages, options));
    if (Error e = write_request_body(api, messages, options, model, extra, out)) return e;
    char length[length_digits];
    const std::size_t length_size =
        static_cast<std::size_t>(std::to_chars(length, length + sizeof length, out.size()).ptr - length);
    const std::string_view head[] = {method, target, version, header_lines, length_name, {length, length_size}, head_end};
    std::size_t head_size = 0;
    for (std::string_view piece : head) head_size += piece.size();
    out.insert(0, head_size, ' ');
    std::size_t at = 0;
    for (std::string_view piece : head) {
        out.replace(at, piece.size(), piece.data(), piece.size());
        at += piece.size();
    }
    return {};
}

/* ------------------------------------------------------------------------------------------------
   Retry policy: one small function decides whether a failed attempt is tried again, and when
   ------------------------------------------------------------------------------------------------ */

struct AttemptFailure {
    ErrorCode code = ErrorCode::none;
    int http_status = 0;
    bool response_started = false;                 // some response bytes had arrived
    std::optional<double> retry_after_seconds;     // from retry-after-ms or Retry-After
    std::optional<bool> should_retry;              // from x-should-retry
};

struct RetryDecision {
    bool retry = false;
    std::chrono::milliseconds wait{0};
};

/* `retries_done` retries have been made already; `random01` in [0, 1) draws the jitter. */
LLM_STREAM_COLD inline RetryDecision decide_retry(const RetryPolicy& policy, int retries_done, const AttemptFailure& failure,
                                  double random01) {
    RetryDecision d;
    if (retries_done >= policy.max_retries) return d;
    bool retryable = false;
    switch (failure.code) {
    case ErrorCode::dns:
    case ErrorCode::connect:
    case ErrorCode::timeout:
    case ErrorCode::io:
        retryable = true;
        break;
    case ErrorCode::protocol:
        retryable = !failure.response_started;  // the connection died before answering
        break;
    case ErrorCode::http_status: {
        const int s = failure.http_status;
        retryable = s == 408 || s == 409 || s == 429 || s >= 500;
        break;
    }
    default:
        break;
    }
    if (failure.should_retry) retryable = *failure.should_retry;  // the server knows best (as the SDKs do)
    if (!retryable) return d;
    d.retry = true;
    if (failure.retry_after_seconds) {
        const double capped = std::min(std::max(*failure.retry_after_seconds, 0.0),
                                       std::chrono::duration<double>(policy.max_retry_after).count());
        d.wait = std::chrono::milliseconds(static_cast<std::int64_t>(capped * 1000.0 + 0.5));
        return d;
    }
    double wait_ms = static_cast<double>(policy.initial_backoff.count()) * std::ldexp(1.0, retries_done);
    wait_ms = std::min(wait_ms, static_cast<double>(policy.max_backoff.count()));
    wait_ms *= 1.0 + policy.jitter * (2.0 * random01 - 1.0);
    d.wait = std::chrono::milliseconds(static_cast<std::int64_t>(std::max(wait_ms, 0.0)));
    return d;
}

/* The retry hints a response's headers carry: retry-after-ms (milliseconds, may be fractional),
   else Retry-After (seconds or an HTTP-date, relative to `now_epoch`); x-should-retry. */
LLM_STREAM_COLD inline void read_retry_hints(const Decoder& response, std::int64_t now_epoch, AttemptFailure& failure) {
    const std::string_view ms = trim_http_space(response.header("retry-after-ms"));
    double value = 0;
    if (!ms.empty()) {
        const auto r = std::from_chars(ms.data(), ms.data() + ms.size(), value);
        if (r.ec == std::errc() && r.ptr == ms.data() + ms.size() && value >= 0) failure.retry_after_seconds = value / 1000.0;
    }
    const std::string_view after = trim_http_space(response.header("retry-after"));
    if (!failure.retry_after_seconds && !after.empty()) {
        std::uint64_t seconds = 0;
        if (parse_decimal(after, seconds)) failure.retry_after_seconds = static_cast<double>(std::min<std::uint64_t>(seconds, 1u << 30));
        else if (auto date = parse_http_date(after)) failure.retry_after_seconds = static_cast<double>(std::max<std::int64_t>(*date - now_epoch, 0));
    }
    const std::string_view should = trim_http_space(response.header("x-should-retry"));
    if (iequals(should, "true")) failure.should_retry = true;
    if (iequals(should, "false")) failure.should_retry = false;
}

#if !defined(LLM_STREAM_NO_STUB)
/* ------------------------------------------------------------------------------------------------
   Stub: a deterministic simulated server response (HTTP head, chunked SSE body) for stub mode.
   Without tools it greets and echoes the prompt. Offered tools (and not told "none"), it calls one:
   the named one, else the first, with arguments made from its JSON Schema. After tool results, it
   answers with text that quotes each of them with its tool's name.
   ------------------------------------------------------------------------------------------------ */

struct StubResponse {
    std::string bytes;                       // the whole HTTP response
    std::vector<std::size_t> segment_ends;   // where the simulated server pauses
};

/* A stub's HTTP response as a server writes it: the head, then each SSE event or NDJSON line in a
   chunk of its own, a pause after each. Every API's stub writes through it. */
class StubBody {
public:
    explicit StubBody(std::string_view content_type) {
        out_.bytes = "HTTP/1.1 200 OK\r\nContent-Type: ";
        out_.bytes.append(content_type.data(), content_type.size());
        out_.bytes += "\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
        out_.segment_ends.push_back(out_.bytes.size());
    }
    /* An SSE event: "event: NAME" first when `name` is not empty, then its data line. */
    void sse(std::string_view name, std::string_view data) {
        std::string& e = scratch_;
        e.clear();
        if (!name.empty()) e.append("event: ").append(name.data(), name.size()).append("\n");
        e.append("data: ").append(data.data(), data.size()).append("\n\n");
        chunk(e);
    }
    /* One NDJSON line. */
    void line(std::string_view json) {
        scratch_.assign(json.data(), json.size());
        scratch_ += '\n';
        chunk(scratch_);
    }
    /* The last chunk: the body ends. */
    StubResponse finish() {
        out_.bytes += "0\r\n\r\n";
        out_.segment_ends.back() = out_.bytes.size();
        return std::move(out_);
    }

private:
    void chunk(std::string_view payload) {
        char size_line[24];
        const int n = std::snprintf(size_line, sizeof size_line, "%zx\r\n", payload.size());
        out_.bytes.append(size_line, static_cast<std::size_t>(n));
        out_.bytes.append(payload.data(), payload.size());
        out_.bytes += "\r\n";
        out_.segment_ends.push_back(out_.bytes.size());
    }

    std::string scratch_;
    StubResponse out_;
};

/* OpenAI's chat.completion.chunk events, through a StubBody. */
class StubWriter {
public:
    explicit StubWriter(const std::string& model) : body_("text/event-stream") {
        head_ = "{\"id\":\"chatcmpl-stub\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":";
        json_write_string(head_, model);
        head_ += ",\"choices\":[{\"index\":0,\"delta\":";
    }
    /* A chunk whose first choice has this delta (a JSON object) and finish reason. */
    void delta(std::string_view delta_json, const char* finish_reason = nullptr) {
        json_ = head_;
        json_.append(delta_json.data(), delta_json.size());
        json_ += ",\"finish_reason\":";
        if (finish_reason) json_write_string(json_, finish_reason);
        else json_ += "null";
        json_ += "}]}";
        body_.sse({}, json_);
    }
    /* The usage chunk (empty choices), then [DONE] and the end of the body. */
    StubResponse finish(std::size_t prompt_tokens, std::size_t completion_tokens) {
        body_.sse({}, "{\"id\":\"chatcmpl-stub\",\"object\":\"chat.completion.chunk\",\"created\":0,\"choices\":[],"
                      "\"usage\":{\"prompt_tokens\":" + std::to_string(prompt_tokens) +
                      ",\"completion_tokens\":" + std::to_string(completion_tokens) +
                      ",\"total_tokens\":" + std::to_string(prompt_tokens + completion_tokens) + "}}");
        body_.sse({}, "[DONE]");
        return body_.finish();
    }

private:
    StubBody body_;
    std::string head_;  // every chunk's JSON up to its first choice's delta
    std::string json_;
};

/* Calls on_piece for pieces of 2 to 8 characters, in a fixed pattern, as a tokenizer would cut
   them; returns how many. */
template <class OnPiece>
std::size_t stub_pieces(std::string_view text, OnPiece on_piece) {
    static const std::size_t sizes[] = {2, 4, 3, 6, 5, 8, 7};
    std::size_t pieces = 0;
    for (std::string_view rest = text; !rest.empty(); ++pieces) {
        const std::string_view piece = utf8_prefix(rest, sizes[pieces % 7]);
        rest.remove_prefix(piece.size());
        on_piece(piece);
    }
    return pieces;
}

LLM_STREAM_COLD inline std::string stub_last_user_text(MessageList messages) {
    for (auto m = messages.rbegin(); m != messages.rend(); ++m)
        if (m->role == Role::user) return message_text(*m);
    return {};
}

/* Appends at most max_chars characters of text in quotes, an ellipsis marking a cut. */
LLM_STREAM_COLD inline void stub_quote(std::string& out, std::string_view text, std::size_t max_chars) {
    const std::string_view shown = utf8_prefix(text, max_chars);
    out += "\u201c";
    out.append(shown.data(), shown.size());
    if (shown.size() < text.size()) out += "\u2026";
    out += "\u201d";
}

LLM_STREAM_COLD inline std::string stub_greeting(std::string_view prompt) {
    std::string reply = "你好！这是 llm_stream 的模拟回复（stub mode）。You asked: ";
    stub_quote(reply, prompt, 40);
    reply += "。运动鞋轻便、透气、缓震，适合日常穿着。Set LLM_BASE_URL to stream from a real server.";
    return reply;
}

/* The answer to the tool results that end the conversation: each quoted with its tool's name. */
LLM_STREAM_COLD inline std::string stub_results_reply(MessageList messages) {
    std::size_t first = messages.size();
    while (first > 0 && messages[first - 1].role == Role::tool) --first;
    std::string reply = "Stub reply from the tool results:";
    for (std::size_t i = first; i < messages.size(); ++i) {
        reply += i == first ? " " : "; ";
        const std::string_view called = called_tool_name(messages, i);
        const std::string_view tool = called.empty() ? "an unknown tool" : called;
        reply.append(tool.data(), tool.size());
        reply += " returned ";
        stub_quote(reply, message_text(messages[i]), 80);
    }
    reply += ".";
    return reply;
}

/* What decides the stub's value for one JSON Schema (views into the schema's text). */
struct StubSchema {
    JsonSpan type;                 // the type's name; of a list of types, the first one but "null"
    std::string_view fixed;        // the first value of `enum`, or `const`: written as is
    std::string_view alternative;  // the first schema of `anyOf` or `oneOf`
    std::string_view properties;   // `properties`, an object of schemas
};

LLM_STREAM_COLD inline bool stub_read_type(JsonCursor& c, int depth, JsonSpan& type) {
    if (c.at('"')) return c.string(type);
    if (!c.at('[')) return c.skip_value(depth);
    return c.array(depth + 1, [&](int d) {
        if (!c.at('"')) return c.skip_value(d);
        JsonSpan name;
        if (!c.string(name)) return false;
        if (!type.present() && !json_key_is(name, "null")) type = name;
        return true;
    });
}

/* Reads one value and keeps its text; of an array (first_of_array), its first element's text. */
LLM_STREAM_COLD inline bool stub_read_raw(JsonCursor& c, int depth, bool first_of_array, std::string_view& raw) {
    auto keep = [&](int d) {
        const char* begin = c.p;
        if (!c.skip_value(d)) return false;
        if (raw.empty()) raw = std::string_view(begin, static_cast<std::size_t>(c.p - begin));
        return true;
    };
    if (!first_of_array) return keep(depth);
    return c.at('[') ? c.array(depth + 1, keep) : c.skip_value(depth);
}

LLM_STREAM_COLD inline bool stub_read_schema(std::string_view text, int depth, StubSchema& s) {
    JsonCursor c(text.data(), text.data() + text.size());
    c.skip_ws();
    if (!c.at('{')) return c.skip_value(depth);  // `true`: any value (the stub writes a string)
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "type")) return stub_read_type(c, d, s.type);
        if (json_key_is(key, "enum")) return stub_read_raw(c, d, true, s.fixed);
        if (json_key_is(key, "const")) return stub_read_raw(c, d, false, s.fixed);
        if (json_key_is(key, "anyOf") || json_key_is(key, "oneOf")) return stub_read_raw(c, d, true, s.alternative);
        if (json_key_is(key, "properties") && c.at('{')) return stub_read_raw(c, d, false, s.properties);
        return c.skip_value(d);
    });
}

LLM_STREAM_COLD inline bool stub_object(std::string_view properties, int depth, std::string_view text, std::string& out);

/* A value that fits the schema: the first enum value (or const), else by type: a string is the
   user's text (cut to 40 characters), a number or integer 1, a boolean true, an object its
   properties filled the same way, an array []. */
LLM_STREAM_COLD inline bool stub_value(std::string_view schema, int depth, std::string_view text, std::string& out) {
    StubSchema s;
    if (!stub_read_schema(schema, depth, s)) return false;
    if (!s.fixed.empty()) {
        out.append(s.fixed.data(), s.fixed.size());
        return true;
    }
    if (!s.alternative.empty()) return stub_value(s.alternative, depth + 1, text, out);
    if (json_key_is(s.type, "object") || !s.properties.empty()) return stub_object(s.properties, depth + 1, text, out);
    if (json_key_is(s.type, "array")) out += "[]";
    else if (json_key_is(s.type, "number") || json_key_is(s.type, "integer")) out += "1";
    else if (json_key_is(s.type, "boolean")) out += "true";
    else if (json_key_is(s.type, "null")) out += "null";
    else json_write_string(out, utf8_prefix(text, 40));
    return true;
}

/* Every property of the schema's `properties` (member names written as they are escaped there). */
LLM_STREAM_COLD inline bool stub_object(std::string_view properties, int depth, std::string_view text, std::string& out) {
    out += "{";
    JsonCursor c(properties.data(), properties.data() + properties.size());
    bool first = true;
    const bool ok = properties.empty() || c.object(depth, [&](const JsonSpan& key, int d) {
        const char* begin = c.p;
        if (!c.skip_value(d)) return false;
        out += first ? "\"" : ",\"";
        first = false;
        out.append(key.begin, key.size());
        out += "\":";
        return stub_value(std::string_view(begin, static_cast<std::size_t>(c.p - begin)), d, text, out);
    });
    out += "}";
    return ok;
}

/* The arguments of the stub's call: an object made from the tool's parameters schema. */
LLM_STREAM_COLD inline std::string stub_arguments(const Tool& tool, std::string_view text) {
    std::string arguments;
    StubSchema s;
    const bool ok = stub_read_schema(tool.parameters, 0, s) && stub_object(s.properties, 1, text, arguments);
    return ok ? arguments : "{}";  // parameters that are not a schema object: no arguments
}

/* The tool the stub calls: none after tool results or when told "none"; else the named one, else the first. */
LLM_STREAM_COLD inline const Tool* stub_tool_to_call(MessageList messages, const ChatOptions& options) {
    if (options.tools.empty() || options.tool_choice.mode == ToolChoice::Mode::none) return nullptr;
    if (messages.back().role == Role::tool) return nullptr;
    if (options.tool_choice.mode == ToolChoice::Mode::function)
        for (const Tool& tool : options.tools)
            if (tool.name == options.tool_choice.name) return &tool;
    return &options.tools.front();
}

/* What the stub says, whatever the wire format: text, or a call of one tool. Each wire format's
   writer streams it in the same pieces (stub_pieces), so every API's stub decodes to the same reply. */
struct StubReply {
    std::string text;            // when it calls no tool
    const Tool* tool = nullptr;  // the tool it calls, with these arguments (JSON text)
    std::string arguments;
    std::string reasoning;  // when the request asks for reasoning: streamed first, with a signature
    std::size_t prompt_tokens = 0;
    std::size_t completion_tokens = 0;  // the pieces streamed
};

/* The stub's opaque token for its reasoning (Anthropic's signature, Gemini's thoughtSignature,
   the Responses item's encrypted_content). */
constexpr const char* stub_signature = "c3R1Yi1zaWduYXR1cmU=";

/* `messages` is not empty (build_request() has checked the conversation). */
LLM_STREAM_COLD inline StubReply plan_stub_reply(MessageList messages, const ChatOptions& options) {
    StubReply reply;
    for (const Message& m : messages) reply.prompt_tokens += utf8_count_chars(message_text(m));
    reply.tool = stub_tool_to_call(messages, options);
    if (reply.tool) reply.arguments = stub_arguments(*reply.tool, stub_last_user_text(messages));
    else if (messages.back().role == Role::tool) reply.text = stub_results_reply(messages);
    else reply.text = stub_greeting(stub_last_user_text(messages));
    if (!options.reasoning_effort.empty() || options.reasoning_budget)
        reply.reasoning = reply.tool ? "The user's request needs the tool " + reply.tool->name + "." : "A short answer will do.";
    reply.completion_tokens = stub_pieces(reply.tool ? reply.arguments : reply.text, [](std::string_view) {});
    return reply;
}

/* OpenAI's chat completions: the reasoning (as reasoning_content) when asked for, a call's name in its
   first fragment, the arguments in pieces. */
LLM_STREAM_COLD inline StubResponse stub_openai(const StubReply& reply, const std::string& model) {
    StubWriter writer(model);
    std::string json;
    writer.delta(reply.tool ? "{\"role\":\"assistant\",\"content\":null}" : "{\"role\":\"assistant\",\"content\":\"\"}");
    if (!reply.reasoning.empty()) {
        json_write_string(json.assign("{\"reasoning_content\":"), reply.reasoning);
        writer.delta(json + "}");
    }
    if (reply.tool) {
        json = "{\"tool_calls\":[{\"index\":0,\"id\":\"call_stub_1\",\"type\":\"function\",\"function\":{\"name\":";
        json_write_string(json, reply.tool->name);
        writer.delta(json + ",\"arguments\":\"\"}}]}");
    }
    stub_pieces(reply.tool ? reply.arguments : reply.text, [&](std::string_view piece) {
        json = reply.tool ? "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":" : "{\"content\":";
        json_write_string(json, piece);
        writer.delta(json + (reply.tool ? "}}]}" : "}"));
    });
    writer.delta("{}", reply.tool ? "tool_calls" : "stop");
    return writer.finish(reply.prompt_tokens, reply.completion_tokens);
}

/* Each other API's stub writer, in that API's section below. */
LLM_STREAM_COLD inline StubResponse stub_responses(const StubReply& reply, const std::string& model);
LLM_STREAM_COLD inline StubResponse stub_anthropic(const StubReply& reply, const std::string& model);
LLM_STREAM_COLD inline StubResponse stub_gemini(const StubReply& reply, const std::string& model);
LLM_STREAM_COLD inline StubResponse stub_ollama(const StubReply& reply, const std::string& model);

/* The stub's reply in `api`'s wire format. */
LLM_STREAM_COLD inline StubResponse make_stub_response(Api api, MessageList messages, const ChatOptions& options,
                                       const std::string& model) {
    const StubReply reply = plan_stub_reply(messages, options);
    switch (api) {
    case Api::openai: break;
#if !defined(LLM_STREAM_NO_RESPONSES)
    case Api::responses: return stub_responses(reply, model);
#endif
#if !defined(LLM_STREAM_NO_ANTHROPIC)
    case Api::anthropic: return stub_anthropic(reply, model);
#endif
#if !defined(LLM_STREAM_NO_GEMINI)
    case Api::gemini: return stub_gemini(reply, model);
#endif
#if !defined(LLM_STREAM_NO_OLLAMA)
    case Api::ollama: return stub_ollama(reply, model);
#endif
    default: break;  // an API compiled out: refused before (api_compiled_in)
    }
    return stub_openai(reply, model);
}

#endif  // LLM_STREAM_NO_STUB

#if !defined(LLM_STREAM_NO_RESPONSES)
/* ------------------------------------------------------------------------------------------------
   OpenAI Responses API: request body, stream reader, stub
   POST /responses; SSE events typed by their "type" (response.output_text.delta, ...)
   ------------------------------------------------------------------------------------------------ */

/* The request. Decisions, from the API reference (platform.openai.com/docs/api-reference/responses):
   - System and developer messages stay input items in their place (role "system"/"developer"), not
     `instructions`: the input accepts those roles, the conversation's order is kept (a system message
     may come mid-conversation), and `instructions` exists to replace the instructions of a
     previous_response_id chain, which this client does not use (it sends the whole conversation).
   - "store": false: the API stores every response by default (for previous_response_id and the
     dashboard); a client that resends the whole conversation never reads them back, so nothing is
     kept on the server unless extra_json says {"store": true}.
   - What the API has no member for is refused naming the field: stop, seed, presence_penalty,
     frequency_penalty, a message's name. Message::reasoning is not sent as text: the API takes
     reasoning back only as the reasoning item it sent (id, summary, encrypted_content), which the
     reader hands out whole as the signature (response.output_item.done) and the assistant message
     keeps in reasoning_signature; it goes back before the message and its calls, as it came.
   - Reasoning asked for (ChatOptions::reasoning_effort): "reasoning" {effort, summary "auto"} and
     "include":["reasoning.encrypted_content"], since with store false the item is useless without
     its encrypted content.
   - A function tool's "strict" is always written: the API's default is true, ChatOptions' false. */
LLM_STREAM_COLD inline Error check_responses_request(MessageList messages, const ChatOptions& options,
                                     const ExtraMembers& extra) {
    if (extra.has("input")) return invalid_argument("extra JSON may not set \"input\": the client sets it");
    const char* const missing = !options.stop.empty()        ? "stop"
                                : options.seed                 ? "seed"
                                : options.presence_penalty     ? "presence_penalty"
                                : options.frequency_penalty    ? "frequency_penalty"
                                                               : nullptr;
    if (missing) return invalid_argument(std::string(missing) + " is set but the Responses API has no such option");
    for (std::size_t i = 0; i < messages.size(); ++i) {
        if (!messages[i].name.empty())
            return invalid_argument(indexed("messages", i) + ".name is set but the Responses API has no participant names");
        if (!messages[i].reasoning_signature.empty())
            if (Error e = check_json_object(messages[i].reasoning_signature, indexed("messages", i) + ".reasoning_signature"))
                return e;
    }
    return {};
}

/* A content part: text is input_text (output_text in an assistant message); an image is input_image
   with its URL, or its bytes as a base64 data: URL (check_chat_options allows images only in user
   messages). */
LLM_STREAM_COLD inline void write_responses_part(std::string& out, const ContentPart& part, bool assistant) {
    if (part.kind == ContentPart::Kind::text) {
        out += assistant ? "{\"type\":\"output_text\",\"text\":" : "{\"type\":\"input_text\",\"text\":";
        json_write_string(out, part.text);
    } else {
        out += "{\"type\":\"input_image\",\"image_url\":";
        write_image_url(out, part);
        if (!part.detail.empty()) json_write_string(out.append(",\"detail\":"), part.detail);
    }
    out += '}';
}

/* A message's text, or its parts as an array. */
LLM_STREAM_COLD inline void write_responses_content(std::string& out, const Message& m) {
    if (m.parts.empty()) {
        json_write_string(out, m.content);
        return;
    }
    out += '[';
    for (std::size_t k = 0; k < m.parts.size(); ++k) {
        if (k) out += ',';
        write_responses_part(out, m.parts[k], m.role == Role::assistant);
    }
    out += ']';
}

/* One input item; the message's extra_json members replace the ones written here. */
LLM_STREAM_COLD inline void write_responses_item(std::string& out, const Message& m, const ExtraMembers& extra) {
    if (m.role == Role::tool) {
        out += "{\"type\":\"function_call_output\"";
        write_string_member(out, extra, "call_id", m.tool_call_id);
        if (open_member(out, extra, "output")) write_responses_content(out, m);
    } else {
        out += "{\"role\":";
        json_write_string(out, role_name(m.role));
        if (open_member(out, extra, "content")) write_responses_content(out, m);
    }
    if (!extra.text.empty()) {
        out += ',';
        out.append(extra.text.data(), extra.text.size());
    }
    out += '}';
}

/* An assistant's calls: one function_call item each, after its message. */
LLM_STREAM_COLD inline void write_responses_calls(std::string& out, const std::vector<ToolCall>& calls) {
    for (const ToolCall& call : calls) {
        out += ",{\"type\":\"function_call\",\"call_id\":";
        json_write_string(out, call.id);
        out += ",\"name\":";
        json_write_string(out, call.name);
        out += ",\"arguments\":";
        json_write_string(out, call.arguments);
        out += '}';
    }
}

/* The conversation as input items. An assistant message that only calls tools is its calls alone. */
LLM_STREAM_COLD inline void write_responses_input(std::string& out, MessageList messages) {
    const std::size_t open = out.size();
    out += '[';
    for (const Message& m : messages) {  // each item after a comma; the first comma goes below
        ExtraMembers extra;
        if (read_extra_members(m.extra_json, "extra_json", extra)) extra = ExtraMembers{};  // checked before
        const bool calls_only = m.role == Role::assistant && !m.tool_calls.empty() && m.content.empty() &&
                                m.parts.empty() && extra.text.empty();
        if (m.role == Role::assistant && !m.reasoning_signature.empty()) {  // the reasoning item, as it came
            const std::string_view item = trim_ascii_space(m.reasoning_signature);
            out.append(",").append(item.data(), item.size());
        }
        if (!calls_only) {
            out += ',';
            write_responses_item(out, m, extra);
        }
        write_responses_calls(out, m.tool_calls);
    }
    if (out.size() > open + 1) out.erase(open + 1, 1);
    out += ']';
}

LLM_STREAM_COLD inline void write_responses_tools(std::string& out, const ChatOptions& options, const ExtraMembers& extra) {
    if (options.tools.empty()) return;  // then tool_choice can only be none, which is what no tools mean
    if (open_member(out, extra, "tools")) {
        out += '[';
        for (std::size_t i = 0; i < options.tools.size(); ++i) {
            const Tool& tool = options.tools[i];
            out += i ? ",{\"type\":\"function\",\"name\":" : "{\"type\":\"function\",\"name\":";
            json_write_string(out, tool.name);
            if (!tool.description.empty()) {
                out += ",\"description\":";
                json_write_string(out, tool.description);
            }
            const std::string_view parameters = trim_ascii_space(tool.parameters);
            if (!parameters.empty()) out.append(",\"parameters\":").append(parameters.data(), parameters.size());
            out += tool.strict ? ",\"strict\":true}" : ",\"strict\":false}";
        }
        out += ']';
    }
    const ToolChoice& choice = options.tool_choice;
    if (choice.mode != ToolChoice::Mode::server_default && open_member(out, extra, "tool_choice")) {
        if (choice.mode != ToolChoice::Mode::function) {
            write_tool_choice(out, choice);  // "auto", "none", "required": the same strings
        } else {
            out += "{\"type\":\"function\",\"name\":";
            json_write_string(out, choice.name);
            out += '}';
        }
    }
    if (options.parallel_tool_calls && open_member(out, extra, "parallel_tool_calls"))
        out += *options.parallel_tool_calls ? "true" : "false";
}

/* Structured output: text.format, with the schema's members flat in it (not under json_schema). */
LLM_STREAM_COLD inline void write_responses_text_format(std::string& out, const ResponseFormat& format, const ExtraMembers& extra) {
    if (format.type == ResponseFormat::Type::text || !open_member(out, extra, "text")) return;
    if (format.type == ResponseFormat::Type::json_object) {
        out += "{\"format\":{\"type\":\"json_object\"}}";
        return;
    }
    out += "{\"format\":{\"type\":\"json_schema\",\"name\":";
    json_write_string(out, format.name);
    const std::string_view schema = trim_ascii_space(format.schema);
    out.append(",\"schema\":").append(schema.data(), schema.size());
    out += format.strict ? ",\"strict\":true}}" : ",\"strict\":false}}";
}

LLM_STREAM_COLD inline Error write_responses_body(MessageList messages, const ChatOptions& options,
                                  const std::string& model, const ExtraMembers& extra, std::string& body) {
    if (Error e = check_responses_request(messages, options, extra)) return e;
    begin_body(body, body_size_estimate(messages, options), model, extra);
    body += "\"input\":";
    write_responses_input(body, messages);
    body += ",\"stream\":true";
    if (open_member(body, extra, "store")) body += "false";
    write_number_member(body, extra, "temperature", options.temperature);
    write_number_member(body, extra, "top_p", options.top_p);
    if (options.max_tokens && open_member(body, extra, "max_output_tokens")) body += std::to_string(*options.max_tokens);
    write_string_member(body, extra, "user", options.user);
    if (!options.reasoning_effort.empty() && open_member(body, extra, "reasoning")) {
        json_write_string(body.append("{\"effort\":"), options.reasoning_effort);
        body += ",\"summary\":\"auto\"}";
    }
    if (!options.reasoning_effort.empty() && open_member(body, extra, "include"))
        body += "[\"reasoning.encrypted_content\"]";
    write_responses_tools(body, options, extra);
    write_responses_text_format(body, options.response_format, extra);
    return end_body(body, extra);
}

/* The stream: typed events, the data's "type" deciding (the "event:" line repeats it, or is absent).
   Text is response.output_text.delta, reasoning response.reasoning_summary_text.delta (and
   response.reasoning_text.delta, the raw reasoning some servers stream); a call opens with a
   function_call item in response.output_item.added (its call_id is the call's id) and its arguments
   are the response.function_call_arguments.delta of the same output_index. The ".done" events and the
   final response's output repeat all of it, so they are skipped, but for the one thing only they
   carry: a reasoning item's encrypted_content (response.output_item.done), whose item is then the
   signature of a reasoning event. response.completed and
   response.incomplete end the completion with the finish and the usage; response.failed and an
   "error" event are the server's errors. Deltas are raw UTF-8 of whole characters, so no surrogate
   pair is split between two events (a lone escaped half is dropped, as json_decode_string does).
   A whole response object (a server that ignored "stream") is read from its output items. */
class ResponsesReader final : public WireReader {
public:
    ResponsesReader() { events_.reserve(most_events); }
    Result read(std::string_view event_name, std::string_view data) override;
    const std::vector<Event>& events() const noexcept override { return events_; }
    Error error() const override;
    void reset() override;

private:
    static constexpr std::size_t most_events = 2;  // the most one message makes (a finish and the usage)
    explicit ResponsesReader(Unreserved) noexcept {}
    /* What one message holds, noted while it is validated. */
    struct Fields {
        JsonSpan type, delta, item_type, call_id, name, arguments, status, reason;
        JsonSpan error_message, error_code;
        std::string_view item;       // the item's JSON text, when it is a reasoning item
        bool has_encrypted = false;  // the item has encrypted_content
        bool has_error = false;  // a non-null error object (response.error, or a top-level "error")
        std::int64_t output_index = -1;
        bool has_usage = false;
        Usage usage;
        bool whole = false;  // a whole response object (its "output" at the top level)
    };
    /* A piece of a whole response's output: text, reasoning, or a call (text = its arguments). */
    struct OutputPart {
        EventType type = EventType::content;
        JsonSpan text, call_id, name;
        std::string_view item;  // a reasoning item to send back: its JSON text
    };
    // More calls than any turn makes: beyond it the stream is refused, so memory stays bounded.
    static constexpr std::size_t max_calls = 1024;

    bool parse_top(JsonCursor& c);
    bool top_member(JsonCursor& c, const JsonSpan& key, int depth);
    bool read_known_shape(std::string_view data);
    void learn_shape(std::string_view data);
    bool parse_item(JsonCursor& c, int depth);
    bool parse_response(JsonCursor& c, int depth);
    bool response_member(JsonCursor& c, const JsonSpan& key, int depth);
    bool parse_output_item(JsonCursor& c, int depth);
    bool parse_output_part(JsonCursor& c, int depth);
    bool parse_usage(JsonCursor& c, int depth);
    bool parse_error(JsonCursor& c, int depth);
    static bool string_or_skip(JsonCursor& c, int depth, JsonSpan& out);
    Result dispatch();
    Result open_call(const JsonSpan& call_id, const JsonSpan& name, const JsonSpan& arguments);
    Result add_output();
    void add_arguments();
    void add_end(std::string_view reason);
    Result note_error();
    std::string_view decode(const JsonSpan& s);
    void add_text(EventType type, const JsonSpan& s);
    void add_signature(std::string_view item);

    Fields f_;
    const char* output_index_at_ = nullptr;  // where f_.output_index was read
    KnownShape shape_;  // of a text delta (KnownShape): its type and output_index come before its delta
    KnownTail tail_;    // the members after its delta (sequence_number, ...), which note nothing
    std::size_t shape_type_begin_ = 0, shape_type_end_ = 0;  // the type's place in such a message
    bool shape_type_escaped_ = false;
    std::int64_t shape_output_index_ = -1;  // read before the delta; -1 when it was not
    std::vector<std::int64_t> call_outputs_;  // each call's output_index, by call index (per stream)
    std::vector<OutputPart> output_;          // a whole response's
    ByteBuffer arena_;
    std::vector<Event> events_;
    const char* why_ = "";
    std::size_t error_offset_ = 0;
    std::string error_message_;  // only for error events: once per stream, not per message
};

inline bool ResponsesReader::string_or_skip(JsonCursor& c, int depth, JsonSpan& out) {
    if (c.at('"')) return c.string(out);
    return c.skip_value(depth);  // null or another type: stays absent
}

inline bool ResponsesReader::parse_usage(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    f_.has_usage = true;
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "input_tokens")) return json_integer_or_skip(c, d, f_.usage.prompt_tokens);
        if (json_key_is(key, "output_tokens")) return json_integer_or_skip(c, d, f_.usage.completion_tokens);
        if (json_key_is(key, "total_tokens")) return json_integer_or_skip(c, d, f_.usage.total_tokens);
        return c.skip_value(d);
    });
}

inline bool ResponsesReader::parse_error(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);  // null: no error
    f_.has_error = true;
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "message")) return string_or_skip(c, d, f_.error_message);
        if (json_key_is(key, "code")) return string_or_skip(c, d, f_.error_code);
        return c.skip_value(d);
    });
}

/* A member of a response object: of response.created ... response.failed, or a whole reply. */
inline bool ResponsesReader::response_member(JsonCursor& c, const JsonSpan& key, int d) {
    if (json_key_is(key, "status")) return string_or_skip(c, d, f_.status);
    if (json_key_is(key, "usage")) return parse_usage(c, d);
    if (json_key_is(key, "error")) return parse_error(c, d);
    if (json_key_is(key, "incomplete_details")) {
        if (!c.at('{')) return c.skip_value(d);
        return c.object(d + 1, [&](const JsonSpan& k, int dd) {
            return json_key_is(k, "reason") ? string_or_skip(c, dd, f_.reason) : c.skip_value(dd);
        });
    }
    return c.skip_value(d);
}

/* The response object of the typed events: its output repeats the stream, so it is not read. */
inline bool ResponsesReader::parse_response(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    return c.object(depth + 1, [&](const JsonSpan& key, int d) { return response_member(c, key, d); });
}

/* A content or summary part: output_text is text, summary_text and reasoning_text are reasoning. */
inline bool ResponsesReader::parse_output_part(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    JsonSpan type, text;
    const bool ok = c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "type")) return string_or_skip(c, d, type);
        if (json_key_is(key, "text")) return string_or_skip(c, d, text);
        return c.skip_value(d);
    });
    if (!ok || !text.present()) return ok;
    OutputPart part;
    part.text = text;
    if (json_key_is(type, "output_text")) output_.push_back(part);
    part.type = EventType::reasoning;
    if (json_key_is(type, "summary_text") || json_key_is(type, "reasoning_text")) output_.push_back(part);
    return true;
}

/* An item of a whole response's output: a message, a reasoning item, a function_call. */
inline bool ResponsesReader::parse_output_item(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    JsonSpan type;
    OutputPart call;
    call.type = EventType::tool_call;
    bool has_encrypted = false;
    const char* const begin = c.p;
    const bool ok = c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "type")) return string_or_skip(c, d, type);
        if (json_key_is(key, "encrypted_content")) has_encrypted = c.at('"');
        if (json_key_is(key, "call_id")) return string_or_skip(c, d, call.call_id);
        if (json_key_is(key, "name")) return string_or_skip(c, d, call.name);
        if (json_key_is(key, "arguments")) return string_or_skip(c, d, call.text);
        if (!json_key_is(key, "content") && !json_key_is(key, "summary")) return c.skip_value(d);
        if (!c.at('[')) return c.skip_value(d);
        return c.array(d + 1, [&](int dd) { return parse_output_part(c, dd); });
    });
    if (ok && json_key_is(type, "function_call")) output_.push_back(call);
    if (ok && json_key_is(type, "reasoning") && has_encrypted) {
        OutputPart reasoning;
        reasoning.type = EventType::reasoning;
        reasoning.item = std::string_view(begin, static_cast<std::size_t>(c.p - begin));
        output_.push_back(reasoning);
    }
    return ok;
}

inline bool ResponsesReader::parse_item(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "type")) return string_or_skip(c, d, f_.item_type);
        if (json_key_is(key, "call_id")) return string_or_skip(c, d, f_.call_id);
        if (json_key_is(key, "name")) return string_or_skip(c, d, f_.name);
        if (json_key_is(key, "arguments")) return string_or_skip(c, d, f_.arguments);
        if (json_key_is(key, "encrypted_content")) f_.has_encrypted = c.at('"');
        return c.skip_value(d);
    });
}

inline bool ResponsesReader::top_member(JsonCursor& c, const JsonSpan& key, int d) {
    if (json_key_is(key, "type")) return string_or_skip(c, d, f_.type);
    if (json_key_is(key, "delta")) return string_or_skip(c, d, f_.delta);
    if (json_key_is(key, "output_index")) {
        output_index_at_ = c.p;
        return json_integer_or_skip(c, d, f_.output_index);
    }
    if (json_key_is(key, "item")) {
        const char* const begin = c.p;
        if (!parse_item(c, d)) return false;
        f_.item = std::string_view(begin, static_cast<std::size_t>(c.p - begin));
        return true;
    }
    if (json_key_is(key, "response")) return parse_response(c, d);
    // The "error" event's own members.
    if (json_key_is(key, "message")) return string_or_skip(c, d, f_.error_message);
    if (json_key_is(key, "code")) return string_or_skip(c, d, f_.error_code);
    if (json_key_is(key, "output") && c.at('[')) {
        f_.whole = true;
        return c.array(d + 1, [&](int dd) { return parse_output_item(c, dd); });
    }
    return response_member(c, key, d);  // a whole response's (error: also a whole error body's)
}

inline bool ResponsesReader::parse_top(JsonCursor& c) {
    return json_read_message(c, [&](const JsonSpan& key, int d) { return top_member(c, key, d); });
}

/* A text delta of the known shape: the type and output_index its prefix holds, its delta, then the
   members after it, which must leave the type as it was. False: read it in full. */
inline bool ResponsesReader::read_known_shape(std::string_view data) {
    JsonSpan delta;
    const char* const rest = shape_.match(data, delta);
    if (!rest) return false;
    f_.type.begin = data.data() + shape_type_begin_;  // the same bytes as in the message learned from
    f_.type.end = data.data() + shape_type_end_;
    f_.type.escaped = shape_type_escaped_;
    f_.output_index = shape_output_index_;
    f_.delta = delta;
    std::int64_t unused[KnownTail::slots];
    if (tail_.match(std::string_view(rest, static_cast<std::size_t>(data.data() + data.size() - rest)), unused))
        return true;
    const JsonSpan type = f_.type;
    JsonCursor c(rest, data.data() + data.size());
    if (!c.object_rest(1, [&](const JsonSpan& key, int d) { return top_member(c, key, d); })) return false;
    c.skip_ws();
    return c.p == c.end && f_.type.begin == type.begin && f_.type.end == type.end;
}

/* Keeps the shape of a message just read in full when it is a delta whose type (and output_index, if
   any) come before it and that holds nothing else this reader notes. */
inline void ResponsesReader::learn_shape(std::string_view data) {
    shape_.forget();
    const Fields& f = f_;
    const bool only_type_and_delta =
        !f.item_type.present() && !f.call_id.present() && !f.name.present() && !f.arguments.present() &&
        !f.status.present() && !f.reason.present() && !f.error_message.present() && !f.error_code.present() &&
        f.item.empty() && !f.has_encrypted && !f.has_error && !f.has_usage && !f.whole;
    const bool index_before = f.output_index < 0 || output_index_at_ < f.delta.begin;
    if (!only_type_and_delta || !index_before || !f.type.present() || f.delta.size() == 0 || f.type.end > f.delta.begin)
        return;
    shape_.learn(data, f.delta, f.delta.end + 1);  // the middle: the delta's closing quote
    shape_type_begin_ = static_cast<std::size_t>(f.type.begin - data.data());
    shape_type_end_ = static_cast<std::size_t>(f.type.end - data.data());
    shape_type_escaped_ = f.type.escaped;
    shape_output_index_ = f.output_index;
    // Its members after the delta noted nothing (the test above), so the same bytes never do.
    const char* const tail = f.delta.end + 1;
    tail_.learn(std::string_view(tail, static_cast<std::size_t>(data.data() + data.size() - tail)),
                [](const JsonSpan&, const JsonSpan&) { return -1; });
}

inline std::string_view ResponsesReader::decode(const JsonSpan& s) {
    return decode_in_arena(s, arena_);  // room was reserved for every span in read()
}

inline void ResponsesReader::add_text(EventType type, const JsonSpan& s) {
    Event e;
    e.type = type;
    e.text = decode(s);
    if (!e.text.empty()) events_.push_back(e);  // e.g. only invalid bytes
}

/* A done reasoning item with its encrypted content, whole: what goes back before the calls (without
   encrypted_content, an item is only a reference to what store false did not keep). */
inline void ResponsesReader::add_signature(std::string_view item) {
    Event e;
    e.type = EventType::reasoning;
    e.signature = item;
    events_.push_back(e);
}

/* A function_call item opens the next call: its id, name and whatever arguments it already has. */
inline WireReader::Result ResponsesReader::open_call(const JsonSpan& call_id, const JsonSpan& name,
                                                     const JsonSpan& arguments) {
    if (call_outputs_.size() == max_calls) {
        why_ = "more function calls than a turn makes (1024)";
        return Result::invalid;
    }
    Event e;
    e.type = EventType::tool_call;
    e.tool_call.index = static_cast<int>(call_outputs_.size());
    e.tool_call.id = call_id.present() ? decode(call_id) : std::string_view();
    if (name.present()) e.tool_call.name = decode(name);
    if (arguments.present()) e.tool_call.arguments = decode(arguments);  // "" too, as chat completions open a call
    call_outputs_.push_back(f_.output_index);
    events_.push_back(e);
    return Result::ok;
}

/* A fragment of the arguments of the call at its output_index (none open there: skipped). */
inline void ResponsesReader::add_arguments() {
    const auto call = std::find(call_outputs_.begin(), call_outputs_.end(), f_.output_index);
    if (call == call_outputs_.end() || !f_.delta.size()) return;
    Event e;
    e.type = EventType::tool_call;
    e.tool_call.index = static_cast<int>(call - call_outputs_.begin());
    e.tool_call.arguments = decode(f_.delta);
    events_.push_back(e);
}

/* The finish (raw: the incomplete reason, else the status), then the usage. */
inline void ResponsesReader::add_end(std::string_view fallback_raw) {
    Event e;
    e.type = EventType::finish;
    e.raw_reason = f_.reason.present() ? decode(f_.reason) : f_.status.present() ? decode(f_.status) : "";
    if (e.raw_reason.empty()) e.raw_reason = fallback_raw;  // none, or nothing readable: the event's own
    if (e.raw_reason == "max_output_tokens") e.text = "length";
    else if (e.raw_reason == "completed") e.text = call_outputs_.empty() ? "stop" : "tool_calls";
    else e.text = e.raw_reason;  // content_filter, and values without a match
    events_.push_back(e);
    if (!f_.has_usage) return;
    Event u;
    u.type = EventType::usage;
    u.usage = f_.usage;
    events_.push_back(u);
}

/* The server's error as one line: its message, then its code when it gave one. */
inline WireReader::Result ResponsesReader::note_error() {
    const std::string_view message = f_.error_message.present() ? decode(f_.error_message) : "";
    const std::string_view code = f_.error_code.present() ? decode(f_.error_code) : "";
    error_message_.assign(message.empty() ? std::string_view("the server reported an error") : message);
    if (!code.empty()) error_message_.append(" (code: ").append(code).append(")");
    return Result::error_event;
}

/* A whole response: its output's text, reasoning and calls in order, then its end. */
inline WireReader::Result ResponsesReader::add_output() {
    call_outputs_.clear();
    for (const OutputPart& part : output_) {
        if (!part.item.empty()) add_signature(part.item);
        else if (part.type != EventType::tool_call) add_text(part.type, part.text);
        else if (open_call(part.call_id, part.name, part.text) != Result::ok) {
            events_.clear();  // an invalid message has no events
            return Result::invalid;
        }
    }
    add_end("completed");
    return Result::end;
}

inline WireReader::Result ResponsesReader::dispatch() {
    const std::string_view type = f_.type.present() ? decode(f_.type) : "";
    if (type == "response.output_text.delta") add_text(EventType::content, f_.delta);
    else if (type == "response.reasoning_summary_text.delta" || type == "response.reasoning_text.delta")
        add_text(EventType::reasoning, f_.delta);
    else if (type == "response.function_call_arguments.delta") add_arguments();
    else if (type == "response.output_item.added" && decode(f_.item_type) == "function_call")
        return open_call(f_.call_id, f_.name, f_.arguments);
    else if (type == "response.output_item.done" && f_.has_encrypted && decode(f_.item_type) == "reasoning")
        add_signature(f_.item);
    else if (type == "response.created") call_outputs_.clear();  // a new response: its calls count from 0
    else if (type == "response.completed") add_end("completed");
    else if (type == "response.incomplete") add_end("incomplete");
    else if (type == "response.failed" || type == "error" || (type.empty() && f_.has_error)) return note_error();
    else if (type.empty() && f_.whole) return add_output();
    else return Result::ok;  // keep-alives and events we do not use or know
    return type == "response.completed" || type == "response.incomplete" ? Result::end : Result::ok;
}

inline WireReader::Result ResponsesReader::read(std::string_view, std::string_view data) {
    events_.clear();
    output_.clear();
    f_ = Fields{};
    why_ = "";
    error_offset_ = 0;
    error_message_.clear();
    if (trim_ascii_space(data).empty()) return Result::ok;  // a keep-alive
    output_index_at_ = nullptr;
    if (!read_known_shape(data)) {
        f_ = Fields{};
        output_index_at_ = nullptr;
        JsonCursor c(data.data(), data.data() + data.size());
        if (!parse_top(c)) {
            why_ = c.why;
            error_offset_ = static_cast<std::size_t>(c.p - c.start);
            return Result::invalid;
        }
        learn_shape(data);
    }
    arena_.clear();
    // Decoding never lengthens a string, so one reservation keeps every view stable.
    std::size_t room = f_.type.size() + f_.delta.size() + f_.item_type.size() + f_.call_id.size() +
                             f_.name.size() + f_.arguments.size() + f_.status.size() + f_.reason.size() +
                             f_.error_message.size() + f_.error_code.size();
    for (const OutputPart& part : output_) room += part.text.size() + part.call_id.size() + part.name.size();
    if (!arena_.reserve(room)) return Result::out_of_memory;
    return dispatch();
}

inline Error ResponsesReader::error() const {
    if (!error_message_.empty()) return make_error(ErrorCode::server_error, "server error: " + error_message_);
    return make_error(ErrorCode::protocol, std::string(why_) + " at byte " + std::to_string(error_offset_));
}

inline void ResponsesReader::reset() {
    ResponsesReader next{Unreserved()};
    keep_rooms(*this, next, &ResponsesReader::call_outputs_, &ResponsesReader::output_, &ResponsesReader::events_,
               &ResponsesReader::arena_, &ResponsesReader::shape_, &ResponsesReader::tail_);
    *this = std::move(next);
    events_.reserve(most_events);  // when the room was given back
}

inline std::unique_ptr<WireReader> make_responses_reader() {
    return std::make_unique<ResponsesReader>();
}

#if !defined(LLM_STREAM_NO_STUB)
/* The stub's events as OpenAI sends them, each with "event:" and a sequence_number. */
class ResponsesStubWriter {
public:
    explicit ResponsesStubWriter(const std::string& model) : body_("text/event-stream") {
        json_write_string(model_, model);
    }
    /* An event of this type; `members` follow the type (each with its leading comma). */
    void event(std::string_view type, std::string_view members) {
        json_ = "{\"type\":\"";
        json_.append(type.data(), type.size()).append("\"");
        json_.append(members.data(), members.size());
        json_ += ",\"sequence_number\":" + std::to_string(sequence_++) + "}";
        body_.sse(type, json_);
    }
    /* The response object with this status (and usage once completed). */
    std::string response(std::string_view status, std::string_view usage = "null") const {
        return ",\"response\":{\"id\":\"resp_stub\",\"object\":\"response\",\"created_at\":0,\"status\":\"" +
               std::string(status) + "\",\"model\":" + model_ + ",\"output\":[],\"usage\":" + std::string(usage) + "}";
    }
    StubResponse finish() { return body_.finish(); }

private:
    StubBody body_;
    std::string model_;  // as a JSON string
    std::string json_;
    std::size_t sequence_ = 0;
};

/* A reasoning item at output_index 0: its summary in one delta, then the item done with its
   encrypted content (what a client sends back). */
LLM_STREAM_COLD inline void stub_responses_reasoning(ResponsesStubWriter& writer, const std::string& reasoning) {
    std::string item = ",\"output_index\":0,\"item\":{\"id\":\"rs_stub_1\",\"type\":\"reasoning\",\"summary\":[";
    writer.event("response.output_item.added", item + "]}");
    std::string json = ",\"item_id\":\"rs_stub_1\",\"output_index\":0,\"summary_index\":0,\"delta\":";
    json_write_string(json, reasoning);
    writer.event("response.reasoning_summary_text.delta", json);
    json_write_string(item.append("{\"type\":\"summary_text\",\"text\":"), reasoning);
    writer.event("response.output_item.done", item + "}],\"encrypted_content\":\"" + stub_signature + "\"}");
}

LLM_STREAM_COLD inline StubResponse stub_responses(const StubReply& reply, const std::string& model) {
    ResponsesStubWriter writer(model);
    writer.event("response.created", writer.response("in_progress"));
    if (!reply.reasoning.empty()) stub_responses_reasoning(writer, reply.reasoning);
    const std::string index = reply.reasoning.empty() ? "0" : "1";  // after the reasoning item
    const std::string& whole = reply.tool ? reply.arguments : reply.text;
    std::string item = reply.tool ? ",\"output_index\":" + index + ",\"item\":{\"id\":\"fc_stub_1\",\"type\":\"function_call\","
                                    "\"status\":\"in_progress\",\"arguments\":\"\",\"call_id\":\"call_stub_1\",\"name\":"
                                  : ",\"output_index\":" + index + ",\"item\":{\"id\":\"msg_stub_1\",\"type\":\"message\","
                                    "\"status\":\"in_progress\",\"content\":[],\"role\":\"assistant\"}";
    if (reply.tool) {
        json_write_string(item, reply.tool->name);
        item += '}';
    }
    writer.event("response.output_item.added", item);
    const char* const delta_type = reply.tool ? "response.function_call_arguments.delta" : "response.output_text.delta";
    const std::string at = reply.tool ? ",\"item_id\":\"fc_stub_1\",\"output_index\":" + index
                                      : ",\"item_id\":\"msg_stub_1\",\"output_index\":" + index + ",\"content_index\":0";
    std::string json;
    stub_pieces(whole, [&](std::string_view piece) {
        json = at + ",\"delta\":";
        json_write_string(json, piece);
        writer.event(delta_type, json);
    });
    json = at + (reply.tool ? ",\"arguments\":" : ",\"text\":");
    json_write_string(json, whole);  // the .done event repeats the whole: a reader must not add it again
    writer.event(reply.tool ? "response.function_call_arguments.done" : "response.output_text.done", json);
    writer.event("response.completed",
                 writer.response("completed", "{\"input_tokens\":" + std::to_string(reply.prompt_tokens) +
                                                  ",\"output_tokens\":" + std::to_string(reply.completion_tokens) +
                                                  ",\"total_tokens\":" +
                                                  std::to_string(reply.prompt_tokens + reply.completion_tokens) + "}"));
    return writer.finish();
}

#endif  // LLM_STREAM_NO_STUB
#endif  // LLM_STREAM_NO_RESPONSES

#if !defined(LLM_STREAM_NO_ANTHROPIC)
/* ------------------------------------------------------------------------------------------------
   Anthropic Messages API: request body, stream reader, stub
   POST /messages; SSE with event names (message_start, content_block_delta, message_stop, ...)
   ------------------------------------------------------------------------------------------------ */

/* max_tokens is required by this API. 4096 is the largest output every Claude model accepts (the
   Claude 3 models' documented maximum; later models allow more), so the default never makes a
   request invalid; ChatOptions::max_tokens raises it. */
constexpr int anthropic_default_max_tokens = 4096;

/* Extended thinking: budget_tokens is at least 1024 and less than max_tokens (the extended thinking
   guide). An effort without a budget takes 1024, 4096 or 16384 tokens (low, medium, high: the floor,
   then steps of four); an unset max_tokens becomes the budget plus the default above, so the reply
   keeps the room it has without thinking. */
constexpr int anthropic_min_thinking_budget = 1024;

/* The thinking budget asked for; 0: no thinking asked for. */
LLM_STREAM_COLD inline int anthropic_thinking_budget(const ChatOptions& options) {
    if (options.reasoning_budget) return *options.reasoning_budget;
    const std::string& effort = options.reasoning_effort;
    return effort.empty() ? 0 : effort == "low" ? anthropic_min_thinking_budget : effort == "medium" ? 4096 : 16384;
}

/* The image types the Messages API reads (its vision guide): JPEG, PNG, GIF and WebP. */
LLM_STREAM_COLD inline bool anthropic_image_type(std::string_view type) noexcept {
    return type == "image/jpeg" || type == "image/png" || type == "image/gif" || type == "image/webp";
}

/* The API has no image detail hint, takes an image by URL or as base64 bytes of four types (a data:
   URL becomes base64 bytes), and only base64 data: URLs. */
LLM_STREAM_COLD inline Error check_anthropic_image(const ContentPart& part, const std::string& at) {
    if (!part.detail.empty()) return invalid_argument(at + ".detail: the Anthropic Messages API has no image detail hint");
    std::string_view media_type = part.mime_type, data;
    if (!part.bytes && starts_with(part.text, "data:") && !split_base64_data_url(part.text, media_type, data))
        return invalid_argument(at + ".url: the Anthropic Messages API takes only base64 data: URLs");
    if ((part.bytes || starts_with(part.text, "data:")) && !anthropic_image_type(media_type))
        return invalid_argument(at + ": the Anthropic Messages API takes image/jpeg, image/png, image/gif or image/webp (got \"" +
                                excerpt(media_type, 40) + "\")");
    return {};
}

/* What this API cannot carry in a message: a participant name, a system message's extra members (the
   system prompt is one string), or reasoning to send back without its signature: a thinking block
   goes back only with the signature it came with (Message::reasoning_signature), never invented. */
LLM_STREAM_COLD inline Error check_anthropic_message(const Message& m, std::size_t index, bool send_reasoning) {
    const std::string at = indexed("messages", index);
    if (!m.name.empty()) return invalid_argument(at + ".name: the Anthropic Messages API has no participant names");
    const bool is_system = m.role == Role::system || m.role == Role::developer;
    if (is_system && !trim_ascii_space(m.extra_json).empty())
        return invalid_argument(at + ".extra_json: system messages become the top-level system text, which has no members");
    if (send_reasoning && !m.reasoning.empty() && m.reasoning_signature.empty())
        return invalid_argument(at + ".reasoning: Anthropic takes thinking back only with its signature, and it has none");
    for (std::size_t k = 0; k < m.parts.size(); ++k)
        if (m.parts[k].kind == ContentPart::Kind::image)
            if (Error e = check_anthropic_image(m.parts[k], at + "." + indexed("content", k))) return e;
    for (std::size_t k = 0; k < m.tool_calls.size(); ++k)
        if (trim_ascii_space(m.tool_calls[k].arguments).front() != '{')
            return invalid_argument(at + "." + indexed("tool_calls", k) + ".arguments must be a JSON object: it is sent as tool_use input");
    return {};
}

/* The options this API has no counterpart for (seed, penalties, schema-less JSON mode) and its
   narrower temperature range. */
LLM_STREAM_COLD inline Error check_anthropic_options(MessageList messages, const ChatOptions& options) {
    if (options.seed) return invalid_argument("seed: the Anthropic Messages API has no seed");
    if (options.presence_penalty) return invalid_argument("presence_penalty: the Anthropic Messages API has none");
    if (options.frequency_penalty) return invalid_argument("frequency_penalty: the Anthropic Messages API has none");
    if (options.temperature && *options.temperature > 1.0)
        return invalid_argument("temperature must be between 0 and 1 for the Anthropic Messages API");
    if (options.response_format.type == ResponseFormat::Type::json_object)
        return invalid_argument("response_format: the Anthropic Messages API has no schema-less JSON mode; give a json_schema");
    if (options.reasoning_budget && *options.reasoning_budget < anthropic_min_thinking_budget)
        return invalid_argument("reasoning_budget must be at least 1024 for the Anthropic Messages API");
    if (options.max_tokens && anthropic_thinking_budget(options) >= *options.max_tokens)
        return invalid_argument("max_tokens must be more than the thinking budget (" +
                                std::to_string(anthropic_thinking_budget(options)) + ") for the Anthropic Messages API");
    for (std::size_t i = 0; i < messages.size(); ++i)
        if (Error e = check_anthropic_message(messages[i], i, options.send_reasoning)) return e;
    return {};
}

LLM_STREAM_COLD inline void write_anthropic_image(std::string& out, const ContentPart& part) {
    std::string_view media_type = part.mime_type, data;
    const bool inline_data = !part.bytes && split_base64_data_url(part.text, media_type, data);
    if (!part.bytes && !inline_data) {
        out += "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":";
        json_write_string(out, part.text);
        out += "}}";
        return;
    }
    out += "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":";
    json_write_string(out, media_type);
    out += ",\"data\":";
    if (part.bytes) {
        out += '"';
        base64_append(out, *part.bytes);
        out += '"';
    } else {
        json_write_string(out, data);
    }
    out += "}}";
}

/* An assistant's thinking as it came, first in its blocks: the signed thinking block, then the
   redacted ones (the API refuses a tool-use turn of a thinking model without them). Says whether
   it wrote any. */
LLM_STREAM_COLD inline bool write_anthropic_thinking(std::string& out, const Message& m) {
    const std::size_t start = out.size();
    if (!m.reasoning_signature.empty()) {
        json_write_string(out.append("{\"type\":\"thinking\",\"thinking\":"), m.reasoning);
        json_write_string(out.append(",\"signature\":"), m.reasoning_signature);
        out += '}';
    }
    for (const std::string& data : m.redacted_reasoning) {
        json_write_string(out.append(out.size() > start ? ",{\"type\":\"redacted_thinking\",\"data\":"
                                                        : "{\"type\":\"redacted_thinking\",\"data\":"), data);
        out += '}';
    }
    return out.size() > start;
}

LLM_STREAM_COLD inline bool has_anthropic_thinking(const Message& m) {
    return !m.reasoning_signature.empty() || !m.redacted_reasoning.empty();
}

/* Content blocks: the thinking first, text and images, then the calls an assistant message makes
   (tool_use, its input the arguments' JSON object spliced). */
LLM_STREAM_COLD inline void write_anthropic_blocks(std::string& out, const Message& m) {
    out += '[';
    bool first = !write_anthropic_thinking(out, m);
    auto open = [&]() { if (!first) out += ','; first = false; };
    if (m.parts.empty() && !m.content.empty()) {
        open();
        out += "{\"type\":\"text\",\"text\":";
        json_write_string(out, m.content);
        out += '}';
    }
    for (const ContentPart& part : m.parts) {
        open();
        if (part.kind == ContentPart::Kind::image) {
            write_anthropic_image(out, part);
            continue;
        }
        out += "{\"type\":\"text\",\"text\":";
        json_write_string(out, part.text);
        out += '}';
    }
    for (const ToolCall& call : m.tool_calls) {
        open();
        out += "{\"type\":\"tool_use\",\"id\":";
        json_write_string(out, call.id);
        out += ",\"name\":";
        json_write_string(out, call.name);
        out += ",\"input\":";
        const std::string_view input = trim_ascii_space(call.arguments);
        out.append(input.data(), input.size());
        out += '}';
    }
    out += ']';
}

/* A message's content: plain text when it is only text, else blocks. */
LLM_STREAM_COLD inline void write_anthropic_content(std::string& out, const Message& m) {
    if (m.parts.empty() && m.tool_calls.empty() && !has_anthropic_thinking(m)) json_write_string(out, m.content);
    else write_anthropic_blocks(out, m);
}

LLM_STREAM_COLD inline void splice_members(std::string& out, const ExtraMembers& extra) {
    if (extra.text.empty()) return;
    out += ',';
    out.append(extra.text.data(), extra.text.size());
}

/* A tool message as a tool_result block (its extra_json members, such as "is_error", go into it). */
LLM_STREAM_COLD inline void write_anthropic_tool_result(std::string& out, const Message& m) {
    ExtraMembers extra;
    if (read_extra_members(m.extra_json, "extra_json", extra)) extra = ExtraMembers{};
    out += "{\"type\":\"tool_result\",\"tool_use_id\":";
    json_write_string(out, m.tool_call_id);
    if (open_member(out, extra, "content")) write_anthropic_content(out, m);
    splice_members(out, extra);
    out += '}';
}

LLM_STREAM_COLD inline void write_anthropic_message(std::string& out, const Message& m) {
    ExtraMembers extra;
    if (read_extra_members(m.extra_json, "extra_json", extra)) extra = ExtraMembers{};
    out += m.role == Role::assistant ? "{\"role\":\"assistant\"" : "{\"role\":\"user\"";
    if (open_member(out, extra, "content")) write_anthropic_content(out, m);
    splice_members(out, extra);
    out += '}';
}

/* The conversation without its system messages; tool results in a row make one user message, as
   the API wants all the results of one turn together. */
LLM_STREAM_COLD inline void write_anthropic_messages(std::string& out, MessageList messages) {
    out += '[';
    bool first = true, in_results = false;
    for (const Message& m : messages) {
        if (m.role == Role::system || m.role == Role::developer) continue;
        const bool result = m.role == Role::tool;
        if (in_results && !result) out += "]}";
        if (!(in_results && result)) {
            if (!first) out += ',';
            first = false;
        }
        if (result) {
            out += in_results ? "," : "{\"role\":\"user\",\"content\":[";
            write_anthropic_tool_result(out, m);
        } else {
            write_anthropic_message(out, m);
        }
        in_results = result;
    }
    if (in_results) out += "]}";
    out += ']';
}

/* The top-level system text: every system and developer message, joined by blank lines (from the
   first that has text on), escaped where it is rather than joined first. */
LLM_STREAM_COLD inline void write_anthropic_system(std::string& out, MessageList messages, const ExtraMembers& extra) {
    bool open = false;
    for (const Message& m : messages) {
        if (m.role != Role::system && m.role != Role::developer) continue;
        if (open) {
            out += "\\n\\n";
        } else {
            if (message_text_empty(m)) continue;
            if (!open_member(out, extra, "system")) return;
            out += '"';
            open = true;
        }
        write_message_text_escaped(out, m);
    }
    if (open) out += '"';
}

LLM_STREAM_COLD inline void write_anthropic_tools(std::string& out, const std::vector<Tool>& tools) {
    out += '[';
    for (std::size_t i = 0; i < tools.size(); ++i) {
        out += i ? ",{" : "{";
        // input_schema is required: a tool without parameters takes an empty object.
        write_function_members(out, tools[i], "input_schema", "{\"type\":\"object\",\"properties\":{}}");
        out += '}';
    }
    out += ']';
}

/* tool_choice {type: auto | any | tool | none}; parallel_tool_calls is its disable_parallel_tool_use
   (which "none" does not take). */
LLM_STREAM_COLD inline void write_anthropic_tool_choice(std::string& out, const ChatOptions& options) {
    const ToolChoice& choice = options.tool_choice;
    switch (choice.mode) {
    case ToolChoice::Mode::server_default:
    case ToolChoice::Mode::automatic: out += "{\"type\":\"auto\""; break;
    case ToolChoice::Mode::none: out += "{\"type\":\"none\"}"; return;
    case ToolChoice::Mode::required: out += "{\"type\":\"any\""; break;
    case ToolChoice::Mode::function:
        out += "{\"type\":\"tool\",\"name\":";
        json_write_string(out, choice.name);
        break;
    }
    if (options.parallel_tool_calls) out += *options.parallel_tool_calls ? ",\"disable_parallel_tool_use\":false" : ",\"disable_parallel_tool_use\":true";
    out += '}';
}

LLM_STREAM_COLD inline void write_anthropic_tool_options(std::string& out, const ChatOptions& options, const ExtraMembers& extra) {
    if (options.tools.empty()) return;
    if (open_member(out, extra, "tools")) write_anthropic_tools(out, options.tools);
    const bool choose = options.tool_choice.mode != ToolChoice::Mode::server_default || options.parallel_tool_calls;
    if (choose && open_member(out, extra, "tool_choice")) write_anthropic_tool_choice(out, options);
}

/* temperature, top_p, stop_sequences, the end user's id (metadata.user_id), a JSON Schema for the
   reply (output_config.format). */
LLM_STREAM_COLD inline void write_anthropic_options(std::string& out, const ChatOptions& options, const ExtraMembers& extra) {
    write_number_member(out, extra, "temperature", options.temperature);
    write_number_member(out, extra, "top_p", options.top_p);
    write_string_array_member(out, extra, "stop_sequences", options.stop);
    if (!options.user.empty() && open_member(out, extra, "metadata")) {
        out += "{\"user_id\":";
        json_write_string(out, options.user);
        out += '}';
    }
    write_anthropic_tool_options(out, options, extra);
    if (options.response_format.type == ResponseFormat::Type::json_schema && open_member(out, extra, "output_config")) {
        const std::string_view schema = trim_ascii_space(options.response_format.schema);
        out += "{\"format\":{\"type\":\"json_schema\",\"schema\":";
        out.append(schema.data(), schema.size());
        out += "}}";
    }
}

/* The body after check_chat_options(): the system prompt at the top, the rest as messages, streamed.
   include_usage needs nothing: this API always reports usage. */
LLM_STREAM_COLD inline Error write_anthropic_body(MessageList messages, const ChatOptions& options,
                                  const std::string& model, const ExtraMembers& extra, std::string& body) {
    if (Error e = check_anthropic_options(messages, options)) return e;
    begin_body(body, body_size_estimate(messages, options), model, extra);
    body += "\"messages\":";
    write_anthropic_messages(body, messages);
    body += ",\"stream\":true";
    const int thinking_budget = anthropic_thinking_budget(options);
    if (open_member(body, extra, "max_tokens"))
        body += std::to_string(options.max_tokens ? *options.max_tokens : thinking_budget + anthropic_default_max_tokens);
    if (thinking_budget && open_member(body, extra, "thinking"))
        body += "{\"type\":\"enabled\",\"budget_tokens\":" + std::to_string(thinking_budget) + "}";
    write_anthropic_system(body, messages, extra);
    write_anthropic_options(body, options, extra);
    return end_body(body, extra);
}

/* The members of one streamed event that the reader uses (the data's "type" names the event). */
/* A content block: content_block_start's, or one of a whole (not streamed) reply's "content". */
struct AnthropicBlock {
    JsonSpan type, id, name, text;  // text: a text block's "text" or a thinking block's "thinking"
    JsonSpan signature;             // a thinking block's "signature", a redacted_thinking block's "data"
    std::string_view input;         // a tool_use block's input, as the JSON text sent
};

struct AnthropicFields {
    JsonSpan type;                                   // message_start, content_block_delta, ...
    std::int64_t index = -1;                         // the content block's index
    AnthropicBlock block;                            // content_block_start's content_block
    JsonSpan delta_type, delta_text;                 // a delta: its text, thinking or partial_json
    JsonSpan stop_reason;                            // message_delta's delta, or a whole reply's
    std::int64_t input_tokens = -1, cache_creation = -1, cache_read = -1, output_tokens = -1;
    JsonSpan error_type, error_message;
};

/* Reads a string (a value of another type is read and left out). */
LLM_STREAM_FORCE_INLINE bool anthropic_string(JsonCursor& c, int depth, JsonSpan& out) {
    if (c.at('"')) return c.string(out);
    return c.skip_value(depth);
}

/* The Messages API's SSE events: message_start (input tokens), content blocks (text, thinking with
   its signature_delta, redacted_thinking, tool_use with streamed input_json_delta), message_delta
   (stop reason, cumulative output tokens),
   message_stop (the end), ping, error. Text deltas are whole code points (the API writes UTF-8
   strings per delta), so no surrogate pair is split between two events; a lone half is dropped. */
class AnthropicReader final : public WireReader {
public:
    AnthropicReader() { events_.reserve(most_events); }
    Result read(std::string_view event_name, std::string_view data) override;
    const std::vector<Event>& events() const noexcept override { return events_; }
    Error error() const override;
    void reset() override;

private:
    // A message makes two events at most (message_delta: finish and usage): room for them from the
    // start, so that no later message allocates.
    static constexpr std::size_t most_events = 2;
    explicit AnthropicReader(Unreserved) noexcept {}
    // More tool calls in one turn than any real one has: beyond it a call's fragments are refused,
    // so the block table stays bounded.
    static constexpr std::size_t max_tool_calls = 1024;

    bool parse(JsonCursor& c, AnthropicFields& f);
    static bool parse_text_delta(std::string_view data, JsonSpan& text);
    bool parse_block(JsonCursor& c, int depth, AnthropicBlock& b);
    bool parse_delta(JsonCursor& c, int depth, AnthropicFields& f);
    bool parse_usage(JsonCursor& c, int depth, AnthropicFields& f);
    bool parse_error(JsonCursor& c, int depth, AnthropicFields& f);
    Result dispatch(const AnthropicFields& f, std::string_view type);
    std::string_view decode(const JsonSpan& s);
    void add_text(EventType type, const JsonSpan& text);
    void add_signature(const JsonSpan& signature, std::string_view kind);
    Result add_block(const AnthropicBlock& b, std::int64_t index, bool whole);
    Result read_whole_reply(const AnthropicFields& f);
    void add_delta(const AnthropicFields& f);
    void add_finish(const AnthropicFields& f);
    void note_error(std::string_view message, std::string_view type);

    std::vector<AnthropicBlock> blocks_;     // a whole reply's content
    std::vector<std::int64_t> tool_blocks_;  // each tool call's content block index, in call order
    std::int64_t prompt_tokens_ = 0;         // from message_start
    ByteBuffer arena_;
    std::vector<Event> events_;
    const char* why_ = "";
    std::size_t error_offset_ = 0;
    std::string error_message_;  // only for error events
};

inline bool AnthropicReader::parse_usage(JsonCursor& c, int depth, AnthropicFields& f) {
    if (!c.at('{')) return c.skip_value(depth);
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "input_tokens")) return json_integer_or_skip(c, d, f.input_tokens);
        if (json_key_is(key, "cache_creation_input_tokens")) return json_integer_or_skip(c, d, f.cache_creation);
        if (json_key_is(key, "cache_read_input_tokens")) return json_integer_or_skip(c, d, f.cache_read);
        if (json_key_is(key, "output_tokens")) return json_integer_or_skip(c, d, f.output_tokens);
        return c.skip_value(d);
    });
}

inline bool AnthropicReader::parse_error(JsonCursor& c, int depth, AnthropicFields& f) {
    if (!c.at('{')) return c.skip_value(depth);
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "type")) return anthropic_string(c, d, f.error_type);
        if (json_key_is(key, "message")) return anthropic_string(c, d, f.error_message);
        return c.skip_value(d);
    });
}

inline bool AnthropicReader::parse_block(JsonCursor& c, int depth, AnthropicBlock& b) {
    if (!c.at('{')) return c.skip_value(depth);
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "type")) return anthropic_string(c, d, b.type);
        if (json_key_is(key, "text") || json_key_is(key, "thinking")) return anthropic_string(c, d, b.text);
        if (json_key_is(key, "id")) return anthropic_string(c, d, b.id);
        if (json_key_is(key, "name")) return anthropic_string(c, d, b.name);
        if (json_key_is(key, "signature") || json_key_is(key, "data")) return anthropic_string(c, d, b.signature);
        const char* const begin = c.p;
        if (!c.skip_value(d)) return false;
        if (json_key_is(key, "input")) b.input = std::string_view(begin, static_cast<std::size_t>(c.p - begin));
        return true;
    });
}

/* A content_block_delta's delta (the one text it carries is its "text", "thinking", "partial_json"
   or "signature"; its type says which event it makes), or message_delta's (the stop reason). */
inline bool AnthropicReader::parse_delta(JsonCursor& c, int depth, AnthropicFields& f) {
    if (!c.at('{')) return c.skip_value(depth);
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "type")) return anthropic_string(c, d, f.delta_type);
        if (json_key_is(key, "text") || json_key_is(key, "thinking") || json_key_is(key, "partial_json") ||
            json_key_is(key, "signature"))
            return anthropic_string(c, d, f.delta_text);
        if (json_key_is(key, "stop_reason")) return anthropic_string(c, d, f.stop_reason);
        return c.skip_value(d);
    });
}

inline bool AnthropicReader::parse(JsonCursor& c, AnthropicFields& f) {
    c.skip_ws();
    if (!c.at('{')) return c.fail("an event's JSON must be an object");
    const bool ok = c.object(1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "type")) return anthropic_string(c, d, f.type);
        if (json_key_is(key, "index")) return json_integer_or_skip(c, d, f.index);
        if (json_key_is(key, "content_block")) return parse_block(c, d, f.block);
        if (json_key_is(key, "delta")) return parse_delta(c, d, f);
        if (json_key_is(key, "stop_reason")) return anthropic_string(c, d, f.stop_reason);  // a whole reply's
        if (json_key_is(key, "content") && c.at('['))  // a whole reply's blocks
            return c.array(d + 1, [&](int dd) {
                blocks_.emplace_back();
                return parse_block(c, dd, blocks_.back());
            });
        if (json_key_is(key, "usage")) return parse_usage(c, d, f);
        if (json_key_is(key, "error")) return parse_error(c, d, f);
        if (json_key_is(key, "message") && c.at('{'))  // message_start: only its usage matters
            return c.object(d + 1, [&](const JsonSpan& k, int dd) {
                return json_key_is(k, "usage") ? parse_usage(c, dd, f) : c.skip_value(dd);
            });
        return c.skip_value(d);
    });
    if (!ok) return false;
    c.skip_ws();
    return c.p == c.end || c.fail("unexpected text after the object");
}

/* The event most of a stream is, in the very bytes the API sends it:
   {"type":"content_block_delta","index":N,"delta":{"type":"text_delta","text":"..."}}, read without
   the general walk and validated as strictly (fixed bytes, a number, a string): its text, which is
   all it gives (a text delta's index plays no part). False for any other text, which parse() then reads. */
inline bool AnthropicReader::parse_text_delta(std::string_view data, JsonSpan& text) {
    JsonCursor c(data.data(), data.data() + data.size());
    std::int64_t index = -1;
    if (!c.literal("{\"type\":\"content_block_delta\",\"index\":") || !json_at_number(c) ||
        !json_integer_or_skip(c, 1, index) || !c.literal(",\"delta\":{\"type\":\"text_delta\",\"text\":") ||
        !c.at('"') || !c.string_inlined(text) || !c.literal("}}"))
        return false;
    c.skip_ws();
    return c.p == c.end;
}

/* A string as text (room for every span of the message was reserved in read(), so views stay valid). */
inline std::string_view AnthropicReader::decode(const JsonSpan& s) { return decode_in_arena(s, arena_); }

inline void AnthropicReader::add_text(EventType type, const JsonSpan& text) {
    if (text.size() == 0) return;
    Event e;
    e.type = type;
    e.text = decode(text);
    if (!e.text.empty()) events_.push_back(e);
}

/* A thinking block's signature, or a redacted_thinking block's data (kind "redacted_thinking"). */
inline void AnthropicReader::add_signature(const JsonSpan& signature, std::string_view kind) {
    if (signature.size() == 0) return;  // a streamed thinking block opens with an empty one
    Event e;
    e.type = EventType::reasoning;
    e.signature = decode(signature);
    e.raw_reason = kind;
    if (!e.signature.empty()) events_.push_back(e);  // invalid bytes only: nothing to carry
}

/* A block opens: text or thinking may come with some text (and a whole reply's thinking with its
   signature); a redacted_thinking block comes whole; a tool_use block opens a tool call,
   numbered by its place among this turn's calls (not by its block index), with its whole input when
   the reply is not streamed (streamed, its input comes in input_json_delta fragments). */
inline WireReader::Result AnthropicReader::add_block(const AnthropicBlock& b, std::int64_t index, bool whole) {
    const std::string_view type(b.type.begin, b.type.size());
    if (type == "text") add_text(EventType::content, b.text);
    if (type == "thinking") add_text(EventType::reasoning, b.text);
    if (type == "thinking") add_signature(b.signature, {});
    if (type == "redacted_thinking") add_signature(b.signature, type);
    if (type != "tool_use") return Result::ok;
    if (tool_blocks_.size() >= max_tool_calls) {
        why_ = "more tool calls in one reply than the reader keeps (1024)";
        return Result::invalid;
    }
    Event e;
    e.type = EventType::tool_call;
    e.tool_call.index = static_cast<int>(tool_blocks_.size());
    if (b.id.present()) e.tool_call.id = decode(b.id);
    if (b.name.present()) e.tool_call.name = decode(b.name);
    if (whole) e.tool_call.arguments = b.input;
    tool_blocks_.push_back(index);
    events_.push_back(e);
    return Result::ok;
}

/* text_delta, thinking_delta, signature_delta (a thinking block's, whole), or input_json_delta of an
   open tool_use block; other deltas (citations_delta, future ones) carry nothing for the events, nor
   does the input of a server tool's block (server_tool_use: the server runs it, the caller has
   nothing to do). */
inline void AnthropicReader::add_delta(const AnthropicFields& f) {
    const std::string_view type(f.delta_type.begin, f.delta_type.size());
    if (type == "text_delta") add_text(EventType::content, f.delta_text);
    if (type == "thinking_delta") add_text(EventType::reasoning, f.delta_text);
    if (type == "signature_delta") add_signature(f.delta_text, {});
    if (type != "input_json_delta" || f.delta_text.size() == 0) return;
    const auto block = std::find(tool_blocks_.begin(), tool_blocks_.end(), f.index);
    if (block == tool_blocks_.end()) return;
    Event e;
    e.type = EventType::tool_call;
    e.tool_call.index = static_cast<int>(block - tool_blocks_.begin());
    e.tool_call.arguments = decode(f.delta_text);
    events_.push_back(e);
}

/* message_delta: the stop reason in the common vocabulary, then the usage so far (output tokens
   are cumulative: the last count is the total, never a sum). */
inline void AnthropicReader::add_finish(const AnthropicFields& f) {
    const std::string_view raw = f.stop_reason.present() ? decode(f.stop_reason) : std::string_view();
    if (!raw.empty()) {  // one that decodes to nothing is none, as null is
        Event e;
        e.type = EventType::finish;
        e.raw_reason = raw;
        const bool normal = raw == "end_turn" || raw == "stop_sequence";
        if (normal) e.text = tool_blocks_.empty() ? "stop" : "tool_calls";
        else if (raw == "max_tokens") e.text = "length";
        else if (raw == "tool_use") e.text = "tool_calls";
        else if (raw == "refusal") e.text = "content_filter";
        else e.text = raw;
        events_.push_back(e);
    }
    if (f.output_tokens < 0) return;
    if (f.input_tokens >= 0) prompt_tokens_ = f.input_tokens + std::max<std::int64_t>(f.cache_creation, 0) +
                                              std::max<std::int64_t>(f.cache_read, 0);
    Event e;
    e.type = EventType::usage;
    e.usage.prompt_tokens = prompt_tokens_;
    e.usage.completion_tokens = f.output_tokens;
    e.usage.total_tokens = prompt_tokens_ + f.output_tokens;
    events_.push_back(e);
}

/* The server's error as one line: its message (never empty, so error() knows it), then its type. */
inline void AnthropicReader::note_error(std::string_view message, std::string_view type) {
    error_message_.assign(message.empty() ? std::string_view("the server reported an error") : message);
    if (!type.empty()) error_message_.append(" (type: ").append(type).append(")");
}

inline WireReader::Result AnthropicReader::dispatch(const AnthropicFields& f, std::string_view type) {
    if (type == "message_start") {
        tool_blocks_.clear();
        // Cache reads and writes are prompt tokens too (OpenAI's prompt_tokens counts cached ones);
        // input_tokens alone leaves them out.
        prompt_tokens_ = std::max<std::int64_t>(f.input_tokens, 0) + std::max<std::int64_t>(f.cache_creation, 0) +
                         std::max<std::int64_t>(f.cache_read, 0);
        return Result::ok;
    }
    if (type == "content_block_start") return add_block(f.block, f.index, false);
    if (type == "message") return read_whole_reply(f);
    if (type == "content_block_delta") {
        add_delta(f);
        return Result::ok;
    }
    if (type == "message_delta") {
        add_finish(f);
        return Result::ok;
    }
    if (type == "message_stop") return Result::end;
    if (type == "error") {
        note_error(decode(f.error_message), decode(f.error_type));
        return Result::error_event;
    }
    return Result::ok;  // ping, content_block_stop, and event types added later
}

/* A reply sent whole (a server that ignored "stream"): its blocks, then the finish and usage. */
inline WireReader::Result AnthropicReader::read_whole_reply(const AnthropicFields& f) {
    tool_blocks_.clear();
    prompt_tokens_ = 0;
    for (std::size_t i = 0; i < blocks_.size(); ++i)
        if (add_block(blocks_[i], static_cast<std::int64_t>(i), true) == Result::invalid) return Result::invalid;
    add_finish(f);
    return Result::end;
}

inline WireReader::Result AnthropicReader::read(std::string_view event_name, std::string_view data) {
    events_.clear();
    blocks_.clear();
    why_ = "";
    error_offset_ = 0;
    error_message_.clear();
    JsonSpan text;
    if (parse_text_delta(data, text)) {  // what dispatch() would do with it, without the look-ups
        arena_.clear();
        if (!arena_.reserve(text.size())) return Result::out_of_memory;
        add_text(EventType::content, text);
        return Result::ok;
    }
    AnthropicFields f;
    JsonCursor c(data.data(), data.data() + data.size());
    if (!parse(c, f)) {
        if (event_name == "error") {  // "event: error" with a plain-text message
            note_error(excerpt(trim_ascii_space(data), 200), {});
            return Result::error_event;
        }
        why_ = c.why;
        error_offset_ = static_cast<std::size_t>(c.p - c.start);
        return Result::invalid;
    }
    // Decoding never lengthens a string: one reservation for every span keeps the views stable.
    arena_.clear();
    auto block_room = [](const AnthropicBlock& b) { return b.id.size() + b.name.size() + b.text.size() + b.signature.size(); };
    std::size_t room = f.type.size() + block_room(f.block) + f.delta_text.size() + f.stop_reason.size() +
                       f.error_type.size() + f.error_message.size();
    for (const AnthropicBlock& b : blocks_) room += block_room(b);
    if (!arena_.reserve(room)) return Result::out_of_memory;
    // The data's type decides; the event name stands in when the data has none.
    const std::string_view type = f.type.present() ? decode(f.type) : event_name;
    return dispatch(f, type);
}

inline Error AnthropicReader::error() const {
    if (!error_message_.empty()) return make_error(ErrorCode::server_error, "server error: " + error_message_);
    return make_error(ErrorCode::protocol, std::string(why_) + " at byte " + std::to_string(error_offset_));
}

inline void AnthropicReader::reset() {
    AnthropicReader next{Unreserved()};
    keep_rooms(*this, next, &AnthropicReader::blocks_, &AnthropicReader::tool_blocks_, &AnthropicReader::events_,
               &AnthropicReader::arena_);
    *this = std::move(next);
    events_.reserve(most_events);  // when the room was given back
}

inline std::unique_ptr<WireReader> make_anthropic_reader() { return std::make_unique<AnthropicReader>(); }

#if !defined(LLM_STREAM_NO_STUB)
/* The stub in this API's events: message_start with the input tokens, a thinking block when
   reasoning is asked for, one content block (text, or a tool_use whose input streams in pieces),
   message_delta with the stop reason and output tokens, message_stop. */
/* A thinking block at index 0: its text in one thinking_delta, then its signature_delta. */
LLM_STREAM_COLD inline void stub_anthropic_thinking(StubBody& body, const std::string& reasoning) {
    body.sse("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                                    "{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}");
    std::string json = "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":";
    json_write_string(json, reasoning);
    body.sse("content_block_delta", json + "}}");
    body.sse("content_block_delta", std::string("{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                                                "{\"type\":\"signature_delta\",\"signature\":\"") + stub_signature + "\"}}");
    body.sse("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}");
}

LLM_STREAM_COLD inline StubResponse stub_anthropic(const StubReply& reply, const std::string& model) {
    StubBody body("text/event-stream");
    std::string json = "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_stub\",\"type\":\"message\","
                       "\"role\":\"assistant\",\"model\":";
    json_write_string(json, model);
    json += ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":" +
            std::to_string(reply.prompt_tokens) + ",\"output_tokens\":0}}}";
    body.sse("message_start", json);
    if (!reply.reasoning.empty()) stub_anthropic_thinking(body, reply.reasoning);
    const std::string index = reply.reasoning.empty() ? "0" : "1";  // after the thinking block
    if (reply.tool) {
        json = "{\"type\":\"content_block_start\",\"index\":" + index + ",\"content_block\":{\"type\":\"tool_use\","
               "\"id\":\"toolu_stub_1\",\"name\":";
        json_write_string(json, reply.tool->name);
        body.sse("content_block_start", json + ",\"input\":{}}}");
    } else {
        body.sse("content_block_start", "{\"type\":\"content_block_start\",\"index\":" + index + ",\"content_block\":"
                                        "{\"type\":\"text\",\"text\":\"\"}}");
    }
    stub_pieces(reply.tool ? reply.arguments : reply.text, [&](std::string_view piece) {
        json = "{\"type\":\"content_block_delta\",\"index\":" + index +
               (reply.tool ? ",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":" : ",\"delta\":{\"type\":\"text_delta\",\"text\":");
        json_write_string(json, piece);
        body.sse("content_block_delta", json + "}}");
    });
    body.sse("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":" + index + "}");
    json = reply.tool ? "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\""
                      : "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"";
    body.sse("message_delta", json + ",\"stop_sequence\":null},\"usage\":{\"output_tokens\":" +
                                  std::to_string(reply.completion_tokens) + "}}");
    body.sse("message_stop", "{\"type\":\"message_stop\"}");
    return body.finish();
}

#endif  // LLM_STREAM_NO_STUB
#endif  // LLM_STREAM_NO_ANTHROPIC

#if !defined(LLM_STREAM_NO_GEMINI)
/* ------------------------------------------------------------------------------------------------
   Google Gemini streamGenerateContent: request body, stream reader, stub
   POST /models/{model}:streamGenerateContent?alt=sse; each SSE event a GenerateContentResponse
   ------------------------------------------------------------------------------------------------ */

/* Gemini takes images as inlineData (base64 bytes, from ContentPart bytes or a base64 data: URL) or
   as fileData (an http(s) URL, which the API fetches itself; its MIME type is optional and not
   guessed here). A data: URL that is not base64 cannot be carried. */
LLM_STREAM_COLD inline Error write_gemini_image(std::string& out, const ContentPart& part, const std::string& at) {
    if (part.bytes) {
        out += "{\"inlineData\":{\"mimeType\":";
        json_write_string(out, part.mime_type);
        out += ",\"data\":\"";
        base64_append(out, *part.bytes);
        out += "\"}}";
        return {};
    }
    if (!starts_with(part.text, "data:")) {
        out += "{\"fileData\":{\"fileUri\":";
        json_write_string(out, part.text);
        out += "}}";
        return {};
    }
    std::string_view mime, payload;
    if (!split_base64_data_url(part.text, mime, payload) || !image_mime_type(mime))
        return invalid_argument(at + ".url: Gemini takes a data: URL only as data:image/...;base64,...");
    out += "{\"inlineData\":{\"mimeType\":";
    json_write_string(out, mime);
    out += ",\"data\":";
    json_write_string(out, payload);
    out += "}}";
    return {};
}

/* A message's text and images as Gemini parts (the image detail hint has no Gemini equivalent). */
LLM_STREAM_COLD inline Error write_gemini_content_parts(std::string& out, const Message& m, const std::string& at) {
    if (m.parts.empty()) {
        if (m.content.empty()) return {};
        out += "{\"text\":";
        json_write_string(out, m.content);
        out += '}';
        return {};
    }
    for (std::size_t k = 0; k < m.parts.size(); ++k) {
        if (k) out += ',';
        if (m.parts[k].kind == ContentPart::Kind::image) {
            if (Error e = write_gemini_image(out, m.parts[k], at + "." + indexed("content", k))) return e;
            continue;
        }
        out += "{\"text\":";
        json_write_string(out, m.parts[k].text);
        out += '}';
    }
    return {};
}

/* An assistant's calls as functionCall parts, args spliced (Gemini wants an object), each with the
   thoughtSignature it came with (Gemini 3 refuses a call sent back without it). The ids are not
   sent: Gemini pairs calls and responses by name and order. */
LLM_STREAM_COLD inline Error write_gemini_calls(std::string& out, const Message& m, const std::string& at) {
    for (std::size_t k = 0; k < m.tool_calls.size(); ++k) {
        const ToolCall& call = m.tool_calls[k];
        const std::string_view args = trim_ascii_space(call.arguments);
        if (args.front() != '{')
            return invalid_argument(at + "." + indexed("tool_calls", k) + ".arguments must be a JSON object for Gemini");
        if (k || !m.parts.empty() || !m.content.empty()) out += ',';
        out += "{\"functionCall\":{\"name\":";
        json_write_string(out, call.name);
        out += ",\"args\":";
        out.append(args.data(), args.size());
        out += '}';
        if (!call.signature.empty()) json_write_string(out.append(",\"thoughtSignature\":"), call.signature);
        out += '}';
    }
    return {};
}

/* A model turn's own signature (Message::reasoning_signature) goes back on its last text or image
   part, where a reply's signature comes; with no such part, on an empty text part after the calls. */
LLM_STREAM_COLD inline void write_gemini_signature(std::string& out, const Message& m, bool on_last_part) {
    if (m.reasoning_signature.empty()) return;
    if (on_last_part) {
        out.pop_back();  // the part's closing brace
    } else {
        out += out.back() == '[' ? "{\"text\":\"\"" : ",{\"text\":\"\"";
    }
    json_write_string(out.append(",\"thoughtSignature\":"), m.reasoning_signature);
    out += '}';
}

/* A tool result as a functionResponse part: Gemini names the function, found through the call's id
   on an earlier assistant message. A result that is a JSON object is the response; other text is
   {"output": text}, the member Gemini documents for a function's output. */
LLM_STREAM_COLD inline Error write_gemini_result(std::string& out, MessageList messages, std::size_t i) {
    const Message& m = messages[i];
    const std::string_view called = called_tool_name(messages, i);
    const std::string_view name = called.empty() ? std::string_view(m.name) : called;
    if (name.empty())
        return invalid_argument(indexed("messages", i) + ".tool_call_id \"" + excerpt(m.tool_call_id, 70) +
                                "\" answers no earlier tool call: Gemini needs the function's name");
    out += "{\"functionResponse\":{\"name\":";
    json_write_string(out, name);
    out += ",\"response\":";
    const std::string text = message_text(m);
    const std::string_view trimmed = trim_ascii_space(text);
    if (!trimmed.empty() && trimmed.front() == '{' && !check_json(trimmed)) {
        out.append(trimmed.data(), trimmed.size());
    } else {
        out += "{\"output\":";
        json_write_string(out, text);
        out += '}';
    }
    out += "}}";
    return {};
}

/* One turn of `contents`: a user or model message, or the tool results that follow each other, in
   one user turn (Gemini wants a turn's function responses together). Advances i past what it wrote. */
LLM_STREAM_COLD inline Error write_gemini_turn(std::string& out, MessageList messages, std::size_t& i) {
    const Message& m = messages[i];
    const std::string at = indexed("messages", i);
    if (!m.name.empty() && m.role != Role::tool) return invalid_argument(at + ".name: Gemini has no participant names");
    ExtraMembers extra;
    if (read_extra_members(m.extra_json, "extra_json", extra)) extra = ExtraMembers{};  // refused before this
    out += m.role == Role::assistant ? "{\"role\":\"model\"" : "{\"role\":\"user\"";
    if (open_member(out, extra, "parts")) {
        out += '[';
        if (m.role == Role::tool) {
            for (std::size_t first = i; i < messages.size() && messages[i].role == Role::tool; ++i) {
                if (i > first) out += ',';
                if (Error e = write_gemini_result(out, messages, i)) return e;
            }
            --i;
        } else {
            // Reasoning is not sent back: Gemini wants thought signatures, not thought text.
            if (Error e = write_gemini_content_parts(out, m, at)) return e;
            const bool has_part = out.back() == '}';
            if (has_part) write_gemini_signature(out, m, true);
            if (Error e = write_gemini_calls(out, m, at)) return e;
            if (!has_part) write_gemini_signature(out, m, false);
        }
        out += ']';
    }
    if (!extra.text.empty()) out.append(",").append(extra.text.data(), extra.text.size());
    out += '}';
    ++i;
    return {};
}

/* System and developer messages, wherever they are, as systemInstruction's parts. */
LLM_STREAM_COLD inline void write_gemini_system(std::string& out, MessageList messages, const ExtraMembers& extra) {
    const auto is_system = [](const Message& m) { return m.role == Role::system || m.role == Role::developer; };
    if (std::none_of(messages.begin(), messages.end(), is_system) || !open_member(out, extra, "systemInstruction"))
        return;
    out += "{\"parts\":[";
    bool first = true;
    for (const Message& m : messages) {
        if (!is_system(m)) continue;
        out += first ? "{\"text\":" : ",{\"text\":";
        write_message_text(out, m);
        out += '}';
        first = false;
    }
    out += "]}";
}

/* Tools as functionDeclarations; the JSON Schema goes to parametersJsonSchema, which takes JSON Schema
   as it is (`parameters` takes Gemini's OpenAPI subset). */
LLM_STREAM_COLD inline void write_gemini_tools(std::string& out, const std::vector<Tool>& tools) {
    out += "[{\"functionDeclarations\":[";
    for (std::size_t i = 0; i < tools.size(); ++i) {
        out += i ? ",{\"name\":" : "{\"name\":";
        json_write_string(out, tools[i].name);
        if (!tools[i].description.empty()) {
            out += ",\"description\":";
            json_write_string(out, tools[i].description);
        }
        const std::string_view parameters = trim_ascii_space(tools[i].parameters);
        if (!parameters.empty()) out.append(",\"parametersJsonSchema\":").append(parameters.data(), parameters.size());
        out += '}';
    }
    out += "]}]";
}

/* tool_choice as functionCallingConfig: auto AUTO, none NONE, required ANY, a named tool ANY limited
   to it. Gemini has no switch for parallel calls: only true (what it does anyway) is accepted. */
LLM_STREAM_COLD inline Error write_gemini_tool_options(std::string& out, const ChatOptions& options, const ExtraMembers& extra) {
    if (options.parallel_tool_calls && !*options.parallel_tool_calls)
        return invalid_argument("parallel_tool_calls: Gemini cannot be told to make one call at a time");
    if (options.tools.empty()) return {};
    if (open_member(out, extra, "tools")) write_gemini_tools(out, options.tools);
    const ToolChoice& choice = options.tool_choice;
    if (choice.mode == ToolChoice::Mode::server_default || !open_member(out, extra, "toolConfig")) return {};
    static const char* const modes[] = {"AUTO", "AUTO", "NONE", "ANY", "ANY"};  // by ToolChoice::Mode
    out.append("{\"functionCallingConfig\":{\"mode\":\"").append(modes[static_cast<int>(choice.mode)]).append("\"");
    if (choice.mode == ToolChoice::Mode::function) {
        out += ",\"allowedFunctionNames\":[";
        json_write_string(out, choice.name);
        out += ']';
    }
    out += "}}";
    return {};
}

/* Reasoning asked for: thinkingConfig with includeThoughts (Gemini shows no thought otherwise) and
   the level (Gemini 3's thinkingLevel) or the budget (Gemini 2.5's thinkingBudget); the API refuses
   both at once, and so does write_gemini_body. */
LLM_STREAM_COLD inline void write_gemini_thinking_config(std::string& out, const ChatOptions& options) {
    if (options.reasoning_effort.empty() && !options.reasoning_budget) return;
    out += ",\"thinkingConfig\":{\"includeThoughts\":true";
    if (options.reasoning_budget) out += ",\"thinkingBudget\":" + std::to_string(*options.reasoning_budget);
    else json_write_string(out.append(",\"thinkingLevel\":"), options.reasoning_effort);
    out += '}';
}

/* generationConfig: sampling, length, stop sequences, seed, JSON output (responseJsonSchema takes
   JSON Schema as it is; the schema's name and strictness have no Gemini equivalent) and thinking. */
LLM_STREAM_COLD inline void write_gemini_generation_config(std::string& out, const ChatOptions& options) {
    const std::size_t start = out.size();
    const ExtraMembers none;
    write_number_member(out, none, "temperature", options.temperature);
    write_number_member(out, none, "topP", options.top_p);
    if (options.max_tokens) out.append(",\"maxOutputTokens\":").append(std::to_string(*options.max_tokens));
    if (options.seed) out.append(",\"seed\":").append(std::to_string(*options.seed));
    write_number_member(out, none, "presencePenalty", options.presence_penalty);
    write_number_member(out, none, "frequencyPenalty", options.frequency_penalty);
    if (!options.stop.empty()) {
        out += ",\"stopSequences\":[";
        for (std::size_t i = 0; i < options.stop.size(); ++i) {
            if (i) out += ',';
            json_write_string(out, options.stop[i]);
        }
        out += ']';
    }
    const ResponseFormat& format = options.response_format;
    if (format.type != ResponseFormat::Type::text) out += ",\"responseMimeType\":\"application/json\"";
    if (format.type == ResponseFormat::Type::json_schema) {
        const std::string_view schema = trim_ascii_space(format.schema);
        out.append(",\"responseJsonSchema\":").append(schema.data(), schema.size());
    }
    write_gemini_thinking_config(out, options);
    if (out.size() > start) {
        out[start] = '{';  // the first member's comma opens the object
        out += '}';
    }
}

/* The body of streamGenerateContent: the model is in the URL and streaming in its ?alt=sse, so neither
   is in the body. Gemini has no end-user id ("user"); usage always comes, so include_usage is moot. */
LLM_STREAM_COLD inline Error write_gemini_body(MessageList messages, const ChatOptions& options, const std::string&,
                               const ExtraMembers& extra, std::string& body) {
    if (!options.user.empty()) return invalid_argument("user: Gemini has no end-user id");
    if (!options.reasoning_effort.empty() && options.reasoning_budget)
        return invalid_argument("reasoning_budget: Gemini takes a thinking level (reasoning_effort) or a budget, not both");
    if (extra.has("contents")) return invalid_argument("extra JSON may not set \"contents\": the client sets it");
    body.clear();
    body.reserve(body_size_estimate(messages, options));
    body += "{\"contents\":[";
    bool first = true;
    for (std::size_t i = 0; i < messages.size();) {
        if (messages[i].role == Role::system || messages[i].role == Role::developer) {
            ++i;
            continue;
        }
        if (!first) body += ',';
        first = false;
        if (Error e = write_gemini_turn(body, messages, i)) return e;
    }
    if (first) return invalid_argument("messages: only system messages, and Gemini's contents may not be empty");
    body += ']';
    write_gemini_system(body, messages, extra);
    if (Error e = write_gemini_tool_options(body, options, extra)) return e;
    const std::size_t before = body.size();
    if (open_member(body, extra, "generationConfig")) {
        write_gemini_generation_config(body, options);
        if (body.back() == ':') body.resize(before);  // no option set: no member
    }
    return end_body(body, extra);
}

/* Gemini's finishReason in the common vocabulary; STOP after function calls is a tool-call stop. */
inline std::string_view gemini_finish_reason(std::string_view raw, bool made_calls) noexcept {
    if (raw == "STOP") return made_calls ? "tool_calls" : "stop";
    if (raw == "MAX_TOKENS") return "length";
    for (std::string_view filtered : {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"})
        if (raw == filtered) return "content_filter";
    return raw;
}

/* Gemini's streamGenerateContent: each message a whole GenerateContentResponse (or, read whole
   without ?alt=sse, a JSON array of them). Text and thought parts come as they are made; a
   functionCall part is a whole call; a part's thoughtSignature is the call's, or a reasoning
   event's after the part's text. Gemini writes text as raw UTF-8 cut between tokens, so no
   surrogate pair is split between two messages; one inside a string is joined by the decoding. */
class GeminiReader final : public WireReader {
public:
    GeminiReader() {
        calls_made_.assign(max_choices, 0);
        events_.reserve(usual_events);
    }
    Result read(std::string_view event_name, std::string_view data) override;
    const std::vector<Event>& events() const noexcept override { return events_; }
    Error error() const override;
    void reset() override;

private:
    // Room for a message's usual events and the last one's finish and usage: the last message of a
    // stream allocates nothing.
    static constexpr std::size_t usual_events = 8;
    explicit GeminiReader(Unreserved) noexcept {}
    struct PartFields {
        JsonSpan text, call_name, call_id;
        JsonSpan signature;  // thoughtSignature: on a functionCall part, a text part, or a thought
        const char* args_begin = nullptr;  // the functionCall's args object, as sent
        const char* args_end = nullptr;
        bool thought = false;
        bool is_call = false;
    };
    struct CandidateFields {
        std::int64_t index = 0;
        std::size_t parts_begin = 0, parts_end = 0;  // its parts in parts_
        JsonSpan finish_reason;
    };

    void forget_message() noexcept;  // the fields of the last message read
    bool read_known_shape(std::string_view data);
    bool read_known_tail(std::string_view rest);
    void learn_shape(std::string_view data);
    Result parse_message(std::string_view data);
    Result finish_message();
    bool parse_response(JsonCursor& c, int depth);
    bool parse_response_member(JsonCursor& c, const JsonSpan& key, int depth);
    bool parse_candidate(JsonCursor& c, int depth);
    bool parse_part(JsonCursor& c, int depth);
    bool parse_call(JsonCursor& c, int depth, PartFields& part);
    bool parse_usage(JsonCursor& c, int depth);
    bool parse_feedback(JsonCursor& c, int depth);
    bool parse_error(JsonCursor& c, int depth);
    std::string_view decode(const JsonSpan& s);
    [[nodiscard]] bool build_events();
    void add_part_event(const PartFields& part, int candidate);
    void add_finish_event(int candidate, const JsonSpan& raw, bool prompt_blocked);
    void add_usage_event();

    std::vector<CandidateFields> candidates_;  // capacity kept between messages, as for the vectors below
    std::vector<PartFields> parts_;
    std::vector<int> calls_made_;  // per candidate, in this stream: the next call's index
    bool finished_ = false;        // a finish reason came in this stream: usage is final from then on
    JsonSpan block_reason_;        // promptFeedback.blockReason: the prompt was refused, no candidates come
    std::vector<Event> events_;
    ByteBuffer arena_;
    bool have_usage_ = false;
    std::int64_t prompt_ = 0, candidates_tokens_ = 0, thoughts_ = 0, total_ = 0;
    bool have_error_ = false;
    JsonSpan error_message_, error_status_;
    std::string_view error_code_;
    const char* why_ = "";
    std::size_t error_offset_ = 0;
    std::string server_message_;  // only after an error event: once per stream
    KnownShape shape_;                   // of a message that is one candidate's text (KnownShape)
    std::int64_t shape_candidate_ = 0;   // that candidate
    KnownTail tail_;                     // the members after its candidates (usage, model version, ...)
    bool tail_usage_ = false;            // whether they hold the usage
    std::size_t candidates_members_ = 0; // "candidates" members of the message read
    std::size_t usage_members_ = 0;      // "usageMetadata" members of the message read
    const char* candidates_end_ = nullptr;  // where the last one's value ended
};

inline bool GeminiReader::parse_usage(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    have_usage_ = true;
    prompt_ = candidates_tokens_ = thoughts_ = total_ = 0;  // a missing count is 0
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "promptTokenCount")) return json_integer_or_skip(c, d, prompt_);
        if (json_key_is(key, "candidatesTokenCount")) return json_integer_or_skip(c, d, candidates_tokens_);
        if (json_key_is(key, "thoughtsTokenCount")) return json_integer_or_skip(c, d, thoughts_);
        if (json_key_is(key, "totalTokenCount")) return json_integer_or_skip(c, d, total_);
        return c.skip_value(d);
    });
}

inline bool GeminiReader::parse_call(JsonCursor& c, int depth, PartFields& part) {
    if (!c.at('{')) return c.skip_value(depth);
    part.is_call = true;
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "name") && c.at('"')) return c.string(part.call_name);
        if (json_key_is(key, "id") && c.at('"')) return c.string(part.call_id);
        if (!json_key_is(key, "args") || !c.at('{')) return c.skip_value(d);
        part.args_begin = c.p;
        if (!c.skip_value(d)) return false;
        part.args_end = c.p;
        return true;
    });
}

inline bool GeminiReader::parse_part(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    PartFields part;
    const bool ok = c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "text") && c.at('"')) return c.string(part.text);
        if (json_key_is(key, "thought") && c.at('t')) {
            part.thought = true;
            return c.literal("true", 4);
        }
        if (json_key_is(key, "functionCall")) return parse_call(c, d, part);
        if (json_key_is(key, "thoughtSignature") && c.at('"')) return c.string(part.signature);
        return c.skip_value(d);  // inlineData, executableCode, ...
    });
    if (ok) parts_.push_back(part);
    return ok;
}

inline bool GeminiReader::parse_candidate(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    CandidateFields candidate;
    candidate.parts_begin = parts_.size();
    const bool ok = c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "index")) return json_integer_or_skip(c, d, candidate.index);
        if (json_key_is(key, "finishReason") && c.at('"')) return c.string(candidate.finish_reason);
        if (!json_key_is(key, "content") || !c.at('{')) return c.skip_value(d);  // safetyRatings, ...
        return c.object(d + 1, [&](const JsonSpan& k, int dd) {
            if (!json_key_is(k, "parts") || !c.at('[')) return c.skip_value(dd);
            return c.array(dd + 1, [&](int ddd) { return parse_part(c, ddd); });
        });
    });
    if (!ok) return false;
    static_assert(max_choices == 128, "the message below names the range");
    if (candidate.index < 0 || candidate.index >= max_choices) return c.fail("a candidate's index must be from 0 to 127");
    candidate.parts_end = parts_.size();
    candidates_.push_back(candidate);
    return true;
}

inline bool GeminiReader::parse_error(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    have_error_ = true;
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "message") && c.at('"')) return c.string(error_message_);
        if (json_key_is(key, "status") && c.at('"')) return c.string(error_status_);
        if (!json_key_is(key, "code")) return c.skip_value(d);
        const char* begin = c.p;
        if (!c.skip_value(d)) return false;
        error_code_ = std::string_view(begin, static_cast<std::size_t>(c.p - begin));
        return true;
    });
}

inline bool GeminiReader::parse_feedback(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "blockReason") && c.at('"')) return c.string(block_reason_);
        return c.skip_value(d);
    });
}

inline bool GeminiReader::parse_response_member(JsonCursor& c, const JsonSpan& key, int d) {
    if (json_key_is(key, "candidates") && c.at('[')) {
        ++candidates_members_;
        const bool ok = c.array(d + 1, [&](int dd) { return parse_candidate(c, dd); });
        candidates_end_ = c.p;
        return ok;
    }
    if (json_key_is(key, "usageMetadata")) {
        ++usage_members_;
        return parse_usage(c, d);
    }
    if (json_key_is(key, "promptFeedback")) return parse_feedback(c, d);
    if (json_key_is(key, "error")) return parse_error(c, d);
    return c.skip_value(d);  // modelVersion, responseId, fields added later
}

inline bool GeminiReader::parse_response(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.fail("a GenerateContentResponse must be an object");
    return c.object(depth + 1, [&](const JsonSpan& key, int d) { return parse_response_member(c, key, d); });
}

/* A message of the known shape: one candidate's text, then the rest of the response object (usage,
   model version, ...), which must hold no other candidate. False: read it in full. */
inline bool GeminiReader::read_known_shape(std::string_view data) {
    JsonSpan text;
    const char* const rest = shape_.match(data, text);
    if (!rest) return false;
    if (!read_known_tail(std::string_view(rest, static_cast<std::size_t>(data.data() + data.size() - rest)))) {
        JsonCursor c(rest, data.data() + data.size());
        if (!c.object_rest(1, [&](const JsonSpan& key, int d) { return parse_response_member(c, key, d); })) return false;
        c.skip_ws();
        if (c.p != c.end || !candidates_.empty()) return false;
    }
    PartFields part;
    part.text = text;
    parts_.push_back(part);
    CandidateFields candidate;
    candidate.index = shape_candidate_;
    candidate.parts_end = 1;
    candidates_.push_back(candidate);
    return true;
}

/* Which usage count an integer of the known tail is: its slot in read_known_tail(), or -1. */
inline int gemini_usage_slot(const JsonSpan& outer, const JsonSpan& name) noexcept {
    if (!json_key_is(outer, "usageMetadata")) return -1;
    if (json_key_is(name, "promptTokenCount")) return 0;
    if (json_key_is(name, "candidatesTokenCount")) return 1;
    if (json_key_is(name, "thoughtsTokenCount")) return 2;
    if (json_key_is(name, "totalTokenCount")) return 3;
    return -1;
}

/* The members after the candidates when they are the known tail: what parse_usage() would take. */
inline bool GeminiReader::read_known_tail(std::string_view rest) {
    std::int64_t counts[KnownTail::slots] = {};  // a missing count is 0
    if (!tail_.match(rest, counts)) return false;
    have_usage_ = tail_usage_;
    prompt_ = counts[0];
    candidates_tokens_ = counts[1];
    thoughts_ = counts[2];
    total_ = counts[3];
    return true;
}

/* Keeps the shape of a message just read in full when it is one candidate's text part and nothing
   else in the candidates. */
inline void GeminiReader::learn_shape(std::string_view data) {
    shape_.forget();
    if (candidates_members_ != 1 || candidates_.size() != 1 || parts_.size() != 1) return;
    const PartFields& part = parts_.front();
    if (part.is_call || part.thought || part.signature.present() || part.text.size() == 0 ||
        candidates_.front().finish_reason.present() || part.text.end >= candidates_end_)
        return;
    shape_.learn(data, part.text, candidates_end_);
    shape_candidate_ = candidates_.front().index;
    // A tail is known only when all it gives is one usage (a second would reset the counts).
    tail_.forget();
    if (usage_members_ > 1 || block_reason_.present()) return;
    tail_usage_ = have_usage_;
    tail_.learn(std::string_view(candidates_end_, static_cast<std::size_t>(data.data() + data.size() - candidates_end_)),
                gemini_usage_slot);
}

inline std::string_view GeminiReader::decode(const JsonSpan& s) {
    if (!s.escaped && utf8_valid(s.begin, s.end)) return {s.begin, s.size()};
    char* out = arena_.data() + arena_.size();  // room was reserved for every span
    const std::size_t n = json_decode_string(s.begin, s.end, out);
    arena_.resize_up_reserved(n);
    return {out, n};
}

/* A text or thought part's text, then its signature in a reasoning event of its own; a call with its
   signature. */
inline void GeminiReader::add_part_event(const PartFields& part, int candidate) {
    Event e;
    e.choice = candidate;
    if (!part.is_call) {
        e.type = part.thought ? EventType::reasoning : EventType::content;
        e.text = decode(part.text);
        if (!e.text.empty()) events_.push_back(e);
        if (part.signature.size() == 0) return;
        e.type = EventType::reasoning;
        e.text = {};
        e.signature = decode(part.signature);
        events_.push_back(e);
        return;
    }
    e.type = EventType::tool_call;
    e.tool_call.signature = decode(part.signature);
    e.tool_call.index = calls_made_[static_cast<std::size_t>(candidate)]++;
    e.tool_call.id = part.call_id.present() ? decode(part.call_id) : std::string_view();
    e.tool_call.name = part.call_name.present() ? decode(part.call_name) : std::string_view();
    if (part.args_begin) {
        char* out = arena_.data() + arena_.size();
        const std::size_t n = json_compact(part.args_begin, part.args_end, out);
        arena_.resize_up_reserved(n);
        e.tool_call.arguments = std::string_view(out, n);
    } else {
        e.tool_call.arguments = std::string_view("{}");  // a function without parameters
    }
    events_.push_back(e);
}

/* A candidate's finish reason; a blocked prompt (every block reason is a filter) ends choice 0. A
   reason that decodes to nothing is none, as a missing one is. */
inline void GeminiReader::add_finish_event(int candidate, const JsonSpan& raw, bool prompt_blocked) {
    Event e;
    e.type = EventType::finish;
    e.choice = candidate;
    e.raw_reason = decode(raw);
    if (e.raw_reason.empty()) return;
    e.text = prompt_blocked ? "content_filter"
                            : gemini_finish_reason(e.raw_reason, calls_made_[static_cast<std::size_t>(candidate)] > 0);
    events_.push_back(e);
    finished_ = true;
}

/* Usage comes with every message, cumulative: it is passed on once the completion has finished (in
   the finish's message or a later one), so it comes once, as other APIs' usage does. Thinking tokens
   are output tokens, as OpenAI's completion_tokens counts reasoning. */
inline void GeminiReader::add_usage_event() {
    Event e;
    e.type = EventType::usage;
    e.usage.prompt_tokens = prompt_;
    e.usage.completion_tokens = candidates_tokens_ + thoughts_;
    e.usage.total_tokens = total_;
    events_.push_back(e);
}

inline bool GeminiReader::build_events() {
    // Decoding and compacting never lengthen the text, so one reservation keeps every view stable.
    std::size_t room = 0;
    for (const PartFields& p : parts_)
        room += p.text.size() + p.call_name.size() + p.call_id.size() + p.signature.size() +
                static_cast<std::size_t>(p.args_end - p.args_begin);
    for (const CandidateFields& ch : candidates_) room += ch.finish_reason.size();
    room += block_reason_.size();
    arena_.clear();
    if (!arena_.reserve(room)) return false;
    for (const CandidateFields& ch : candidates_) {
        const int candidate = static_cast<int>(ch.index);
        for (std::size_t i = ch.parts_begin; i < ch.parts_end; ++i) add_part_event(parts_[i], candidate);
        if (ch.finish_reason.present()) add_finish_event(candidate, ch.finish_reason, false);
    }
    if (block_reason_.present()) add_finish_event(0, block_reason_, true);
    if (have_usage_ && finished_) add_usage_event();
    return true;
}

inline void GeminiReader::forget_message() noexcept {
    candidates_.clear();
    parts_.clear();
    have_usage_ = have_error_ = false;
    error_message_ = error_status_ = block_reason_ = {};
    error_code_ = {};
    candidates_members_ = 0;
    usage_members_ = 0;
    candidates_end_ = nullptr;
}

inline WireReader::Result GeminiReader::read(std::string_view, std::string_view data) {
    events_.clear();
    server_message_.clear();  // error() tells an error event from invalid JSON by it
    forget_message();
    if (read_known_shape(data)) return finish_message();
    forget_message();
    return parse_message(data);
}

inline WireReader::Result GeminiReader::parse_message(std::string_view data) {
    JsonCursor c(data.data(), data.data() + data.size());
    c.skip_ws();
    if (c.p == c.end) return Result::ok;  // an empty event: a keep-alive
    // A whole reply read without ?alt=sse is an array of the responses the stream would have sent.
    const bool one_response = !c.at('[');
    bool ok = one_response ? parse_response(c, 0) : c.array(1, [&](int d) { return parse_response(c, d); });
    c.skip_ws();
    if (ok && c.p != c.end) ok = c.fail("unexpected text after the object");
    if (!ok) {
        why_ = c.why;
        error_offset_ = static_cast<std::size_t>(c.p - c.start);
        return Result::invalid;
    }
    if (one_response && !have_error_) learn_shape(data);
    return finish_message();
}

/* The events of the message read (or the error it reported). */
inline WireReader::Result GeminiReader::finish_message() {
    if (have_error_) {
        if (error_message_.present()) server_message_ = json_string_text(error_message_);
        if (server_message_.empty()) server_message_ = "the server reported an error";  // none, or nothing readable
        if (error_status_.present()) server_message_ += " (status: " + json_string_text(error_status_) + ")";
        if (!error_code_.empty()) server_message_ += " (code: " + excerpt(error_code_, 40) + ")";
        return Result::error_event;
    }
    return build_events() ? Result::ok : Result::out_of_memory;
}

inline Error GeminiReader::error() const {
    if (!server_message_.empty()) return make_error(ErrorCode::server_error, "server error: " + server_message_);
    return make_error(ErrorCode::protocol, std::string(why_) + " at byte " + std::to_string(error_offset_));
}

inline void GeminiReader::reset() {
    GeminiReader next{Unreserved()};
    std::fill(calls_made_.begin(), calls_made_.end(), 0);
    next.calls_made_ = std::move(calls_made_);  // one count per candidate: its size never changes
    keep_rooms(*this, next, &GeminiReader::candidates_, &GeminiReader::parts_, &GeminiReader::events_,
               &GeminiReader::arena_, &GeminiReader::shape_, &GeminiReader::tail_);
    *this = std::move(next);
    events_.reserve(usual_events);  // when the room was given back
}

inline std::unique_ptr<WireReader> make_gemini_reader() {
    return std::make_unique<GeminiReader>();
}

#if !defined(LLM_STREAM_NO_STUB)
/* Gemini's stream: a thought part first when reasoning is asked for, then the text in pieces, or one
   whole functionCall (with an id, as Gemini sends when it has one, so the reply can go back into a
   conversation); with reasoning, the call or the last text part has a thoughtSignature. The last
   chunk brings STOP and the usage. The body then ends. */
LLM_STREAM_COLD inline StubResponse stub_gemini(const StubReply& reply, const std::string& model) {
    StubBody body("text/event-stream");
    std::string json;
    const auto chunk = [&](std::string_view part_json, bool last) {
        json = "{\"candidates\":[{\"content\":{\"parts\":[";
        json.append(part_json.data(), part_json.size());
        json += "],\"role\":\"model\"},";
        if (last) json += "\"finishReason\":\"STOP\",";
        json += "\"index\":0}],";
        if (last) {
            json += "\"usageMetadata\":{\"promptTokenCount\":" + std::to_string(reply.prompt_tokens) +
                    ",\"candidatesTokenCount\":" + std::to_string(reply.completion_tokens) +
                    ",\"totalTokenCount\":" + std::to_string(reply.prompt_tokens + reply.completion_tokens) + "},";
        }
        json += "\"modelVersion\":";
        json_write_string(json, model);
        json += '}';
        body.sse({}, json);
    };
    std::string part;
    if (!reply.reasoning.empty()) {
        json_write_string(part.assign("{\"text\":"), reply.reasoning);
        chunk(part + ",\"thought\":true}", false);
    }
    const std::string signature = reply.reasoning.empty() ? "}" : std::string(",\"thoughtSignature\":\"") + stub_signature + "\"}";
    if (reply.tool) {
        part = "{\"functionCall\":{\"id\":\"call_stub_1\",\"name\":";
        json_write_string(part, reply.tool->name);
        chunk(part + ",\"args\":" + reply.arguments + "}" + signature, true);
        return body.finish();
    }
    std::size_t left = reply.completion_tokens;
    stub_pieces(reply.text, [&](std::string_view piece) {
        part = "{\"text\":";
        json_write_string(part, piece);
        const bool last = --left == 0;
        chunk(part + (last ? signature : "}"), last);
    });
    return body.finish();
}

#endif  // LLM_STREAM_NO_STUB
#endif  // LLM_STREAM_NO_GEMINI

#if !defined(LLM_STREAM_NO_OLLAMA)
/* ------------------------------------------------------------------------------------------------
   Ollama native /api/chat: request body, stream reader, stub
   POST /api/chat; NDJSON lines, the last with "done": true
   ------------------------------------------------------------------------------------------------ */

/* Ollama's roles are system, user, assistant and tool: a developer message is a system one. */
LLM_STREAM_COLD inline const char* ollama_role(Role role) noexcept { return role == Role::developer ? "system" : role_name(role); }

/* The payload of a base64 data: URL; empty for any other URL, or one with bytes outside base64's
   alphabet (the payload goes into the body's JSON string as it is). */
LLM_STREAM_COLD inline std::string_view base64_data_url_payload(std::string_view url) noexcept {
    std::string_view media_type, payload;
    if (!split_base64_data_url(url, media_type, payload)) return {};
    const bool base64 = std::all_of(payload.begin(), payload.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
    });
    return base64 ? payload : std::string_view{};
}

/* Ollama takes images as base64 strings beside the text, nothing else: bytes are encoded and a base64
   data: URL gives its payload; an http(s) URL is refused (the server fetches nothing), and so is a
   detail hint (Ollama has none). */
LLM_STREAM_COLD inline Error write_ollama_images(std::string& out, const Message& m, const std::string& at) {
    bool first = true;
    for (std::size_t k = 0; k < m.parts.size(); ++k) {
        const ContentPart& part = m.parts[k];
        if (part.kind != ContentPart::Kind::image) continue;
        const std::string part_at = at + "." + indexed("content", k);
        if (!part.detail.empty()) return invalid_argument(part_at + ".detail is set: Ollama has no image detail");
        const std::string_view payload = part.bytes ? std::string_view{} : base64_data_url_payload(part.text);
        if (!part.bytes && payload.empty())
            return invalid_argument(part_at + ".url is not a base64 data: URL: Ollama takes images as bytes, not URLs");
        out += first ? ",\"images\":[\"" : ",\"";
        first = false;
        if (part.bytes) base64_append(out, *part.bytes);
        else out.append(payload.data(), payload.size());
        out += '"';
    }
    if (!first) out += ']';
    return {};
}

/* Ollama takes a call's arguments as a JSON object, not as text; the id goes too (servers that have
   no call ids ignore it). */
LLM_STREAM_COLD inline Error write_ollama_tool_calls(std::string& out, const std::vector<ToolCall>& calls, const std::string& at) {
    out += '[';
    for (std::size_t k = 0; k < calls.size(); ++k) {
        const std::string_view arguments = trim_ascii_space(calls[k].arguments);  // valid JSON: checked
        if (arguments.front() != '{')
            return invalid_argument(at + "." + indexed("tool_calls", k) +
                                    ".arguments must be a JSON object: Ollama takes arguments as an object");
        out += k ? ",{\"id\":" : "{\"id\":";
        json_write_string(out, calls[k].id);
        out += ",\"function\":{\"name\":";
        json_write_string(out, calls[k].name);
        out += ",\"arguments\":";
        out.append(arguments.data(), arguments.size());
        out += "}}";
    }
    out += ']';
    return {};
}

/* One message: its text parts joined into "content", its images in "images"; tool results carry
   tool_name and (for servers that match ids) tool_call_id. */
LLM_STREAM_COLD inline Error write_ollama_message(std::string& out, MessageList messages, std::size_t index,
                                  bool with_reasoning) {
    const Message& m = messages[index];
    const std::string at = indexed("messages", index);
    if (!m.name.empty() && m.role != Role::tool)
        return invalid_argument(at + ".name is set: Ollama's messages carry no participant name");
    ExtraMembers extra;
    if (read_extra_members(m.extra_json, "extra_json", extra)) extra = ExtraMembers{};  // refused before this
    out += "{\"role\":";
    json_write_string(out, ollama_role(m.role));
    if (open_member(out, extra, "content")) write_message_text(out, m);
    if (!extra.has("images"))
        if (Error e = write_ollama_images(out, m, at)) return e;
    if (with_reasoning) write_string_member(out, extra, "thinking", m.reasoning);
    if (!m.tool_calls.empty() && open_member(out, extra, "tool_calls"))
        if (Error e = write_ollama_tool_calls(out, m.tool_calls, at)) return e;
    if (m.role == Role::tool) {
        // Ollama's tool_name: the message's own name, else that of the call it answers
        write_string_member(out, extra, "tool_name", m.name.empty() ? called_tool_name(messages, index) : m.name);
        write_string_member(out, extra, "tool_call_id", m.tool_call_id);
    }
    if (!extra.text.empty()) {
        out += ',';
        out.append(extra.text.data(), extra.text.size());
    }
    out += '}';
    return {};
}

/* What Ollama has no way to say: refused rather than dropped. tool_choice "none" is kept: no tools
   are sent then. */
LLM_STREAM_COLD inline Error check_ollama_options(const ChatOptions& options) {
    for (std::size_t i = 0; i < options.tools.size(); ++i)
        if (options.tools[i].strict) return invalid_argument(indexed("tools", i) + ".strict is set: Ollama has no strict mode");
    const ToolChoice::Mode mode = options.tool_choice.mode;
    if (mode == ToolChoice::Mode::required || mode == ToolChoice::Mode::function)
        return invalid_argument("tool_choice: Ollama has no tool_choice, only auto (the default) or none");
    if (options.parallel_tool_calls) return invalid_argument("parallel_tool_calls is set: Ollama has no such option");
    if (!options.user.empty()) return invalid_argument("user is set: Ollama has no end-user id");
    return {};
}

/* The sampling options go in "options", named as Ollama names them (max_tokens is num_predict). */
LLM_STREAM_COLD inline void write_ollama_options(std::string& out, const ChatOptions& options, const ExtraMembers& extra) {
    if (extra.replaces("options")) return;
    // Left out here: written under Ollama's name below (user is refused before). Made once.
    static const ExtraMembers renamed = [] {
        ExtraMembers r;
        r.keys = {"max_tokens", "user"};
        return r;
    }();
    const std::size_t start = out.size();
    write_sampling_options(out, options, renamed);
    if (options.max_tokens) out.append(",\"num_predict\":").append(std::to_string(*options.max_tokens));
    if (out.size() == start) return;
    static const char opening[] = ",\"options\":";
    out.insert(start, opening);
    out[start + sizeof opening - 1] = '{';  // the first option's comma
    out += '}';
}

/* Ollama's "format": "json" for any JSON object, or the schema itself (the server always holds the
   output to it, so `strict` and the schema's name have nothing to say). */
LLM_STREAM_COLD inline void write_ollama_format(std::string& out, const ResponseFormat& format, const ExtraMembers& extra) {
    if (format.type == ResponseFormat::Type::text || !open_member(out, extra, "format")) return;
    if (format.type == ResponseFormat::Type::json_object) {
        out += "\"json\"";
        return;
    }
    const std::string_view schema = trim_ascii_space(format.schema);
    out.append(schema.data(), schema.size());
}

/* Reasoning: "think" is the level asked for (ChatOptions::reasoning_effort), as gpt-oss takes it; a
   model that only turns thinking on or off takes {"think":true} through extra_json. The reasoning
   of earlier turns goes back as "thinking" with send_reasoning. */
LLM_STREAM_COLD inline Error write_ollama_body(MessageList messages, const ChatOptions& options,
                               const std::string& model, const ExtraMembers& extra, std::string& body) {
    if (Error e = check_ollama_options(options)) return e;
    begin_body(body, body_size_estimate(messages, options), model, extra);
    body += "\"messages\":[";
    for (std::size_t i = 0; i < messages.size(); ++i) {
        if (i) body += ',';
        if (Error e = write_ollama_message(body, messages, i, options.send_reasoning)) return e;
    }
    body += "],\"stream\":true";  // usage comes on the done line anyway: include_usage has nothing to ask
    write_ollama_options(body, options, extra);
    write_string_member(body, extra, "think", options.reasoning_effort);
    const bool offer_tools = !options.tools.empty() && options.tool_choice.mode != ToolChoice::Mode::none;
    if (offer_tools && open_member(body, extra, "tools")) write_tools(body, options.tools);
    write_ollama_format(body, options.response_format, extra);
    return end_body(body, extra);
}

/* Ollama's /api/chat lines: message.content, message.thinking and whole tool calls; the done line
   has done_reason and the counts; an {"error": "..."} line is the server's error. Go's encoder
   writes text as raw UTF-8 (never a surrogate escape), so no pair can be split between lines. */
class OllamaReader final : public WireReader {
public:
    OllamaReader() { events_.reserve(usual_events); }
    Result read(std::string_view event_name, std::string_view data) override;
    const std::vector<Event>& events() const noexcept override { return events_; }
    Error error() const override;
    void reset() override;

private:
    // Room for a line's usual events and the done line's two more: the last line allocates nothing.
    static constexpr std::size_t usual_events = 8;
    explicit OllamaReader(Unreserved) noexcept {}
    struct Call {
        JsonSpan id, name, arguments_string;
        std::string_view arguments_object;  // the object's text as sent
    };
    struct Line {
        JsonSpan content, thinking, done_reason, error;
        bool done = false, has_error = false, has_usage = false;
        std::int64_t prompt = 0, completion = 0;
    };

    bool parse_line(JsonCursor& c);
    static bool parse_content_line(std::string_view data, JsonSpan& content);
    bool parse_message(JsonCursor& c, int depth);
    bool parse_call(JsonCursor& c, int depth);
    bool parse_function(JsonCursor& c, int depth, Call& call);
    bool count(JsonCursor& c, int depth, std::int64_t& out);
    std::string_view decode(const JsonSpan& s);
    [[nodiscard]] bool build_events();
    void add_text(EventType type, std::string_view text);
    void add_call(const Call& call);
    void add_finish();

    Line line_;
    std::vector<Call> calls_;  // this line's; capacity kept between lines, as for the others
    int calls_seen_ = 0;       // in the stream so far: each call's index, and "stop" then means tool_calls
    ByteBuffer arena_;
    std::vector<Event> events_;
    const char* why_ = "";
    std::size_t error_offset_ = 0;
    std::string error_message_;  // only for the error line: once per stream
};

inline bool OllamaReader::count(JsonCursor& c, int depth, std::int64_t& out) {
    if (json_at_number(c)) line_.has_usage = true;
    return json_integer_or_skip(c, depth, out);
}

inline bool OllamaReader::parse_function(JsonCursor& c, int depth, Call& call) {
    if (!c.at('{')) return c.skip_value(depth);
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "name") && c.at('"')) return c.string(call.name);
        if (json_key_is(key, "arguments") && c.at('"')) return c.string(call.arguments_string);
        if (!json_key_is(key, "arguments") || !c.at('{')) return c.skip_value(d);
        const char* const begin = c.p;
        if (!c.skip_value(d)) return false;
        call.arguments_object = std::string_view(begin, static_cast<std::size_t>(c.p - begin));
        return true;
    });
}

inline bool OllamaReader::parse_call(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    Call call;
    const bool ok = c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "id") && c.at('"')) return c.string(call.id);
        if (json_key_is(key, "function")) return parse_function(c, d, call);
        return c.skip_value(d);
    });
    if (ok) calls_.push_back(call);
    return ok;
}

inline bool OllamaReader::parse_message(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "content") && c.at('"')) return c.string(line_.content);
        if (json_key_is(key, "thinking") && c.at('"')) return c.string(line_.thinking);
        if (json_key_is(key, "tool_calls") && c.at('['))
            return c.array(d + 1, [&](int dd) { return parse_call(c, dd); });
        return c.skip_value(d);
    });
}

inline bool OllamaReader::parse_line(JsonCursor& c) {
    c.skip_ws();
    if (!c.at('{')) return c.fail("an NDJSON line must be an object");
    const bool ok = c.object(1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "message")) return parse_message(c, d);
        if (json_key_is(key, "done") && c.at('t')) {
            line_.done = true;
            return c.literal("true", 4);
        }
        if (json_key_is(key, "done_reason") && c.at('"')) return c.string(line_.done_reason);
        if (json_key_is(key, "prompt_eval_count")) return count(c, d, line_.prompt);
        if (json_key_is(key, "eval_count")) return count(c, d, line_.completion);
        if (json_key_is(key, "error") && !c.at('n')) {
            line_.has_error = true;
            return c.at('"') ? c.string(line_.error) : c.skip_value(d);
        }
        return c.skip_value(d);
    });
    if (!ok) return false;
    c.skip_ws();
    return c.p == c.end || c.fail("unexpected text after the object");
}

/* The line most of a stream is, in the very bytes Ollama sends it:
   {"model":"...","created_at":"...","message":{"role":"assistant","content":"..."},"done":false},
   read without the general walk and validated as strictly (fixed bytes, three strings): its content.
   False for any other text, which parse_line() then reads. */
inline bool OllamaReader::parse_content_line(std::string_view data, JsonSpan& content) {
    JsonCursor c(data.data(), data.data() + data.size());
    JsonSpan model_or_time;
    if (!c.literal("{\"model\":") || !c.at('"') || !c.string_inlined(model_or_time) || !c.literal(",\"created_at\":") ||
        !c.at('"') || !c.string_inlined(model_or_time) || !c.literal(",\"message\":{\"role\":\"assistant\",\"content\":") ||
        !c.at('"') || !c.string_inlined(content) || !c.literal("},\"done\":false}"))
        return false;
    c.skip_ws();
    return c.p == c.end;
}

inline std::string_view OllamaReader::decode(const JsonSpan& s) { return decode_in_arena(s, arena_); }

inline void OllamaReader::add_text(EventType type, std::string_view text) {
    if (text.empty()) return;
    Event e;
    e.type = type;
    e.text = text;
    events_.push_back(e);
}

/* A whole call: arguments sent as an object become its compact text; as a string, that text; none
   (or null) is a call without arguments, {}. */
inline void OllamaReader::add_call(const Call& call) {
    Event e;
    e.type = EventType::tool_call;
    e.tool_call.index = calls_seen_++;
    e.tool_call.id = decode(call.id);  // "" when the server sends no id: we invent none
    e.tool_call.name = decode(call.name);
    if (!call.arguments_object.empty()) {
        char* out = arena_.data() + arena_.size();
        const std::size_t n = json_compact(call.arguments_object.data(),
                                              call.arguments_object.data() + call.arguments_object.size(), out);
        arena_.resize_up_reserved(n);
        e.tool_call.arguments = std::string_view(out, n);
    } else {
        e.tool_call.arguments = call.arguments_string.present() ? decode(call.arguments_string) : "{}";
    }
    events_.push_back(e);
}

/* done_reason in the one vocabulary: "stop" after tool calls is "tool_calls"; "stop" and "length"
   are ours already; others ("load", "unload") pass as sent. A done line without one (servers before
   done_reason existed), or with one that decodes to nothing, ended normally: "stop". */
inline void OllamaReader::add_finish() {
    Event e;
    e.type = EventType::finish;
    e.raw_reason = decode(line_.done_reason);
    const bool stopped = e.raw_reason.empty() || e.raw_reason == "stop";
    e.text = stopped ? (calls_seen_ > 0 ? "tool_calls" : "stop") : e.raw_reason;
    events_.push_back(e);
}

inline bool OllamaReader::build_events() {
    // Decoding and compacting never lengthen a string: one reservation keeps every view stable.
    std::size_t room = line_.content.size() + line_.thinking.size() + line_.done_reason.size();
    for (const Call& call : calls_)
        room += call.id.size() + call.name.size() + call.arguments_string.size() + call.arguments_object.size();
    arena_.clear();
    if (!arena_.reserve(room)) return false;
    add_text(EventType::reasoning, decode(line_.thinking));
    add_text(EventType::content, decode(line_.content));
    for (const Call& call : calls_) add_call(call);
    if (line_.done) add_finish();
    if (line_.done && line_.has_usage) {
        Event e;
        e.type = EventType::usage;
        e.usage.prompt_tokens = line_.prompt;
        e.usage.completion_tokens = line_.completion;
        e.usage.total_tokens = line_.prompt + line_.completion;
        events_.push_back(e);
    }
    return true;
}

inline WireReader::Result OllamaReader::read(std::string_view, std::string_view data) {
    events_.clear();
    calls_.clear();
    line_ = Line{};
    error_message_.clear();
    JsonSpan content;
    if (parse_content_line(data, content)) {  // what build_events() would make of it, without the look-ups
        arena_.clear();
        if (!arena_.reserve(content.size())) return Result::out_of_memory;
        add_text(EventType::content, decode(content));
        return Result::ok;
    }
    JsonCursor c(data.data(), data.data() + data.size());
    if (!parse_line(c)) {
        why_ = c.why;
        error_offset_ = static_cast<std::size_t>(c.p - c.start);
        return Result::invalid;
    }
    if (line_.has_error) {
        error_message_ = line_.error.present() ? json_string_text(line_.error) : "";
        if (error_message_.empty()) error_message_ = "the server reported an error";
        return Result::error_event;
    }
    if (!build_events()) return Result::out_of_memory;
    return line_.done ? Result::end : Result::ok;
}

inline Error OllamaReader::error() const {
    if (!error_message_.empty()) return make_error(ErrorCode::server_error, "server error: " + error_message_);
    return make_error(ErrorCode::protocol, std::string(why_) + " at byte " + std::to_string(error_offset_));
}

inline void OllamaReader::reset() {
    OllamaReader next{Unreserved()};
    keep_rooms(*this, next, &OllamaReader::calls_, &OllamaReader::events_, &OllamaReader::arena_);
    *this = std::move(next);
    events_.reserve(usual_events);  // when the room was given back
}

inline std::unique_ptr<WireReader> make_ollama_reader() { return std::make_unique<OllamaReader>(); }

#if !defined(LLM_STREAM_NO_STUB)
/* Ollama's NDJSON: the thinking on a line when reasoning is asked for, the text in pieces, or the
   call whole on one line (arguments as an object, with the openai stub's id, as servers with call
   ids send it), then the done line with the counts. */
LLM_STREAM_COLD inline StubResponse stub_ollama(const StubReply& reply, const std::string& model) {
    StubBody body("application/x-ndjson");
    std::string head = "{\"model\":";
    json_write_string(head, model);
    head += ",\"created_at\":\"1970-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":";
    std::string json;
    if (!reply.reasoning.empty()) {
        json_write_string(json.assign(head + "\"\",\"thinking\":"), reply.reasoning);
        body.line(json + "},\"done\":false}");
    }
    if (reply.tool) {
        json = head + "\"\",\"tool_calls\":[{\"id\":\"call_stub_1\",\"function\":{\"name\":";
        json_write_string(json, reply.tool->name);
        body.line(json + ",\"arguments\":" + reply.arguments + "}}]},\"done\":false}");
    } else {
        stub_pieces(reply.text, [&](std::string_view piece) {
            json = head;
            json_write_string(json, piece);
            body.line(json + "},\"done\":false}");
        });
    }
    body.line(head + "\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":" +
              std::to_string(reply.prompt_tokens) + ",\"eval_count\":" + std::to_string(reply.completion_tokens) + "}");
    return body.finish();
}

#endif  // LLM_STREAM_NO_STUB
#endif  // LLM_STREAM_NO_OLLAMA

/* ------------------------------------------------------------------------------------------------
   HTTP proxies: the proxy URL, NO_PROXY, and the CONNECT exchange (sans-I/O)
   As curl and Go do them. The transport only moves the bytes of the exchange; deciding what they
   mean happens here, testable at every split without a socket.
   ------------------------------------------------------------------------------------------------ */

/* Where to connect, and the Proxy-Authorization its URL's credentials make. */
struct ProxyUrl {
    std::string host;           // without brackets for IPv6
    std::uint16_t port = 1080;
    std::string address;        // host:port, IPv6 in brackets: for messages and the pool key
    std::string authorization;  // "Basic ..." or empty; never logged
};

/* host:port, the port always written (an IPv6 host in brackets): CONNECT's target, a proxy's name. */
LLM_STREAM_COLD inline std::string host_and_port(const Url& url) {
    const bool v6 = url.host.find(':') != std::string::npos;
    return (v6 ? "[" + url.host + "]" : url.host) + ":" + std::to_string(url.port);
}

/* Percent-decodes (RFC 3986 2.1); false on a malformed escape. */
LLM_STREAM_COLD inline bool percent_decode(std::string_view text, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out += text[i];
            continue;
        }
        if (i + 2 >= text.size() || hex_value(text[i + 1]) < 0 || hex_value(text[i + 2]) < 0) return false;
        out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
        i += 2;
    }
    return true;
}

/* "user:password" as a URL spells it, percent-encoded, into a Basic authorization. The message never
   repeats the credentials. */
LLM_STREAM_COLD inline Error proxy_authorization(std::string_view userinfo, std::string& out) {
    const std::size_t colon = std::min(userinfo.find(':'), userinfo.size());
    std::string user, password;
    if (!percent_decode(userinfo.substr(0, colon), user) ||
        !percent_decode(userinfo.substr(std::min(colon + 1, userinfo.size())), password))
        return make_error(ErrorCode::invalid_config, "the proxy credentials contain a malformed %-escape");
    out = "Basic ";
    base64_append(out, user + ":" + password);
    return {};
}

/* "http://[user:password@]host[:port][/]" or "host[:port]"; the caller names the setting in errors. */
LLM_STREAM_COLD inline Error parse_proxy_url(std::string_view text, ProxyUrl& out) {
    auto bad = [](std::string why) { return make_error(ErrorCode::invalid_config, std::move(why)); };
    text = trim_ascii_space(text);
    const std::size_t scheme_end = text.find("://");
    if (scheme_end != std::string_view::npos) {
        if (!iequals(text.substr(0, scheme_end), "http"))
            return bad(excerpt(text.substr(0, scheme_end), 20) + ":// proxies are not supported, only http:// ones");
        text.remove_prefix(scheme_end + 3);
    }
    const std::size_t authority_end = std::min(text.find_first_of("/?#"), text.size());
    if (authority_end < text.size() && text.substr(authority_end) != "/")
        return bad("a proxy URL is http://[user:password@]host[:port], without a path");
    std::string_view authority = text.substr(0, authority_end);
    out.authorization.clear();
    const std::size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
        if (Error e = proxy_authorization(authority.substr(0, at), out.authorization)) return e;
        authority.remove_prefix(at + 1);
    }
    const std::size_t bracket = authority.rfind(']');
    const bool has_port = authority.find(':', bracket == std::string_view::npos ? 0 : bracket) != std::string_view::npos;
    Url url;
    if (Error e = parse_url("http://" + std::string(authority) + (has_port ? "" : ":1080"), url)) {
        const std::size_t the_url = e.message.find("the URL");  // parse_url's words: make them the proxy's
        if (the_url != std::string::npos) e.message.insert(the_url + 4, "proxy ");
        return e;
    }
    out.host = url.host;
    out.port = url.port;
    out.address = host_and_port(url);
    return {};
}

/* An IPv4 or IPv6 address, as bytes in network order. */
struct IpAddress {
    int family = 0;  // AF_INET, AF_INET6; 0: not an address
    unsigned char bytes[16] = {};
};

LLM_STREAM_COLD inline IpAddress parse_ip_address(std::string_view text) {
    IpAddress a;
    const std::string terminated(text);
    if (inet_pton(AF_INET, terminated.c_str(), a.bytes) == 1) a.family = AF_INET;
    else if (inet_pton(AF_INET6, terminated.c_str(), a.bytes) == 1) a.family = AF_INET6;
    return a;
}

/* `address` lies in `block` ("10.1.2.3", "10.0.0.0/8", "fd00::/8"; no prefix length: that address). */
LLM_STREAM_COLD inline bool in_ip_block(const IpAddress& address, std::string_view block) {
    const std::size_t slash = std::min(block.find('/'), block.size());
    const IpAddress network = parse_ip_address(block.substr(0, slash));
    if (network.family == 0 || network.family != address.family) return false;
    const std::uint64_t total_bits = address.family == AF_INET ? 32 : 128;
    std::uint64_t bits = total_bits;
    if (slash < block.size() && (!parse_decimal(block.substr(slash + 1), bits) || bits > total_bits)) return false;
    for (std::size_t i = 0; i < bits; ++i) {
        const auto mask = static_cast<unsigned char>(0x80u >> (i % 8));
        if ((address.bytes[i / 8] & mask) != (network.bytes[i / 8] & mask)) return false;
    }
    return true;
}

/* `name` is `domain` or one of its subdomains; case-insensitive, leading and trailing dots ignored. */
LLM_STREAM_COLD inline bool in_domain(std::string_view name, std::string_view domain) {
    if (!domain.empty() && domain.front() == '.') domain.remove_prefix(1);
    if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    if (domain.empty() || domain.size() > name.size()) return false;
    const std::size_t start = name.size() - domain.size();
    return iequals(name.substr(start), domain) && (start == 0 || name[start - 1] == '.');
}

/* One NO_PROXY entry against the host and port of a URL. */
LLM_STREAM_COLD inline bool no_proxy_entry_matches(std::string_view entry, std::string_view host, std::uint16_t port) {
    if (entry == "*") return true;
    // A port is what follows "]:" or the only colon; more colons make a bare IPv6 address.
    std::string_view entry_host = entry, entry_port;
    if (!entry.empty() && entry.front() == '[') {
        const std::size_t close = entry.find(']');
        if (close == std::string_view::npos) return false;
        entry_host = entry.substr(1, close - 1);
        if (entry.substr(close + 1, 1) == ":") entry_port = entry.substr(close + 2);
    } else if (entry.find(':') != std::string_view::npos && entry.find(':') == entry.rfind(':')) {
        entry_host = entry.substr(0, entry.find(':'));
        entry_port = entry.substr(entry.find(':') + 1);
    }
    std::uint64_t wanted_port = 0;
    if (!entry_port.empty() && (!parse_decimal(entry_port, wanted_port) || wanted_port != port)) return false;
    const IpAddress address = parse_ip_address(host);
    if (address.family != 0) return in_ip_block(address, entry_host);  // an address never matches a name
    return in_domain(host, entry_host);
}

/* "localhost", a name under it, 127.0.0.0/8 or ::1: a proxy's loopback is not this machine's. */
LLM_STREAM_COLD inline bool is_loopback_host(std::string_view host) {
    const IpAddress address = parse_ip_address(host);
    if (address.family != 0) return in_ip_block(address, "127.0.0.0/8") || in_ip_block(address, "::1");
    return in_domain(host, "localhost");
}

/* `no_proxy` (Config::no_proxy) sends host:port direct. Loopback goes direct too unless the list
   names "<-loopback>" (Chrome's bypass-list word): a local Ollama or llama.cpp server must keep
   working on a machine whose environment names a corporate proxy (Go and Ruby skip loopback as well;
   curl does not, which is why scripts so often add --noproxy localhost). */
LLM_STREAM_COLD inline bool bypasses_proxy(std::string_view no_proxy, std::string_view host, std::uint16_t port) {
    bool bypass = false, proxy_loopback = false;
    for_each_list_token(no_proxy, [&](std::string_view entry) {
        if (entry == "<-loopback>") proxy_loopback = true;
        else bypass = bypass || no_proxy_entry_matches(entry, host, port);
    });
    return bypass || (!proxy_loopback && is_loopback_host(host));
}

/* The proxy to reach `url` through: none when Config::proxy is empty or bypasses_proxy() says so. */
LLM_STREAM_COLD inline Error proxy_for(const Config& config, const Url& url, std::optional<ProxyUrl>& out) {
    out.reset();
    if (trim_ascii_space(config.proxy).empty() || bypasses_proxy(config.no_proxy, url.host, url.port)) return {};
    ProxyUrl proxy;
    if (Error e = parse_proxy_url(config.proxy, proxy)) {
        e.message = "Config::proxy: " + e.message;
        return e;
    }
    out = std::move(proxy);
    return {};
}

/* What pooled connections are kept under: the origin, and the proxy they go through. */
LLM_STREAM_COLD inline std::string connection_key(const Url& url, const std::optional<ProxyUrl>& proxy) {
    std::string key = (url.https ? "https://" : "http://") + url.host_header;
    if (proxy) key += " via " + proxy->address;
    return key;
}

/* Through a proxy, an http:// origin is named whole in the request line (absolute form, RFC 9112
   3.2.2) and every request carries the proxy's credentials; an https:// one needs neither, its
   requests go through the tunnel as they would go direct. */
LLM_STREAM_COLD inline void address_via_proxy(const ProxyUrl& proxy, Url& url, Request& request) {
    if (url.https) return;
    url.target = "http://" + url.host_header + url.target;
    if (!proxy.authorization.empty()) add_header(request.headers, "Proxy-Authorization", proxy.authorization);
}

/* The CONNECT exchange that opens a tunnel through an HTTP proxy (RFC 9110 9.3.6): the request to
   send, then the proxy's reply, fed as it arrives, in pieces of any size. Any 2xx opens the tunnel;
   407, any other status, a reply that is not HTTP or whose head exceeds the limit are ErrorCode::proxy
   failures, which are not retried (the next attempt would meet the same refusal). The origin speaks
   only after the client's TLS hello, so bytes after an accepting head are a failure too. */
/* A proxy's 407 (or tinyproxy's 401 for wrong credentials), to a CONNECT or to a request sent
   through it: ErrorCode::proxy, which is not retried, naming the proxy but never the credentials. */
LLM_STREAM_COLD inline Error proxy_authentication_error(const std::string& proxy_address, bool sent_credentials, int status) {
    return make_error(ErrorCode::proxy, "the proxy " + proxy_address +
                                            (sent_credentials ? " refused the credentials" : " requires authentication") +
                                            " (" + std::to_string(status) + ")");
}

class ProxyTunnel {
public:
    enum class Status { need_more, open, failed };

    LLM_STREAM_COLD ProxyTunnel(const ProxyUrl& proxy, const Url& origin, std::size_t max_head_bytes)
        : proxy_address_(proxy.address), target_(host_and_port(origin)), sent_credentials_(!proxy.authorization.empty()) {
        HttpLimits limits;
        limits.max_header_bytes = max_head_bytes;
        reader_.reset(limits);
        request_ = "CONNECT " + target_ + " HTTP/1.1\r\nHost: " + target_ + "\r\n";
        if (sent_credentials_) request_ += "Proxy-Authorization: " + proxy.authorization + "\r\n";
        request_ += "\r\n";
    }

    const std::string& request() const noexcept { return request_; }
    Status feed(std::string_view bytes);
    /* The proxy closed the connection: a failure unless the tunnel is open. */
    Status finish() {
        if (status_ != Status::need_more) return status_;
        return fail(ErrorCode::connect, "the proxy " + proxy_address_ + " closed the connection before answering CONNECT");
    }
    const Error& error() const noexcept { return error_; }

private:
    Status fail(ErrorCode code, std::string message) {
        error_ = make_error(code, std::move(message));
        return status_ = Status::failed;
    }
    Status read_head(bool bytes_follow);
    void keep_status_line(std::string_view bytes);

    HttpResponseReader reader_;
    std::string proxy_address_;
    std::string target_;
    bool sent_credentials_;
    std::string request_;
    std::string status_line_;  // the reply's first line, for the reason phrase of a refusal
    Error error_;
    Status status_ = Status::need_more;
};

LLM_STREAM_COLD inline void ProxyTunnel::keep_status_line(std::string_view bytes) {
    constexpr std::size_t longest = 120;  // enough for any reason phrase worth showing
    if (status_line_.find('\n') != std::string::npos || status_line_.size() >= longest) return;
    status_line_.append(bytes.substr(0, std::min(longest - status_line_.size(), bytes.find('\n'))));
    status_line_ += bytes.find('\n') != std::string_view::npos ? "\n" : "";
}

LLM_STREAM_COLD inline ProxyTunnel::Status ProxyTunnel::feed(std::string_view bytes) {
    if (status_ != Status::need_more) return status_;
    keep_status_line(bytes);
    // A TLS server or another protocol may never end a line: tell at the first bytes.
    const std::size_t known = std::min<std::size_t>(status_line_.size(), 5);
    if (status_line_.compare(0, known, "HTTP/", known) != 0)
        return fail(ErrorCode::proxy, "the proxy " + proxy_address_ + " answered CONNECT with no usable HTTP reply: "
                                                                         "it does not start with HTTP/");
    while (!bytes.empty()) {
        const HttpResponseReader::Step step = reader_.feed(bytes);
        bytes.remove_prefix(step.consumed);
        if (step.status == HttpResponseReader::Status::head) return read_head(!bytes.empty());
        if (step.status == HttpResponseReader::Status::error)
            return fail(ErrorCode::proxy, "the proxy " + proxy_address_ + " answered CONNECT with no usable HTTP reply: " +
                                              reader_.error().message);
        if (step.consumed == 0) break;
    }
    return status_;
}

LLM_STREAM_COLD inline ProxyTunnel::Status ProxyTunnel::read_head(bool bytes_follow) {
    const int status = reader_.status();
    const std::string proxy = "the proxy " + proxy_address_;
    if (status >= 200 && status < 300) {
        if (bytes_follow) return fail(ErrorCode::proxy, proxy + " sent data after accepting CONNECT, before the TLS handshake");
        return status_ = Status::open;
    }
    if (status == 407 || status == 401) {  // tinyproxy answers wrong credentials with 401
        const Error e = proxy_authentication_error(proxy_address_, sent_credentials_, status);
        return fail(e.code, e.message);
    }
    // "HTTP/1.1 403 Forbidden": the reason phrase follows the second space.
    const std::size_t space = status_line_.find(' ', status_line_.find(' ') + 1);
    const std::string_view reason =
        space == std::string::npos ? std::string_view() : trim_ascii_space(std::string_view(status_line_).substr(space + 1));
    return fail(ErrorCode::proxy, proxy + " refused CONNECT to " + target_ + ": HTTP " + std::to_string(status) +
                                      (reason.empty() ? "" : " " + excerpt(reason, 60)));
}

/* ------------------------------------------------------------------------------------------------
   Transports: they only move bytes (and know nothing of HTTP). The in-memory one replays the stub's
   response; the network one is a socket, with TLS over it for https.
   ------------------------------------------------------------------------------------------------ */

class Connection;

class Transport {
public:
    virtual ~Transport() = default;
    /* Advances connection set-up (name resolution, TCP connect, TLS handshake): ok once ready. */
    virtual IoResult open() { return {IoStatus::ok, 0}; }
    /* What open() is doing, for a message when it takes too long: "connecting", "the TLS handshake". */
    virtual const char* opening_stage() const { return "connecting"; }
    virtual IoResult write(const char* data, std::size_t size) = 0;
    virtual IoResult read(char* buffer, std::size_t capacity) = 0;
    /* After would_block: what to wait for. */
    virtual WaitInfo wait_info() const noexcept = 0;
    /* After failed: which kind of failure, and a message for humans. */
    virtual Error error() const { return make_error(ErrorCode::io, "transport failure"); }
    /* What the transport is kept under in the client's pool, once its response has been read, to carry
       another request; empty when it cannot be (in memory, or not connected). */
    virtual std::string_view pool_key() const { return {}; }
};

/* Replays a fixed response, pausing at each segment end as a slow server would. */
class MemoryTransport final : public Transport {
public:
    MemoryTransport(std::shared_ptr<const std::string> bytes, std::vector<std::size_t> segment_ends,
                    std::chrono::milliseconds delay)
        : bytes_(std::move(bytes)), segment_ends_(std::move(segment_ends)), delay_(delay) {}

    IoResult write(const char*, std::size_t size) override { return {IoStatus::ok, size}; }
    IoResult read(char* buffer, std::size_t capacity) override {
        if (position_ == bytes_->size()) return {IoStatus::closed, 0};
        if (delay_.count() > 0 && Clock::now() < ready_at_) return {IoStatus::would_block, 0};
        while (segment_ < segment_ends_.size() && segment_ends_[segment_] <= position_) ++segment_;
        const std::size_t limit =
            segment_ < segment_ends_.size() ? std::min(segment_ends_[segment_], bytes_->size()) : bytes_->size();
        const std::size_t n = std::min(capacity, limit - position_);
        std::memcpy(buffer, bytes_->data() + position_, n);
        position_ += n;
        if (delay_.count() > 0 && position_ == limit) ready_at_ = Clock::now() + delay_;
        return {IoStatus::ok, n};
    }
    WaitInfo wait_info() const noexcept override {
        WaitInfo w;
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(ready_at_ - Clock::now());
        w.timeout = left.count() > 0 ? left : std::chrono::milliseconds(0);
        return w;
    }

private:
    std::shared_ptr<const std::string> bytes_;
    std::vector<std::size_t> segment_ends_;
    std::chrono::milliseconds delay_;
    std::size_t position_ = 0;
    std::size_t segment_ = 0;
    Clock::time_point ready_at_{};
};

/* The code for a failed TLS session: out_of_memory stays itself (never a TLS or I/O failure), anything
   else is ErrorCode::tls. */
inline ErrorCode tls_failure_code(const Error& session_error) noexcept {
    return session_error.code == ErrorCode::out_of_memory ? ErrorCode::out_of_memory : ErrorCode::tls;
}

/* One TCP connection (with TLS over it for https), owned by a stream or idle in the client's pool. */
class Connection {
public:
    explicit Connection(native_socket socket) : socket_(socket) {}
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection() {
        tls.reset();  // its close_notify goes out before the socket closes
        close_socket(socket_);
    }

    native_socket socket() const noexcept { return socket_; }

    IoResult read(char* buffer, std::size_t capacity) {
        if (!tls) return track(socket_read(socket_, buffer, capacity, socket_error_));
        return from_tls(tls->read(buffer, capacity));
    }
    IoResult write(const char* data, std::size_t size) {
        if (!tls) return track(socket_write(socket_, data, size, socket_error_), true);
        return from_tls(tls->write(data, size));
    }
    bool wants_write() const noexcept { return wants_write_; }
    std::string error_message() const {
        if (tls && tls_failed_) return tls->error().message;
        return socket_error_ ? socket_error_text(socket_error_) : "connection failure";
    }
    /* io, unless the TLS layer failed for want of memory. */
    ErrorCode error_code() const {
        return tls && tls_failed_ ? tls_failure_code(tls->error()) : ErrorCode::io;
    }

    std::unique_ptr<TlsSession> tls;

private:
    IoResult track(IoResult r, bool writing = false) {
        wants_write_ = writing && r.status == IoStatus::would_block;
        return r;
    }
    IoResult from_tls(TlsResult r) {
        wants_write_ = r.status == TlsStatus::want_write;
        switch (r.status) {
        case TlsStatus::ok: return {IoStatus::ok, r.bytes};
        case TlsStatus::want_read:
        case TlsStatus::want_write: return {IoStatus::would_block, 0};
        case TlsStatus::closed: return {IoStatus::closed, 0};
        case TlsStatus::failed: break;
        }
        tls_failed_ = true;
        return {IoStatus::failed, 0};
    }

    native_socket socket_;
    int socket_error_ = 0;
    bool wants_write_ = false;
    bool tls_failed_ = false;
};

/* A connection waiting in the pool, kept with what the next request on it needs: its transport and
   the decoder of its last response, with their memory. That response may not have been read to the
   end: servers write the chunked terminator a moment after [DONE], and the stream did not wait for it. */
struct IdleConnection {
    std::unique_ptr<Transport> transport;  // connected
    std::optional<Decoder> decoder;        // reset for the next response, unless unfinished
    bool unfinished = false;               // the decoder is still reading the last response, to its end before reuse
    std::string request_room;              // empty, with the room of the last request sent on it
    Clock::time_point since{};
};

/* Where a client's requests go and the head lines each one carries, worked out once from the
   configuration (none of it changes from request to request), shared by its streams and transports. */
struct Endpoint {
    Url url;                        // for the configured model (Gemini's URL names the model: another has its own)
    std::optional<ProxyUrl> proxy;  // the HTTP proxy the connections go through, if any
    std::string origin;             // what the connections are pooled under (connection_key)
    std::string header_lines;       // "Host: ...\r\n" and every other header line but Content-Length
    Error headers_error;            // a header that cannot be sent (reported after the request's own checks)
    Error url_error;                // the base URL cannot be used
    Error proxy_error;              // nor the proxy
};

/* Config::headers and the key are checked as build_request() checks them, in stub mode too; the rest
   is only for the network. */
LLM_STREAM_COLD inline std::shared_ptr<const Endpoint> make_endpoint(const Config& config, const std::string& model) {
    auto made = std::make_shared<Endpoint>();
    Request request;  // its headers, as build_request() gives them
    made->headers_error = write_request_headers(config, request.headers);
    if (config.stub_mode()) return made;
    Url& url = made->url;
    if (Error e = parse_url(config.endpoint_url(model), url)) {
        e.message = "LLM_BASE_URL: " + e.message;
        made->url_error = std::move(e);
        return made;
    }
    made->proxy_error = proxy_for(config, url, made->proxy);
    made->origin = connection_key(url, made->proxy);
    if (made->proxy) address_via_proxy(*made->proxy, url, request);
    std::string& lines = made->header_lines;
    lines.append("Host: ").append(url.host_header).append("\r\n");
    for (const auto& header : request.headers) lines.append(header.first).append(": ").append(header.second).append("\r\n");
    return made;
}

/* What copies of a Client share: the configuration, where its requests go, the TLS backend, the idle
   connections. */
struct ClientState {
    Config config;
    std::shared_ptr<const Endpoint> endpoint;  // made with the Client

    /* The configured backend, or the built-in one made on first use (or why it cannot be made). */
    [[nodiscard]] LLM_STREAM_COLD Error tls_backend(std::shared_ptr<TlsBackend>& backend) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!tls_ && !tls_error_) {
            if (config.tls.backend) tls_ = config.tls.backend;
            else tls_error_ = make_default_tls_backend(config.tls, tls_);
            if (tls_ && !config.tls.verify && !config.tls.backend)
                emit_log(config, LogLevel::warning,
                         "TLS certificate verification is OFF: anyone on the network path can read and alter "
                         "this traffic, API key included");
        }
        backend = tls_;
        return tls_error_;
    }

    /* The most recently used idle connection to origin that has not been idle too long. */
    LLM_STREAM_COLD IdleConnection take_idle(std::string_view origin) {
        std::lock_guard<std::mutex> lock(mutex_);
        const Clock::time_point now = Clock::now();
        idle_.erase(std::remove_if(idle_.begin(), idle_.end(),
                                   [&](const IdleConnection& c) { return now - c.since > config.idle_connection_timeout; }),
                    idle_.end());
        for (std::size_t i = idle_.size(); i-- > 0;) {
            if (idle_[i].transport->pool_key() != origin) continue;
            IdleConnection c = std::move(idle_[i]);
            idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(i));
            return c;
        }
        return {};
    }

    /* Room for writing a request: an idle connection's (any one: the next request takes whichever
       connection is free), else none. */
    std::string take_request_room() {
        std::lock_guard<std::mutex> lock(mutex_);
        for (std::size_t i = idle_.size(); i-- > 0;)
            if (idle_[i].request_room.capacity() > std::string().capacity()) return std::exchange(idle_[i].request_room, {});
        return {};
    }

    void put_idle(IdleConnection c) {
        if (config.max_idle_connections == 0) return;
        c.since = Clock::now();
        std::lock_guard<std::mutex> lock(mutex_);
        if (idle_.size() >= config.max_idle_connections) idle_.erase(idle_.begin());  // the oldest goes
        idle_.push_back(std::move(c));
    }

private:
    std::mutex mutex_;
    std::vector<IdleConnection> idle_;
    std::shared_ptr<TlsBackend> tls_;
    Error tls_error_;
};

/* A real connection: name resolution, a non-blocking TCP connect (each address in turn), through a
   proxy a CONNECT tunnel for https, and for https a TLS handshake with the origin; then, once its
   response has been read, idle in the client's pool (which owns it there: hence a reference to the
   client, not a share of it) until another request takes it as it is. All steps return at once. */
class NetworkTransport final : public Transport {
public:
    NetworkTransport(ClientState& client, std::shared_ptr<const Endpoint> endpoint)
        : client_(client), endpoint_(std::move(endpoint)), url_(endpoint_->url), proxy_(endpoint_->proxy) {}
    ~NetworkTransport() override {
        if (connecting_ != invalid_socket) close_socket(connecting_);
    }

    IoResult open() override;
    const char* opening_stage() const override {
        return state_ == State::tls      ? "the TLS handshake"
               : state_ == State::tunnel ? "the proxy's CONNECT"
               : looking_up()            ? "name resolution"
                                         : "connecting";
    }
    IoResult write(const char* data, std::size_t size) override {
        const IoResult r = connection_->write(data, size);
        if (r.status == IoStatus::failed) fail_io();
        return r;
    }
    IoResult read(char* buffer, std::size_t capacity) override {
        const IoResult r = connection_->read(buffer, capacity);
        if (r.status == IoStatus::failed) fail_io();
        return r;
    }
    WaitInfo wait_info() const noexcept override {
        WaitInfo w;
#if !defined(LLM_STREAM_NO_DNS)
        if (looking_up()) return lookup_wait_info();
#endif
        const native_socket s = connection_ ? connection_->socket() : connecting_;
        if (s == invalid_socket) return w;
        w.socket = static_cast<socket_handle>(s);
        const bool write_wanted = state_ == State::connect || (state_ == State::tls ? tls_wants_write_
                                                             : connection_ && connection_->wants_write());
        w.want_write = write_wanted;
        w.want_read = !write_wanted;
        w.timeout = std::chrono::milliseconds(1000);  // the stream shortens it to its own deadlines
        return w;
    }
    Error error() const override { return error_; }
    std::string_view pool_key() const override {
        return connection_ && state_ == State::ready ? std::string_view(endpoint_->origin) : std::string_view();
    }

private:
    enum class State { resolve, connect, tunnel, tls, ready };

    IoResult failed(ErrorCode code, std::string message) {
        error_ = make_error(code, std::move(message));
        return {IoStatus::failed, 0};
    }
    void fail_io() { error_ = make_error(connection_->error_code(), connection_->error_message()); }
    IoResult failed_io() {
        fail_io();
        return {IoStatus::failed, 0};
    }
    IoResult resolve();
    IoResult start_connect();
    IoResult poll_connect();
    IoResult finish_connect();
    IoResult open_tunnel();
    IoResult start_tls();
    IoResult handshake();
    /* What the socket connects to: the proxy when there is one, else the origin. */
    const std::string& peer_host() const noexcept { return proxy_ ? proxy_->host : url_.host; }
    std::string peer_name() const { return proxy_ ? "the proxy " + proxy_->address : url_.host_header; }

    ClientState& client_;
    std::shared_ptr<const Endpoint> endpoint_;
    const Url& url_;                         // the endpoint's
    const std::optional<ProxyUrl>& proxy_;  // the endpoint's
    std::optional<ProxyTunnel> tunnel_;
    std::size_t tunnel_request_sent_ = 0;
    std::unique_ptr<Connection> connection_;
    bool tls_wants_write_ = false;
    State state_ = State::resolve;
    std::vector<SocketAddress> addresses_;
#if !defined(LLM_STREAM_NO_DNS)
    // While a name server is asked; on the heap, as its messages take kilobytes a stream needs only then.
    std::unique_ptr<DnsLookup> lookup_;
    bool looking_up() const noexcept { return lookup_ != nullptr; }
    IoResult look_up();
    WaitInfo lookup_wait_info() const noexcept {
        WaitInfo w;
        w.socket = static_cast<socket_handle>(lookup_->socket());
        w.want_write = lookup_->wants_write();
        w.want_read = !w.want_write;
        w.timeout = std::min(std::chrono::milliseconds(1000), lookup_->time_left(Clock::now()));
        return w;
    }
#else
    bool looking_up() const noexcept { return false; }  // the system's resolver answers within resolve()
#endif
    std::size_t next_address_ = 0;
    native_socket connecting_ = invalid_socket;
    std::string connect_errors_;
    Error error_;
};

inline IoResult NetworkTransport::open() {
    switch (state_) {
    case State::resolve: return resolve();
    case State::connect: return connecting_ == invalid_socket ? start_connect() : poll_connect();
    case State::tunnel: return open_tunnel();
    case State::tls: return handshake();
    case State::ready: break;
    }
    return {IoStatus::ok, 0};
}

LLM_STREAM_COLD inline IoResult NetworkTransport::resolve() {
#if !defined(LLM_STREAM_NO_DNS)
    if (looking_up()) return look_up();
#endif
    if (!network_startup()) return failed(ErrorCode::io, "Winsock could not be started");
    bool ask_dns = false;
    if (Error e = resolve_host(peer_host(), proxy_ ? proxy_->port : url_.port, client_.config, addresses_, ask_dns))
        return failed(e.code, proxy_ ? "the proxy: " + e.message : std::move(e.message));
#if !defined(LLM_STREAM_NO_DNS)
    if (ask_dns) {
        lookup_ = std::make_unique<DnsLookup>(peer_host(), dns_settings(client_.config.dns));
        return look_up();
    }
#endif
    state_ = State::connect;
    return start_connect();
}

#if !defined(LLM_STREAM_NO_DNS)

/* Asks the name servers, then connects to the addresses they gave. */
LLM_STREAM_COLD inline IoResult NetworkTransport::look_up() {
    const IoResult r = lookup_->step();
    if (r.status == IoStatus::would_block) return r;
    if (r.status == IoStatus::failed) {
        const Error& e = lookup_->error();
        return failed(e.code, proxy_ ? "the proxy: " + e.message : e.message);
    }
    append_numeric_addresses(lookup_->addresses(), proxy_ ? proxy_->port : url_.port, addresses_);
    lookup_.reset();
    state_ = State::connect;
    return start_connect();
}
#endif

LLM_STREAM_COLD inline IoResult NetworkTransport::start_connect() {
    // Tries addresses in order until a connect() is under way or has succeeded.
    while (next_address_ < addresses_.size()) {
        const SocketAddress& a = addresses_[next_address_++];
        const native_socket s = new_socket(a.storage.ss_family, SOCK_STREAM, IPPROTO_TCP);
        if (s == invalid_socket) {
            connect_errors_ += "; " + address_text(a) + ": " + socket_error_text(last_socket_error());
            continue;
        }
        if (connect(s, reinterpret_cast<const sockaddr*>(&a.storage), a.length) == 0) {
            connecting_ = s;
            return finish_connect();
        }
        const int e = last_socket_error();
        if (is_connect_pending(e)) {
            connecting_ = s;
            return {IoStatus::would_block, 0};
        }
        connect_errors_ += "; " + address_text(a) + ": " + socket_error_text(e);
        close_socket(s);
    }
    // One address: its error says it all; several: each address with its own error.
    std::string why = connect_errors_.empty() ? "no address" : connect_errors_.substr(2);
    if (addresses_.size() == 1 && why.find(": ") != std::string::npos) why = why.substr(why.find(": ") + 2);
    return failed(ErrorCode::connect, "cannot connect to " + peer_name() + ": " + why);
}

/* Writable (or in error) means the connect finished; SO_ERROR says how. */
LLM_STREAM_COLD inline IoResult NetworkTransport::poll_connect() {
#if defined(_WIN32)
    WSAPOLLFD probe = {connecting_, POLLWRNORM, 0};
    if (WSAPoll(&probe, 1, 0) == 0) return {IoStatus::would_block, 0};
#else
    pollfd probe = {connecting_, POLLOUT, 0};
    if (::poll(&probe, 1, 0) == 0) return {IoStatus::would_block, 0};
#endif
    int error = 0;
    socklen_t length = sizeof error;
    if (getsockopt(connecting_, SOL_SOCKET, SO_ERROR, reinterpret_cast<char*>(&error), &length) != 0)
        error = last_socket_error();
    if (error == 0) return finish_connect();
    connect_errors_ += "; " + address_text(addresses_[next_address_ - 1]) + ": " + socket_error_text(error);
    close_socket(connecting_);
    connecting_ = invalid_socket;
    return start_connect();
}

LLM_STREAM_COLD inline IoResult NetworkTransport::finish_connect() {
    const int nodelay = 1;  // requests are written whole; no reason to wait for more
    setsockopt(connecting_, IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const char*>(&nodelay), sizeof nodelay);
    connection_ = std::make_unique<Connection>(connecting_);
    connecting_ = invalid_socket;
    if (!url_.https) {
        state_ = State::ready;
        return {IoStatus::ok, 0};
    }
    if (proxy_) {
        tunnel_.emplace(*proxy_, url_, client_.config.limits.max_header_bytes);
        state_ = State::tunnel;
        return open_tunnel();
    }
    return start_tls();
}

/* Sends CONNECT, then reads the proxy's reply as it comes: the socket code only moves bytes, the
   ProxyTunnel says what they mean. */
LLM_STREAM_COLD inline IoResult NetworkTransport::open_tunnel() {
    const std::string& request = tunnel_->request();
    while (tunnel_request_sent_ < request.size()) {
        const IoResult w = connection_->write(request.data() + tunnel_request_sent_, request.size() - tunnel_request_sent_);
        if (w.status != IoStatus::ok) return w.status == IoStatus::failed ? failed_io() : w;
        tunnel_request_sent_ += w.bytes;
    }
    char buffer[1024];
    for (;;) {
        const IoResult r = connection_->read(buffer, sizeof buffer);
        if (r.status == IoStatus::would_block) return r;
        if (r.status == IoStatus::failed) return failed_io();
        const ProxyTunnel::Status s = r.status == IoStatus::closed ? tunnel_->finish() : tunnel_->feed({buffer, r.bytes});
        if (s == ProxyTunnel::Status::failed) return failed(tunnel_->error().code, tunnel_->error().message);
        if (s == ProxyTunnel::Status::open) return start_tls();
    }
}

LLM_STREAM_COLD inline IoResult NetworkTransport::start_tls() {
    std::shared_ptr<TlsBackend> backend;
    if (Error e = client_.tls_backend(backend)) return failed(e.code, std::move(e.message));
    if (Error e = backend->start(static_cast<socket_handle>(connection_->socket()), url_.host, connection_->tls))
        return failed(e.code, std::move(e.message));
    if (!connection_->tls) return failed(ErrorCode::tls, "the TLS backend started no session");
    state_ = State::tls;
    return handshake();
}

LLM_STREAM_COLD inline IoResult NetworkTransport::handshake() {
    const TlsResult r = connection_->tls->handshake();
    if (r.status == TlsStatus::ok) {
        state_ = State::ready;
        return {IoStatus::ok, 0};
    }
    if (r.status == TlsStatus::want_read || r.status == TlsStatus::want_write) {
        tls_wants_write_ = r.status == TlsStatus::want_write;
        return {IoStatus::would_block, 0};
    }
    const bool closed = r.status == TlsStatus::closed;
    std::string why = closed ? "the server closed the connection during the TLS handshake" : connection_->tls->error().message;
    return failed(closed ? ErrorCode::tls : tls_failure_code(connection_->tls->error()),
                  "TLS with " + url_.host_header + " failed: " + why);
}

/* ------------------------------------------------------------------------------------------------
   Stream: one state machine behind poll(); next_chunk()/next_event()/wait() are it plus a wait
   Each attempt: read a pooled connection's last response to its end, or open a new connection
   (DNS / connect / TLS) → send the request → feed what arrives to a Decoder. A failure before
   anything reached the caller may start another attempt after a backoff; after that it ends the
   stream, and what was delivered stays. One poll() does bounded work, checking cancel() and the
   deadline as it goes, so neither waits for a server that never stops sending.
   ------------------------------------------------------------------------------------------------ */

/* Makes the transport of each attempt that finds no pooled connection, to the plan's endpoint (none
   in memory). */
using TransportFactory =
    std::function<std::unique_ptr<Transport>(ClientState& client, const std::shared_ptr<const Endpoint>& endpoint)>;

/* How a stream makes its attempts: what it sends and where. */
struct AttemptPlan {
    TransportFactory factory;
    std::string request;  // the bytes to send
    // A network stream's: its connections are pooled under its origin. None in memory: no pooling.
    std::shared_ptr<const Endpoint> endpoint;
    std::string description;  // "POST http://host/v1/chat/completions (model m)", for the log
    bool retry = true;        // false: one attempt whatever the policy says (a replayed response)
    bool assemble_reply = false;  // ChatOptions::assemble_reply
    /* Requests go to this HTTP proxy (the endpoint's) in absolute form (an http:// origin), so a 407
       is the proxy's: ErrorCode::proxy. Null otherwise (a tunnel's 407 is the tunnel's to report). */
    const ProxyUrl* forward_proxy = nullptr;
};

/* The receive buffers of the streams a thread drives. A stream holds one only while it has bytes in it
   left to decode or an event that may point into it (until its next poll()), so streams polled until
   pending in turn, as a StreamSet loop does, share one: a stream's own memory is its decoder's, with
   only an unfinished line or event in it. A thread keeps as many as its streams ever held at once. */
class ReceiveBuffers {
public:
    /* The thread's buffers; nullptr where they are not shared: with mingw-w64, a thread_local object's
       destructor runs after winpthreads has torn down the thread's storage and frees a bad pointer at
       thread exit (seen under wine), so on Windows each stream keeps a buffer of its own. */
    static ReceiveBuffers* of_this_thread() {
#if defined(_WIN32)
        return nullptr;
#else
        static thread_local ReceiveBuffers buffers;
        return &buffers;
#endif
    }
    /* A buffer with room for `capacity` bytes, the thread's when it shares them; empty when out of memory. */
    static ByteBuffer take_for_this_thread(std::size_t capacity) {
        if (ReceiveBuffers* shared = of_this_thread()) return shared->take(capacity);
        ByteBuffer buffer;
        if (!buffer.reserve_exact(capacity)) return ByteBuffer();
        return buffer;
    }
    /* Gives the buffer to the thread's when it shares them; else the stream keeps it. */
    static void give_back_to_this_thread(ByteBuffer& buffer) {
        if (ReceiveBuffers* shared = of_this_thread()) shared->give_back(buffer);
    }
    // Room for the buffers given back made with the first one, not when the first comes back (which
    // could be in the middle of a stream).
    ReceiveBuffers() { free_.reserve(4); }
    /* A free buffer with room for `capacity` bytes; empty (no data()) when out of memory. */
    ByteBuffer take(std::size_t capacity) {
        ByteBuffer buffer;
        if (!free_.empty()) {
            buffer = std::move(free_.back());
            free_.pop_back();
        }
        if (!buffer.reserve_exact(capacity)) return ByteBuffer();
        return buffer;
    }
    void give_back(ByteBuffer& buffer) {
        if (buffer.data() != nullptr) free_.push_back(std::move(buffer));
    }

private:
    std::vector<ByteBuffer> free_;
};

/* A number for each stream made in this process, never reused (as an address may be). */
inline std::uint64_t next_stream_serial() noexcept {
    static std::atomic<std::uint64_t> made{0};
    return ++made;
}

class StreamImpl {
public:
    LLM_STREAM_COLD StreamImpl(std::shared_ptr<ClientState> client, Error error) : client_(std::move(client)), start_(Clock::now()) {
        end_with(std::move(error));
    }
    LLM_STREAM_COLD StreamImpl(std::shared_ptr<ClientState> client, AttemptPlan plan)
        : client_(std::move(client)), plan_(std::move(plan)), start_(Clock::now()),
          jitter_(static_cast<std::uint32_t>(start_.time_since_epoch().count())) {
        begin_attempt(true, true);
    }

    PollStatus poll();
    void wait();
    PollStatus wait_for_progress();
    const Event& current_event() const noexcept { return current_; }
    WaitInfo wait_info() const noexcept;
    void cancel() {
        cancelled_.store(true);
        waker_.wake();
        std::lock_guard<std::mutex> lock(wait_mutex_);
        wait_cv_.notify_all();
    }
    bool finished() const noexcept { return finished_; }
    /* Whether poll() has said so (done or failed) to its caller. */
    bool end_seen() const noexcept { return end_seen_; }
    std::uint64_t serial() const noexcept { return serial_; }
    const Error& error() const noexcept { return error_; }
    Stats stats() const {
        Stats s = stats_;
        if (!finished_) {
            s.total_ms = elapsed_ms(start_, Clock::now());
            s.events += counts_decoder() ? decoder_->messages() : 0;
            s.skipped_events += counts_decoder() ? decoder_->skipped_messages() : 0;
        }
        return s;
    }
    const Reply& reply() const noexcept { return assembler_.reply(); }

private:
    enum class State { draining, opening, exchanging, waiting_to_retry, finished };
    // Reads of the transport one poll() may make before it returns: bounded work per call.
    static constexpr int reads_per_poll = 4;

    const Config& config() const noexcept { return client_->config; }
    void log(LogLevel level, std::string message) const { emit_log(config(), level, std::move(message)); }

    void begin_attempt(bool counts, bool allow_pooled);
    void take_decoder(IdleConnection& idle);
    /* The decoder is this stream's (not still reading a pooled connection's last response). */
    bool counts_decoder() const noexcept { return decoder_ && !unfinished_; }
    PollStatus fail(Error e) {
        redact_secret(e.message, config().api_key);
        end_with(std::move(e));
        return PollStatus::failed;
    }
    void end_with(Error e);
    PollStatus cancelled() { return fail(make_error(ErrorCode::cancelled, "the stream was cancelled")); }
    void count_decoded() {
        if (!counts_decoder()) return;
        stats_.events += decoder_->messages();
        stats_.skipped_events += decoder_->skipped_messages();
    }
    /* The attempt failed: retried when nothing was delivered and the policy agrees, else final. */
    PollStatus attempt_failed(Error e);
    std::optional<PollStatus> retry_after(const Error& e);
    /* Once an error status has arrived, a connection cut while its body is read (a proxy that answers
       407 and hangs up) ends the response: the status decides on a retry, not the cut. */
    PollStatus transport_failed() {
        if (decoder_->http_status() < 300) return attempt_failed(transport_->error());
        input_ended_ = true;
        return input_ended();
    }
    /* Waiting for the transport: fine unless its time is up. */
    PollStatus waiting(Clock::time_point now);
    std::optional<PollStatus> time_is_up(Clock::time_point now);
    PollStatus drain_pooled();
    PollStatus succeed();
    void keep_connection();
    PollStatus deliver(const Event& event);
    void count_in_stats(const Event& event);
    std::optional<PollStatus> decode();
    void log_response();
    PollStatus input_ended();
    PollStatus exchange();
    PollStatus advance();  // poll() without noting that the end was seen
    std::chrono::milliseconds time_left(Clock::time_point now) const noexcept;

    bool end_seen_ = false;
    const std::uint64_t serial_ = next_stream_serial();
    std::shared_ptr<ClientState> client_;
    AttemptPlan plan_;
    std::unique_ptr<Transport> transport_;
    bool reused_ = false;                // this attempt's connection came from the pool
    std::size_t request_sent_ = 0;
    Clock::time_point start_;
    Clock::time_point attempt_start_{};
    Clock::time_point last_activity_{};  // of this attempt: bytes sent or received
    Clock::time_point retry_at_{};
    State state_ = State::opening;
    int retries_done_ = 0;
    bool response_started_ = false;      // this attempt received bytes
    bool input_ended_ = false;           // the transport reported the end of the response
    bool response_logged_ = false;
    std::size_t events_delivered_ = 0;
    std::minstd_rand jitter_;

    ByteBuffer receive_;  // from ReceiveBuffers while bytes or the current event are in it
    std::size_t receive_pos_ = 0, receive_end_ = 0;
    std::optional<Decoder> decoder_;  // this attempt's; none before the first (held in place: one allocation less)
    bool unfinished_ = false;           // decoder_ is still reading the pooled connection's last response
    bool decoder_has_more_ = false;     // its last step was an event: more of that message may follow

    Event current_;
    Error error_;
    Stats stats_;
    bool finished_ = false;
    // Fed every delivered event when plan_.assemble_reply: a retry happens only before the first
    // one, so nothing is added twice.
    ReplyAssembler assembler_;

    std::atomic<bool> cancelled_{false};
    Waker waker_;
    std::mutex wait_mutex_;
    std::condition_variable wait_cv_;
};

LLM_STREAM_COLD inline void StreamImpl::begin_attempt(bool counts, bool allow_pooled) {
    count_decoded();
    request_sent_ = 0;
    receive_pos_ = receive_end_ = 0;
    response_started_ = input_ended_ = response_logged_ = false;
    transport_.reset();  // closes the previous attempt's connection first
    IdleConnection idle;
    if (allow_pooled && plan_.endpoint) idle = client_->take_idle(plan_.endpoint->origin);
    reused_ = idle.transport != nullptr;
    take_decoder(idle);
    transport_ = reused_ ? std::move(idle.transport) : plan_.factory(*client_, plan_.endpoint);
    if (counts) ++stats_.attempts;
    if (counts && config().log_level <= LogLevel::info)  // the message is not even made otherwise
        log(LogLevel::info, plan_.description + ", attempt " + std::to_string(stats_.attempts) +
                                (reused_ ? ", on a kept-alive connection" : ""));
    attempt_start_ = last_activity_ = Clock::now();
    state_ = reused_ ? State::draining : State::opening;
}

/* The pooled connection's decoder (reset, or still reading its last response), else this stream's
   own reset: only a stream's first attempt without a pooled connection makes one. */
LLM_STREAM_COLD inline void StreamImpl::take_decoder(IdleConnection& idle) {
    unfinished_ = idle.unfinished;
    if (idle.decoder) decoder_ = std::move(idle.decoder);
    else if (decoder_) decoder_->reset();
    else decoder_.emplace(config().limits, config().api);
}

inline void StreamImpl::end_with(Error e) {
    if (!finished_) count_decoded();
    error_ = std::move(e);
    finished_ = true;
    state_ = State::finished;
    stats_.total_ms = elapsed_ms(start_, Clock::now());
    transport_.reset();
    log(LogLevel::info, std::string("LLM stream failed: ") + error_.message);
}

inline std::chrono::milliseconds StreamImpl::time_left(Clock::time_point now) const noexcept {
    // The nearest of: this step's timeout, the request's deadline.
    const Config& cfg = config();
    Clock::time_point until = state_ == State::opening ? attempt_start_ + cfg.connect_timeout
                                                      : last_activity_ + cfg.read_timeout;
    if (state_ == State::draining) until = std::min(until, attempt_start_ + std::chrono::seconds(1));
    if (cfg.deadline.count() > 0) until = std::min(until, start_ + cfg.deadline);
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - now);
    return left.count() > 0 ? left : std::chrono::milliseconds(0);
}

inline WaitInfo StreamImpl::wait_info() const noexcept {
    if (finished_ || receive_pos_ < receive_end_ || input_ended_) return {};  // nothing to wait for
    const Clock::time_point now = Clock::now();
    if (state_ == State::waiting_to_retry) {
        WaitInfo w;
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(retry_at_ - now);
        w.timeout = left.count() > 0 ? left : std::chrono::milliseconds(0);
        return w;
    }
    if (!transport_) return {};
    WaitInfo w = transport_->wait_info();
    if (w.socket != static_cast<socket_handle>(-1)) w.timeout = std::min(w.timeout, time_left(now));
    return w;
}

LLM_STREAM_COLD inline PollStatus StreamImpl::attempt_failed(Error e) {
    transport_.reset();
    if (events_delivered_ == 0 && !cancelled_.load()) {
        // An idle connection the server had already closed: try again on a new one, free of charge.
        if (reused_ && !response_started_ && e.code != ErrorCode::http_status) {
            log(LogLevel::info, "a reused connection failed (" + e.message + "); retrying on a new connection");
            begin_attempt(false, false);
            return PollStatus::pending;
        }
        if (std::optional<PollStatus> s = retry_after(e)) return *s;
    }
    if (stats_.attempts > 1) e.message += " (after " + std::to_string(stats_.attempts) + " attempts)";
    return fail(std::move(e));
}

/* Schedules the next attempt when the policy says so and the deadline leaves time for it. */
LLM_STREAM_COLD inline std::optional<PollStatus> StreamImpl::retry_after(const Error& e) {
    AttemptFailure failure;
    failure.code = e.code;
    failure.http_status = e.http_status;
    failure.response_started = response_started_;
    if (e.http_status != 0) read_retry_hints(*decoder_, static_cast<std::int64_t>(std::time(nullptr)), failure);
    const double random01 = static_cast<double>(jitter_() - jitter_.min()) /
                            static_cast<double>(jitter_.max() - jitter_.min() + 1);
    const RetryDecision d = decide_retry(config().retry, retries_done_, failure, random01);
    const Clock::time_point now = Clock::now();
    const bool within_deadline = config().deadline.count() == 0 || now + d.wait < start_ + config().deadline;
    if (!d.retry || !within_deadline || !plan_.retry) return std::nullopt;
    ++retries_done_;
    char wait[32];
    std::snprintf(wait, sizeof wait, "%.2f s", static_cast<double>(d.wait.count()) / 1000.0);
    log(LogLevel::warning, "attempt " + std::to_string(stats_.attempts) + " failed: " + e.message +
                               "; retrying in " + wait);
    retry_at_ = now + d.wait;
    state_ = State::waiting_to_retry;
    return PollStatus::pending;
}

LLM_STREAM_COLD inline std::string seconds_text(std::chrono::milliseconds d) {
    char text[32];
    std::snprintf(text, sizeof text, "%.3g s", std::chrono::duration<double>(d).count());
    return text;
}

/* The deadline, the connect timeout or the read timeout, whichever has passed first. */
inline std::optional<PollStatus> StreamImpl::time_is_up(Clock::time_point now) {
    const Config& cfg = config();
    if (cfg.deadline.count() > 0 && now - start_ >= cfg.deadline)
        return fail(make_error(ErrorCode::timeout, "the request deadline of " + seconds_text(cfg.deadline) + " expired"));
    if (state_ == State::opening && now - attempt_start_ >= cfg.connect_timeout)
        return attempt_failed(make_error(ErrorCode::timeout, std::string(transport_->opening_stage()) +
                                                                 " timed out after " + seconds_text(cfg.connect_timeout)));
    if (state_ == State::exchanging && now - last_activity_ >= cfg.read_timeout) {
        const char* what = response_started_ ? "the server went silent for " : "no response from the server within ";
        return attempt_failed(make_error(ErrorCode::timeout, what + seconds_text(cfg.read_timeout)));
    }
    return std::nullopt;
}

inline PollStatus StreamImpl::waiting(Clock::time_point now) {
    if (std::optional<PollStatus> s = time_is_up(now)) return *s;
    return PollStatus::pending;
}

inline PollStatus StreamImpl::deliver(const Event& event) {
    ++events_delivered_;
    if (plan_.assemble_reply)
        if (Error e = assembler_.add(event)) return fail(std::move(e));
    if (event.choice == 0) count_in_stats(event);
    current_ = event;
    return PollStatus::event;
}

/* Stats are of the first choice, the one next_chunk() yields. */
inline void StreamImpl::count_in_stats(const Event& event) {
    switch (event.type) {
    case EventType::content:
        ++stats_.chunks;
        stats_.chars += utf8_count_chars(event.text);
        stats_.content_bytes += event.text.size();
        if (stats_.first_chunk_ms < 0) {
            stats_.first_chunk_ms = elapsed_ms(start_, Clock::now());
            if (config().log_level <= LogLevel::info) {
                char ms[32];
                std::snprintf(ms, sizeof ms, "%.2f", stats_.first_chunk_ms);
                log(LogLevel::info, "First chunk received: " + std::string(utf8_prefix(event.text, 20)) +
                                        "... (" + ms + "ms)");
            }
        }
        break;
    case EventType::finish:
        stats_.finish_reason.assign(event.text.data(), event.text.size());
        break;
    case EventType::usage:
        stats_.has_usage = true;
        stats_.usage = event.usage;
        break;
    default:
        break;
    }
}

/* Reads what a pooled connection received while idle. The rest of its last response is expected
   (usually a moment behind); anything else (end of input, a reset, unexpected bytes, or nothing
   within a second) means the connection cannot carry another request: the next idle one, or a
   new one, is tried instead. */
LLM_STREAM_COLD inline PollStatus StreamImpl::drain_pooled() {
    char buffer[512];
    for (int reads = 0; reads < 16; ++reads) {
        const IoResult r = transport_->read(buffer, sizeof buffer);
        if (r.status == IoStatus::would_block) {
            if (!unfinished_) {
                state_ = State::opening;
                return PollStatus::pending;  // poll() goes on to send the request
            }
            if (Clock::now() - attempt_start_ < std::chrono::seconds(1)) return PollStatus::pending;
            break;
        }
        if (r.status != IoStatus::ok || !unfinished_) break;
        std::string_view input(buffer, r.bytes);
        while (!input.empty() && !decoder_->response_complete()) {
            const DecodeStep s = decoder_->feed(input);
            input.remove_prefix(s.consumed);
            if (s.status == DecodeStatus::failed || (s.consumed == 0 && s.status != DecodeStatus::event)) break;
        }
        if (!decoder_->response_complete()) continue;
        if (!input.empty()) break;  // bytes beyond the response: not a connection to trust
        decoder_->reset();  // now this stream's
        unfinished_ = false;
    }
    begin_attempt(false, true);
    return PollStatus::pending;
}

/* Hands the connection back to the client's pool, with the decoder and the request's room, when the
   server allows it and nothing unread is left but the end of the response, which the next user of the
   connection will read. */
LLM_STREAM_COLD inline void StreamImpl::keep_connection() {
    if (!transport_ || transport_->pool_key().empty() || !decoder_->keep_alive() || input_ended_) return;
    while (receive_pos_ < receive_end_ && !decoder_->response_complete()) {
        const DecodeStep s = decoder_->feed({receive_.data() + receive_pos_, receive_end_ - receive_pos_});
        receive_pos_ += s.consumed;
        if (s.status == DecodeStatus::failed || s.consumed == 0) return;
    }
    if (receive_pos_ != receive_end_) return;
    IdleConnection idle;
    idle.unfinished = !decoder_->response_complete();
    if (!idle.unfinished) decoder_->reset();  // now: a buffer grown by a big message is not kept idle
    idle.decoder = std::move(decoder_);
    decoder_.reset();
    idle.transport = std::move(transport_);
    constexpr std::size_t usual_request_bytes = 16 * 1024;  // a request with images is not kept idle
    if (plan_.request.capacity() <= usual_request_bytes) {
        idle.request_room = std::move(plan_.request);
        idle.request_room.clear();
    }
    client_->put_idle(std::move(idle));
}

LLM_STREAM_COLD inline PollStatus StreamImpl::succeed() {
    count_decoded();
    if (plan_.assemble_reply) assembler_.finish();
    keep_connection();
    finished_ = true;
    state_ = State::finished;
    stats_.total_ms = elapsed_ms(start_, Clock::now());
    transport_.reset();
    if (config().log_level <= LogLevel::info) {
        char line[128];
        std::snprintf(line, sizeof line, "LLM stream completed: %zu chunks, %zu chars, %.2f ms", stats_.chunks,
                      stats_.chars, stats_.total_ms);
        log(LogLevel::info, line);
    }
    return PollStatus::done;
}

/* The seed's client logs each response as it logs the request and the metrics. */
LLM_STREAM_COLD inline void StreamImpl::log_response() {
    response_logged_ = true;
    if (config().log_level > LogLevel::info) return;
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.2f ms", elapsed_ms(attempt_start_, Clock::now()));
    std::string type(decoder_->header("content-type"));
    log(LogLevel::info, "response: HTTP " + std::to_string(decoder_->http_status()) +
                            (type.empty() ? "" : " " + excerpt(type, 60)) + " after " + ms);
}

/* Feeds the received bytes to the decoder; a result for the caller, or nothing when all are used. */
inline std::optional<PollStatus> StreamImpl::decode() {
    for (;;) {
        const DecodeStep s = decoder_->feed({receive_.data() + receive_pos_, receive_end_ - receive_pos_});
        receive_pos_ += s.consumed;
        decoder_has_more_ = s.status == DecodeStatus::event;
        if (!response_logged_ && decoder_->http_status() != 0) log_response();
        switch (s.status) {
        case DecodeStatus::need_more: return std::nullopt;
        case DecodeStatus::event: return deliver(decoder_->event());
        case DecodeStatus::warning: log(LogLevel::warning, std::string(decoder_->warning())); break;
        case DecodeStatus::done: return succeed();
        case DecodeStatus::failed: {
            const Error& e = decoder_->error();
            if (plan_.forward_proxy && e.http_status == 407)
                return fail(proxy_authentication_error(plan_.forward_proxy->address, !plan_.forward_proxy->authorization.empty(), 407));
            // A status worth retrying is the attempt's failure; anything else is the stream's.
            if (e.code == ErrorCode::http_status) return attempt_failed(e);
            return fail(e);
        }
        }
    }
}

/* The transport reported the end of input: the end of a close-delimited body, or the connection
   dropped (retried when nothing had been received or delivered). */
LLM_STREAM_COLD inline PollStatus StreamImpl::input_ended() {
    for (;;) {
        const DecodeStep s = decoder_->finish();
        switch (s.status) {
        case DecodeStatus::event: return deliver(decoder_->event());
        case DecodeStatus::warning: log(LogLevel::warning, std::string(decoder_->warning())); break;
        case DecodeStatus::need_more:
        case DecodeStatus::done: return succeed();
        case DecodeStatus::failed:
            if (!response_started_)
                return attempt_failed(make_error(ErrorCode::connect, "the server closed the connection without answering"));
            return attempt_failed(decoder_->error());
        }
    }
}

inline PollStatus StreamImpl::poll() {
    const PollStatus s = advance();
    end_seen_ = end_seen_ || s == PollStatus::done || s == PollStatus::failed;
    // Nothing left in the receive buffer and no event pointing into it: another stream may use it.
    if (s != PollStatus::event && receive_pos_ == receive_end_) ReceiveBuffers::give_back_to_this_thread(receive_);
    return s;
}

inline PollStatus StreamImpl::advance() {
    if (finished_) return error_ ? PollStatus::failed : PollStatus::done;
    if (cancelled_.load(std::memory_order_relaxed)) return cancelled();
    if (state_ == State::waiting_to_retry) {
        if (Clock::now() < retry_at_) return waiting(Clock::now());
        begin_attempt(true, true);
    }
    if (state_ == State::draining) {
        const PollStatus s = drain_pooled();
        if (state_ == State::draining) return s == PollStatus::pending ? waiting(Clock::now()) : s;
    }
    if (state_ == State::opening) {
        const IoResult r = transport_->open();
        if (r.status == IoStatus::would_block) return waiting(Clock::now());
        if (r.status != IoStatus::ok) return transport_failed();
        state_ = State::exchanging;
        last_activity_ = Clock::now();
    }
    return exchange();
}

/* Sends the request, then reads and decodes, returning at the first event, the end, or after
   reads_per_poll reads; cancel() and the deadline are checked on every round. */
inline PollStatus StreamImpl::exchange() {
    const Config& cfg = config();
    for (int reads = 0;;) {
        if (cancelled_.load(std::memory_order_relaxed)) return cancelled();
        // Events still queued from the last bytes received come before any wait for more.
        if (receive_pos_ < receive_end_ || decoder_has_more_ || decoder_->response_complete()) {
            if (std::optional<PollStatus> s = decode()) return *s;
            continue;
        }
        if (input_ended_) return input_ended();
        if (std::optional<PollStatus> s = time_is_up(Clock::now())) return *s;
        if (request_sent_ < plan_.request.size()) {
            const IoResult w = transport_->write(plan_.request.data() + request_sent_,
                                                 plan_.request.size() - request_sent_);
            if (w.status == IoStatus::would_block) return PollStatus::pending;
            if (w.status != IoStatus::ok) return transport_failed();
            request_sent_ += w.bytes;
            last_activity_ = Clock::now();
            continue;
        }
        if (reads == reads_per_poll) return PollStatus::pending;  // the socket is still worth watching
        if (receive_.data() == nullptr) receive_ = ReceiveBuffers::take_for_this_thread(cfg.limits.receive_buffer_bytes);
        if (receive_.data() == nullptr)
            return fail(make_error(ErrorCode::out_of_memory, "out of memory for the receive buffer"));
        const IoResult r = transport_->read(receive_.data(), cfg.limits.receive_buffer_bytes);
        ++reads;
        switch (r.status) {
        case IoStatus::ok:
            receive_pos_ = 0;
            receive_end_ = r.bytes;
            stats_.received_bytes += r.bytes;
            last_activity_ = Clock::now();
            if (!response_started_) stats_.first_byte_ms = elapsed_ms(start_, last_activity_);
            response_started_ = true;
            break;
        case IoStatus::would_block: return PollStatus::pending;
        case IoStatus::closed: input_ended_ = true; break;
        case IoStatus::failed: return transport_failed();
        }
    }
}

inline void StreamImpl::wait() {
    waker_.prepare();
    if (cancelled_.load()) return;
    const WaitInfo w = wait_info();
    if (w.socket != static_cast<socket_handle>(-1)) {
        wait_for_socket(static_cast<native_socket>(w.socket), w.want_read, w.want_write, w.timeout, waker_);
    } else if (w.timeout.count() > 0) {
        std::unique_lock<std::mutex> lock(wait_mutex_);
        wait_cv_.wait_for(lock, w.timeout, [this] { return cancelled_.load(); });
    }
}

inline PollStatus StreamImpl::wait_for_progress() {
    for (;;) {
        const PollStatus s = poll();
        if (s != PollStatus::pending) return s;
        wait();
    }
}

/* ------------------------------------------------------------------------------------------------
   Many streams: one wait over every stream's socket and timer (StreamSet)
   ------------------------------------------------------------------------------------------------ */

/* Each stream's place in one wait: an entry in the poll set (or none) and when its timer falls due. */
struct StreamWait {
    std::size_t entry = 0;  // index into StreamSetState::entries; no_entry without a socket
    Clock::time_point due{};
    bool skip = false;  // finished, or already ready before waiting
};

struct StreamSetState {
    static constexpr std::size_t no_entry = static_cast<std::size_t>(-1);
    std::vector<Stream*> streams;
    /* Parallel to streams: the serial (StreamImpl::serial(), never 0) of the stream whose end was
       returned, so that it is returned once, also when the caller moves a new stream into the same
       Stream object. */
    std::vector<std::uint64_t> finish_reported;
    std::vector<Stream*> ready;
    std::vector<StreamWait> waits;     // parallel to streams, rebuilt by each wait
    std::vector<PollEntry> entries;    // the waker's first, then the streams', then the caller's
    Waker waker;

    const std::vector<Stream*>& wait(std::chrono::milliseconds timeout, std::vector<SocketWatch>* sockets);
    Clock::time_point gather(Clock::time_point now, Clock::time_point until);
    void add_sockets(std::vector<SocketWatch>* sockets);
    void collect(Clock::time_point now, std::vector<SocketWatch>* sockets);
};

/* Fills `entries` and `waits` from each stream's wait_info(); returns the earliest moment to stop
   waiting (`until` at the latest). A stream that can go on at once is ready without waiting. */
inline Clock::time_point StreamSetState::gather(Clock::time_point now, Clock::time_point until) {
    waits.resize(streams.size());
    for (std::size_t i = 0; i < streams.size(); ++i) {
        StreamWait& w = waits[i];
        w = StreamWait{};
        w.entry = no_entry;
        if ((w.skip = streams[i]->finished())) {
            // Once when poll() has not said so, so that a stream that failed as it was made is seen to end.
            const StreamImpl* impl = streams[i]->impl_.get();
            if (impl && !impl->end_seen() && finish_reported[i] != impl->serial()) {
                ready.push_back(streams[i]);
                finish_reported[i] = impl->serial();
            }
            continue;
        }
        const WaitInfo info = streams[i]->wait_info();
        w.due = now + info.timeout;
        if (info.socket == static_cast<socket_handle>(-1) && info.timeout.count() <= 0) {
            ready.push_back(streams[i]);
            w.skip = true;
            continue;
        }
        if (info.socket != static_cast<socket_handle>(-1)) {
            w.entry = entries.size();
            entries.push_back(poll_entry(info.socket, info.want_read, info.want_write));
        }
        until = std::min(until, w.due);
    }
    return ready.empty() ? until : now;
}

inline void StreamSetState::add_sockets(std::vector<SocketWatch>* sockets) {
    if (!sockets) return;
    for (SocketWatch& watch : *sockets) {
        watch.ready = false;
        entries.push_back(poll_entry(watch.socket, watch.want_read, watch.want_write));
    }
}

/* After the wait: the streams whose socket answered or whose timer is due, and the caller's sockets. */
inline void StreamSetState::collect(Clock::time_point now, std::vector<SocketWatch>* sockets) {
    for (std::size_t i = 0; i < streams.size(); ++i) {
        const StreamWait& w = waits[i];
        if (w.skip) continue;
        const bool answered = w.entry != no_entry && entries[w.entry].revents != 0;
        if (answered || now >= w.due) ready.push_back(streams[i]);
    }
    if (!sockets) return;
    std::size_t entry = entries.size() - sockets->size();
    for (SocketWatch& watch : *sockets) watch.ready = entries[entry++].revents != 0;
}

inline const std::vector<Stream*>& StreamSetState::wait(std::chrono::milliseconds timeout,
                                                       std::vector<SocketWatch>* sockets) {
    ready.clear();
    entries.clear();
    const bool wakeable = waker.readable() != invalid_socket;
    if (wakeable) entries.push_back(poll_entry(static_cast<socket_handle>(waker.readable()), true, false));
    const Clock::time_point now = Clock::now();
    const auto longest = std::chrono::milliseconds(1 << 30);  // keeps now + timeout from overflowing
    const Clock::time_point until = gather(now, now + std::clamp(timeout, std::chrono::milliseconds(0), longest));
    add_sockets(sockets);
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
    poll_entries(entries.data(), entries.size(), static_cast<int>(std::clamp<decltype(ms)>(ms, 0, 1 << 30)));
    if (wakeable && entries[0].revents != 0) waker.drain();  // one wake() ends one wait
    collect(Clock::now(), sockets);
    return ready;
}

}  // namespace detail
}  // inline namespace v0_2
}  // namespace llm_stream

// The implementation's own macros end with it; only the documented configuration macros remain.
#undef LLM_STREAM_SSE2
#undef LLM_STREAM_FORCE_INLINE
#endif  // LLM_STREAM_INTERNALS

#if defined(LLM_STREAM_IMPLEMENTATION) && !defined(LLM_STREAM_IMPLEMENTATION_INCLUDED)
#define LLM_STREAM_IMPLEMENTATION_INCLUDED
namespace llm_stream {
inline namespace v0_2 {

/* ------------------------------------------------------------------------------------------------
   Public API: errors, configuration, stream, client
   ------------------------------------------------------------------------------------------------ */

const char* to_string(ErrorCode code) noexcept {
    switch (code) {
    case ErrorCode::none: return "none";
    case ErrorCode::invalid_config: return "invalid_config";
    case ErrorCode::invalid_argument: return "invalid_argument";
    case ErrorCode::dns: return "dns";
    case ErrorCode::connect: return "connect";
    case ErrorCode::tls: return "tls";
    case ErrorCode::timeout: return "timeout";
    case ErrorCode::http_status: return "http_status";
    case ErrorCode::protocol: return "protocol";
    case ErrorCode::limit_exceeded: return "limit_exceeded";
    case ErrorCode::server_error: return "server_error";
    case ErrorCode::cancelled: return "cancelled";
    case ErrorCode::io: return "io";
    case ErrorCode::out_of_memory: return "out_of_memory";
    case ErrorCode::proxy: return "proxy";
    }
    return "unknown";
}

namespace detail {

LLM_STREAM_COLD inline Error config_error(std::string message) { return make_error(ErrorCode::invalid_config, std::move(message)); }

// "line 3: what", the line counted from 1 at byte offset `at`.
LLM_STREAM_COLD inline Error dotenv_error(std::string_view text, std::size_t at, const char* what) {
    const auto newlines = std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n');
    return config_error("line " + std::to_string(newlines + 1) + ": " + what);
}

/* The quoted value at text[i] (its opening quote); on success `i` is past the end of its line. Quoted
   values may span lines; double quotes understand the usual escapes. */
LLM_STREAM_COLD inline Error dotenv_quoted_value(std::string_view text, std::size_t& i, std::string& value) {
    const std::size_t opened_at = i;
    const char quote = text[i++];
    const bool double_quote = quote == '"';
    for (;;) {
        if (i >= text.size())
            return dotenv_error(text, opened_at, double_quote ? "unterminated double quote" : "unterminated single quote");
        const char c = text[i++];
        if (c == quote) break;
        if (double_quote && c == '\\' && i < text.size()) {
            const char e = text[i++];
            value += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
            continue;
        }
        value += c;
    }
    // Only blanks and a comment may follow: `KEY="a"b` has no meaning anyone could rely on.
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    const std::string_view rest = text.substr(i, 2);
    if (!rest.empty() && rest[0] != '#' && rest[0] != '\n' && rest != "\r\n" && rest != "\r")
        return dotenv_error(text, i, double_quote ? "unexpected characters after the closing double quote"
                                                  : "unexpected characters after the closing single quote");
    while (i < text.size() && text[i] != '\n') ++i;
    if (i < text.size()) ++i;
    return {};
}

// The unquoted value at text[i], up to the end of the line; `i` ends past the line.
LLM_STREAM_COLD inline void dotenv_plain_value(std::string_view text, std::size_t& i, std::string& value) {
    const std::size_t begin = i;
    while (i < text.size() && text[i] != '\n') ++i;
    std::string_view raw = text.substr(begin, i - begin);
    // " #" starts a comment in an unquoted value; a '#' inside a word does not.
    for (std::size_t k = 0; k < raw.size(); ++k)
        if (raw[k] == '#' && (k == 0 || raw[k - 1] == ' ' || raw[k - 1] == '\t')) {
            raw = raw.substr(0, k);
            break;
        }
    value.assign(trim_ascii_space(raw));
    if (i < text.size()) ++i;
}

// The text of a .env file; a missing file is empty text, not an error.
LLM_STREAM_COLD inline Error read_dotenv_file(const std::string& path, std::string& text) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        if (errno == ENOENT || errno == ENOTDIR) return {};
        return config_error("cannot read " + path + ": " + std::strerror(errno));
    }
    constexpr std::size_t max_size = 1u << 20;
    char buffer[4096];
    std::size_t got = 0;
    while (text.size() <= max_size && (got = std::fread(buffer, 1, sizeof buffer, f)) > 0) text.append(buffer, got);
    const bool failed = std::ferror(f) != 0;
    const int read_errno = errno;
    std::fclose(f);
    if (failed) return config_error("cannot read " + path + ": " + std::strerror(read_errno));
    if (text.size() > max_size) return config_error(path + " is larger than 1 MiB: not a .env file");
    return {};
}

/* The first of `names` set in the environment and not empty; its name in `found`. */
LLM_STREAM_COLD inline std::optional<std::string> first_env(std::initializer_list<const char*> names, const char*& found) {
    for (const char* name : names) {
        const char* value = std::getenv(name);
        if (value && !trim_ascii_space(value).empty()) {
            found = name;
            return std::string(trim_ascii_space(value));
        }
    }
    return std::nullopt;
}

/* Config::proxy and no_proxy from the environment, as curl picks them for the base URL's scheme. */
LLM_STREAM_COLD inline Error proxy_from_env(Config& out) {
    const char* name = "";
    if (auto v = first_env({"no_proxy", "NO_PROXY"}, name)) out.no_proxy = *v;
    const bool https = iequals(trim_ascii_space(out.base_url).substr(0, 8), "https://");
    std::optional<std::string> proxy = https ? first_env({"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"}, name)
                                             : first_env({"http_proxy", "all_proxy", "ALL_PROXY"}, name);
    if (!proxy || out.stub_mode()) return {};
    out.proxy = *proxy;
    ProxyUrl checked;
    if (Error e = parse_proxy_url(out.proxy, checked)) return config_error(name + (": " + e.message));
    return {};
}

}  // namespace detail

LLM_STREAM_COLD Error parse_dotenv(std::string_view text,
                   const std::function<void(std::string_view key, std::string_view value)>& visit) {
    std::size_t i = text.substr(0, 3) == "\xEF\xBB\xBF" ? 3 : 0;  // editors may save a BOM
    const std::size_t n = text.size();
    auto skip_blanks = [&] { while (i < n && (text[i] == ' ' || text[i] == '\t')) ++i; };
    auto skip_line = [&] { while (i < n && text[i] != '\n') ++i; if (i < n) ++i; };
    std::string value;
    while (i < n) {
        skip_blanks();
        if (i >= n) break;
        if (text[i] == '\n' || text[i] == '\r' || text[i] == '#') { skip_line(); continue; }
        if (text.substr(i, 7) == "export " || text.substr(i, 7) == "export\t") { i += 7; skip_blanks(); }
        const std::size_t key_begin = i;
        while (i < n && (std::isalnum(static_cast<unsigned char>(text[i])) || text[i] == '_' || text[i] == '.')) ++i;
        const std::string_view key = text.substr(key_begin, i - key_begin);
        skip_blanks();
        if (key.empty() || i >= n || text[i] != '=')  // the value is not repeated: it may be a key
            return detail::dotenv_error(text, key_begin, key.empty() ? "not a KEY=VALUE assignment"
                                                                     : "expected '=' after the name");
        ++i;
        skip_blanks();
        value.clear();
        if (i < n && (text[i] == '"' || text[i] == '\'')) {
            if (Error e = detail::dotenv_quoted_value(text, i, value)) return e;
        } else {
            detail::dotenv_plain_value(text, i, value);
        }
        visit(key, value);
    }
    return {};
}

LLM_STREAM_COLD Error Config::from_env(Config& out, const std::string& dotenv_path) {
    out = Config{};
    std::vector<std::pair<std::string, std::string>> file_values;
    std::string text;
    Error error = detail::read_dotenv_file(dotenv_path, text);
    if (!error) {
        error = parse_dotenv(text, [&](std::string_view key, std::string_view value) {
            file_values.emplace_back(std::string(key), std::string(value));
        });
        if (error) error.message = dotenv_path + " " + error.message;  // ".env line 3: ..."
    }
    // The environment wins; within the file, a later assignment wins.
    auto lookup = [&](const char* name) -> std::optional<std::string> {
        if (const char* v = std::getenv(name)) return std::string(v);
        for (auto it = file_values.rbegin(); it != file_values.rend(); ++it)
            if (it->first == name) return it->second;
        return std::nullopt;
    };
    if (auto v = lookup("LLM_API"); v && !detail::trim_ascii_space(*v).empty()) {
        Error e = parse_api(detail::trim_ascii_space(*v), out.api);
        if (e && !error) error = detail::config_error("LLM_API: " + e.message);
    }
    if (auto v = lookup("LLM_API_KEY")) out.api_key = *v;
    if (auto v = lookup("LLM_BASE_URL")) {
        out.base_url = std::string(detail::trim_ascii_space(*v));
        // Unset means stub mode; set but empty is a mistake to report, not a silent stub.
        if (out.base_url.empty() && !error)
            error = detail::config_error(std::getenv("LLM_BASE_URL")
                                             ? "LLM_BASE_URL is set but empty in the environment (unset it for stub mode)"
                                             : "LLM_BASE_URL is set but empty in " + dotenv_path +
                                                   " (leave it out for stub mode)");
    }
    if (auto v = lookup("LLM_MODEL"); v && !v->empty()) out.model = *v;
    if (auto v = lookup("LLM_STUB_DELAY_MS")) {
        std::uint64_t ms = 0;
        if (detail::parse_decimal(detail::trim_ascii_space(*v), ms) && ms <= 60000)
            out.stub_chunk_delay = std::chrono::milliseconds(ms);
        else if (!error)
            error = detail::config_error("LLM_STUB_DELAY_MS must be a whole number of milliseconds from 0 to 60000");
    }
    Error proxy_error = detail::proxy_from_env(out);
    return error ? error : proxy_error;
}

LLM_STREAM_COLD Config Config::from_env(const std::string& dotenv_path) {
    Config c;
    c.env_error = from_env(c, dotenv_path);
    return c;
}

LLM_STREAM_COLD const char* api_name(Api api) noexcept {
    switch (api) {
    case Api::openai: return "openai";
    case Api::responses: return "responses";
    case Api::anthropic: return "anthropic";
    case Api::gemini: return "gemini";
    case Api::ollama: return "ollama";
    }
    return "openai";
}

LLM_STREAM_COLD Error parse_api(std::string_view name, Api& out) {
    for (Api api : {Api::openai, Api::responses, Api::anthropic, Api::gemini, Api::ollama}) {
        if (name == api_name(api)) {
            if (Error e = detail::api_compiled_in(api)) return e;
            out = api;
            return {};
        }
    }
    return detail::config_error("unknown API \"" + detail::excerpt(name, 40) +
                                "\": openai, responses, anthropic, gemini or ollama");
}

namespace {
/* The path an API's requests go to, after the base URL. */
LLM_STREAM_COLD std::string endpoint_path(Api api, std::string_view model) {
    switch (api) {
    case Api::openai: break;
    case Api::responses: return "/responses";
    case Api::anthropic: return "/messages";
    case Api::gemini: return "/models/" + std::string(model) + ":streamGenerateContent";
    case Api::ollama: return "/api/chat";
    }
    return "/chat/completions";
}
}  // namespace

LLM_STREAM_COLD std::string Config::endpoint_url(std::string_view model_override) const {
    if (base_url.empty()) return {};
    std::string_view url = detail::trim_ascii_space(base_url);
    const std::size_t query_at = std::min(url.find('?'), url.size());
    std::string_view path = url.substr(0, query_at);
    std::string query(url.substr(query_at));
    while (!path.empty() && path.back() == '/') path.remove_suffix(1);
    const std::string suffix = endpoint_path(api, model_override.empty() ? std::string_view(model) : model_override);
    std::string out(path);
    const bool full = api == Api::gemini ? path.size() >= 22 && path.substr(path.size() - 22) == ":streamGenerateContent"
                                         : path.size() >= suffix.size() && path.substr(path.size() - suffix.size()) == suffix;
    if (!full) out += suffix;
    if (api == Api::gemini && query.find("alt=sse") == std::string::npos) query += query.empty() ? "?alt=sse" : "&alt=sse";
    out += query;
    return out;
}

Stream::Stream() noexcept = default;
Stream::Stream(Stream&&) noexcept = default;
Stream& Stream::operator=(Stream&&) noexcept = default;
Stream::~Stream() = default;
Stream::Stream(std::unique_ptr<detail::StreamImpl> impl) noexcept : impl_(std::move(impl)) {}

std::optional<std::string_view> Stream::next_chunk() {
    while (const Event* e = next_event())
        if (e->type == EventType::content && e->choice == 0) return e->text;
    return std::nullopt;
}

const Event* Stream::next_event() {
    if (!impl_) return nullptr;
    return impl_->wait_for_progress() == PollStatus::event ? &impl_->current_event() : nullptr;
}

PollStatus Stream::poll() { return impl_ ? impl_->poll() : PollStatus::done; }

const Event& Stream::current_event() const noexcept {
    static const Event none;
    return impl_ ? impl_->current_event() : none;
}

WaitInfo Stream::wait_info() const noexcept { return impl_ ? impl_->wait_info() : WaitInfo{}; }
void Stream::wait() { if (impl_) impl_->wait(); }
void Stream::cancel() { if (impl_) impl_->cancel(); }
bool Stream::finished() const noexcept { return !impl_ || impl_->finished(); }

const Error& Stream::error() const noexcept {
    static const Error none;
    return impl_ ? impl_->error() : none;
}

Stats Stream::stats() const { return impl_ ? impl_->stats() : Stats{}; }

const Reply& Stream::reply() const noexcept {
    static const Reply none;
    return impl_ ? impl_->reply() : none;
}

StreamSet::StreamSet() : state_(std::make_unique<detail::StreamSetState>()) { state_->waker.prepare(); }
StreamSet::StreamSet(StreamSet&&) noexcept = default;
StreamSet& StreamSet::operator=(StreamSet&&) noexcept = default;
StreamSet::~StreamSet() = default;

LLM_STREAM_COLD void StreamSet::add(Stream& stream) {
    detail::StreamSetState& s = *state_;
    s.streams.push_back(&stream);
    s.finish_reported.push_back(0);
    // Room for every stream now, so that a first wait late in a stream allocates nothing either.
    s.waits.reserve(s.streams.size());
    s.ready.reserve(s.streams.size());
    s.entries.reserve(s.streams.size() + 1);
}

LLM_STREAM_COLD void StreamSet::remove(const Stream& stream) {
    detail::StreamSetState& s = *state_;
    for (std::size_t i = s.streams.size(); i-- > 0;) {
        if (s.streams[i] != &stream) continue;
        s.streams.erase(s.streams.begin() + static_cast<std::ptrdiff_t>(i));
        s.finish_reported.erase(s.finish_reported.begin() + static_cast<std::ptrdiff_t>(i));
    }
}

std::size_t StreamSet::size() const noexcept { return state_->streams.size(); }

const std::vector<Stream*>& StreamSet::wait(std::chrono::milliseconds timeout) {
    return state_->wait(timeout, nullptr);
}

const std::vector<Stream*>& StreamSet::wait(std::chrono::milliseconds timeout, std::vector<SocketWatch>& sockets) {
    return state_->wait(timeout, &sockets);
}

void StreamSet::wake() { state_->waker.wake(); }

Stream::iterator& Stream::iterator::operator++() {
    if (auto chunk = stream_ ? stream_->next_chunk() : std::nullopt) chunk_ = *chunk;
    else stream_ = nullptr;
    return *this;
}

const char* role_name(Role role) noexcept {
    switch (role) {
    case Role::system: return "system";
    case Role::developer: return "developer";
    case Role::user: return "user";
    case Role::assistant: return "assistant";
    case Role::tool: return "tool";
    }
    return "user";
}

ContentPart ContentPart::text_part(std::string text) { return {Kind::text, std::move(text), {}, {}, {}}; }

LLM_STREAM_COLD ContentPart ContentPart::image_url(std::string url, std::string detail) {
    return {Kind::image, std::move(url), {}, {}, std::move(detail)};
}

LLM_STREAM_COLD ContentPart ContentPart::image_bytes(std::string mime_type, std::string bytes, std::string detail) {
    return {Kind::image, {}, std::move(mime_type), std::make_shared<const std::string>(std::move(bytes)),
            std::move(detail)};
}

namespace {
Message message_of(Role role, std::string text) {
    Message m;  // members assigned, not brace-initialised: -Wmissing-field-initializers stays quiet
    m.role = role;
    m.content = std::move(text);
    return m;
}
}  // namespace

Message Message::system(std::string text) { return message_of(Role::system, std::move(text)); }
Message Message::developer(std::string text) { return message_of(Role::developer, std::move(text)); }
Message Message::user(std::string text) { return message_of(Role::user, std::move(text)); }

LLM_STREAM_COLD Message Message::user(std::string text, std::vector<ContentPart> images) {
    Message m;
    m.parts.reserve(images.size() + 1);
    if (!text.empty()) m.parts.push_back(ContentPart::text_part(std::move(text)));
    for (ContentPart& image : images) m.parts.push_back(std::move(image));
    return m;
}

Message Message::assistant(std::string text) { return message_of(Role::assistant, std::move(text)); }

Message Message::tool_result(std::string tool_call_id, std::string text) {
    Message m = message_of(Role::tool, std::move(text));
    m.tool_call_id = std::move(tool_call_id);
    return m;
}

const Message& Reply::message() const noexcept {
    static const Message empty = Message::assistant({});
    return choices.empty() ? empty : choices.front().message;
}

Error ReplyAssembler::add(const Event& event) {
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
    try {
        return add_event(event);
    } catch (const std::bad_alloc&) {
        return detail::make_error(ErrorCode::out_of_memory, "out of memory");  // short: no allocation
    }
#else
    return add_event(event);
#endif
}

Error ReplyAssembler::add_event(const Event& event) {
    if (event.choice < 0 || event.choice >= detail::max_choices)
        return detail::make_error(ErrorCode::invalid_argument, "ReplyAssembler: an event's choice must be from 0 to " +
                                                                   std::to_string(detail::max_choices - 1));
    if (event.type == EventType::usage) {  // of the whole completion, not of a choice
        reply_.has_usage = true;
        reply_.usage = event.usage;
        return {};
    }
    ReplyChoice& owner = choice(event.choice);
    switch (event.type) {
    case EventType::content: owner.message.content.append(event.text); break;
    case EventType::reasoning: add_reasoning(owner.message, event); break;
    case EventType::tool_call: add_fragment(owner, event.tool_call); break;
    case EventType::finish:
        owner.finish_reason.assign(event.text);
        owner.raw_finish_reason.assign(event.raw_reason);
        break;
    case EventType::usage: break;
    }
    return {};
}

ReplyChoice& ReplyAssembler::choice(int index) {
    std::vector<ReplyChoice>& choices = reply_.choices;
    auto at = std::lower_bound(choices.begin(), choices.end(), index,
                               [](const ReplyChoice& c, int i) { return c.index < i; });
    if (at == choices.end() || at->index != index) {
        ReplyChoice made;
        made.index = index;
        at = choices.insert(at, std::move(made));
    }
    return *at;
}

/* Text in pieces; a signature whole, in an event of its own (the last one counts: one per turn). */
void ReplyAssembler::add_reasoning(Message& message, const Event& event) {
    message.reasoning.append(event.text);
    if (event.signature.empty()) return;
    if (event.raw_reason == "redacted_thinking") message.redacted_reasoning.emplace_back(event.signature);
    else message.reasoning_signature.assign(event.signature);
}

/* The id, the name and the signature come whole in the fragment that opens a call; the arguments
   in pieces. */
void ReplyAssembler::add_fragment(ReplyChoice& owner, const ToolCallDelta& fragment) {
    ToolCall& call = call_for(owner, fragment);
    if (fragment.id && call.id.empty()) call.id.assign(*fragment.id);
    if (fragment.name && call.name.empty()) call.name.assign(*fragment.name);
    if (fragment.arguments) call.arguments.append(*fragment.arguments);
    if (!fragment.signature.empty()) call.signature.assign(fragment.signature);
}

ToolCall& ReplyAssembler::call_for(ReplyChoice& owner, const ToolCallDelta& fragment) {
    const auto key = [](const OpenCall& c) { return std::make_pair(c.choice, c.index); };
    OpenCall wanted;
    wanted.choice = owner.index;
    wanted.index = fragment.index;
    wanted.position = owner.message.tool_calls.size();
    auto at = std::lower_bound(open_calls_.begin(), open_calls_.end(), wanted,
                               [&key](const OpenCall& a, const OpenCall& b) { return key(a) < key(b); });
    std::vector<ToolCall>& calls = owner.message.tool_calls;
    if (at != open_calls_.end() && key(*at) == key(wanted)) {
        ToolCall& open = calls[at->position];
        const bool another_call = fragment.id && !fragment.id->empty() && !open.id.empty() && *fragment.id != open.id;
        if (!another_call) return open;
        at->position = wanted.position;  // later fragments at this index continue the new call
    } else {
        open_calls_.insert(at, wanted);
    }
    calls.emplace_back();
    return calls.back();
}

namespace {
/* An id for a call the server sent without one (Gemini, Ollama): a request must name the call a
   result answers. Made from the call itself, so it is the same every time; two calls that get the
   same id have the same name, which is all those APIs match a result by. */
std::string made_up_call_id(const ToolCall& call, std::size_t position) {
    std::uint32_t hash = 2166136261u;  // FNV-1a over the name, a NUL, the arguments
    auto mix = [&hash](std::string_view bytes) {
        for (char c : bytes) hash = (hash ^ static_cast<unsigned char>(c)) * 16777619u;
    };
    mix(call.name);
    mix(std::string_view("\0", 1));
    mix(call.arguments);
    char id[48];  // "call_" + 8 hex digits + "_" + up to 20 digits
    std::snprintf(id, sizeof id, "call_%08x_%zu", static_cast<unsigned>(hash), position);
    return id;
}
}  // namespace

LLM_STREAM_COLD void ReplyAssembler::finish() {
    for (ReplyChoice& c : reply_.choices) {
        c.invalid_tool_calls.clear();
        for (std::size_t i = 0; i < c.message.tool_calls.size(); ++i) {
            ToolCall& call = c.message.tool_calls[i];
            if (!call.arguments.empty() && detail::check_json(call.arguments)) c.invalid_tool_calls.push_back(i);
            if (call.id.empty()) call.id = made_up_call_id(call, i);
        }
    }
}

void ReplyAssembler::clear() {
    reply_ = Reply();
    open_calls_.clear();
}

LLM_STREAM_COLD Client::Client(Config config) : state_(std::make_shared<detail::ClientState>()) {
    state_->config = std::move(config);
    state_->endpoint = detail::make_endpoint(state_->config, state_->config.model);
}

const Config& Client::config() const noexcept { return state_->config; }

Error build_request(const Config& config, const std::vector<Message>& messages, const ChatOptions& options,
                    Request& request) {
    if (Error e = detail::api_compiled_in(config.api)) return e;
    const std::string& model = options.model.empty() ? config.model : options.model;
    detail::ExtraMembers extra;
    if (Error e = detail::check_request(messages, options, model, extra)) return e;
    request.method = "POST";
    request.url = config.endpoint_url(model);
    if (Error e = detail::write_request_headers(config, request.headers)) return e;
    return detail::write_request_body(config.api, messages, options, model, extra, request.body);
}

LLM_STREAM_COLD Error parse_messages(std::string_view json, std::vector<Message>& out) {
    std::vector<Message> read;  // `out` changes only on success
    Error e = detail::read_conversation_json(json, "the messages",
                                             [&](detail::ConversationReader& reader) { return reader.messages(read); });
    if (!e) out = std::move(read);
    return e;
}

LLM_STREAM_COLD Error parse_tools(std::string_view json, std::vector<Tool>& out) {
    std::vector<Tool> read;  // `out` changes only on success
    Error e = detail::read_conversation_json(json, "the tools",
                                             [&](detail::ConversationReader& reader) { return reader.tools(read); });
    if (!e) out = std::move(read);
    return e;
}

void write_message_json(std::string& out, const Message& message, bool with_reasoning) {
    detail::write_message(out, message, with_reasoning);
}

namespace {

LLM_STREAM_COLD Stream failed_stream(const std::shared_ptr<detail::ClientState>& state, Error error) {
    return Stream(std::make_unique<detail::StreamImpl>(state, std::move(error)));
}

/* A stream over the in-memory transport: stub mode, or a captured response replayed. */
LLM_STREAM_COLD Stream memory_stream(const std::shared_ptr<detail::ClientState>& state, std::string response,
                     std::vector<std::size_t> segment_ends, std::chrono::milliseconds delay, std::string description,
                     bool retry = true, bool assemble_reply = false) {
    auto bytes = std::make_shared<const std::string>(std::move(response));
    detail::AttemptPlan plan;
    plan.factory = [bytes, segment_ends = std::move(segment_ends), delay](detail::ClientState&, const auto&) {
        return std::make_unique<detail::MemoryTransport>(bytes, segment_ends, delay);
    };
    plan.description = std::move(description);
    plan.retry = retry;
    plan.assemble_reply = assemble_reply;
    return Stream(std::make_unique<detail::StreamImpl>(state, std::move(plan)));
}

#if !defined(LLM_STREAM_NO_STUB)
/* Stub mode: the simulated reply in the configured API's wire format, through the real pipeline. */
Stream stub_stream(const std::shared_ptr<detail::ClientState>& state, detail::MessageList messages,
                   const ChatOptions& options, const std::string& model) {
    const Config& config = state->config;
    detail::StubResponse stub = detail::make_stub_response(config.api, messages, options, model);
    return memory_stream(state, std::move(stub.bytes), std::move(stub.segment_ends), config.stub_chunk_delay,
                         "stub mode: a simulated reply (model " + model + ")", true, options.assemble_reply);
}
#else
Stream stub_stream(const std::shared_ptr<detail::ClientState>& state, detail::MessageList, const ChatOptions&,
                   const std::string&) {
    return failed_stream(state, detail::not_compiled_in("stub mode (no base URL)", "LLM_STREAM_NO_STUB"));
}
#endif

/* "POST https://host/v1/chat/completions (model m)": the query is left out, as it may carry a key. */
LLM_STREAM_COLD std::string describe_request(const std::string& url, const std::string& model) {
    return "POST " + url.substr(0, url.find('?')) + " (model " + model + ")";
}

/* A stream of `plan`, its request written, to `endpoint` (or why it cannot be). */
LLM_STREAM_COLD Stream network_stream(const std::shared_ptr<detail::ClientState>& state, std::shared_ptr<const detail::Endpoint> endpoint,
                      detail::AttemptPlan plan, const std::string& model) {
    const Config& config = state->config;
    const detail::Endpoint& to = *endpoint;
    if (to.url_error) return failed_stream(state, to.url_error);
    if (to.url.https) {
        std::shared_ptr<TlsBackend> backend;
        if (Error e = state->tls_backend(backend)) return failed_stream(state, std::move(e));  // no attempt could succeed
    }
    if (to.proxy_error) return failed_stream(state, to.proxy_error);
    if (config.log_level <= LogLevel::info)  // for the log only: not made when nothing is logged
        plan.description = describe_request(config.endpoint_url(model), model) +
                           (to.proxy ? " via the proxy " + to.proxy->address : "");
    if (to.proxy && !to.url.https) plan.forward_proxy = &*to.proxy;
    // Nothing captured: std::function keeps the lambda in place, without an allocation.
    plan.factory = [](detail::ClientState& client, const std::shared_ptr<const detail::Endpoint>& to_endpoint) {
        return std::make_unique<detail::NetworkTransport>(client, to_endpoint);
    };
    plan.endpoint = std::move(endpoint);
    return Stream(std::make_unique<detail::StreamImpl>(state, std::move(plan)));
}

/* Both stream_chat()s: the request written once, in one buffer, for the network or the stub. */
Stream stream_conversation(const std::shared_ptr<detail::ClientState>& state, detail::MessageList messages,
                           const ChatOptions& options) {
    const Config& config = state->config;
    if (config.env_error) return failed_stream(state, config.env_error);  // never a silent stub for a broken .env
    if (Error e = detail::api_compiled_in(config.api)) return failed_stream(state, std::move(e));
    const std::string& model = options.model.empty() ? config.model : options.model;
    std::shared_ptr<const detail::Endpoint> endpoint = state->endpoint;
    if (config.api == Api::gemini && model != config.model) endpoint = detail::make_endpoint(config, model);
    detail::ExtraMembers extra;
    if (Error e = detail::check_request(messages, options, model, extra)) return failed_stream(state, std::move(e));
    if (endpoint->headers_error) return failed_stream(state, endpoint->headers_error);
    detail::AttemptPlan plan;
    plan.request = state->take_request_room();
    if (Error e = detail::write_http_request(config.api, endpoint->url.target, endpoint->header_lines, messages,
                                             options, model, extra, plan.request))
        return failed_stream(state, std::move(e));
    if (config.stub_mode()) return stub_stream(state, messages, options, model);
    plan.assemble_reply = options.assemble_reply;
    return network_stream(state, std::move(endpoint), std::move(plan), model);
}

}  // namespace

LLM_STREAM_COLD Stream Client::stream_chat(std::string_view prompt, const ChatOptions& options) {
    Message conversation[2];  // on the stack: a MessageList needs no vector
    std::size_t size = 0;
    if (!options.system.empty()) conversation[size++] = Message::system(options.system);
    conversation[size++] = Message::user(std::string(prompt));
    return stream_conversation(state_, detail::MessageList(conversation, size), options);
}

LLM_STREAM_COLD Stream Client::stream_chat(const std::vector<Message>& messages, const ChatOptions& options) {
    return stream_conversation(state_, messages, options);
}

LLM_STREAM_COLD Stream Client::replay(std::string response, const ChatOptions& options) {
    return memory_stream(state_, std::move(response), {}, std::chrono::milliseconds(0), "replay of a captured response",
                         false, options.assemble_reply);
}

Decoder::Decoder(const Limits& limits, Api api) : core_(std::make_unique<detail::DecoderCore>(limits, api)) {}
Decoder::Decoder(Decoder&&) noexcept = default;
Decoder& Decoder::operator=(Decoder&&) noexcept = default;
Decoder::~Decoder() = default;

DecodeStep Decoder::feed(std::string_view bytes) { return core_->feed(bytes); }
DecodeStep Decoder::finish() { return core_->finish(); }
void Decoder::start_body(int http_status, std::string_view content_type) { core_->start_body(http_status, content_type); }
void Decoder::reset() { core_->reset(); }
const Event& Decoder::event() const noexcept { return core_->event(); }
const Error& Decoder::error() const noexcept { return core_->error(); }
int Decoder::http_status() const noexcept { return core_->http_status(); }
std::string_view Decoder::header(std::string_view name) const noexcept { return core_->header(name); }
bool Decoder::response_complete() const noexcept { return core_->response_complete(); }
bool Decoder::keep_alive() const noexcept { return core_->keep_alive(); }
std::size_t Decoder::messages() const noexcept { return core_->messages(); }
std::size_t Decoder::skipped_messages() const noexcept { return core_->skipped_messages(); }
std::string_view Decoder::warning() const noexcept { return core_->warning(); }

Error make_default_tls_backend(const TlsOptions& options, std::shared_ptr<TlsBackend>& backend) {
#if defined(LLM_STREAM_MBEDTLS)
    auto made = std::make_shared<detail::MbedTlsBackend>();
    if (Error e = made->init(options)) return e;
    backend = std::move(made);
    return {};
#elif defined(LLM_STREAM_SCHANNEL)
    auto made = std::make_shared<detail::SchannelBackend>();
    if (Error e = made->init(options)) return e;
    backend = std::move(made);
    return {};
#else
    (void)options;
    (void)backend;
    Error e;
    e.code = ErrorCode::tls;
    e.message = "https:// needs TLS, and this build has none (build with LLM_STREAM_MBEDTLS and mbedTLS)";
    return e;
#endif
}

Client& get_llm_client() {
    static Client client{Config::from_env()};
    return client;
}

void append_json_string(std::string& out, std::string_view text) { detail::json_write_string(out, text); }

std::optional<std::string_view> json_member(std::string_view json, std::string_view name) {
    detail::JsonCursor c(json.data(), json.data() + json.size());
    std::optional<std::string_view> found;
    c.skip_ws();
    if (!c.at('{')) return std::nullopt;
    const bool ok = c.object(1, [&](const detail::JsonSpan& key, int depth) {
        const bool wanted = key.escaped ? detail::json_escaped_key_is(key, name)
                                        : std::string_view(key.begin, key.size()) == name;
        const char* value = c.p;
        if (!c.skip_value(depth)) return false;
        if (wanted) found = std::string_view(value, static_cast<std::size_t>(c.p - value));
        return true;
    });
    c.skip_ws();
    if (!ok || c.p != c.end) return std::nullopt;
    return found;
}

std::optional<std::string> json_string_member(std::string_view json, std::string_view name) {
    const std::optional<std::string_view> value = json_member(json, name);
    if (!value || value->front() != '"') return std::nullopt;
    detail::JsonSpan span;
    span.begin = value->data() + 1;
    span.end = value->data() + value->size() - 1;
    return detail::json_string_text(span);
}

std::optional<double> json_number_member(std::string_view json, std::string_view name) {
    const std::optional<std::string_view> value = json_member(json, name);
    if (!value || !(value->front() == '-' || (value->front() >= '0' && value->front() <= '9'))) return std::nullopt;
    double number = 0;  // from_chars: the same in every locale
    const auto r = std::from_chars(value->data(), value->data() + value->size(), number);
    if (r.ec != std::errc()) return std::nullopt;  // out of a double's range
    return number;
}

std::optional<bool> json_bool_member(std::string_view json, std::string_view name) {
    const std::optional<std::string_view> value = json_member(json, name);
    if (value == std::string_view("true")) return true;
    if (value == std::string_view("false")) return false;
    return std::nullopt;
}

// A build whose name lookups block poll() says so.
#if defined(LLM_STREAM_NO_DNS)
#define LLM_STREAM_DNS_NOTE "; dns: the system's, blocking"
#else
#define LLM_STREAM_DNS_NOTE ""
#endif

const char* version_string() noexcept {
#if defined(LLM_STREAM_MBEDTLS)
    return "llm_stream " LLM_STREAM_VERSION_STRING " (tls: mbedtls " MBEDTLS_VERSION_STRING LLM_STREAM_DNS_NOTE ")";
#elif defined(LLM_STREAM_SCHANNEL)
    return "llm_stream " LLM_STREAM_VERSION_STRING " (tls: schannel" LLM_STREAM_DNS_NOTE ")";
#else
    return "llm_stream " LLM_STREAM_VERSION_STRING " (tls: none" LLM_STREAM_DNS_NOTE ")";
#endif
}

}  // inline namespace v0_2
}  // namespace llm_stream
#endif  // LLM_STREAM_IMPLEMENTATION
