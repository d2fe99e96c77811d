/* llm_stream.hpp — a single-header C++17 client that streams chat completions from any
   OpenAI-compatible server (OpenAI, DashScope/Bailian, DeepSeek, Ollama, vLLM, llama.cpp, ...).

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

     Configuration comes from code or from the environment (LLM_API_KEY, LLM_BASE_URL, LLM_MODEL, then a
     `.env` file in the working directory; the environment wins). Without LLM_BASE_URL the client runs in
     stub mode: a simulated reply that goes through the same HTTP/SSE/JSON pipeline as a real one.

     A Stream hands out text as std::string_view into buffers it owns: valid until the next call on that
     stream. Typed events (reasoning, tool-call fragments, finish reason, usage) come from next_event().
     poll() never blocks, for game loops and event loops. No threads are started by the library, no
     exception is ever thrown by it, and RTTI is not used.

   CONFIGURATION MACROS (define before the implementation include)
     LLM_STREAM_REALLOC(ptr, size)    allocation of stream buffers (default: std::realloc; define both
     LLM_STREAM_FREE(ptr)             or neither; default: std::free)
     LLM_STREAM_ASSERT(expr)          internal invariants (default: assert)
     LLM_STREAM_MBEDTLS               build the mbedTLS backend for https:// URLs

   LICENSE: MIT, see the end of this file.
*/
#ifndef LLM_STREAM_HPP
#define LLM_STREAM_HPP

#define LLM_STREAM_VERSION_MAJOR 0
#define LLM_STREAM_VERSION_MINOR 1
#define LLM_STREAM_VERSION_PATCH 0
#define LLM_STREAM_VERSION_STRING "0.1.0"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llm_stream {

namespace detail {
struct ClientState;
class StreamImpl;
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
   TLS hook: any TLS stack can carry https://. The built-in backend is mbedTLS (LLM_STREAM_MBEDTLS).
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
    virtual std::string error_message() const = 0;  // after TlsStatus::failed: why, for humans
};

class TlsBackend {
public:
    virtual ~TlsBackend() = default;
    virtual std::string name() const = 0;  // e.g. "mbedtls 2.28.3"
    /* A session over `socket`; `host` goes into SNI and is what the certificate must name.
       nullptr with `error` set when it cannot start. */
    virtual std::unique_ptr<TlsSession> start(socket_handle socket, const std::string& host, std::string& error) = 0;
};

struct TlsOptions {
    bool verify = true;       // certificate chain and host name; false only by explicit choice
    std::string ca_file;      // PEM bundle; empty: SSL_CERT_FILE, then the system bundle
    std::string ca_dir;       // directory of PEM certificates; empty: SSL_CERT_DIR
    std::string ca_pem;       // in-memory PEM, used in addition to the above
    std::shared_ptr<TlsBackend> backend;  // empty: the built-in backend configured from the above
};

/* The built-in backend configured by `options` (trusted CAs loaded once, shared by connections);
   nullptr with `error` set when the CAs cannot be loaded or the library has no TLS compiled in. */
std::shared_ptr<TlsBackend> make_default_tls_backend(const TlsOptions& options, std::string& error);

struct Config {
    std::string api_key;   // sent as "Authorization: Bearer ..." only when not empty
    std::string base_url;  // empty: stub mode. A base (".../v1") or a full ".../chat/completions" URL
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
    /* Numeric addresses ("10.0.0.7", "::1") for a host name. Empty: getaddrinfo, which blocks; set
       it (or use an IP address in the URL) to keep poll() from ever blocking on DNS. */
    std::function<std::vector<std::string>(const std::string& host)> resolver;
    std::size_t max_idle_connections = 4;               // kept for reuse by later requests
    std::chrono::milliseconds idle_connection_timeout{30000};  // older idle connections are closed

    LogLevel log_level = LogLevel::warning;
    LogCallback log;  // empty: messages go to stderr

    std::chrono::milliseconds stub_chunk_delay{0};  // pause between stub chunks (a demo nicety)

    /* LLM_API_KEY, LLM_BASE_URL, LLM_MODEL (and LLM_STUB_DELAY_MS) from the process environment, then
       from `dotenv_path` for the ones the environment does not set. A missing file is not an error. */
    static Config from_env(const std::string& dotenv_path = ".env");

    bool stub_mode() const noexcept { return base_url.empty(); }

    /* The URL requests go to: base_url as is when it already ends in /chat/completions, else
       base_url + "/chat/completions" (one slash). Empty in stub mode. */
    std::string chat_completions_url() const;
};

/* Parses the text of a .env file: KEY=VALUE lines, `export ` prefixes, # comments, single or double
   quotes (double quotes understand \n \t \" \\). Calls `visit` for each assignment, in order. */
void parse_dotenv(std::string_view text,
                  const std::function<void(std::string_view key, std::string_view value)>& visit);

/* ------------------------------------------------------------------------------------------------
   Requests
   ------------------------------------------------------------------------------------------------ */

struct Message {
    std::string role;  // "system", "user", "assistant", "tool", ...
    std::string content;
};

struct ChatOptions {
    std::string system = "You are a helpful sales assistant.";  // ignored by the message-list overload
    std::optional<double> temperature;  // 0..2
    std::optional<int> max_tokens;      // > 0
    std::string model;                  // overrides Config::model when not empty
    std::string extra_json;             // a JSON object; its members are merged into the request body
                                        // (e.g. {"top_p":0.9,"stream_options":{"include_usage":true}})
};

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
};

/* Views point into the stream's buffers: valid until the next call on the stream. */
struct Event {
    EventType type = EventType::content;
    std::string_view text;    // content or reasoning text; the reason for `finish` ("stop", ...)
    ToolCallDelta tool_call;  // for `tool_call`
    Usage usage;              // for `usage`
};

struct Stats {
    double first_chunk_ms = -1;       // request start to the first content chunk; -1 before it
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

    /* Blocks until the next content chunk; std::nullopt at the end or on error (see error()).
       Other events are consumed on the way (their stats still count). */
    std::optional<std::string_view> next_chunk();

    /* Blocks until the next typed event; nullptr at the end or on error. */
    const Event* next_event();

    /* Never blocks (but see Config::resolver about DNS): advances the stream as far as it can and
       says what happened. */
    PollStatus poll();
    const Event& current_event() const noexcept;  // after poll() returned PollStatus::event
    WaitInfo wait_info() const noexcept;
    /* After poll() returned pending: blocks until poll() may make progress (the socket is ready, a
       timer is due, or cancel() was called). A caller that batches output flushes before it. */
    void wait();

    /* Ends the stream with ErrorCode::cancelled. Safe from any thread; wakes a blocked call. */
    void cancel() noexcept;

    bool finished() const noexcept;  // done or failed
    const Error& error() const noexcept;
    Stats stats() const;

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
    std::unique_ptr<detail::StreamImpl> impl_;
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

    const Config& config() const noexcept;

private:
    std::shared_ptr<detail::ClientState> state_;
};

/* The process-wide client, built from Config::from_env() on first use (thread-safe). */
Client& get_llm_client();

/* Appends text as a JSON string literal: quotes, backslashes and control characters escaped, UTF-8
   kept, invalid bytes dropped. For programs that pass events on as JSON (llm-chat --events, relays). */
void append_json_string(std::string& out, std::string_view text);

/* "llm_stream 0.1.0 (tls: none)" or with the TLS backend's name and version. */
const char* version_string() noexcept;

}  // namespace llm_stream

#endif  // LLM_STREAM_HPP

/* ================================================================================================
   IMPLEMENTATION
   Sections, in the order bytes travel: support → HTTP/1.1 response reader → SSE parser → JSON
   (validating cursor, delta extractor, writer) → request → stub → transports → stream → client.
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
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <random>
#include <thread>
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
#include <cerrno>
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
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
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

#ifndef LLM_STREAM_REALLOC
#define LLM_STREAM_REALLOC(ptr, size) std::realloc(ptr, size)
#define LLM_STREAM_FREE(ptr) std::free(ptr)
#endif
#ifndef LLM_STREAM_ASSERT
#define LLM_STREAM_ASSERT(expr) assert(expr)
#endif

namespace llm_stream {
namespace detail {

/* ------------------------------------------------------------------------------------------------
   Support: byte buffers, UTF-8, small string helpers, time
   ------------------------------------------------------------------------------------------------ */

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
        void* p = LLM_STREAM_REALLOC(data_, grown);
        if (!p) return false;
        data_ = static_cast<char*>(p);
        capacity_ = grown;
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

private:
    char* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
};

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

/* True when [p, end) is entirely well-formed UTF-8. */
inline bool utf8_valid(const char* begin, const char* end) noexcept {
    auto p = reinterpret_cast<const unsigned char*>(begin);
    auto e = reinterpret_cast<const unsigned char*>(end);
    while (p < e) {
        if (*p < 0x80) { ++p; continue; }
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
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
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
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

/* An HTTP-date (RFC 9110 5.6.7) as seconds since the Unix epoch: IMF-fixdate
   "Sun, 06 Nov 1994 08:49:37 GMT", the obsolete RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" and
   asctime "Sun Nov  6 08:49:37 1994" forms. */
inline std::optional<std::int64_t> parse_http_date(std::string_view s) noexcept {
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
    return ioctlsocket(s, FIONBIO, &on) == 0;
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

inline std::string address_text(const SocketAddress& a) {
    char host[64] = "?";
    const void* raw = a.storage.ss_family == AF_INET6
                          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr)
                          : static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr);
    inet_ntop(a.storage.ss_family, const_cast<void*>(raw), host, sizeof host);
    return a.storage.ss_family == AF_INET6 ? "[" + std::string(host) + "]" : std::string(host);
}

/* Addresses for host:port. Numeric hosts never touch DNS; names go to `resolver` when set, else to
   getaddrinfo (which blocks). */
inline bool resolve_host(const std::string& host, std::uint16_t port,
                         const std::function<std::vector<std::string>(const std::string&)>& resolver,
                         std::vector<SocketAddress>& out, std::string& why) {
    out.clear();
    const std::string service = std::to_string(port);
    auto add = [&](const std::string& name, bool numeric_only) {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_protocol = IPPROTO_TCP;
        hints.ai_flags = AI_NUMERICSERV | (numeric_only ? AI_NUMERICHOST : AI_ADDRCONFIG);
        addrinfo* list = nullptr;
        const int rc = getaddrinfo(name.c_str(), service.c_str(), &hints, &list);
        if (rc != 0) {
#if defined(_WIN32)
            why = socket_error_text(rc);
#else
            why = gai_strerror(rc);
#endif
            return false;
        }
        for (addrinfo* a = list; a; a = a->ai_next) {
            if (a->ai_addrlen > sizeof(sockaddr_storage)) continue;
            SocketAddress address;
            std::memcpy(&address.storage, a->ai_addr, a->ai_addrlen);
            address.length = static_cast<socklen_t>(a->ai_addrlen);
            out.push_back(address);
        }
        freeaddrinfo(list);
        return true;
    };
    if (add(host, true)) return true;  // an IP address
    if (resolver) {
        for (const std::string& numeric : resolver(host)) add(numeric, true);
        if (out.empty()) why = "the resolver returned no usable address";
        return !out.empty();
    }
    if (!add(host, false)) return false;
    if (out.empty()) why = "no address";
    return !out.empty();
}

/* Wakes a thread blocked in wait_for_socket() from cancel(). POSIX: a pipe; Windows: waits are cut
   into short slices instead, so a cancel is seen within one slice. */
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
    void prepare() noexcept {
#if !defined(_WIN32)
        std::lock_guard<std::mutex> lock(mutex_);
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
    void wake() noexcept {
#if !defined(_WIN32)
        std::lock_guard<std::mutex> lock(mutex_);
        if (fds_[1] >= 0) {
            const char byte = 1;
            [[maybe_unused]] const auto n = ::write(fds_[1], &byte, 1);
        }
#endif
    }
    int read_fd() const noexcept { return fds_[0]; }

private:
    std::mutex mutex_;
    int fds_[2] = {-1, -1};
};

/* Blocks until the socket is ready in the wanted direction, the waker fires, or the timeout ends. */
inline void wait_for_socket(native_socket s, bool want_read, bool want_write, std::chrono::milliseconds timeout,
                            const Waker& waker) noexcept {
    int ms = static_cast<int>(std::min<std::chrono::milliseconds::rep>(timeout.count(), 1 << 30));
    if (ms < 0) ms = 0;
#if defined(_WIN32)
    WSAPOLLFD fds[1] = {};
    fds[0].fd = s;
    fds[0].events = static_cast<SHORT>((want_read ? POLLRDNORM : 0) | (want_write ? POLLWRNORM : 0));
    (void)waker;
    WSAPoll(fds, 1, std::min(ms, 50));
#else
    pollfd fds[2] = {};
    fds[0].fd = s;
    fds[0].events = static_cast<short>((want_read ? POLLIN : 0) | (want_write ? POLLOUT : 0));
    fds[1].fd = waker.read_fd();
    fds[1].events = POLLIN;
    ::poll(fds, waker.read_fd() >= 0 ? 2 : 1, ms);
#endif
}

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

    bool init(const TlsOptions& options, std::string& error);
    std::string name() const override { return "mbedtls " MBEDTLS_VERSION_STRING; }
    std::unique_ptr<TlsSession> start(socket_handle socket, const std::string& host, std::string& error) override;

    const mbedtls_ssl_config* config() const noexcept { return &config_; }

private:
    bool load_trusted(const TlsOptions& options, std::string& error);
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

    bool setup(const std::string& host, std::string& error) {
        int rc = mbedtls_ssl_setup(&ssl_, backend_->config());
        if (rc == 0) rc = mbedtls_ssl_set_hostname(&ssl_, host.c_str());
        if (rc != 0) {
            error = "TLS setup failed: " + mbedtls_error_text(rc);
            return false;
        }
        mbedtls_ssl_set_bio(&ssl_, this, &MbedTlsSession::send_callback, &MbedTlsSession::receive_callback, nullptr);
        return true;
    }

    TlsResult handshake() override {
        const int rc = mbedtls_ssl_handshake(&ssl_);
        if (rc == 0) {
            handshake_done_ = true;
            return {TlsStatus::ok, 0};
        }
        if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
            char info[512];
            mbedtls_x509_crt_verify_info(info, sizeof info, "", mbedtls_ssl_get_verify_result(&ssl_));
            std::string reasons = info;
            for (char& c : reasons)
                if (c == '\n') c = ';';
            while (!reasons.empty() && (reasons.back() == ';' || reasons.back() == ' ')) reasons.pop_back();
            error_ = "certificate verification failed: " + reasons;
            return {TlsStatus::failed, 0};
        }
        return from_code(rc, "TLS handshake failed: ");
    }
    TlsResult read(char* buffer, std::size_t capacity) override {
        const int rc = mbedtls_ssl_read(&ssl_, reinterpret_cast<unsigned char*>(buffer), capacity);
        if (rc > 0) return {TlsStatus::ok, static_cast<std::size_t>(rc)};
        if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) return {TlsStatus::closed, 0};
        return from_code(rc, "TLS read failed: ");
    }
    TlsResult write(const char* data, std::size_t size) override {
        const int rc = mbedtls_ssl_write(&ssl_, reinterpret_cast<const unsigned char*>(data), size);
        if (rc >= 0) return {TlsStatus::ok, static_cast<std::size_t>(rc)};
        return from_code(rc, "TLS write failed: ");
    }
    std::string error_message() const override { return error_; }

