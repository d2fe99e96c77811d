/* llm-relay — the seed's FastAPI endpoint (POST /ai/stream) in C++: it streams chat completions to
   browsers and other HTTP clients as Server-Sent Events, keeping the API key on the server.

   Configured like llm-chat (LLM_BASE_URL / LLM_API_KEY / LLM_MODEL / LLM_API from the environment, then
   .env; stub mode without LLM_BASE_URL). One thread serves every client and every upstream stream: the
   clients' sockets are non-blocking and watched, with the listening socket, by the StreamSet that waits
   on the upstream streams. A client that goes away cancels its upstream stream. Run `llm-relay --help`.

   Exit status: 0 after SIGINT/SIGTERM, 1 when it cannot start (configuration, address), 2 bad usage. */

#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"
#include "cli_support.hpp"
#include "relay_http.hpp"
#include "relay_page.hpp"
#include "relay_socket.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#ifndef _WIN32
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#endif

namespace {

namespace net = llm_stream::detail;  // the header's portable socket calls (POSIX and Winsock)
using Clock = std::chrono::steady_clock;

constexpr const char* kSynopsis =
    "usage: llm-relay [--host H] [--port P] [--token T] [--max-clients N] [--request-timeout SECONDS]\n"
    "                 [--version] [--help]\n";

constexpr const char* kHelp =
    "\n"
    "Serves POST /ai/stream: the prompt (query parameter prompt, or a JSON body {\"prompt\":...,\"system\":...})\n"
    "is streamed upstream and each chunk of the reply relayed as a Server-Sent Event, then `event: done`\n"
    "with the stats (or `event: error`). GET / serves a page that streams a prompt (/?prompt=TEXT starts it).\n"
    "\n"
    "options:\n"
    "  --host H             address to listen on (default: 127.0.0.1; 0.0.0.0 or :: for every interface)\n"
    "  --port P             port to listen on (default: 8000; 0: any free port, printed at start)\n"
    "  --token T            require `Authorization: Bearer T` on /ai/stream (else 401)\n"
    "  --max-clients N      connections served at once (default: 128); more are answered 503\n"
    "  --request-timeout SECONDS  time a client has to send its whole request (default: 10), else 408\n"
    "  --version            print the library version and TLS backend, then exit\n"
    "  --help               print this help, then exit\n"
    "\n"
    "environment (read from ./.env for the variables the environment does not set): as llm-chat's,\n"
    "  LLM_BASE_URL, LLM_API_KEY, LLM_MODEL, LLM_API, LLM_STUB_DELAY_MS (default here: 30)\n";

constexpr std::size_t kMaxUnsentBytes = 1 << 20;  // a client that lets more pile up is too slow: dropped
constexpr int kMaxRefusing = 64;                   // connections beyond --max-clients being answered 503
constexpr auto kLinger = std::chrono::seconds(5);  // after a response, for the client to read it and close
constexpr auto kStopGrace = std::chrono::seconds(2);  // on SIGINT/SIGTERM, to send the last events

struct Settings {
    std::string host = "127.0.0.1";
    int port = 8000;  // uvicorn's, which served the seed's endpoint
    std::string token;
    int max_clients = 128;
    std::chrono::seconds request_timeout{10};
    bool show_help = false;
    bool show_version = false;
};

/* ------------------------------------------------------------------------------------------------
   Command line
   ------------------------------------------------------------------------------------------------ */

bool whole_number_flag(const std::string& flag, const std::string& value, int low, int high, int& out,
                       std::string& error) {
    if (cli::parse_int(value, out) && out >= low && out <= high) return true;
    error = flag + " needs a whole number from " + std::to_string(low) + " to " + std::to_string(high) +
            ", not '" + value + "'";
    return false;
}

bool apply_flag(const std::string& flag, const std::string& value, Settings& s, std::string& error) {
    int seconds = 0;
    if (flag == "--host") s.host = value;
    else if (flag == "--port") return whole_number_flag(flag, value, 0, 65535, s.port, error);
    else if (flag == "--max-clients") return whole_number_flag(flag, value, 1, 100000, s.max_clients, error);
    else if (flag == "--request-timeout") {
        if (!whole_number_flag(flag, value, 1, 3600, seconds, error)) return false;
        s.request_timeout = std::chrono::seconds(seconds);
    } else s.token = value;  // --token
    if (!value.empty()) return true;
    error = flag + " needs a non-empty value";
    return false;
}

/* --flag VALUE or --flag=VALUE; --help and --version act as soon as they are reached. */
bool parse_command_line(int argc, char** argv, Settings& s, std::string& error) {
    static const char* const with_value[] = {"--host", "--port", "--token", "--max-clients", "--request-timeout"};
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        s.show_help = arg == "--help" || arg == "-h";
        s.show_version = arg == "--version";
        if (s.show_help || s.show_version) return true;
        const std::string flag = arg.substr(0, arg.find('='));
        if (std::none_of(std::begin(with_value), std::end(with_value), [&](const char* f) { return flag == f; })) {
            error = arg.size() > 1 && arg[0] == '-' ? "unknown option '" + flag + "'" : "unexpected argument '" + arg + "'";
            return false;
        }
        if (flag == arg && i + 1 == argc) {
            error = flag + " needs a value";
            return false;
        }
        const std::string value = flag == arg ? argv[++i] : arg.substr(flag.size() + 1);
        if (!apply_flag(flag, value, s, error)) return false;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------------
   What is relayed: the request's chat input, the end of a stream
   ------------------------------------------------------------------------------------------------ */

/* The prompt (the query parameter `prompt`, else the JSON body's) and the system message (the body's
   "system"; else the library's default). */
bool chat_input(const relay::HttpRequest& request, std::string_view body, std::string& prompt,
                llm_stream::ChatOptions& options, relay::Refusal& refusal) {
    std::optional<std::string> text = relay::query_parameter(request.query, "prompt", refusal);
    if (refusal.status != 0) return false;
    if (body.find_first_not_of(" \t\r\n") != std::string_view::npos) {
        if (llm_stream::Error e = net::check_json_object(body, "the request body")) {
            refusal = {400, e.message};
            return false;
        }
        for (const char* name : {"prompt", "system"}) {
            const std::optional<std::string_view> value = llm_stream::json_member(body, name);
            if (value && value->front() != '"') refusal = {400, std::string("\"") + name + "\" must be a string"};
        }
        if (refusal.status != 0) return false;
        if (!text) text = llm_stream::json_string_member(body, "prompt");
        if (std::optional<std::string> system = llm_stream::json_string_member(body, "system")) options.system = *system;
    }
    if (!text) refusal = {400, "missing prompt: give ?prompt=TEXT or a JSON body {\"prompt\":TEXT}"};
    if (text) prompt = std::move(*text);
    return text.has_value();
}

/* The HTTP status that says why a stream failed before anything was relayed. */
int status_for(const llm_stream::Error& error) {
    switch (error.code) {
    case llm_stream::ErrorCode::invalid_argument: return 400;
    case llm_stream::ErrorCode::timeout: return 504;
    case llm_stream::ErrorCode::cancelled: return 503;
    default: return 502;
    }
}

std::string format_ms(double ms) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f", ms);
    return text;
}

/* The data of `event: done`. */
std::string stats_json(const llm_stream::Stats& stats) {
    std::string json = "{\"chunks\":" + std::to_string(stats.chunks) + ",\"chars\":" + std::to_string(stats.chars) +
                       ",\"first_byte_ms\":" + format_ms(stats.first_byte_ms) +
                       ",\"first_chunk_ms\":" + format_ms(stats.first_chunk_ms) +
                       ",\"total_ms\":" + format_ms(stats.total_ms) + ",\"attempts\":" + std::to_string(stats.attempts) +
                       ",\"finish_reason\":";
    llm_stream::append_json_string(json, stats.finish_reason);
    json += ",\"usage\":";
    if (!stats.has_usage) return json + "null}";
    json += "{";
    cli::append_usage_members(json, stats.usage);
    return json + "}}";
}

/* The data of `event: error`. */
std::string error_json(const llm_stream::Error& error) {
    std::string json = "{\"message\":";
    llm_stream::append_json_string(json, cli::describe(error));
    json += ",\"code\":";
    llm_stream::append_json_string(json, llm_stream::to_string(error.code));
    return json + "}";
}

/* ------------------------------------------------------------------------------------------------
   The relay: one thread, every client and every upstream stream
   ------------------------------------------------------------------------------------------------ */

enum class Phase {
    reading,    // the request is arriving (until the request timeout)
    streaming,  // upstream stream running; its events relayed as they come
    closing,    // the response is written; then the write side is shut and the client's close awaited
};

struct Connection {
    net::native_socket socket = net::invalid_socket;
    Phase phase = Phase::reading;
    Clock::time_point deadline;  // reading: the whole request; closing: the client's close
    std::string received;
    std::string output;          // not yet sent from `sent` on
    std::size_t sent = 0;
    bool head_sent = false;      // the 200 head of the event stream is in `output`
    bool write_shut = false;
    bool gone = false;           // to be closed and forgotten at the end of the round
    std::unique_ptr<llm_stream::Stream> stream;  // a Stream in the set must stay put: on the heap
    std::string request_line;    // "POST /ai/stream", for the log
};

class Relay {
public:
    Relay(Settings settings, llm_stream::Client client, net::native_socket listener)
        : settings_(std::move(settings)), client_(std::move(client)), listener_(listener) {}
    ~Relay() {
        for (auto& c : connections_) close_connection(*c);
        net::close_socket(listener_);
    }
    Relay(const Relay&) = delete;
    Relay& operator=(const Relay&) = delete;

