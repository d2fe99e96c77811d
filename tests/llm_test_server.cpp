// llm_test_server: tests/support/test_server.hpp as a standalone process, for end-to-end checks and
// benchmarks. Every request gets the same configured response, except that with several --stream
// FILEs the Nth request gets the Nth one (and the last one repeats): a scripted conversation.
// Independent of llm_stream.hpp.
//
//   llm_test_server [--port N] [--host 127.0.0.1|::1] [--stream FILE... | --generate-events N]
//                   [--framing chunked|length|close|path] [--chunk-size N | --chunk-per-event] [--delay-ms N]
//                   [--slow-ms N] [--status N] [--body TEXT] [--header 'Name: value']... [--max-requests N]
//                   [--flood comments|continues|content|empty-deltas [--flood-seconds N]] [--log]
//                   [--save-requests DIR]
//   llm_test_server --control [--port N]
//
// Prints "PORT <n>" on stdout (one flushed line) once listening; exits 0 on SIGTERM/SIGINT or after
// --max-requests responses. --stream FILE is a path, or a name under tests/data/streams/. Without
// --stream, --generate-events or --body it serves generate_events(20). A stream is chunked one chunk per
// event unless told otherwise (a .ndjson one, served as application/x-ndjson, one chunk per line); a
// --body is sent with Content-Length. --framing path serves the last response in the framing the request
// path starts with, /chunked/, /length/ or /close/ (chunked elsewhere): one server, every framing. With no delay and no slowness the
// whole framed body is built once, and each response is written with a few large writes. --flood makes a
// hostile server instead: each response repeats that kind of bytes as fast as the client reads them (see
// llm_test::Flood), for at most --flood-seconds (default 10) or until the client goes away.
// --save-requests DIR writes each request as it arrives: DIR/request-N.head (request line and headers as
// received) and DIR/request-N.body (the body, decoded), N = 1, 2, ... (for scripts to check what was sent).
// --control serves nothing itself: its requests create and script test servers on 127.0.0.1 or ::1 (see
// support/test_server_control.hpp), for tests built for another system (Windows under wine) that use
// llm_test::RemoteTestServer.

#include "support/test_server.hpp"
#include "support/test_server_control.hpp"

#include <pthread.h>

#include <cerrno>
#include <csignal>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

void usage() {
    std::fputs("usage: llm_test_server [--port N] [--host 127.0.0.1|::1] [--stream FILE... | --generate-events N]\n"
               "                       [--framing chunked|length|close|path] [--chunk-size N | --chunk-per-event]\n"
               "                       [--delay-ms N] [--slow-ms N] [--status N] [--body TEXT]\n"
               "                       [--header 'Name: value']... [--max-requests N]\n"
               "                       [--flood comments|continues|content|empty-deltas [--flood-seconds N]] [--log]\n"
               "                       [--save-requests DIR]\n"
               "       llm_test_server --control [--port N]\n",
               stderr);
}

bool to_number(const char* s, unsigned long long max, unsigned long long& out) {
    if (!s || !*s) return false;
    char* end = nullptr;
    errno = 0;
    out = std::strtoull(s, &end, 10);
    return errno == 0 && *end == '\0' && s[0] != '-' && out <= max;
}

bool to_flood(const char* s, llm_test::Flood& out) {
    static const std::pair<const char*, llm_test::Flood> kinds[] = {
        {"comments", llm_test::Flood::comments},
        {"continues", llm_test::Flood::continues},
        {"content", llm_test::Flood::content},
        {"empty-deltas", llm_test::Flood::empty_deltas},
    };
    for (const auto& kind : kinds)
        if (std::strcmp(s, kind.first) == 0) {
            out = kind.second;
            return true;
        }
    return false;
}

// Written under another name, then renamed: a script that sees the file sees all of it.
bool write_file(const std::string& path, const std::string& bytes) {
    const std::string part = path + ".part";
    std::FILE* file = std::fopen(part.c_str(), "wb");
    if (!file) return false;
    const bool written = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
    return std::fclose(file) == 0 && written && std::rename(part.c_str(), path.c_str()) == 0;
}

/* --save-requests: request N as DIR/request-N.head and DIR/request-N.body. */
bool save_request(const std::string& dir, std::size_t n, const llm_test::Request& request) {
    const std::string stem = dir + "/request-" + std::to_string(n);
    if (write_file(stem + ".head", request.head) && write_file(stem + ".body", request.body)) return true;
    std::fprintf(stderr, "llm_test_server: cannot write %s.*: %s\n", stem.c_str(), std::strerror(errno));
    return false;
}