private:
    TlsResult from_code(int rc, const char* what) {
        if (rc == MBEDTLS_ERR_SSL_WANT_READ) return {TlsStatus::want_read, 0};
        if (rc == MBEDTLS_ERR_SSL_WANT_WRITE) return {TlsStatus::want_write, 0};
#if defined(MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
        if (rc == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) return {TlsStatus::want_read, 0};  // TLS 1.3
#endif
        if (rc == MBEDTLS_ERR_SSL_CONN_EOF) return {TlsStatus::closed, 0};
        const bool socket_failed = rc == MBEDTLS_ERR_NET_SEND_FAILED || rc == MBEDTLS_ERR_NET_RECV_FAILED;
        error_ = what + (socket_failed && socket_error_ ? socket_error_text(socket_error_) : mbedtls_error_text(rc));
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
    std::string error_;
};

inline bool MbedTlsBackend::load_trusted(const TlsOptions& options, std::string& error) {
    bool any = false;
    if (!options.ca_pem.empty()) {
        // The PEM parser wants the terminating NUL counted.
        const int rc = mbedtls_x509_crt_parse(&trusted_, reinterpret_cast<const unsigned char*>(options.ca_pem.c_str()),
                                              options.ca_pem.size() + 1);
        if (rc < 0) {
            error = "cannot parse the in-memory CA PEM: " + mbedtls_error_text(rc);
            return false;
        }
        any = true;
    }
    auto load_file = [&](const std::string& path) { return mbedtls_x509_crt_parse_file(&trusted_, path.c_str()) >= 0; };
    auto load_dir = [&](const std::string& path) { return mbedtls_x509_crt_parse_path(&trusted_, path.c_str()) >= 0; };
    if (!options.ca_file.empty() || !options.ca_dir.empty()) {
        if (!options.ca_file.empty() && !load_file(options.ca_file)) {
            error = "cannot read CA certificates from " + options.ca_file;
            return false;
        }
        if (!options.ca_dir.empty() && !load_dir(options.ca_dir)) {
            error = "cannot read CA certificates from the directory " + options.ca_dir;
            return false;
        }
        return true;
    }
    const char* env_file = std::getenv("SSL_CERT_FILE");
    const char* env_dir = std::getenv("SSL_CERT_DIR");
    if ((env_file && *env_file) || (env_dir && *env_dir)) {
        if (env_file && *env_file && !load_file(env_file)) {
            error = std::string("cannot read CA certificates from SSL_CERT_FILE=") + env_file;
            return false;
        }
        if (env_dir && *env_dir && !load_dir(env_dir)) {
            error = std::string("cannot read CA certificates from SSL_CERT_DIR=") + env_dir;
            return false;
        }
        return true;
    }
    // The usual system bundles: Debian/Ubuntu, Fedora/RHEL, openSUSE, Alpine/BSD/macOS.
    static const char* const bundles[] = {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                                          "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem",
                                          "/usr/local/etc/openssl/cert.pem"};
    for (const char* bundle : bundles)
        if (load_file(bundle)) return true;
    if (load_dir("/etc/ssl/certs")) return true;
    if (!any && options.verify) {
        error = "no trusted CA certificates found (give a CA file, or set SSL_CERT_FILE)";
        return false;
    }
    return true;
}