    /* Serves until stop(), then ends every stream (`event: error`) and returns once each client has
       its last bytes or the grace time is over. */
    void run() {
        while (!(stopping_ && (connections_.empty() || Clock::now() >= stop_deadline_))) {
            if (stop_requested_.load() && !stopping_) begin_stop();
            const std::size_t watched = watch_sockets();
            ready_ = set_.wait(time_to_next_deadline(), watches_);
            for (std::size_t i = 0; i < watched; ++i)
                if (watches_[i + 1].ready) on_socket_ready(*connections_[i]);
            for (llm_stream::Stream* stream : ready_)
                if (Connection* c = owner_of(stream)) pump(*c);
            if (watches_[0].ready && !stopping_) accept_clients();
            expire(Clock::now());
            sweep();
        }
    }

    /* From another thread (the signal watcher). */
    void stop() {
        stop_requested_.store(true);
        set_.wake();
    }

private:
    /* watches_[0]: the listening socket; then one per connection, in order. Returns the connections watched. */
    std::size_t watch_sockets() {
        watches_.resize(connections_.size() + 1);
        watches_[0] = llm_stream::SocketWatch{};
        watches_[0].socket = static_cast<llm_stream::socket_handle>(listener_);
        watches_[0].want_read = !stopping_;
        for (std::size_t i = 0; i < connections_.size(); ++i) {
            const Connection& c = *connections_[i];
            llm_stream::SocketWatch& w = watches_[i + 1];
            w = llm_stream::SocketWatch{};
            w.socket = static_cast<llm_stream::socket_handle>(c.socket);
            w.want_write = c.sent < c.output.size();
            // Reading a request, noticing a streaming client leave, or waiting for its close.
            w.want_read = c.phase != Phase::closing || !w.want_write;
        }
        return connections_.size();
    }