/* --stream FILE: a path, or a name under tests/data/streams/; empty when neither can be read. */
std::string read_stream(const std::string& file) {
    std::string stream;
    if (!llm_test::read_file(file, stream)) stream = llm_test::read_stream_file(file);
    if (stream.empty()) std::fprintf(stderr, "llm_test_server: cannot read %s\n", file.c_str());
    return stream;
}

/* --framing path: `response` in each framing under the path that names it. */
void route_by_framing(llm_test::TestServer& server, const llm_test::Response& response) {
    static const std::pair<const char*, llm_test::Framing> framings[] = {
        {"/chunked/", llm_test::Framing::chunked},
        {"/length/", llm_test::Framing::content_length},
        {"/close/", llm_test::Framing::close},
    };
    for (const auto& framing : framings) server.route(framing.first, llm_test::Response(response).with_framing(framing.second));
}

}  // namespace

int main(int argc, char** argv) {
    llm_test::TestServer::Options options;
    options.idle_timeout_ms = 60000;
    std::vector<std::string> stream_files;
    std::string body, framing_name, status_text, save_dir;
    bool have_body = false, have_events = false, per_event = false, log = false, control = false;
    unsigned long long events = 0, chunk_size = 0, delay_ms = 0, slow_ms = 0, status = 200, max_requests = 0;
    unsigned long long flood_seconds = 10;
    bool slow = false, have_flood = false;
    llm_test::Flood flood = llm_test::Flood::comments;
    llm_test::Headers headers;

    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
        unsigned long long n = 0;
        bool ok = true;
        if (arg == "--help" || arg == "-h") {
            usage();
            return 0;
        } else if (arg == "--chunk-per-event") {
            per_event = true;
            continue;
        } else if (arg == "--log") {
            log = true;
            continue;
        } else if (arg == "--control") {
            control = true;
            continue;
        }
        static const char* const with_value[] = {"--port", "--host", "--stream", "--generate-events", "--framing",
                                                  "--chunk-size", "--delay-ms", "--slow-ms", "--status", "--body",
                                                  "--header", "--max-requests", "--flood", "--flood-seconds",
                                                  "--save-requests"};
        bool known = false;
        for (const char* name : with_value) known = known || arg == name;
        if (!known) {
            std::fprintf(stderr, "llm_test_server: unknown option %s\n", arg.c_str());
            usage();
            return 2;
        }
        if (!value) {
            ok = false;
        } else if (arg == "--port") {
            ok = to_number(value, 65535, n);
            options.port = static_cast<std::uint16_t>(n);
        } else if (arg == "--host") {
            ok = std::strcmp(value, "127.0.0.1") == 0 || std::strcmp(value, "::1") == 0 ||
                 std::strcmp(value, "[::1]") == 0;
            options.ipv6 = value[0] != '1';
        } else if (arg == "--stream") {
            stream_files.push_back(value);
        } else if (arg == "--save-requests") {
            save_dir = value;
        } else if (arg == "--generate-events") {
            ok = to_number(value, 100000000, events);
            have_events = true;
        } else if (arg == "--framing") {
            framing_name = value;
            ok = framing_name == "chunked" || framing_name == "length" || framing_name == "close" ||
                 framing_name == "path";
        } else if (arg == "--chunk-size") {
            ok = to_number(value, 1ull << 40, chunk_size) && chunk_size > 0;
        } else if (arg == "--delay-ms") {
            ok = to_number(value, 3600000, delay_ms);
        } else if (arg == "--slow-ms") {
            ok = to_number(value, 3600000, slow_ms);
            slow = true;
        } else if (arg == "--status") {
            ok = to_number(value, 999, status) && status >= 100;
        } else if (arg == "--body") {
            body = value;
            have_body = true;
        } else if (arg == "--header") {
            const char* colon = std::strchr(value, ':');
            ok = colon && colon != value;
            if (ok) {
                const char* v = colon + 1;
                while (*v == ' ' || *v == '\t') ++v;
                headers.emplace_back(std::string(value, static_cast<std::size_t>(colon - value)), v);
            }
        } else if (arg == "--max-requests") {
            ok = to_number(value, 1ull << 40, max_requests);
        } else if (arg == "--flood") {
            ok = to_flood(value, flood);
            have_flood = true;
        } else if (arg == "--flood-seconds") {
            ok = to_number(value, 3600, flood_seconds) && flood_seconds > 0;
        }
        if (!ok) {
            std::fprintf(stderr, "llm_test_server: bad or missing value for %s\n", arg.c_str());
            usage();
            return 2;
        }
        ++i;
    }
    if ((!stream_files.empty()) + have_events + have_body + have_flood > 1) {
        std::fputs("llm_test_server: give at most one of --stream, --generate-events, --body and --flood\n", stderr);
        return 2;
    }
    if (control && (have_events || have_body || have_flood || !stream_files.empty() || log || !save_dir.empty())) {
        std::fputs("llm_test_server: --control serves no response of its own: give it no --stream, --generate-events,"
                   " --body, --flood, --log or --save-requests\n", stderr);
        return 2;
    }
    if (chunk_size > 0 && per_event) {
        std::fputs("llm_test_server: give at most one of --chunk-size and --chunk-per-event\n", stderr);
        return 2;
    }

    // The responses in the order they are served: one, or one per --stream FILE.
    std::vector<llm_test::Response> responses;
    if (have_flood) {
        responses.push_back(llm_test::Response::flooding(flood, static_cast<int>(flood_seconds * 1000)));
    } else if (have_body) {
        responses.push_back(llm_test::Response::status(static_cast<int>(status), body));
    } else if (stream_files.empty()) {
        responses.push_back(llm_test::Response::sse(
            llm_test::generate_events(have_events ? static_cast<std::size_t>(events) : 20)));
    }
    for (const std::string& file : stream_files) {
        std::string stream = read_stream(file);
        if (stream.empty()) return 1;
        responses.push_back(llm_test::Response::recorded(file, std::move(stream)));
    }
    for (llm_test::Response& response : responses) {
        if (!have_flood && !have_body) response.status_code = static_cast<int>(status);
        if (framing_name == "chunked") response.framing = llm_test::Framing::chunked;
        if (framing_name == "length") response.framing = llm_test::Framing::content_length;
        if (framing_name == "close") response.framing = llm_test::Framing::close;
        if (chunk_size > 0) response.chunking = llm_test::Chunking::fixed(static_cast<std::size_t>(chunk_size));
        if (per_event && response.chunking.kind != llm_test::Chunking::Kind::per_line)  // NDJSON: per line already
            response.chunking = llm_test::Chunking::per_event();
        response.write_delay_ms = static_cast<int>(delay_ms);
        response.slow = slow;
        response.slow_delay_ms = static_cast<int>(slow_ms);
        response.headers.insert(response.headers.end(), headers.begin(), headers.end());
    }

    // SIGINT/SIGTERM are blocked in every thread (the server's inherit the mask) and taken by sigtimedwait.
    std::signal(SIGPIPE, SIG_IGN);
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    llm_test::ServerControl servers;  // --control: outlives the server whose requests it answers
    llm_test::TestServer server(options);
    if (control) server.answer_with([&servers](const llm_test::Request& r) { return servers.handle(r); });
    if (framing_name == "path") route_by_framing(server, responses.back());
    server.set_default(responses.back());
    for (std::size_t i = 0; i + 1 < responses.size(); ++i) server.push(std::move(responses[i]));
    if (!server.start()) {
        std::fprintf(stderr, "llm_test_server: %s\n", server.error().c_str());
        return 1;
    }
    std::printf("PORT %u\n", static_cast<unsigned>(server.port()));
    std::fflush(stdout);

    std::size_t logged = 0;
    auto log_new_requests = [&] {
        if ((!log && save_dir.empty()) || server.request_count() == logged) return;
        const std::vector<llm_test::Request> requests = server.requests();
        for (; logged < requests.size(); ++logged) {
            const llm_test::Request& r = requests[logged];
            if (log)
                std::fprintf(stderr, "llm_test_server: #%zu conn %zu %s %s (%zu body bytes)\n", logged + 1,
                             r.connection_id, r.method.c_str(), r.target.c_str(), r.body.size());
            if (!save_dir.empty()) save_request(save_dir, logged + 1, r);
        }
    };
    for (;;) {  // ends on a signal or after --max-requests responses
        timespec tick{0, 50 * 1000 * 1000};
        const int sig = sigtimedwait(&signals, nullptr, &tick);
        log_new_requests();
        if (control) server.clear_records();  // their bodies are scripts: not kept
        if (sig == SIGINT || sig == SIGTERM) break;
        if (max_requests > 0 && server.responses_completed() >= max_requests) break;
    }
    server.stop();
    log_new_requests();
    return 0;
}