inline bool MbedTlsBackend::init(const TlsOptions& options, std::string& error) {
#if MBEDTLS_VERSION_MAJOR >= 3 && defined(MBEDTLS_PSA_CRYPTO_C)
    if (psa_crypto_init() != PSA_SUCCESS) {  // TLS 1.3 in mbedTLS 3 runs on PSA
        error = "PSA crypto initialisation failed";
        return false;
    }
#endif
    static const char personalisation[] = "llm_stream";
    int rc = mbedtls_ctr_drbg_seed(&random_, mbedtls_entropy_func, &entropy_,
                                   reinterpret_cast<const unsigned char*>(personalisation), sizeof personalisation - 1);
    if (rc == 0)
        rc = mbedtls_ssl_config_defaults(&config_, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                         MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0) {
        error = "TLS initialisation failed: " + mbedtls_error_text(rc);
        return false;
    }
    if (options.verify && !load_trusted(options, error)) return false;
    mbedtls_ssl_conf_authmode(&config_, options.verify ? MBEDTLS_SSL_VERIFY_REQUIRED : MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_ca_chain(&config_, &trusted_, nullptr);
    mbedtls_ssl_conf_rng(&config_, &MbedTlsBackend::random, this);
    return true;
}

inline std::unique_ptr<TlsSession> MbedTlsBackend::start(socket_handle socket, const std::string& host,
                                                         std::string& error) {
    auto session = std::make_unique<MbedTlsSession>(shared_from_this(), static_cast<native_socket>(socket));
    if (!session->setup(host, error)) return nullptr;
    return session;
}

#endif  // LLM_STREAM_MBEDTLS

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

    Step feed(const char* data, std::size_t len);
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
    ErrorCode error_code() const noexcept { return error_code_; }
    const char* error_message() const noexcept { return error_message_; }

private:
    enum class State {
        head, body_length, body_close, chunk_size, chunk_size_ws, chunk_ext, chunk_size_lf, chunk_data,
        chunk_data_cr, chunk_data_lf, trailers, done, failed
    };
    void reset_message() {
        state_ = State::head;
        head_.clear();
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
    void start_body();
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

inline bool HttpResponseReader::parse_head() {
    // RFC 9112 5.2 and 2.2: an obs-fold (a line break before SP/HT) and a bare CR or a NUL inside a
    // field become spaces, so every later reader of the head sees one clean line per field.
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
    std::string_view head = head_.view();
    std::size_t nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    header_start_ = nl + 1;
    // status-line = HTTP-version SP status-code SP [ reason-phrase ]
    if (line.size() < 12 || line.substr(0, 5) != "HTTP/" || line[5] != '1' || line[6] != '.' ||
        line[7] < '0' || line[7] > '9' || line[8] != ' ' || line[9] < '1' || line[9] > '9' ||
        line[10] < '0' || line[10] > '9' || line[11] < '0' || line[11] > '9' ||
        (line.size() > 12 && line[12] != ' ')) {
        fail(ErrorCode::protocol, "malformed HTTP status line", 0);
        return false;
    }
    minor_version_ = line[7] - '0';
    status_ = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');

    bool connection_close = false, connection_keep_alive = false, te_seen = false, te_chunked = false;
    bool te_other = false, bad_content_length = false, bad_line = false, bad_encoding = false;
    bool content_length_seen = false;
    std::string_view rest = head.substr(header_start_);
    while (!rest.empty()) {
        std::size_t end = rest.find('\n');
        std::string_view l = rest.substr(0, end);
        rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        if (l.empty()) continue;
        if (is_http_space(l[0])) continue;  // obs-fold continuation: no header we read uses it
        std::size_t colon = l.find(':');
        if (colon == std::string_view::npos || colon == 0) { bad_line = true; break; }
        std::string_view name = l.substr(0, colon);
        for (char c : name)
            if (!is_token_char(c)) bad_line = true;
        if (bad_line) break;
        std::string_view value = trim_http_space(l.substr(colon + 1));
        if (iequals(name, "content-length")) {
            content_length_seen = true;
            for_each_list_token(value, [&](std::string_view token) {
                std::uint64_t n = 0;
                if (!parse_decimal(token, n) || n > (std::uint64_t(1) << 62) ||
                    (content_length_ >= 0 && static_cast<std::uint64_t>(content_length_) != n))
                    bad_content_length = true;
                else
                    content_length_ = static_cast<std::int64_t>(n);
            });
            if (value.empty()) bad_content_length = true;
        } else if (iequals(name, "transfer-encoding")) {
            te_seen = true;
            for_each_list_token(value, [&](std::string_view token) {
                // chunked must be the final coding; anything else we cannot decode.
                if (te_chunked) te_other = true;
                if (iequals(token, "chunked")) te_chunked = true;
                else if (!iequals(token, "identity")) te_other = true;
            });
        } else if (iequals(name, "connection")) {
            for_each_list_token(value, [&](std::string_view token) {
                if (iequals(token, "close")) connection_close = true;
                if (iequals(token, "keep-alive")) connection_keep_alive = true;
            });
        } else if (iequals(name, "content-encoding")) {
            for_each_list_token(value, [&](std::string_view token) {
                if (!iequals(token, "identity")) bad_encoding = true;
            });
        }
    }
    if (bad_line) { fail(ErrorCode::protocol, "malformed HTTP header line", 0); return false; }
    if (bad_content_length && !te_seen) {
        fail(ErrorCode::protocol, "invalid Content-Length header", 0);
        return false;
    }
    if (te_other) {
        fail(ErrorCode::protocol, "unsupported Transfer-Encoding (only chunked is understood)", 0);
        return false;
    }
    if (bad_encoding) {
        fail(ErrorCode::protocol, "unsupported Content-Encoding (the request asked for none)", 0);
        return false;
    }
    chunked_ = te_chunked;
    if (te_seen) content_length_ = -1;  // Transfer-Encoding overrides Content-Length (RFC 9112 6.3)
    no_body_ = status_ == 204 || status_ == 304;
    const bool delimited = no_body_ || chunked_ || content_length_ >= 0;
    // Both framings at once is a smuggling sign: use the message, but not the connection again.
    // Transfer-Encoding in an HTTP/1.0 message is faulty framing (RFC 9112 6.1): read, then close.
    const bool both_framings = (te_seen && content_length_seen) || (te_seen && minor_version_ == 0);
    keep_alive_ = delimited && !both_framings && !connection_close &&
                  (minor_version_ >= 1 || connection_keep_alive);
    return true;
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

inline HttpResponseReader::Step HttpResponseReader::feed(const char* data, std::size_t len) {
    const char* p = data;
    const char* const end = data + len;
    while (p < end) {
        switch (state_) {
        case State::head: {
            // Bytes go into head_ until an empty line; CRs are ignored for the line-length count.
            while (p < end) {
                const char c = *p++;
                if (head_.empty() && (c == '\r' || c == '\n')) continue;  // stray CRLF before a head
                if (head_.size() >= limits_.max_header_bytes)
                    return fail(ErrorCode::limit_exceeded, "HTTP header block exceeds the limit",
                                static_cast<std::size_t>(p - data));
                if (!head_.push_back(c))
                    return fail(ErrorCode::io, "out of memory", static_cast<std::size_t>(p - data));
                if (c == '\n') {
                    if (head_line_length_ == 0) {
                        if (!parse_head()) return {Status::error, static_cast<std::size_t>(p - data), {}};
                        if (status_ >= 100 && status_ < 200) {
                            if (status_ == 101)
                                return fail(ErrorCode::protocol, "unexpected 101 Switching Protocols",
                                            static_cast<std::size_t>(p - data));
                            head_.clear();  // interim response: the real head follows
                            head_line_length_ = 0;
                            content_length_ = -1;
                            break;
                        }
                        start_body();
                        return {Status::head, static_cast<std::size_t>(p - data), {}};
                    }
                    head_line_length_ = 0;
                } else if (c != '\r') {
                    ++head_line_length_;
                }
            }
            break;
        }
        case State::body_length:
            return take_body(data, p, end, State::done);
        case State::body_close:
            return {Status::body, len, {p, static_cast<std::size_t>(end - p)}};
        case State::chunk_size: {
            // chunk-size = 1*HEXDIG, then optional whitespace and ";ext" up to CRLF (or a bare LF).
            const char c = *p++;
            if (++chunk_line_bytes_ > limits_.max_chunk_line_bytes) return chunk_line_too_long(data, p);
            const int digit = hex_value(c);
            if (digit >= 0) {
                if (chunk_line_bytes_ != static_cast<std::size_t>(chunk_digits_) + 1)
                    return fail(ErrorCode::protocol, "malformed chunk size",
                                static_cast<std::size_t>(p - data));
                ++chunk_digits_;
                if (remaining_ >> 58)  // the next digit would overflow 62 bits
                    return fail(ErrorCode::protocol, "chunk size overflows",
                                static_cast<std::size_t>(p - data));
                remaining_ = remaining_ * 16 + static_cast<unsigned>(digit);
                break;
            }
            if (chunk_digits_ == 0)
                return fail(ErrorCode::protocol, "malformed chunk size", static_cast<std::size_t>(p - data));
            if (c == ';') state_ = State::chunk_ext;
            else if (c == '\r') state_ = State::chunk_size_lf;
            else if (c == '\n') end_chunk_line();
            else if (is_http_space(c)) state_ = State::chunk_size_ws;
            else return fail(ErrorCode::protocol, "malformed chunk size", static_cast<std::size_t>(p - data));
            break;
        }
        case State::chunk_size_ws: {
            const char c = *p++;
            if (++chunk_line_bytes_ > limits_.max_chunk_line_bytes) return chunk_line_too_long(data, p);
            if (c == ';') state_ = State::chunk_ext;
            else if (c == '\r') state_ = State::chunk_size_lf;
            else if (c == '\n') end_chunk_line();
            else if (!is_http_space(c))
                return fail(ErrorCode::protocol, "malformed chunk size line", static_cast<std::size_t>(p - data));
            break;
        }
        case State::chunk_ext: {
            // Chunk extensions carry nothing we use: skip to the end of the line.
            const char c = *p++;
            if (++chunk_line_bytes_ > limits_.max_chunk_line_bytes) return chunk_line_too_long(data, p);
            if (c == '\r') state_ = State::chunk_size_lf;
            else if (c == '\n') end_chunk_line();
            break;
        }
        case State::chunk_size_lf:
            if (*p++ != '\n')
                return fail(ErrorCode::protocol, "malformed chunk size line (CR without LF)",
                            static_cast<std::size_t>(p - data));
            end_chunk_line();
            break;
        case State::chunk_data:
            return take_body(data, p, end, State::chunk_data_cr);
        case State::chunk_data_cr:
            if (*p == '\r') { ++p; state_ = State::chunk_data_lf; break; }
            if (*p == '\n') { ++p; state_ = State::chunk_size; break; }
            return fail(ErrorCode::protocol, "missing CRLF after chunk data",
                        static_cast<std::size_t>(p - data));
        case State::chunk_data_lf:
            if (*p != '\n')
                return fail(ErrorCode::protocol, "missing CRLF after chunk data",
                            static_cast<std::size_t>(p - data));
            ++p;
            state_ = State::chunk_size;
            break;
        case State::trailers: {
            // Trailer fields are read and ignored; the section ends with an empty line.
            while (p < end) {
                const char c = *p++;
                if (++trailer_bytes_ > limits_.max_header_bytes)
                    return fail(ErrorCode::limit_exceeded, "HTTP trailer section exceeds the limit",
                                static_cast<std::size_t>(p - data));
                if (c == '\n') {
                    if (trailer_line_length_ == 0) {
                        state_ = State::done;
                        return {Status::end, static_cast<std::size_t>(p - data), {}};
                    }
                    trailer_line_length_ = 0;
                } else if (c != '\r') {
                    ++trailer_line_length_;
                }
            }
            break;
        }
        case State::done:
            return {Status::end, static_cast<std::size_t>(p - data), {}};
        case State::failed:
            return {Status::error, 0, {}};
        }
    }
    if (state_ == State::done) return {Status::end, len, {}};
    if (state_ == State::failed) return {Status::error, 0, {}};
    return {Status::need_more, len, {}};
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

    explicit SseParser(SseLimits limits = {}) : limits_(limits) {}
    void reset(SseLimits limits) {
        limits_ = limits;
        line_.clear();
        data_.clear();
        // Room for ordinary events from the start: a line split across reads may come at any time,
        // and should not be what makes a long-running stream allocate. (Failure just defers it.)
        line_.reserve(std::min<std::size_t>(limits.max_line_bytes, 8192));
        data_.reserve(std::min<std::size_t>(limits.max_event_bytes, 8192));
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

    /* Consumes input from p (advancing it) up to end; stops after one event is dispatched.
       data() may point into the input: keep that alive until the next call. */
    Status next(const char*& p, const char* end);

    std::string_view data() const noexcept { return dispatched_; }
    /* The event's "event:" field, empty when none (the "message" type). */
    std::string_view event_type() const noexcept { return {dispatched_type_, dispatched_type_length_}; }
    /* True when input ended inside an event that was never dispatched (WHATWG drops it). */
    bool has_partial_event() const noexcept { return has_data_ || !line_.empty(); }

    ErrorCode error_code() const noexcept { return error_code_; }
    const char* error_message() const noexcept { return error_message_; }

private:
    Status fail(ErrorCode code, const char* message) {
        error_code_ = code;
        error_message_ = message;
        return Status::error;
    }
    // Returns true when the line dispatched an event.
    bool process_line(std::string_view line, bool line_in_input, Status& status);
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

inline bool SseParser::process_line(std::string_view line, bool line_in_input, Status& status) {
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
    std::size_t colon = line.find(':');
    std::string_view field = line.substr(0, colon);
    std::string_view value = line.substr(line.size());  // "data" alone: an empty value
    if (colon != std::string_view::npos) {
        value = line.substr(colon + 1);
        if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
    }
    if (field == "data") {
        const std::size_t so_far = !has_data_ ? 0 : pending_in_input_ ? pending_.size() + 1 : data_.size() + 1;
        if (so_far + value.size() > limits_.max_event_bytes) {
            status = fail(ErrorCode::limit_exceeded, "SSE event exceeds the limit");
            return true;
        }
        if (!add_data(value, line_in_input)) {
            status = fail(ErrorCode::io, "out of memory");
            return true;
        }
    } else if (field == "event") {
        // Event types are short names; a longer one is kept cut, never grown without bound.
        event_type_length_ = std::min(value.size(), sizeof event_type_);
        std::memcpy(event_type_, value.data(), event_type_length_);
    }
    // "id" and "retry" steer reconnection by EventSource, which a chat completion never uses.
    return false;
}

inline SseParser::Status SseParser::next(const char*& p, const char* end) {
    if (error_code_ != ErrorCode::none) return Status::error;
    dispatched_ = {};
    if (at_start_) {
        // A UTF-8 BOM may open the stream, possibly split across inputs.
        static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
        while (p < end && bom_matched_ < 3) {
            if (static_cast<unsigned char>(*p) != bom[bom_matched_]) {
                // Not a BOM after all: the bytes matched so far start the first line.
                if (!line_.append(reinterpret_cast<const char*>(bom), static_cast<std::size_t>(bom_matched_)))
                    return fail(ErrorCode::io, "out of memory");
                bom_matched_ = 3;
                break;
            }
            ++bom_matched_;
            ++p;
        }
        if (bom_matched_ < 3) return Status::need_more;
        at_start_ = false;
    }
    // Positions of the next LF and CR past p, found once and reused for the lines before them.
    const char* next_lf = nullptr;
    const char* next_cr = nullptr;
    while (p < end) {
        if (skip_lf_) {
            skip_lf_ = false;
            if (*p == '\n') { ++p; continue; }
        }
        const std::size_t avail = static_cast<std::size_t>(end - p);
        if (next_lf < p) {
            next_lf = static_cast<const char*>(std::memchr(p, '\n', avail));
            if (!next_lf) next_lf = end;
        }
        if (next_cr < p) {
            next_cr = static_cast<const char*>(std::memchr(p, '\r', avail));
            if (!next_cr) next_cr = end;
        }
        const char* eol = next_lf < next_cr ? next_lf : next_cr;
        if (eol == end) {  // the line continues in the next input
            if (line_.size() + avail > limits_.max_line_bytes)
                return fail(ErrorCode::limit_exceeded, "SSE line exceeds the limit");
            if (!line_.append(p, avail)) return fail(ErrorCode::io, "out of memory");
            p = end;
            break;
        }
        std::string_view line(p, static_cast<std::size_t>(eol - p));
        bool in_input = true;
        if (!line_.empty()) {
            if (line_.size() + line.size() > limits_.max_line_bytes)
                return fail(ErrorCode::limit_exceeded, "SSE line exceeds the limit");
            if (!line_.append(line)) return fail(ErrorCode::io, "out of memory");
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
    if (!materialize_pending()) return fail(ErrorCode::io, "out of memory");
    return Status::need_more;
}

/* ------------------------------------------------------------------------------------------------
   JSON (RFC 8259): a validating cursor, the chat.completion.chunk delta extractor, a writer
   The extractor validates the whole event in one pass while it notes where the fields it wants
   are; only when the event is valid does it decode them, so an invalid event is never half-used.
   Strings without escapes that are valid UTF-8 are handed out in place; others are decoded into a
   reused arena (escapes resolved, lone surrogates and invalid bytes dropped).
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
   never exceeds). Lone surrogates and invalid UTF-8 are dropped. Returns the bytes written. */
inline std::size_t json_decode_string(const char* p, const char* end, char* out) noexcept {
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

inline unsigned count_trailing_zeros(unsigned v) noexcept {
#if defined(_MSC_VER) && !defined(__clang__)
    unsigned long index;
    _BitScanForward(&index, v);
    return static_cast<unsigned>(index);
#else
    return static_cast<unsigned>(__builtin_ctz(v));
#endif
}

/* Walks one JSON text, validating as it goes. Every method leaves p just past what it read and
   returns false on invalid input (then `why` says what was expected). */
class JsonCursor {
public:
    JsonCursor(const char* begin, const char* end) noexcept : p(begin), start(begin), end(end) {}

    const char* p;
    const char* const start;
    const char* const end;
    const char* why = "";

    bool fail(const char* reason) noexcept {
        why = reason;
        return false;
    }
    LLM_STREAM_FORCE_INLINE void skip_ws() noexcept {
        while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) ++p;
    }
    bool at(char c) const noexcept { return p < end && *p == c; }

    bool string(JsonSpan& out) noexcept;  // at '"'
    bool number(std::int64_t* as_int, bool* is_int) noexcept;
    bool literal(const char* word, std::size_t length) noexcept {
        if (static_cast<std::size_t>(end - p) < length || std::memcmp(p, word, length) != 0)
            return fail("invalid literal");
        p += length;
        return true;
    }
    bool skip_value(int depth) noexcept;

    /* Calls on_member(key, depth) for each member; it must read exactly the member's value. */
    template <class OnMember> bool object(int depth, OnMember on_member) noexcept;
    /* Calls on_element(depth) for each element; it must read exactly one value. */
    template <class OnElement> bool array(int depth, OnElement on_element) noexcept;
};

LLM_STREAM_FORCE_INLINE bool JsonCursor::string(JsonSpan& out) noexcept {
    ++p;  // the opening quote
    const char* const begin = p;
    bool escaped = false;
    for (;;) {
#if LLM_STREAM_SSE2
        // Sixteen bytes at a time until a quote, a backslash or a control character.
        const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), control = _mm_set1_epi8(0x1F);
        while (end - p >= 16) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                             _mm_cmpeq_epi8(_mm_min_epu8(v, control), v));
            const unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(hit));
            if (mask) { p += count_trailing_zeros(mask); break; }
            p += 16;
        }
#endif
        while (p < end && *p != '"' && *p != '\\' && static_cast<unsigned char>(*p) >= 0x20) ++p;
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
    auto digit = [this] { return p < end && *p >= '0' && *p <= '9'; };
    if (at('-')) ++p;
    if (at('0')) ++p;
    else if (digit()) { while (digit()) ++p; }
    else return fail("invalid number");
    bool integral = true;
    if (at('.')) {
        ++p;
        if (!digit()) return fail("invalid number");
        while (digit()) ++p;
        integral = false;
    }
    if (at('e') || at('E')) {
        ++p;
        if (at('+') || at('-')) ++p;
        if (!digit()) return fail("invalid number");
        while (digit()) ++p;
        integral = false;
    }
    if (as_int && integral) {
        const auto r = std::from_chars(begin, p, *as_int);
        if (is_int) *is_int = r.ec == std::errc() && r.ptr == p;
    }
    return true;
}

template <class OnMember>
bool JsonCursor::object(int depth, OnMember on_member) noexcept {
    if (depth > json_max_depth) return fail("nesting too deep");
    ++p;  // '{'
    skip_ws();
    if (at('}')) { ++p; return true; }
    for (;;) {
        JsonSpan key;
        if (!at('"')) return fail("expected a member name");
        if (!string(key)) return false;
        skip_ws();
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

template <class OnElement>
bool JsonCursor::array(int depth, OnElement on_element) noexcept {
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

/* True when text is one valid JSON value (with surrounding whitespace). */
inline bool json_valid(std::string_view text, const char** why = nullptr) noexcept {
    JsonCursor c(text.data(), text.data() + text.size());
    c.skip_ws();
    bool ok = c.skip_value(0);
    if (ok) {
        c.skip_ws();
        if (c.p != c.end) ok = c.fail("unexpected text after the value");
    }
    if (why) *why = c.why;
    return ok;
}

/* Turns one chat.completion.chunk (or an error object) into typed events. */
class DeltaExtractor {
public:
    enum class Result {
        ok,           // events() holds this event's events (possibly none)
        invalid,      // not valid JSON, or not an object: why() says where
        error_event,  // the server reported an error: error_message() holds it
    };

    Result extract(std::string_view json);
    const std::vector<Event>& events() const noexcept { return events_; }
    std::string_view why() const noexcept { return why_; }
    std::size_t error_offset() const noexcept { return error_offset_; }
    std::string_view error_message() const noexcept { return error_message_; }

private:
    struct ChoiceFields {
        std::int64_t index = 0;
        JsonSpan content, reasoning_content, reasoning, finish_reason;
    };
    struct ToolFields {
        std::int64_t index = 0;
        JsonSpan id, name, arguments;
    };
    struct UsageFields {
        bool present = false;
        std::int64_t prompt = 0, completion = 0, total = 0;
    };

    bool parse_top(JsonCursor& c);
    bool parse_choice(JsonCursor& c, int depth);
    bool parse_delta(JsonCursor& c, int depth, ChoiceFields& choice);
    bool parse_tool_call(JsonCursor& c, int depth);
    bool parse_usage(JsonCursor& c, int depth, UsageFields& usage);
    bool parse_error(JsonCursor& c, int depth);
    // Notes a string (or null, which stays absent); other types are read and ignored.
    bool string_or_null(JsonCursor& c, int depth, JsonSpan& out);
    bool integer(JsonCursor& c, int depth, std::int64_t& out);
    std::string_view decode(const JsonSpan& s);
    void build_events();

    bool have_choice_ = false;
    ChoiceFields choice_;
    std::vector<ToolFields> tools_;  // of the chosen choice; capacity kept between events
    UsageFields usage_, choice_usage_;
    bool have_error_ = false;
    JsonSpan error_message_span_, error_type_, error_code_;
    std::string_view error_code_number_;
    ByteBuffer arena_;
    std::vector<Event> events_;
    const char* why_ = "";
    std::size_t error_offset_ = 0;
    std::string error_message_;  // only for error events: once per stream, not per chunk
};

inline bool DeltaExtractor::string_or_null(JsonCursor& c, int depth, JsonSpan& out) {
    if (c.at('"')) return c.string(out);
    if (c.at('n')) {
        out = {};
        return c.literal("null", 4);
    }
    return c.skip_value(depth);
}

inline bool DeltaExtractor::integer(JsonCursor& c, int depth, std::int64_t& out) {
    if (c.at('-') || (c.p < c.end && *c.p >= '0' && *c.p <= '9')) {
        std::int64_t v = 0;
        bool is_int = false;
        if (!c.number(&v, &is_int)) return false;
        if (is_int) out = v;
        return true;
    }
    return c.skip_value(depth);
}

inline bool DeltaExtractor::parse_usage(JsonCursor& c, int depth, UsageFields& usage) {
    if (!c.at('{')) return c.skip_value(depth);
    usage.present = true;
    return c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "prompt_tokens")) return integer(c, d, usage.prompt);
        if (json_key_is(key, "completion_tokens")) return integer(c, d, usage.completion);
        if (json_key_is(key, "total_tokens")) return integer(c, d, usage.total);
        return c.skip_value(d);
    });
}

inline bool DeltaExtractor::parse_tool_call(JsonCursor& c, int depth) {
    if (!c.at('{')) return c.skip_value(depth);
    ToolFields tool;
    const bool ok = c.object(depth + 1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "index")) return integer(c, d, tool.index);
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
    // Only the choice with index 0 is followed (n > 1 interleaves others); the index may come
    // after the delta, so this choice's tool calls are dropped again if it turns out to be another.
    const std::size_t tools_before = tools_.size();
    ChoiceFields choice;
    UsageFields usage;
    const bool ok = c.object(depth + 1, [&](const JsonSpan& key, int d) {
        // "message" is the same shape in a non-streamed reply, read whole when a server ignores "stream".
        if (json_key_is(key, "delta") || json_key_is(key, "message")) return parse_delta(c, d, choice);
        if (json_key_is(key, "finish_reason")) return string_or_null(c, d, choice.finish_reason);
        if (json_key_is(key, "index")) return integer(c, d, choice.index);
        if (json_key_is(key, "usage")) return parse_usage(c, d, usage);  // some servers put it here
        return c.skip_value(d);
    });
    if (!ok) return false;
    if (choice.index == 0 && !have_choice_) {
        have_choice_ = true;
        choice_ = choice;
        if (usage.present) choice_usage_ = usage;
    } else {
        tools_.resize(tools_before);
    }
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

inline bool DeltaExtractor::parse_top(JsonCursor& c) {
    c.skip_ws();
    if (!c.at('{')) return c.fail("an event's JSON must be an object");
    const bool ok = c.object(1, [&](const JsonSpan& key, int d) {
        if (json_key_is(key, "choices")) {
            if (!c.at('[')) return c.skip_value(d);
            return c.array(d + 1, [&](int dd) { return parse_choice(c, dd); });
        }
        if (json_key_is(key, "usage")) return parse_usage(c, d, usage_);
        if (json_key_is(key, "error")) return parse_error(c, d);
        return c.skip_value(d);
    });
    if (!ok) return false;
    c.skip_ws();
    return c.p == c.end || c.fail("unexpected text after the object");
}

inline std::string_view DeltaExtractor::decode(const JsonSpan& s) {
    if (!s.escaped && utf8_valid(s.begin, s.end)) return {s.begin, s.size()};
    char* out = arena_.data() + arena_.size();  // room was reserved for every span
    const std::size_t n = json_decode_string(s.begin, s.end, out);
    arena_.resize_up_reserved(n);
    return {out, n};
}

inline void DeltaExtractor::build_events() {
    const ChoiceFields& ch = choice_;
    // One text per event: reasoning_content (DashScope, DeepSeek) wins over reasoning when it has any.
    const JsonSpan& reasoning = ch.reasoning_content.size() ? ch.reasoning_content : ch.reasoning;
    // Decoding never lengthens a string, so one reservation keeps every view stable.
    std::size_t room = ch.content.size() + reasoning.size() + ch.finish_reason.size();
    for (const ToolFields& t : tools_) room += t.id.size() + t.name.size() + t.arguments.size();
    arena_.clear();
    if (!arena_.reserve(room)) {  // out of memory: nothing can be decoded safely
        why_ = "out of memory";
        return;
    }
    if (have_choice_) {
        if (reasoning.present() && reasoning.size()) {
            Event e;
            e.type = EventType::reasoning;
            e.text = decode(reasoning);
            if (!e.text.empty()) events_.push_back(e);
        }
        if (ch.content.present() && ch.content.size()) {
            Event e;
            e.type = EventType::content;
            e.text = decode(ch.content);
            if (!e.text.empty()) events_.push_back(e);
        }
        for (const ToolFields& t : tools_) {
            Event e;
            e.type = EventType::tool_call;
            e.tool_call.index = static_cast<int>(t.index);
            if (t.id.present()) e.tool_call.id = decode(t.id);
            if (t.name.present()) e.tool_call.name = decode(t.name);
            if (t.arguments.present()) e.tool_call.arguments = decode(t.arguments);
            events_.push_back(e);
        }
        if (ch.finish_reason.present()) {
            Event e;
            e.type = EventType::finish;
            e.text = decode(ch.finish_reason);
            events_.push_back(e);
        }
    }
    const UsageFields& usage = usage_.present ? usage_ : choice_usage_;
    if (usage.present) {
        Event e;
        e.type = EventType::usage;
        e.usage.prompt_tokens = usage.prompt;
        e.usage.completion_tokens = usage.completion;
        e.usage.total_tokens = usage.total;
        events_.push_back(e);
    }
}

inline DeltaExtractor::Result DeltaExtractor::extract(std::string_view json) {
    have_choice_ = false;
    choice_ = {};
    tools_.clear();
    usage_ = {};
    choice_usage_ = {};
    have_error_ = false;
    error_message_span_ = error_type_ = error_code_ = {};
    error_code_number_ = {};
    events_.clear();
    why_ = "";
    error_offset_ = 0;

    JsonCursor c(json.data(), json.data() + json.size());
    if (!parse_top(c)) {
        why_ = c.why;
        error_offset_ = static_cast<std::size_t>(c.p - c.start);
        return Result::invalid;
    }
    if (have_error_) {
        arena_.clear();
        arena_.reserve(error_message_span_.size() + error_type_.size() + error_code_.size());
        std::string_view message = error_message_span_.present() ? decode(error_message_span_) : "";
        std::string_view type = error_type_.present() ? decode(error_type_) : "";
        std::string_view code = error_code_.present() ? decode(error_code_) : error_code_number_;
        error_message_.assign(message.empty() ? std::string_view("the server reported an error") : message);
        if (!type.empty() || !code.empty()) {
            error_message_ += " (";
            if (!type.empty()) error_message_.append("type: ").append(type);
            if (!type.empty() && !code.empty()) error_message_ += ", ";
            if (!code.empty()) error_message_.append("code: ").append(code);
            error_message_ += ")";
        }
        return Result::error_event;
    }
    build_events();
    if (*why_) return Result::invalid;
    return Result::ok;
}

/* Writes s as a JSON string: quotes, backslashes and control characters escaped, UTF-8 passed
   through, invalid bytes dropped. */
inline void json_write_string(std::string& out, std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    out += '"';
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

/* ------------------------------------------------------------------------------------------------
   Request: URL, body
   ------------------------------------------------------------------------------------------------ */

struct Url {
    bool https = false;
    std::string host;         // without brackets for IPv6
    std::uint16_t port = 0;
    std::string target;       // path and query, at least "/"
    std::string host_header;  // host[:port] as the Host header wants it
};

inline bool parse_url(std::string_view url, Url& out, std::string& why) {
    auto starts_with_ci = [&](std::string_view prefix) {
        return url.size() >= prefix.size() && iequals(url.substr(0, prefix.size()), prefix);
    };
    std::string_view rest;
    if (starts_with_ci("https://")) { out.https = true; rest = url.substr(8); }
    else if (starts_with_ci("http://")) { out.https = false; rest = url.substr(7); }
    else { why = "the URL must start with http:// or https://"; return false; }
    const std::size_t authority_end = std::min(rest.find_first_of("/?#"), rest.size());
    std::string_view authority = rest.substr(0, authority_end);
    std::string_view path = rest.substr(authority_end);
    if (authority.find('@') != std::string_view::npos) {
        why = "credentials in the URL are not supported (use LLM_API_KEY)";
        return false;
    }
    std::string_view host, port;
    bool has_port = false;
    if (!authority.empty() && authority[0] == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos) { why = "unterminated IPv6 address in the URL"; return false; }
        host = authority.substr(1, close - 1);
        std::string_view after = authority.substr(close + 1);
        if (!after.empty() && after[0] != ':') { why = "unexpected text after the IPv6 address"; return false; }
        has_port = !after.empty();
        if (has_port) port = after.substr(1);
        for (char c : host)
            if (!(hex_value(c) >= 0 || c == ':' || c == '.')) { why = "invalid IPv6 address in the URL"; return false; }
        if (host.find(':') == std::string_view::npos) { why = "invalid IPv6 address in the URL"; return false; }
    } else {
        const std::size_t colon = authority.rfind(':');
        host = authority.substr(0, colon);
        has_port = colon != std::string_view::npos;
        if (has_port) port = authority.substr(colon + 1);
        for (char c : host)
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                  c == '.' || c == '_')) {
                why = "invalid host name in the URL";
                return false;
            }
    }
    if (host.empty()) { why = "the URL has no host"; return false; }
    std::uint64_t port_number = out.https ? 443 : 80;
    if (has_port) {
        if (!parse_decimal(port, port_number) || port_number == 0 || port_number > 65535) {
            why = "invalid port in the URL";
            return false;
        }
    }
    const std::size_t fragment = path.find('#');
    if (fragment != std::string_view::npos) path = path.substr(0, fragment);
    for (char c : path)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) {
            why = "the URL path contains spaces or control characters";
            return false;
        }
    out.host.assign(host);
    out.port = static_cast<std::uint16_t>(port_number);
    out.target = path.empty() || path[0] == '?' ? "/" + std::string(path) : std::string(path);
    const bool v6 = host.find(':') != std::string_view::npos;
    out.host_header = v6 ? "[" + out.host + "]" : out.host;
    if (port_number != (out.https ? 443u : 80u)) out.host_header += ":" + std::to_string(port_number);
    return true;
}