    std::chrono::milliseconds time_to_next_deadline() const {
        Clock::time_point next = Clock::now() + std::chrono::minutes(1);
        for (const auto& c : connections_)
            if (c->phase != Phase::streaming) next = std::min(next, c->deadline);
        if (stopping_) next = std::min(next, stop_deadline_);
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now());
        return std::max(left, std::chrono::milliseconds(0));
    }

    Connection* owner_of(const llm_stream::Stream* stream) {
        for (auto& c : connections_)
            if (c->stream.get() == stream) return c.get();
        return nullptr;
    }

    int busy_connections() const {
        return static_cast<int>(std::count_if(connections_.begin(), connections_.end(),
                                              [](const auto& c) { return c->phase != Phase::closing; }));
    }

    /* Every client waiting in the backlog (bounded per round); beyond --max-clients, each is answered 503. */
    void accept_clients() {
        for (int i = 0; i < 64; ++i) {
            const net::native_socket s = accept(listener_, nullptr, nullptr);
            if (s == net::invalid_socket) return;
            if (!net::set_non_blocking(s) ||
                connections_.size() >= static_cast<std::size_t>(settings_.max_clients + kMaxRefusing)) {
                net::close_socket(s);
                continue;
            }
            const int on = 1;  // each event leaves at once
            setsockopt(s, IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const char*>(&on), sizeof on);
            const bool full = busy_connections() >= settings_.max_clients;
            connections_.push_back(std::make_unique<Connection>());
            Connection& c = *connections_.back();
            c.socket = s;
            c.deadline = Clock::now() + settings_.request_timeout;
            if (full) refuse(c, 503, "too many clients (--max-clients " + std::to_string(settings_.max_clients) + ")",
                             "busy", "Retry-After: 1\r\n");
        }
    }

