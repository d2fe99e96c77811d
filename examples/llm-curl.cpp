/* llm-curl: llm_stream's sans-I/O core over a transport that is not llm_stream's own, libcurl.

   For programs that already carry an HTTP stack (libcurl here; equally a console SDK, an engine's
   HTTP module or WinHTTP): build_request() says what to send, and a Decoder turns the bytes that
   come back into typed events. What the application gains over parsing the stream itself: SSE
   framing at any split, the JSON deltas (content, reasoning, tool calls, finish reason, usage),
   server error events and error bodies, all bounded and without an allocation per event.

   usage: llm-curl PROMPT      (configured from LLM_BASE_URL, LLM_API_KEY, LLM_MODEL and .env)
   Prints the reply as it arrives; exit 0 on success, 1 when the request failed, 2 on bad usage. */
#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"

#include <curl/curl.h>

#include <cstdio>
#include <string>
#include <string_view>

namespace {

struct Transfer {
    CURL* curl = nullptr;
    llm_stream::Decoder decoder;
    bool body_started = false;
    bool over = false;  // done or failed: nothing more to decode
};

void print_event(const llm_stream::Event& event) {
    if (event.type == llm_stream::EventType::content) {
        std::fwrite(event.text.data(), 1, event.text.size(), stdout);
        std::fflush(stdout);
    }
}

/* Hands one decoder step's outcome on; false once the transfer has nothing more to decode. */
bool on_step(Transfer& t, llm_stream::DecodeStatus status) {
    switch (status) {
    case llm_stream::DecodeStatus::event: print_event(t.decoder.event()); return true;
    case llm_stream::DecodeStatus::warning:
        std::fprintf(stderr, "llm-curl: warning: %s\n", std::string(t.decoder.warning()).c_str());
        return true;
    case llm_stream::DecodeStatus::need_more: return true;
    case llm_stream::DecodeStatus::done:
    case llm_stream::DecodeStatus::failed: t.over = true; return false;
    }
    return false;
}

/* libcurl has parsed the status line, the headers and the chunked framing: the decoder gets the
   status, the content type and then the body bytes only. */
void start_body(Transfer& t) {
    long status = 0;
    char* content_type = nullptr;
    curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(t.curl, CURLINFO_CONTENT_TYPE, &content_type);
    t.decoder.start_body(static_cast<int>(status), content_type ? content_type : "");
    t.body_started = true;
}

std::size_t on_body(char* data, std::size_t, std::size_t size, void* user) {
    Transfer& t = *static_cast<Transfer*>(user);
    if (!t.body_started) start_body(t);
    std::string_view input(data, size);
    while (!t.over) {
        const llm_stream::DecodeStep step = t.decoder.feed(input);
        input.remove_prefix(step.consumed);
        if (!on_step(t, step.status) || step.status == llm_stream::DecodeStatus::need_more) break;
    }
    // Failing: stop the transfer. Done: read the rest, which the decoder ignores.
    return t.over && t.decoder.error() ? 0 : size;
}

curl_slist* request_headers(const llm_stream::Request& request) {
    curl_slist* list = nullptr;
    for (const auto& header : request.headers)
        list = curl_slist_append(list, (header.first + ": " + header.second).c_str());
    return curl_slist_append(list, "Expect:");  // no 100-continue round trip before the body
}

int fail(const std::string& message) {
    std::fprintf(stderr, "llm-curl: error: %s\n", message.c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fputs("usage: llm-curl PROMPT\n", stderr);
        return 2;
    }
    const llm_stream::Config config = llm_stream::Config::from_env();
    if (config.env_error) return fail(config.env_error.message);
    if (config.stub_mode()) return fail("LLM_BASE_URL is not set (llm-curl talks to real servers only)");
    llm_stream::Request request;
    if (llm_stream::Error e = llm_stream::build_request(config, {llm_stream::Message::user(argv[1])}, {}, request))
        return fail(e.message);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    Transfer t;
    t.curl = curl_easy_init();
    curl_slist* headers = request_headers(request);
    curl_easy_setopt(t.curl, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(t.curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(t.curl, CURLOPT_POSTFIELDS, request.body.c_str());
    curl_easy_setopt(t.curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    curl_easy_setopt(t.curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(t.curl, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(t.curl, CURLOPT_CONNECTTIMEOUT, 30L);
    const CURLcode rc = curl_easy_perform(t.curl);
    if (rc == CURLE_OK && !t.body_started) start_body(t);  // a response without a body
    for (int steps = 0; rc == CURLE_OK && !t.over && steps < 1000; ++steps)
        on_step(t, t.decoder.finish().status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(t.curl);
    curl_global_cleanup();

    std::fputc('\n', stdout);
    if (t.decoder.error()) return fail(t.decoder.error().message);
    if (rc != CURLE_OK) return fail(curl_easy_strerror(rc));
    return 0;
}