/* The JSON body of a streamed chat completion, or an error for options that cannot be sent. */
inline bool build_request_body(const Config& config, const std::vector<Message>& messages,
                               const ChatOptions& options, std::string& body, Error& error) {
    auto invalid = [&](std::string message) {
        error.code = ErrorCode::invalid_argument;
        error.message = std::move(message);
        return false;
    };
    if (messages.empty()) return invalid("the conversation has no messages");
    for (const Message& m : messages)
        if (m.role.empty()) return invalid("a message has an empty role");
    if (options.temperature && !(*options.temperature >= 0.0 && *options.temperature <= 2.0))
        return invalid("temperature must be between 0 and 2");
    if (options.max_tokens && *options.max_tokens <= 0) return invalid("max_tokens must be positive");
    const std::string& model = options.model.empty() ? config.model : options.model;
    if (model.empty()) return invalid("no model is set (LLM_MODEL or ChatOptions::model)");

    // Members of extra_json replace the ones this function would write, so no key appears twice.
    std::vector<std::string> extra_keys;
    std::string_view extra_members;
    if (!trim_ascii_space(options.extra_json).empty()) {
        const char* why = "";
        std::string_view extra = trim_ascii_space(options.extra_json);
        if (!json_valid(extra, &why)) return invalid(std::string("extra JSON is not valid JSON: ") + why);
        if (extra.front() != '{') return invalid("extra JSON must be an object");
        JsonCursor c(extra.data(), extra.data() + extra.size());
        c.object(1, [&](const JsonSpan& key, int depth) {
            std::string name(key.size(), '\0');
            name.resize(json_decode_string(key.begin, key.end, &name[0]));
            extra_keys.push_back(std::move(name));
            return c.skip_value(depth);
        });
        for (const std::string& key : extra_keys)
            if (key == "stream" || key == "messages")
                return invalid("extra JSON may not set \"" + key + "\": the client sets it");
        extra_members = trim_ascii_space(extra.substr(1, extra.size() - 2));
    }
    auto overridden = [&](std::string_view key) {
        return std::find(extra_keys.begin(), extra_keys.end(), key) != extra_keys.end();
    };

    body.clear();
    body += "{";
    if (!overridden("model")) {
        body += "\"model\":";
        json_write_string(body, model);
        body += ",";
    }
    body += "\"messages\":[";
    for (std::size_t i = 0; i < messages.size(); ++i) {
        if (i) body += ",";
        body += "{\"role\":";
        json_write_string(body, messages[i].role);
        body += ",\"content\":";
        json_write_string(body, messages[i].content);
        body += "}";
    }
    body += "],\"stream\":true";
    if (options.temperature && !overridden("temperature")) {
        body += ",\"temperature\":";
        json_write_number(body, *options.temperature);
    }
    if (options.max_tokens && !overridden("max_tokens")) {
        body += ",\"max_tokens\":";
        body += std::to_string(*options.max_tokens);
    }
    if (!extra_members.empty()) {
        body += ",";
        body.append(extra_members.data(), extra_members.size());
    }
    body += "}";
    return true;
}