    void on_socket_ready(Connection& c) {
        if (c.gone) return;
        if (c.sent < c.output.size()) flush(c);
        if (c.gone || (c.phase == Phase::closing && c.sent < c.output.size())) return;
        char buffer[16 * 1024];
        for (int reads = 0; reads < 4 && !c.gone; ++reads) {  // bounded: one client cannot hold the loop
            int error = 0;
            const net::IoResult r = net::socket_read(c.socket, buffer, sizeof buffer, error);
            if (r.status == net::IoStatus::would_block) break;
            if (r.status != net::IoStatus::ok) return client_left(c);
            if (c.phase == Phase::reading) c.received.append(buffer, r.bytes);  // else: ignored
        }
        if (c.phase == Phase::reading) read_request(c);
    }

    /* The client closed (or reset) its connection: a stream it was reading is cancelled, by destroying it. */
    void client_left(Connection& c) {
        if (c.phase == Phase::streaming) log(c, "the client went away: upstream stream cancelled");
        c.gone = true;
    }

    void read_request(Connection& c) {
        relay::HttpRequest request;
        relay::Refusal refusal;
        const relay::ReadStatus status = relay::read_request(c.received, request, refusal);
        if (status == relay::ReadStatus::incomplete) return;
        if (status == relay::ReadStatus::refused) return refuse(c, refusal.status, refusal.message, "bad_request");
        c.request_line = request.method + " " + request.path;
        serve(c, request, std::string_view(c.received).substr(request.head_bytes, request.content_length));
    }

    void serve(Connection& c, const relay::HttpRequest& request, std::string_view body) {
        if (request.path == "/") {
            if (request.method != "GET") return refuse(c, 405, "GET / only", "method_not_allowed", "Allow: GET\r\n");
            log(c, "200");
            return respond(c, relay::http_response(200, "text/html; charset=utf-8", relay::kPage, "Cache-Control: no-cache\r\n"));
        }
        if (request.path != "/ai/stream") return refuse(c, 404, "no such path: " + request.path, "not_found");
        if (request.method != "POST")
            return refuse(c, 405, request.path + " takes POST", "method_not_allowed", "Allow: POST\r\n");
        if (!settings_.token.empty() && !relay::bearer_matches(request.authorization, settings_.token))
            return refuse(c, 401, "a valid `Authorization: Bearer` token is required", "unauthorized",
                          "WWW-Authenticate: Bearer\r\n");
        std::string prompt;
        llm_stream::ChatOptions options;
        relay::Refusal refusal;
        if (!chat_input(request, body, prompt, options, refusal))
            return refuse(c, refusal.status, refusal.message, "bad_request");
        c.stream = std::make_unique<llm_stream::Stream>(client_.stream_chat(prompt, options));
        set_.add(*c.stream);
        c.phase = Phase::streaming;
        c.received.clear();
        pump(c);
    }

    /* Everything the stream has for now, relayed; its end, once it has ended. */
    void pump(Connection& c) {
        if (c.gone) return;
        for (;;) {
            const llm_stream::PollStatus status = c.stream->poll();
            if (status == llm_stream::PollStatus::pending) break;
            if (status != llm_stream::PollStatus::event) {
                end_stream(c, c.stream->error());
                break;
            }
            const llm_stream::Event& event = c.stream->current_event();
            // The seed's chunks: the text of the first choice (next_chunk()'s rule).
            if (event.type != llm_stream::EventType::content || event.choice != 0 || event.text.empty()) continue;
            start_event_stream(c);
            relay::append_event(c.output, {}, event.text);
        }
        flush(c);
    }