/* The whole HTTP/1.1 request: head and body. Refuses header values that could split the head. */
inline bool build_http_request(const Config& config, const Url& url, const std::string& body, std::string& out,
                               Error& error) {
    auto refuse = [&](std::string message) {
        error.code = ErrorCode::invalid_config;
        error.message = std::move(message);
        return false;
    };
    auto safe_value = [](std::string_view v) {
        for (char c : v)
            if (c == '\r' || c == '\n' || c == '\0') return false;
        return true;
    };
    if (!safe_value(config.api_key)) return refuse("the API key contains a line break or NUL");
    out.clear();
    out.reserve(512 + body.size());
    out += "POST ";
    out += url.target;
    out += " HTTP/1.1\r\nHost: ";
    out += url.host_header;
    out += "\r\nUser-Agent: llm_stream/" LLM_STREAM_VERSION_STRING "\r\nContent-Type: application/json\r\n"
           "Accept: text/event-stream\r\nAccept-Encoding: identity\r\n";
    if (!config.api_key.empty()) {
        out += "Authorization: Bearer ";
        out += config.api_key;
        out += "\r\n";
    }
    for (const auto& header : config.headers) {
        if (header.first.empty() ||
            !std::all_of(header.first.begin(), header.first.end(), [](char c) { return is_token_char(c); }))
            return refuse("invalid request header name: " + excerpt(header.first, 40));
        if (!safe_value(header.second))
            return refuse("the value of request header " + header.first + " contains a line break or NUL");
        out += header.first;
        out += ": ";
        out += header.second;
        out += "\r\n";
    }
    out += "Content-Length: ";
    out += std::to_string(body.size());
    out += "\r\n\r\n";
    out += body;
    return true;
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
inline RetryDecision decide_retry(const RetryPolicy& policy, int retries_done, const AttemptFailure& failure,
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
inline void read_retry_hints(const HttpResponseReader& response, std::int64_t now_epoch, AttemptFailure& failure) {
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

/* ------------------------------------------------------------------------------------------------
   Stub: a deterministic simulated server response (HTTP head, chunked SSE body) for stub mode
   ------------------------------------------------------------------------------------------------ */

struct StubResponse {
    std::string bytes;                       // the whole HTTP response
    std::vector<std::size_t> segment_ends;   // where the simulated server pauses
};

inline StubResponse make_stub_response(const std::vector<Message>& messages, const std::string& model) {
    std::string_view prompt;
    std::size_t prompt_chars = 0;
    for (const Message& m : messages) {
        prompt_chars += utf8_count_chars(m.content);
        if (m.role == "user") prompt = m.content;
    }
    std::string reply = "你好！这是 llm_stream 的模拟回复（stub mode）。You asked: \u201c";
    const std::string_view shown = utf8_prefix(prompt, 40);
    reply.append(shown.data(), shown.size());
    if (shown.size() < prompt.size()) reply += "\u2026";
    reply += "\u201d。运动鞋轻便、透气、缓震，适合日常穿着。Set LLM_BASE_URL to stream from a real server.";

    StubResponse out;
    out.bytes = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                "Transfer-Encoding: chunked\r\n\r\n";
    out.segment_ends.push_back(out.bytes.size());
    std::string event;
    auto emit = [&](std::string_view json) {
        event = "data: ";
        event.append(json.data(), json.size());
        event += "\n\n";
        char size_line[24];
        const int n = std::snprintf(size_line, sizeof size_line, "%zx\r\n", event.size());
        out.bytes.append(size_line, static_cast<std::size_t>(n));
        out.bytes += event;
        out.bytes += "\r\n";
        out.segment_ends.push_back(out.bytes.size());
    };
    std::string head = "{\"id\":\"chatcmpl-stub\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":";
    json_write_string(head, model);
    head += ",\"choices\":[{\"index\":0,\"delta\":";
    std::string json = head + "{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}";
    emit(json);
    // Pieces of 2 to 8 characters, in a fixed pattern, as a tokenizer would cut them.
    static const std::size_t sizes[] = {2, 4, 3, 6, 5, 8, 7};
    std::size_t pieces = 0;
    for (std::string_view rest = reply; !rest.empty(); ++pieces) {
        const std::string_view piece = utf8_prefix(rest, sizes[pieces % 7]);
        rest.remove_prefix(piece.size());
        json = head + "{\"content\":";
        json_write_string(json, piece);
        json += "},\"finish_reason\":null}]}";
        emit(json);
    }
    emit(head + "{},\"finish_reason\":\"stop\"}]}");
    json = "{\"id\":\"chatcmpl-stub\",\"object\":\"chat.completion.chunk\",\"created\":0,\"choices\":[],"
           "\"usage\":{\"prompt_tokens\":" + std::to_string(prompt_chars) +
           ",\"completion_tokens\":" + std::to_string(pieces) +
           ",\"total_tokens\":" + std::to_string(prompt_chars + pieces) + "}}";
    emit(json);
    emit("[DONE]");
    out.bytes += "0\r\n\r\n";
    out.segment_ends.back() = out.bytes.size();
    return out;
}

/* ------------------------------------------------------------------------------------------------
   Transports: they only move bytes. The in-memory replay serves stub mode, tests and benchmarks.
   ------------------------------------------------------------------------------------------------ */

class Connection;

class Transport {
public:
    virtual ~Transport() = default;
    /* Advances connection set-up (name resolution, TCP connect, TLS handshake): ok once ready. */
    virtual IoResult open() { return {IoStatus::ok, 0}; }
    virtual IoResult write(const char* data, std::size_t size) = 0;
    virtual IoResult read(char* buffer, std::size_t capacity) = 0;
    /* After would_block: what to wait for. */
    virtual WaitInfo wait_info() const = 0;
    /* After failed: which kind of failure, and a message for humans. */
    virtual ErrorCode error_code() const { return ErrorCode::io; }
    virtual std::string last_error() const { return "transport failure"; }
    /* Set-up was skipped because an idle connection from the pool was used. */
    virtual bool reused_connection() const { return false; }
    /* The connection, for the pool, once a response has been read to its end (network only). */
    virtual std::unique_ptr<Connection> release_connection() { return nullptr; }
};

/* Replays a fixed response. Each read stops at the next segment end, so tests choose exactly how
   the bytes are split; with a delay, the replay pauses there as a slow server would. */
class MemoryTransport final : public Transport {
public:
    MemoryTransport(std::string bytes, std::vector<std::size_t> segment_ends, std::chrono::milliseconds delay)
        : owned_(std::move(bytes)), bytes_(owned_), segment_ends_(std::move(segment_ends)), delay_(delay) {}
    /* Borrows bytes, which must outlive the transport (benchmarks replay one buffer many times). */
    MemoryTransport(std::string_view bytes, std::vector<std::size_t> segment_ends)
        : bytes_(bytes), segment_ends_(std::move(segment_ends)), delay_(0) {}

    IoResult write(const char*, std::size_t size) override { return {IoStatus::ok, size}; }
    IoResult read(char* buffer, std::size_t capacity) override {
        if (position_ == bytes_.size()) return {IoStatus::closed, 0};
        if (delay_.count() > 0 && Clock::now() < ready_at_) return {IoStatus::would_block, 0};
        while (segment_ < segment_ends_.size() && segment_ends_[segment_] <= position_) ++segment_;
        const std::size_t limit =
            segment_ < segment_ends_.size() ? std::min(segment_ends_[segment_], bytes_.size()) : bytes_.size();
        const std::size_t n = std::min(capacity, limit - position_);
        std::memcpy(buffer, bytes_.data() + position_, n);
        position_ += n;
        if (delay_.count() > 0 && position_ == limit) ready_at_ = Clock::now() + delay_;
        return {IoStatus::ok, n};
    }
    WaitInfo wait_info() const override {
        WaitInfo w;
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(ready_at_ - Clock::now());
        w.timeout = left.count() > 0 ? left : std::chrono::milliseconds(0);
        return w;
    }

private:
    std::string owned_;
    std::string_view bytes_;
    std::vector<std::size_t> segment_ends_;
    std::chrono::milliseconds delay_;
    std::size_t position_ = 0;
    std::size_t segment_ = 0;
    Clock::time_point ready_at_{};
};

/* One TCP connection (with TLS over it for https), owned by a stream or idle in the client's pool. */
class Connection {
public:
    Connection(native_socket socket, std::string origin) : socket_(socket), origin_(std::move(origin)) {}
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection() {
        tls.reset();  // its close_notify goes out before the socket closes
        close_socket(socket_);
    }

    native_socket socket() const noexcept { return socket_; }
    const std::string& origin() const noexcept { return origin_; }

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
        if (tls && tls_failed_) return tls->error_message();
        return socket_error_ ? socket_error_text(socket_error_) : "connection failure";
    }

    std::unique_ptr<TlsSession> tls;
    Clock::time_point idle_since{};
    /* A response whose final bytes (the chunked terminator after [DONE]) may still be in flight:
       they are read before the connection is used again. */
    std::unique_ptr<HttpResponseReader> unfinished;

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
    std::string origin_;
    int socket_error_ = 0;
    bool wants_write_ = false;
    bool tls_failed_ = false;
};

enum class DrainResult { done, pending, unusable };

/* Reads what an idle connection received while idle: the rest of an unfinished response (the
   chunked terminator that follows [DONE]) is expected; anything else (EOF, a reset, unexpected
   bytes) means the connection cannot carry another request. */
inline DrainResult drain_idle_connection(Connection& c) {
    char buffer[512];
    for (int reads = 0; reads < 16; ++reads) {
        const IoResult r = c.read(buffer, sizeof buffer);
        if (r.status == IoStatus::would_block) return c.unfinished ? DrainResult::pending : DrainResult::done;
        if (r.status != IoStatus::ok || !c.unfinished) return DrainResult::unusable;
        const HttpResponseReader::Step step = c.unfinished->feed(buffer, r.bytes);
        if (step.status == HttpResponseReader::Status::error || step.status == HttpResponseReader::Status::head)
            return DrainResult::unusable;
        if (step.status == HttpResponseReader::Status::end) {
            if (step.consumed != r.bytes) return DrainResult::unusable;
            c.unfinished.reset();
        }
    }
    return DrainResult::unusable;
}

/* What copies of a Client share: the configuration, the TLS backend, the idle connections. */
struct ClientState {
    Config config;

    std::shared_ptr<TlsBackend> tls_backend(std::string& error) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!tls_ && tls_error_.empty()) {
            tls_ = config.tls.backend ? config.tls.backend : make_default_tls_backend(config.tls, tls_error_);
            if (tls_ && !config.tls.verify && !config.tls.backend)
                emit_log(config, LogLevel::warning,
                         "TLS certificate verification is OFF: anyone on the network path can read and alter "
                         "this traffic, API key included");
        }
        error = tls_error_;
        return tls_;
    }

    /* The most recently used idle connection to origin that is still good, or nullptr. */
    std::unique_ptr<Connection> take_idle(const std::string& origin) {
        std::unique_lock<std::mutex> lock(mutex_);
        const Clock::time_point now = Clock::now();
        for (std::size_t i = idle_.size(); i-- > 0;) {
            if (now - idle_[i]->idle_since > config.idle_connection_timeout) {
                idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(i));
                continue;
            }
            if (idle_[i]->origin() != origin) continue;
            std::unique_ptr<Connection> c = std::move(idle_[i]);
            idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(i));
            lock.unlock();
            if (drain_idle_connection(*c) != DrainResult::unusable) return c;
            lock.lock();
        }
        return nullptr;
    }

    void put_idle(std::unique_ptr<Connection> c) {
        if (config.max_idle_connections == 0) return;
        c->idle_since = Clock::now();
        std::lock_guard<std::mutex> lock(mutex_);
        if (idle_.size() >= config.max_idle_connections) idle_.erase(idle_.begin());  // the oldest goes
        idle_.push_back(std::move(c));
    }