    void start_event_stream(Connection& c) {
        if (c.head_sent) return;
        c.output += relay::event_stream_head();
        c.head_sent = true;
    }

    /* After the head, the end is an event; before it, a failure is an HTTP error status. `error` is a
       copy: the stream that holds it is destroyed first. */
    void end_stream(Connection& c, const llm_stream::Error error) {
        const llm_stream::Stats stats = c.stream->stats();
        set_.remove(*c.stream);
        c.stream.reset();
        if (error && !c.head_sent) return refuse(c, status_for(error), cli::describe(error), llm_stream::to_string(error.code));
        start_event_stream(c);
        relay::append_event(c.output, error ? "error" : "done", error ? error_json(error) : stats_json(stats));
        log(c, "200, " + std::to_string(stats.chunks) + " chunks in " + format_ms(stats.total_ms) + " ms" +
                   (error ? ", then error: " + cli::describe(error) : ""));
        close_after_output(c);
    }

    void refuse(Connection& c, int status, const std::string& message, const char* code,
                std::string_view headers = {}) {
        log(c, std::to_string(status) + ": " + message);
        respond(c, relay::json_error_response(status, message, code, headers));
    }

    void respond(Connection& c, std::string response) {
        c.output = std::move(response);
        c.sent = 0;
        close_after_output(c);
    }

    void close_after_output(Connection& c) {
        c.phase = Phase::closing;
        c.deadline = Clock::now() + kLinger;
        flush(c);
    }

    /* Sends what the socket takes now. All sent while closing: the write side is shut (the client sees
       the end of the response) and its close awaited, so that no unread request byte turns our close
       into a reset that could destroy the response in flight. */
    void flush(Connection& c) {
        while (c.sent < c.output.size() && !c.gone) {
            int error = 0;
            const net::IoResult r = net::socket_write(c.socket, c.output.data() + c.sent, c.output.size() - c.sent, error);
            if (r.status == net::IoStatus::would_block) break;
            if (r.status != net::IoStatus::ok) return client_left(c);
            c.sent += r.bytes;
        }
        if (c.output.size() - c.sent > kMaxUnsentBytes) {
            log(c, "the client reads too slowly (over " + std::to_string(kMaxUnsentBytes) + " bytes unsent): dropped");
            c.gone = true;
        }
        if (c.sent < c.output.size()) return;
        c.output.clear();
        c.sent = 0;
        if (c.phase == Phase::closing && !c.write_shut) {
            relay::shut_down_writing(c.socket);
            c.write_shut = true;
        }
    }

    /* A request still incomplete at its deadline gets 408 (a slow client cannot hold a slot); a closing
       client that never closes is closed. */
    void expire(Clock::time_point now) {
        for (auto& c : connections_) {
            if (c->gone || c->phase == Phase::streaming || now < c->deadline) continue;
            if (c->phase == Phase::reading)
                refuse(*c, 408, "the request did not arrive within " + std::to_string(settings_.request_timeout.count()) +
                                    " s", "request_timeout");
            else c->gone = true;
        }
    }

    void close_connection(Connection& c) {
        if (c.stream) set_.remove(*c.stream);
        c.stream.reset();  // closes its upstream connection at once
        net::close_socket(c.socket);
    }

    void sweep() {
        for (auto& c : connections_)
            if (c->gone) close_connection(*c);
        connections_.erase(std::remove_if(connections_.begin(), connections_.end(), [](const auto& c) { return c->gone; }),
                           connections_.end());
    }

    /* No new clients (the listening socket stays open, unwatched, until the end: a wait may not be
       given a closed socket); every stream ends with `event: error` (or 503 before its head). */
    void begin_stop() {
        stopping_ = true;
        stop_deadline_ = Clock::now() + kStopGrace;
        llm_stream::Error shutting_down;
        shutting_down.code = llm_stream::ErrorCode::cancelled;
        shutting_down.message = "llm-relay is shutting down";
        for (auto& c : connections_) {
            if (c->phase == Phase::reading) c->gone = true;
            if (c->phase == Phase::streaming) end_stream(*c, shutting_down);
        }
    }