private:
    std::mutex mutex_;
    std::vector<std::unique_ptr<Connection>> idle_;
    std::shared_ptr<TlsBackend> tls_;
    std::string tls_error_;
};

/* A real connection: an idle one from the pool, or name resolution, a non-blocking TCP connect
   (each address in turn) and, for https, a TLS handshake. All steps return at once. */
class NetworkTransport final : public Transport {
public:
    NetworkTransport(std::shared_ptr<ClientState> client, const Url& url, bool allow_pooled)
        : client_(std::move(client)), url_(url), allow_pooled_(allow_pooled) {
        origin_ = (url.https ? "https://" : "http://") + url.host_header;
    }
    ~NetworkTransport() override {
        if (connecting_ != invalid_socket) close_socket(connecting_);
    }

    IoResult open() override;
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
    WaitInfo wait_info() const override {
        WaitInfo w;
        const native_socket s = connection_ ? connection_->socket() : connecting_;
        if (s == invalid_socket) return w;
        w.socket = static_cast<socket_handle>(s);
        const bool write_wanted = step_ == Step::connect || (step_ == Step::tls ? tls_wants_write_
                                                             : connection_ && connection_->wants_write());
        w.want_write = write_wanted;
        w.want_read = !write_wanted;
        w.timeout = std::chrono::milliseconds(1000);  // the stream shortens it to its own deadlines
        return w;
    }
    ErrorCode error_code() const override { return code_; }
    std::string last_error() const override { return error_; }
    bool reused_connection() const override { return reused_; }

    std::unique_ptr<Connection> release_connection() override { return std::move(connection_); }

private:
    enum class Step { pool, drain, resolve, connect, tls, ready };

    IoResult failed(ErrorCode code, std::string message) {
        code_ = code;
        error_ = std::move(message);
        return {IoStatus::failed, 0};
    }
    void fail_io() {
        code_ = ErrorCode::io;
        error_ = connection_->error_message();
    }
    IoResult start_connect();
    IoResult finish_connect();

    std::shared_ptr<ClientState> client_;
    Url url_;
    std::string origin_;
    bool allow_pooled_;
    bool reused_ = false;
    bool tls_wants_write_ = false;
    Clock::time_point drain_started_{};
    Step step_ = Step::pool;
    std::vector<SocketAddress> addresses_;
    std::size_t next_address_ = 0;
    native_socket connecting_ = invalid_socket;
    std::string connect_errors_;
    std::unique_ptr<Connection> connection_;
    ErrorCode code_ = ErrorCode::io;
    std::string error_;
};