    void log(const Connection& c, const std::string& what) const {
        std::fprintf(stderr, "llm-relay: %s: %s\n", c.request_line.empty() ? "(no request)" : c.request_line.c_str(),
                     what.c_str());
    }

    Settings settings_;
    llm_stream::Client client_;
    net::native_socket listener_;
    llm_stream::StreamSet set_;
    std::vector<std::unique_ptr<Connection>> connections_;
    std::vector<llm_stream::SocketWatch> watches_;
    std::vector<llm_stream::Stream*> ready_;
    std::atomic<bool> stop_requested_{false};
    bool stopping_ = false;
    Clock::time_point stop_deadline_;
};

/* ------------------------------------------------------------------------------------------------
   SIGINT / SIGTERM
   ------------------------------------------------------------------------------------------------ */

/* Relay::stop() is not for a signal handler (wake() may take a lock), so the signals go to an ordinary
   thread: on POSIX one that takes them with sigwait(), on Windows the console's handler thread. A second
   signal ends the process at once. */
Relay* g_relay = nullptr;

#ifdef _WIN32
BOOL WINAPI on_console_event(DWORD type) {
    if (type != CTRL_C_EVENT && type != CTRL_BREAK_EVENT && type != CTRL_CLOSE_EVENT) return FALSE;
    if (g_relay) g_relay->stop();
    return TRUE;
}
#else
void never_called(int) {}
#endif

// Before any other thread exists, so that every thread keeps the signals blocked.
void block_stop_signals() {
#ifndef _WIN32
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    // Handlers that never run, in place of an inherited "ignore" (a background job of a non-interactive
    // shell starts with SIGINT ignored, and an ignored signal may be discarded before sigwait() takes it).
    std::signal(SIGINT, never_called);
    std::signal(SIGTERM, never_called);
#endif
}

void watch_stop_signals(Relay& relay) {
    g_relay = &relay;
#ifdef _WIN32
    SetConsoleCtrlHandler(on_console_event, TRUE);
#else
    std::thread([] {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        int received = 0;
        if (sigwait(&set, &received) != 0) return;
        g_relay->stop();
        if (sigwait(&set, &received) == 0) std::_Exit(cli::exit_failure);
    }).detach();
#endif
}

std::string url_host(const std::string& host) {
    return host.find(':') == std::string::npos ? host : "[" + host + "]";
}

}  // namespace

int main(int argc, char** argv) {
    Settings settings;
    std::string problem;
    if (!parse_command_line(argc, argv, settings, problem)) {
        std::fprintf(stderr, "llm-relay: %s\n%sRun 'llm-relay --help' for the options.\n", problem.c_str(), kSynopsis);
        return cli::exit_usage;
    }
    if (settings.show_help || settings.show_version) {
        if (settings.show_help) std::printf("%s%s", kSynopsis, kHelp);
        else std::printf("%s\n", llm_stream::version_string());
        return cli::exit_ok;
    }
    llm_stream::Config config;
    if (const llm_stream::Error error = llm_stream::Config::from_env(config)) {
        std::fprintf(stderr, "llm-relay: error: %s\n", cli::describe(error).c_str());
        return cli::exit_failure;
    }
    if (config.stub_mode()) std::fputs("llm-relay: stub mode (LLM_BASE_URL is not set): relaying simulated replies\n", stderr);
    cli::pace_stub(config);
    if (!net::network_startup()) return cli::exit_failure;
    const net::native_socket listener = relay::listen_on(settings.host, settings.port, problem);
    if (listener == net::invalid_socket) {
        std::fprintf(stderr, "llm-relay: error: %s\n", problem.c_str());
        return cli::exit_failure;
    }
    std::printf("listening on http://%s:%u\n", url_host(settings.host).c_str(), static_cast<unsigned>(relay::bound_port(listener)));
    std::fflush(stdout);
    block_stop_signals();
    Relay relay(settings, llm_stream::Client(config), listener);
    watch_stop_signals(relay);
    relay.run();
    return cli::exit_ok;
}