inline IoResult NetworkTransport::start_connect() {
    // Tries addresses in order until a connect() is under way or has succeeded.
    while (next_address_ < addresses_.size()) {
        const SocketAddress& a = addresses_[next_address_++];
        const native_socket s = socket(a.storage.ss_family, SOCK_STREAM, IPPROTO_TCP);
        if (s == invalid_socket) {
            connect_errors_ += "; " + address_text(a) + ": " + socket_error_text(last_socket_error());
            continue;
        }
        if (!set_non_blocking(s)) {
            connect_errors_ += "; " + address_text(a) + ": cannot make the socket non-blocking";
            close_socket(s);
            continue;
        }
#if defined(SO_NOSIGPIPE)
        const int on = 1;
        setsockopt(s, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
#endif
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
    return failed(ErrorCode::connect, "cannot connect to " + url_.host_header + ": " + why);
}

inline IoResult NetworkTransport::finish_connect() {
    const int nodelay = 1;  // requests are written whole; no reason to wait for more
    setsockopt(connecting_, IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const char*>(&nodelay), sizeof nodelay);
    connection_ = std::make_unique<Connection>(connecting_, origin_);
    connecting_ = invalid_socket;
    if (!url_.https) {
        step_ = Step::ready;
        return {IoStatus::ok, 0};
    }
    std::string error;
    std::shared_ptr<TlsBackend> backend = client_->tls_backend(error);
    if (!backend) return failed(ErrorCode::tls, error);
    connection_->tls = backend->start(static_cast<socket_handle>(connection_->socket()), url_.host, error);
    if (!connection_->tls) return failed(ErrorCode::tls, error);
    step_ = Step::tls;
    return open();
}

inline IoResult NetworkTransport::open() {
    switch (step_) {
    case Step::pool:
        if (allow_pooled_) {
            connection_ = client_->take_idle(origin_);
            if (connection_) {
                reused_ = true;
                step_ = Step::drain;
                drain_started_ = Clock::now();
                return open();
            }
        }
        step_ = Step::resolve;
        return open();
    case Step::drain:
        // The previous response's last bytes are usually a moment behind its [DONE]; a connection
        // whose response never ends is given up for a new one.
        switch (drain_idle_connection(*connection_)) {
        case DrainResult::done:
            step_ = Step::ready;
            return {IoStatus::ok, 0};
        case DrainResult::pending:
            if (Clock::now() - drain_started_ < std::chrono::seconds(1)) return {IoStatus::would_block, 0};
            break;
        case DrainResult::unusable:
            break;
        }
        connection_.reset();
        reused_ = false;
        step_ = Step::resolve;
        return open();
    case Step::resolve: {
        if (!network_startup()) return failed(ErrorCode::io, "Winsock could not be started");
        std::string why;
        if (!resolve_host(url_.host, url_.port, client_->config.resolver, addresses_, why))
            return failed(ErrorCode::dns, "cannot resolve " + url_.host + ": " + why);
        step_ = Step::connect;
        return start_connect();
    }
    case Step::connect: {
        if (connecting_ == invalid_socket) return start_connect();
        // Writable (or in error) means the connect finished; SO_ERROR says how.
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
    case Step::tls: {
        const TlsResult r = connection_->tls->handshake();
        if (r.status == TlsStatus::ok) {
            step_ = Step::ready;
            return {IoStatus::ok, 0};
        }
        if (r.status == TlsStatus::want_read || r.status == TlsStatus::want_write) {
            tls_wants_write_ = r.status == TlsStatus::want_write;
            return {IoStatus::would_block, 0};
        }
        std::string why = r.status == TlsStatus::closed ? "the server closed the connection during the TLS handshake"
                                                        : connection_->tls->error_message();
        return failed(ErrorCode::tls, "TLS with " + url_.host_header + " failed: " + why);
    }
    case Step::ready:
        return {IoStatus::ok, 0};
    }
    return {IoStatus::ok, 0};
}

/* ------------------------------------------------------------------------------------------------
   Stream: one state machine behind poll(); next_chunk()/next_event() wait on it
   Each attempt: open the transport (pool / DNS / connect / TLS) → send the request → read the
   response through HTTP → SSE → JSON. A failure before anything reached the caller may start
   another attempt after a backoff; after that it ends the stream, and what was delivered stays.
   ------------------------------------------------------------------------------------------------ */

/* Makes the transport of each attempt; `allow_pooled` is false after a pooled connection failed. */
using TransportFactory = std::function<std::unique_ptr<Transport>(bool allow_pooled)>;

class StreamImpl {
public:
    StreamImpl(std::shared_ptr<ClientState> client, Error error) : client_(std::move(client)), start_(Clock::now()) {
        finish_failed(std::move(error));
    }
    StreamImpl(std::shared_ptr<ClientState> client, TransportFactory factory, std::string request)
        : client_(std::move(client)), factory_(std::move(factory)), request_(std::move(request)),
          start_(Clock::now()), jitter_(static_cast<std::uint32_t>(start_.time_since_epoch().count())) {
        begin_attempt(true, true);
    }

    PollStatus poll();
    void wait();
    PollStatus wait_for_progress();
    const Event& current_event() const noexcept { return current_; }
    WaitInfo wait_info() const noexcept;
    void cancel() noexcept {
        cancelled_.store(true);
        waker_.wake();
        std::lock_guard<std::mutex> lock(wait_mutex_);
        wait_cv_.notify_all();
    }
    bool finished() const noexcept { return finished_; }
    const Error& error() const noexcept { return error_; }
    Stats stats() const {
        Stats s = stats_;
        if (!finished_) s.total_ms = elapsed_ms(start_, Clock::now());
        return s;
    }

private:
    enum class Phase { opening, exchanging, waiting_to_retry, finished };
    enum class BodyMode { sse, whole_json, error };

    const Config& config() const noexcept { return client_->config; }
    void log(LogLevel level, std::string message) const { emit_log(config(), level, std::move(message)); }

    void begin_attempt(bool counts, bool allow_pooled);
    PollStatus fail(ErrorCode code, std::string message, int http_status = 0) {
        Error e;
        e.code = code;
        e.http_status = http_status;
        e.message = std::move(message);
        redact_secret(e.message, config().api_key);
        finish_failed(std::move(e));
        return PollStatus::failed;
    }
    void finish_failed(Error e) {
        error_ = std::move(e);
        finished_ = true;
        phase_ = Phase::finished;
        stats_.total_ms = elapsed_ms(start_, Clock::now());
        transport_.reset();
        log(LogLevel::info, std::string("LLM stream failed: ") + error_.message);
    }
    /* The attempt failed: retried when nothing was delivered and the policy agrees, else final. */
    PollStatus attempt_failed(ErrorCode code, std::string message, int http_status = 0);
    PollStatus transport_failed() { return attempt_failed(transport_->error_code(), transport_->last_error()); }
    /* Waiting for the transport: fine unless its time is up. */
    PollStatus waiting(Clock::time_point now);
    PollStatus finish_ok();
    void keep_connection();
    PollStatus deliver(const Event& event);
    void on_head();
    PollStatus on_http_end();
    // Returns true with `status` set when the event produced something for the caller.
    bool on_sse_event(PollStatus& status);
    PollStatus on_extracted(DeltaExtractor::Result result, std::string_view data);
    PollStatus http_error();
    PollStatus exchange();
    std::chrono::milliseconds time_left(Clock::time_point now) const noexcept;

    std::shared_ptr<ClientState> client_;
    TransportFactory factory_;
    std::unique_ptr<Transport> transport_;
    std::string request_;
    std::size_t request_sent_ = 0;
    Clock::time_point start_;
    Clock::time_point attempt_start_{};
    Clock::time_point last_activity_{};  // of this attempt: bytes sent or received
    Clock::time_point retry_at_{};
    Phase phase_ = Phase::opening;
    int retries_done_ = 0;
    bool response_started_ = false;      // this attempt received bytes
    std::size_t events_delivered_ = 0;
    std::minstd_rand jitter_;

    ByteBuffer receive_;
    std::size_t receive_pos_ = 0, receive_end_ = 0;
    HttpResponseReader http_;
    SseParser sse_;
    DeltaExtractor json_;
    BodyMode body_mode_ = BodyMode::sse;
    const char* body_pos_ = nullptr;  // body bytes not yet given to the SSE parser
    const char* body_end_ = nullptr;
    ByteBuffer whole_body_;           // an error body, or a non-streamed JSON reply
    std::size_t queued_ = 0;          // events of the last JSON event
    std::size_t next_queued_ = 0;     // the next of them to hand out
    bool done_seen_ = false;          // data: [DONE]
    bool http_ended_ = false;         // the response is complete
    bool finish_seen_ = false;

    Event current_;
    Error error_;
    Stats stats_;
    bool finished_ = false;

    std::atomic<bool> cancelled_{false};
    Waker waker_;
    std::mutex wait_mutex_;
    std::condition_variable wait_cv_;
};

inline void StreamImpl::begin_attempt(bool counts, bool allow_pooled) {
    const Limits& l = config().limits;
    http_.reset({l.max_header_bytes, 4096});
    sse_.reset({l.max_line_bytes, l.max_event_bytes});
    body_mode_ = BodyMode::sse;
    body_pos_ = body_end_ = nullptr;
    whole_body_.clear();
    queued_ = next_queued_ = 0;
    done_seen_ = http_ended_ = finish_seen_ = response_started_ = false;
    request_sent_ = 0;
    receive_pos_ = receive_end_ = 0;
    transport_.reset();  // closes the previous attempt's connection first
    transport_ = factory_(allow_pooled);
    if (counts) ++stats_.attempts;
    attempt_start_ = last_activity_ = Clock::now();
    phase_ = Phase::opening;
}

inline std::chrono::milliseconds StreamImpl::time_left(Clock::time_point now) const noexcept {
    // The nearest of: this step's timeout, the request's deadline.
    const Config& cfg = config();
    Clock::time_point until = phase_ == Phase::opening ? attempt_start_ + cfg.connect_timeout
                                                      : last_activity_ + cfg.read_timeout;
    if (cfg.deadline.count() > 0) until = std::min(until, start_ + cfg.deadline);
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - now);
    return left.count() > 0 ? left : std::chrono::milliseconds(0);
}

inline WaitInfo StreamImpl::wait_info() const noexcept {
    if (finished_) return {};
    const Clock::time_point now = Clock::now();
    if (phase_ == Phase::waiting_to_retry) {
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

inline PollStatus StreamImpl::attempt_failed(ErrorCode code, std::string message, int http_status) {
    const bool reused = transport_ && transport_->reused_connection();
    transport_.reset();
    if (events_delivered_ == 0 && !cancelled_.load()) {
        // An idle connection the server had already closed: try again on a new one, free of charge.
        if (reused && !response_started_ && code != ErrorCode::http_status) {
            log(LogLevel::info, "a reused connection failed (" + message + "); retrying on a new connection");
            begin_attempt(false, false);
            return PollStatus::pending;
        }
        AttemptFailure failure;
        failure.code = code;
        failure.http_status = http_status;
        failure.response_started = response_started_;
        if (http_status != 0)
            read_retry_hints(http_, static_cast<std::int64_t>(std::time(nullptr)), failure);
        const double random01 = static_cast<double>(jitter_() - jitter_.min()) /
                                static_cast<double>(jitter_.max() - jitter_.min() + 1);
        const RetryDecision d = decide_retry(config().retry, retries_done_, failure, random01);
        const Clock::time_point now = Clock::now();
        const bool within_deadline = config().deadline.count() == 0 || now + d.wait < start_ + config().deadline;
        if (d.retry && within_deadline) {
            ++retries_done_;
            char wait[32];
            std::snprintf(wait, sizeof wait, "%.2f s", static_cast<double>(d.wait.count()) / 1000.0);
            log(LogLevel::warning, "attempt " + std::to_string(stats_.attempts) + " failed: " + message +
                                       "; retrying in " + wait);
            retry_at_ = now + d.wait;
            phase_ = Phase::waiting_to_retry;
            return PollStatus::pending;
        }
    }
    if (stats_.attempts > 1) message += " (after " + std::to_string(stats_.attempts) + " attempts)";
    return fail(code, std::move(message), http_status);
}

inline PollStatus StreamImpl::waiting(Clock::time_point now) {
    const Config& cfg = config();
    if (cfg.deadline.count() > 0 && now - start_ >= cfg.deadline) {
        char limit[32];
        std::snprintf(limit, sizeof limit, "%.3g s", std::chrono::duration<double>(cfg.deadline).count());
        return fail(ErrorCode::timeout, std::string("the request deadline of ") + limit + " expired");
    }
    if (phase_ == Phase::opening && now - attempt_start_ >= cfg.connect_timeout) {
        char limit[32];
        std::snprintf(limit, sizeof limit, "%.3g s", std::chrono::duration<double>(cfg.connect_timeout).count());
        return attempt_failed(ErrorCode::timeout, std::string("connecting timed out after ") + limit);
    }
    if (phase_ == Phase::exchanging && now - last_activity_ >= cfg.read_timeout) {
        char limit[32];
        std::snprintf(limit, sizeof limit, "%.3g s", std::chrono::duration<double>(cfg.read_timeout).count());
        return attempt_failed(ErrorCode::timeout, std::string(response_started_ ? "the server went silent for "
                                                                                : "no response from the server within ") +
                                                      limit);
    }
    return PollStatus::pending;
}

inline PollStatus StreamImpl::deliver(const Event& event) {
    ++events_delivered_;
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
        finish_seen_ = true;
        stats_.finish_reason.assign(event.text.data(), event.text.size());
        break;
    case EventType::usage:
        stats_.has_usage = true;
        stats_.usage = event.usage;
        break;
    default:
        break;
    }
    current_ = event;
    return PollStatus::event;
}

/* Hands a connection whose response was read to the end (or to [DONE], its last bytes still in
   flight) back to the client's pool. */
inline void StreamImpl::keep_connection() {
    if (!transport_ || !http_.keep_alive() || receive_pos_ != receive_end_) return;
    std::unique_ptr<Connection> connection = transport_->release_connection();
    if (!connection) return;
    if (!http_ended_) connection->unfinished = std::make_unique<HttpResponseReader>(std::move(http_));
    client_->put_idle(std::move(connection));
}

inline PollStatus StreamImpl::finish_ok() {
    keep_connection();
    finished_ = true;
    phase_ = Phase::finished;
    stats_.total_ms = elapsed_ms(start_, Clock::now());
    transport_.reset();
    if (!done_seen_ && !finish_seen_)
        log(LogLevel::warning, "the stream ended without [DONE] or a finish reason; it may be incomplete");
    if (config().log_level <= LogLevel::info) {
        char line[128];
        std::snprintf(line, sizeof line, "LLM stream completed: %zu chunks, %zu chars, %.2f ms", stats_.chunks,
                      stats_.chars, stats_.total_ms);
        log(LogLevel::info, line);
    }
    return PollStatus::done;
}

inline PollStatus StreamImpl::http_error() {
    const int status = http_.status();
    std::string message = "HTTP " + std::to_string(status);
    std::string_view body = whole_body_.view();
    if (json_.extract(body) == DeltaExtractor::Result::error_event) {
        message += ": ";
        message += json_.error_message();
    } else if (!trim_ascii_space(body).empty()) {
        message += ": " + excerpt(trim_ascii_space(body), 200);
    }
    queued_ = next_queued_ = 0;  // the extractor's events are not this response's
    return attempt_failed(ErrorCode::http_status, std::move(message), status);
}

inline void StreamImpl::on_head() {
    const int status = http_.status();
    if (status < 200 || status > 299) {
        body_mode_ = BodyMode::error;
        return;
    }
    // A server that ignored "stream": true answers with one JSON document; it is read whole.
    std::string_view type = http_.content_type();
    type = trim_http_space(type.substr(0, type.find(';')));
    body_mode_ = iequals(type, "application/json") ? BodyMode::whole_json : BodyMode::sse;
}

inline PollStatus StreamImpl::on_extracted(DeltaExtractor::Result result, std::string_view data) {
    switch (result) {
    case DeltaExtractor::Result::ok:
        queued_ = json_.events().size();
        next_queued_ = 0;
        if (queued_ > 0) return deliver(json_.events()[next_queued_++]);
        return PollStatus::pending;
    case DeltaExtractor::Result::error_event:
        return fail(ErrorCode::server_error, "server error: " + std::string(json_.error_message()), http_.status());
    case DeltaExtractor::Result::invalid:
        break;
    }
    if (sse_.event_type() == "error")  // "event: error" with a plain-text message
        return fail(ErrorCode::server_error, "server error: " + excerpt(trim_ascii_space(data), 200));
    ++stats_.skipped_events;
    char where[96];
    std::snprintf(where, sizeof where, "skipped an event whose JSON could not be decoded (%s at byte %zu): ",
                  std::string(json_.why()).c_str(), json_.error_offset());
    log(LogLevel::warning, where + excerpt(data, 80));
    return PollStatus::pending;
}

inline bool StreamImpl::on_sse_event(PollStatus& status) {
    ++stats_.events;
    const std::string_view data = sse_.data();
    const std::string_view trimmed = trim_ascii_space(data);
    if (trimmed == "[DONE]") {
        done_seen_ = true;
        return false;
    }
    if (trimmed.empty()) return false;  // an empty keep-alive event
    status = on_extracted(json_.extract(data), data);
    return status != PollStatus::pending;
}

inline PollStatus StreamImpl::on_http_end() {
    if (body_mode_ == BodyMode::error) return http_error();
    http_ended_ = true;
    if (body_mode_ == BodyMode::whole_json) {
        ++stats_.events;
        const PollStatus s = on_extracted(json_.extract(whole_body_.view()), whole_body_.view());
        if (s != PollStatus::pending) return s;
    } else if (sse_.has_partial_event() && !done_seen_) {
        log(LogLevel::warning, "the stream ended inside an event; that partial event was dropped");
    }
    return finish_ok();
}

inline PollStatus StreamImpl::poll() {
    if (finished_) return error_ ? PollStatus::failed : PollStatus::done;
    if (cancelled_.load(std::memory_order_relaxed)) return fail(ErrorCode::cancelled, "the stream was cancelled");
    if (next_queued_ < queued_) return deliver(json_.events()[next_queued_++]);
    if (http_ended_) return finish_ok();  // the last events of the body have been handed out
    if (phase_ == Phase::waiting_to_retry) {
        if (Clock::now() < retry_at_) return PollStatus::pending;
        begin_attempt(true, true);
    }
    if (phase_ == Phase::opening) {
        const IoResult r = transport_->open();
        if (r.status == IoStatus::would_block) return waiting(Clock::now());
        if (r.status != IoStatus::ok) return transport_failed();
        phase_ = Phase::exchanging;
        last_activity_ = Clock::now();
    }
    return exchange();
}

inline PollStatus StreamImpl::exchange() {
    const Config& cfg = config();
    for (;;) {
        // 1. Body bytes for the SSE parser (or kept whole).
        if (body_pos_ != body_end_) {
            if (body_mode_ != BodyMode::sse || done_seen_) {
                // After [DONE] the rest of the body is read and ignored; other modes keep it whole.
                if (body_mode_ != BodyMode::sse) {
                    const std::size_t cap = body_mode_ == BodyMode::error ? cfg.limits.max_error_body_bytes
                                                                          : cfg.limits.max_event_bytes;
                    const std::size_t room = cap > whole_body_.size() ? cap - whole_body_.size() : 0;
                    const std::size_t n = std::min(room, static_cast<std::size_t>(body_end_ - body_pos_));
                    if (!whole_body_.append(body_pos_, n)) return fail(ErrorCode::io, "out of memory");
                    if (n < static_cast<std::size_t>(body_end_ - body_pos_)) {
                        if (body_mode_ == BodyMode::error) return http_error();  // enough to explain it
                        return fail(ErrorCode::limit_exceeded, "the JSON reply exceeds the event limit");
                    }
                }
                body_pos_ = body_end_;
                continue;
            }
            const SseParser::Status s = sse_.next(body_pos_, body_end_);
            if (s == SseParser::Status::event) {
                PollStatus status = PollStatus::pending;
                if (on_sse_event(status)) return status;
                continue;
            }
            if (s == SseParser::Status::error) return fail(sse_.error_code(), sse_.error_message());
            continue;
        }
        // 2. Received bytes for the HTTP reader (or its end: a Content-Length body can end exactly
        //    where the bytes received so far do).
        if (receive_pos_ < receive_end_ || http_.complete()) {
            const HttpResponseReader::Step step =
                http_.feed(receive_.data() + receive_pos_, receive_end_ - receive_pos_);
            receive_pos_ += step.consumed;
            switch (step.status) {
            case HttpResponseReader::Status::head: on_head(); break;
            case HttpResponseReader::Status::body:
                body_pos_ = step.body.data();
                body_end_ = body_pos_ + step.body.size();
                break;
            case HttpResponseReader::Status::end: return on_http_end();
            case HttpResponseReader::Status::error:
                return fail(http_.error_code(), http_.error_message(), http_.status());
            case HttpResponseReader::Status::need_more: break;
            }
            continue;
        }
        // 3. Send what is left of the request, then read.
        if (request_sent_ < request_.size()) {
            const IoResult w = transport_->write(request_.data() + request_sent_, request_.size() - request_sent_);
            if (w.status == IoStatus::would_block) return waiting(Clock::now());
            if (w.status != IoStatus::ok) return transport_failed();
            request_sent_ += w.bytes;
            last_activity_ = Clock::now();
            continue;
        }
        if (receive_.data() == nullptr && !receive_.reserve(cfg.limits.receive_buffer_bytes))
            return fail(ErrorCode::io, "out of memory");
        const IoResult r = transport_->read(receive_.data(), cfg.limits.receive_buffer_bytes);
        switch (r.status) {
        case IoStatus::ok:
            receive_pos_ = 0;
            receive_end_ = r.bytes;
            stats_.received_bytes += r.bytes;
            response_started_ = true;
            last_activity_ = Clock::now();
            continue;
        case IoStatus::would_block:
            // After [DONE], nothing the caller needs is left: do not wait for the server's last bytes.
            if (done_seen_) return finish_ok();
            return waiting(Clock::now());
        case IoStatus::closed: {
            const HttpResponseReader::Step step = http_.finish();
            if (step.status == HttpResponseReader::Status::end) return on_http_end();
            if (done_seen_) return finish_ok();  // everything the caller needed had arrived
            if (!response_started_) return attempt_failed(ErrorCode::connect, "the server closed the connection without answering");
            return attempt_failed(http_.error_code(), http_.error_message(), 0);
        }
        case IoStatus::failed:
            return transport_failed();
        }
    }
}

inline void StreamImpl::wait() {
    waker_.prepare();
    if (cancelled_.load()) return;
    const WaitInfo w = wait_info();
    if (w.socket != static_cast<socket_handle>(-1)) {
        wait_for_socket(static_cast<native_socket>(w.socket), w.want_read, w.want_write, w.timeout, waker_);
    } else {
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

/* A stream that reads a recorded HTTP response from memory through the whole pipeline, split at
   segment_ends: used by stub mode, tests and benchmarks. */
inline Stream replay_stream(const Config& config, std::string response, std::vector<std::size_t> segment_ends = {},
                            std::chrono::milliseconds delay = std::chrono::milliseconds(0)) {
    auto client = std::make_shared<ClientState>();
    client->config = config;
    // Every attempt (a retried 5xx, say) is answered with the same bytes.
    TransportFactory factory = [response = std::move(response), segment_ends = std::move(segment_ends), delay](bool) {
        return std::make_unique<MemoryTransport>(response, segment_ends, delay);
    };
    return Stream(std::make_unique<StreamImpl>(std::move(client), std::move(factory), std::string()));
}

/* The same over borrowed bytes, which must outlive the stream. */
inline Stream replay_stream_borrowed(const Config& config, std::string_view response,
                                     std::vector<std::size_t> segment_ends = {}) {
    auto client = std::make_shared<ClientState>();
    client->config = config;
    TransportFactory factory = [response, segment_ends = std::move(segment_ends)](bool) {
        return std::make_unique<MemoryTransport>(response, segment_ends);
    };
    return Stream(std::make_unique<StreamImpl>(std::move(client), std::move(factory), std::string()));
}

}  // namespace detail
}  // namespace llm_stream
#endif  // LLM_STREAM_INTERNALS

#if defined(LLM_STREAM_IMPLEMENTATION) && !defined(LLM_STREAM_IMPLEMENTATION_INCLUDED)
#define LLM_STREAM_IMPLEMENTATION_INCLUDED
namespace llm_stream {

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
    }
    return "unknown";
}

void parse_dotenv(std::string_view text,
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
        if (key.empty() || i >= n || text[i] != '=') { skip_line(); continue; }  // not an assignment
        ++i;
        skip_blanks();
        value.clear();
        if (i < n && (text[i] == '"' || text[i] == '\'')) {
            // Quoted values may span lines; double quotes understand the usual escapes.
            const char quote = text[i++];
            bool closed = false;
            while (i < n) {
                const char c = text[i++];
                if (c == quote) { closed = true; break; }
                if (quote == '"' && c == '\\' && i < n) {
                    const char e = text[i++];
                    value += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
                    continue;
                }
                value += c;
            }
            if (!closed) break;  // an unterminated quote takes the rest of the file: ignore it
            skip_line();         // a comment may follow the closing quote
        } else {
            const std::size_t begin = i;
            while (i < n && text[i] != '\n') ++i;
            std::string_view raw = text.substr(begin, i - begin);
            // " #" starts a comment in an unquoted value; a '#' inside a word does not.
            for (std::size_t k = 0; k < raw.size(); ++k)
                if (raw[k] == '#' && (k == 0 || raw[k - 1] == ' ' || raw[k - 1] == '\t')) {
                    raw = raw.substr(0, k);
                    break;
                }
            value.assign(detail::trim_ascii_space(raw));
            if (i < n) ++i;
        }
        visit(key, value);
    }
}

Config Config::from_env(const std::string& dotenv_path) {
    std::vector<std::pair<std::string, std::string>> file_values;
    if (std::FILE* f = std::fopen(dotenv_path.c_str(), "rb")) {
        std::string text;
        char buffer[4096];
        std::size_t got;
        while ((got = std::fread(buffer, 1, sizeof buffer, f)) > 0 && text.size() < (1u << 20))
            text.append(buffer, got);
        std::fclose(f);
        parse_dotenv(text, [&](std::string_view key, std::string_view value) {
            file_values.emplace_back(std::string(key), std::string(value));
        });
    }
    // The environment wins; within the file, a later assignment wins.
    auto lookup = [&](const char* name) -> std::optional<std::string> {
        if (const char* v = std::getenv(name)) return std::string(v);
        for (auto it = file_values.rbegin(); it != file_values.rend(); ++it)
            if (it->first == name) return it->second;
        return std::nullopt;
    };
    Config c;
    if (auto v = lookup("LLM_API_KEY")) c.api_key = *v;
    if (auto v = lookup("LLM_BASE_URL")) c.base_url = std::string(detail::trim_ascii_space(*v));
    if (auto v = lookup("LLM_MODEL"); v && !v->empty()) c.model = *v;
    if (auto v = lookup("LLM_STUB_DELAY_MS")) {
        std::uint64_t ms = 0;
        if (detail::parse_decimal(detail::trim_ascii_space(*v), ms) && ms <= 60000)
            c.stub_chunk_delay = std::chrono::milliseconds(ms);
    }
    return c;
}

std::string Config::chat_completions_url() const {
    if (base_url.empty()) return {};
    std::string_view url = detail::trim_ascii_space(base_url);
    const std::size_t query_at = std::min(url.find('?'), url.size());
    std::string_view path = url.substr(0, query_at);
    const std::string_view query = url.substr(query_at);
    while (!path.empty() && path.back() == '/') path.remove_suffix(1);
    static constexpr std::string_view suffix = "/chat/completions";
    std::string out(path);
    if (path.size() < suffix.size() || path.substr(path.size() - suffix.size()) != suffix) out += suffix;
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
        if (e->type == EventType::content) return e->text;
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
void Stream::cancel() noexcept { if (impl_) impl_->cancel(); }
bool Stream::finished() const noexcept { return !impl_ || impl_->finished(); }

const Error& Stream::error() const noexcept {
    static const Error none;
    return impl_ ? impl_->error() : none;
}

Stats Stream::stats() const { return impl_ ? impl_->stats() : Stats{}; }

Stream::iterator& Stream::iterator::operator++() {
    if (auto chunk = stream_ ? stream_->next_chunk() : std::nullopt) chunk_ = *chunk;
    else stream_ = nullptr;
    return *this;
}

Client::Client(Config config) : state_(std::make_shared<detail::ClientState>()) {
    state_->config = std::move(config);
}

const Config& Client::config() const noexcept { return state_->config; }

Stream Client::stream_chat(std::string_view prompt, const ChatOptions& options) {
    std::vector<Message> messages;
    if (!options.system.empty()) messages.push_back({"system", options.system});
    messages.push_back({"user", std::string(prompt)});
    return stream_chat(messages, options);
}

Stream Client::stream_chat(const std::vector<Message>& messages, const ChatOptions& options) {
    const Config& config = state_->config;
    auto failed = [&](Error e) { return Stream(std::make_unique<detail::StreamImpl>(state_, std::move(e))); };
    Error error;
    std::string body;
    if (!detail::build_request_body(config, messages, options, body, error)) return failed(std::move(error));
    if (config.stub_mode()) {
        const std::string& model = options.model.empty() ? config.model : options.model;
        auto stub = std::make_shared<detail::StubResponse>(detail::make_stub_response(messages, model));
        detail::TransportFactory factory = [stub, delay = config.stub_chunk_delay](bool) {
            return std::make_unique<detail::MemoryTransport>(stub->bytes, stub->segment_ends, delay);
        };
        return Stream(std::make_unique<detail::StreamImpl>(state_, std::move(factory), std::move(body)));
    }
    detail::Url url;
    std::string why;
    if (!detail::parse_url(config.chat_completions_url(), url, why)) {
        error.code = ErrorCode::invalid_config;
        error.message = "LLM_BASE_URL: " + why;
        return failed(std::move(error));
    }
    std::string request;
    if (!detail::build_http_request(config, url, body, request, error)) return failed(std::move(error));
    if (url.https && !state_->tls_backend(why)) {  // no TLS, or unusable CAs: no attempt can succeed
        error.code = ErrorCode::tls;
        error.message = why;
        return failed(std::move(error));
    }
    detail::TransportFactory factory = [client = state_, url](bool allow_pooled) {
        return std::make_unique<detail::NetworkTransport>(client, url, allow_pooled);
    };
    return Stream(std::make_unique<detail::StreamImpl>(state_, std::move(factory), std::move(request)));
}

std::shared_ptr<TlsBackend> make_default_tls_backend(const TlsOptions& options, std::string& error) {
#if defined(LLM_STREAM_MBEDTLS)
    auto backend = std::make_shared<detail::MbedTlsBackend>();
    if (!backend->init(options, error)) return nullptr;
    return backend;
#else
    (void)options;
    error = "https:// needs TLS, and this build has none (build with LLM_STREAM_MBEDTLS and mbedTLS)";
    return nullptr;
#endif
}

Client& get_llm_client() {
    static Client client{Config::from_env()};
    return client;
}

void append_json_string(std::string& out, std::string_view text) { detail::json_write_string(out, text); }

const char* version_string() noexcept {
#if defined(LLM_STREAM_MBEDTLS)
    return "llm_stream " LLM_STREAM_VERSION_STRING " (tls: mbedtls " MBEDTLS_VERSION_STRING ")";
#else
    return "llm_stream " LLM_STREAM_VERSION_STRING " (tls: none)";
#endif
}

}  // namespace llm_stream
#endif  // LLM_STREAM_IMPLEMENTATION
