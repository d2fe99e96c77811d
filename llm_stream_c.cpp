/* llm_stream_c.cpp — the C ABI of llm_stream (llm_stream_c.h): a thin layer over the C++ API, built
   as a shared library (see llm_stream_c.h). Each lls_ object wraps its C++ counterpart and keeps the
   C views of what it hands out, so that they stay valid until the next call on it. */
#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"

#define LLM_STREAM_C_BUILD
#include "llm_stream_c.h"

#include <new>
#include <string>
#include <vector>

namespace ls = llm_stream;

static_assert(static_cast<int>(ls::ErrorCode::invalid_config) == LLS_INVALID_CONFIG &&
                  static_cast<int>(ls::ErrorCode::http_status) == LLS_HTTP_STATUS &&
                  static_cast<int>(ls::ErrorCode::cancelled) == LLS_CANCELLED &&
                  static_cast<int>(ls::ErrorCode::out_of_memory) == LLS_OUT_OF_MEMORY &&
                  static_cast<int>(ls::ErrorCode::proxy) == LLS_PROXY,
              "lls_error_code mirrors llm_stream::ErrorCode");
static_assert(static_cast<int>(ls::EventType::content) == LLS_EVENT_CONTENT &&
                  static_cast<int>(ls::EventType::usage) == LLS_EVENT_USAGE,
              "lls_event_type mirrors llm_stream::EventType");
static_assert(static_cast<int>(ls::PollStatus::pending) == LLS_POLL_PENDING &&
                  static_cast<int>(ls::PollStatus::failed) == LLS_POLL_FAILED,
              "lls_poll_status mirrors llm_stream::PollStatus");

namespace {

/* Runs `body`; an exception (only the standard library's, bad_alloc or length_error: llm_stream throws
   none) becomes `on_failure()`, since none may cross into C. */
template <typename Body, typename OnFailure>
auto guarded(Body body, OnFailure on_failure) noexcept -> decltype(body()) {
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
    try {
        return body();
    } catch (...) {
        return on_failure();
    }
#else
    (void)on_failure;
    return body();
#endif
}

/* For calls whose only failure is running out of memory. */
template <typename Body>
lls_error_code guarded_code(Body body) noexcept {
    return guarded(body, [] { return LLS_OUT_OF_MEMORY; });
}

ls::Error out_of_memory() {
    ls::Error e;
    e.code = ls::ErrorCode::out_of_memory;
    e.message = "out of memory";  // short: kept inside the string, no allocation
    return e;
}

ls::Error invalid_argument(std::string message) {
    ls::Error e;
    e.code = ls::ErrorCode::invalid_argument;
    e.message = std::move(message);
    return e;
}

const char* text_or_empty(const char* text) { return text ? text : ""; }

lls_error_code code_of(const ls::Error& e) { return static_cast<lls_error_code>(e.code); }

/* An error and its C view. */
struct ShownError {
    ls::Error error;
    lls_error shown = {};

    const lls_error* show(const ls::Error& e) {
        shown.code = code_of(e);
        shown.http_status = e.http_status;
        shown.message = e.message.c_str();
        return &shown;
    }
    /* Keeps the first error (a later one is often a consequence) and returns `e`'s code. */
    lls_error_code remember(ls::Error e) {
        const lls_error_code code = code_of(e);
        if (e && !error) error = std::move(e);
        return code;
    }
};

lls_string view(std::string_view s) {
    lls_string v;
    v.data = s.data() ? s.data() : "";
    v.size = s.size();
    return v;
}

lls_string optional_view(const std::optional<std::string_view>& s) {
    if (s) return view(*s);
    lls_string absent;
    absent.data = nullptr;
    absent.size = 0;
    return absent;
}

}  // namespace

struct lls_config {
    ls::Config config;
    ShownError errors;
};

struct lls_options {
    ls::ChatOptions options;
    ShownError errors;
};

struct lls_client {
    ls::Client client;
};

struct lls_stream {
    ls::Stream stream;
    ls::Error failure;  // an error before the stream could start, or an allocation that failed: it wins
    ShownError errors;
    lls_event event = {};
    ls::Stats stats;
    std::string reply_json;

    const ls::Error& error() const { return failure ? failure : stream.error(); }
    void fail_out_of_memory() { failure = out_of_memory(); }
    const lls_event* show(const ls::Event& e);
};

const lls_event* lls_stream::show(const ls::Event& e) {
    event.type = static_cast<lls_event_type>(e.type);
    event.choice = e.choice;
    event.text = view(e.text);
    event.raw_reason = view(e.raw_reason);
    event.signature = view(e.signature);
    event.tool_index = e.tool_call.index;
    event.tool_id = optional_view(e.tool_call.id);
    event.tool_name = optional_view(e.tool_call.name);
    event.tool_arguments = optional_view(e.tool_call.arguments);
    event.tool_signature = view(e.tool_call.signature);
    event.prompt_tokens = e.usage.prompt_tokens;
    event.completion_tokens = e.usage.completion_tokens;
    event.total_tokens = e.usage.total_tokens;
    return &event;
}

namespace {

/* A new Object, or NULL when memory ran out. */
template <typename Object>
Object* made() noexcept {
    return guarded([] { return new Object(); }, []() -> Object* { return nullptr; });
}

/* A call on `object` that takes one string and may fail with an Error, which the object remembers. */
template <typename Object, typename Use>
lls_error_code with_string(Object* object, const char* text, Use use) noexcept {
    return guarded([&] { return object->errors.remember(use(std::string(text_or_empty(text)))); },
                   [&] { return object->errors.remember(out_of_memory()); });
}

/* A stream of `client` with `options` (NULL: the defaults) started by `start`, or failed with `failure`. */
template <typename Start>
lls_stream* start_stream(lls_client* client, const lls_options* options, ls::Error failure, Start start) noexcept {
    return guarded(
        [&]() -> lls_stream* {
            lls_stream* s = new lls_stream();
            if (options && options->errors.error) failure = options->errors.error;
            if (failure) s->failure = std::move(failure);
            else s->stream = start(client->client, options ? options->options : ls::ChatOptions());
            return s;
        },
        []() -> lls_stream* { return nullptr; });
}

}  // namespace

extern "C" {

const char* lls_error_code_name(lls_error_code code) { return ls::to_string(static_cast<ls::ErrorCode>(code)); }

const char* lls_version(void) { return ls::version_string(); }

/* ---- configuration ---- */

lls_config* lls_config_new(void) {
    return made<lls_config>();
}

void lls_config_free(lls_config* config) { delete config; }

lls_error_code lls_config_from_env(lls_config* config, const char* dotenv_path) {
    return with_string(config, dotenv_path ? dotenv_path : ".env",
                      [&](std::string path) { return ls::Config::from_env(config->config, path); });
}

lls_error_code lls_config_set_api(lls_config* config, const char* name) {
    return with_string(config, name, [&](std::string text) { return ls::parse_api(text, config->config.api); });
}

lls_error_code lls_config_set_base_url(lls_config* config, const char* url) {
    return with_string(config, url, [&](std::string text) {
        config->config.base_url = std::move(text);
        return ls::Error();
    });
}

lls_error_code lls_config_set_api_key(lls_config* config, const char* key) {
    return with_string(config, key, [&](std::string text) {
        config->config.api_key = std::move(text);
        return ls::Error();
    });
}

lls_error_code lls_config_set_model(lls_config* config, const char* model) {
    return with_string(config, model, [&](std::string text) {
        config->config.model = std::move(text);
        return ls::Error();
    });
}

lls_error_code lls_config_set_timeouts(lls_config* config, int connect_ms, int read_ms, int deadline_ms) {
    return guarded_code([&] {
        if (connect_ms < 0 || read_ms < 0 || deadline_ms < 0)
            return config->errors.remember(invalid_argument(
                "lls_config_set_timeouts: connect_ms, read_ms and deadline_ms must not be negative"));
        config->config.connect_timeout = std::chrono::milliseconds(connect_ms);
        config->config.read_timeout = std::chrono::milliseconds(read_ms);
        config->config.deadline = std::chrono::milliseconds(deadline_ms);
        return LLS_OK;
    });
}

lls_error_code lls_config_set_retries(lls_config* config, int max_retries) {
    return guarded_code([&] {
        if (max_retries < 0)
            return config->errors.remember(invalid_argument("lls_config_set_retries: max_retries must not be negative"));
        config->config.retry.max_retries = max_retries;
        return LLS_OK;
    });
}

lls_error_code lls_config_set_tls(lls_config* config, const char* ca_file, int verify) {
    return with_string(config, ca_file, [&](std::string path) {
        config->config.tls.ca_file = std::move(path);
        config->config.tls.verify = verify != 0;
        return ls::Error();
    });
}

const lls_error* lls_config_error(lls_config* config) { return config->errors.show(config->errors.error); }

/* ---- options ---- */

lls_options* lls_options_new(void) {
    return made<lls_options>();
}

void lls_options_free(lls_options* options) { delete options; }

lls_error_code lls_options_set_system(lls_options* options, const char* text) {
    return with_string(options, text, [&](std::string value) {
        options->options.system = std::move(value);
        return ls::Error();
    });
}

lls_error_code lls_options_set_model(lls_options* options, const char* model) {
    return with_string(options, model, [&](std::string value) {
        options->options.model = std::move(value);
        return ls::Error();
    });
}

void lls_options_set_max_tokens(lls_options* options, int max_tokens) { options->options.max_tokens = max_tokens; }

void lls_options_set_temperature(lls_options* options, double temperature) {
    options->options.temperature = temperature;
}

lls_error_code lls_options_set_tools(lls_options* options, const char* json) {
    return with_string(options, json, [&](std::string text) { return ls::parse_tools(text, options->options.tools); });
}

lls_error_code lls_options_set_extra_json(lls_options* options, const char* json) {
    return with_string(options, json, [&](std::string text) {
        options->options.extra_json = std::move(text);
        return ls::Error();
    });
}

void lls_options_set_assemble_reply(lls_options* options, int assemble) {
    options->options.assemble_reply = assemble != 0;
}

const lls_error* lls_options_error(lls_options* options) { return options->errors.show(options->errors.error); }

/* ---- client ---- */

lls_client* lls_client_new(const lls_config* config) {
    return guarded(
        [&]() -> lls_client* {
            ls::Config settings = config ? config->config : ls::Config();
            if (config && config->errors.error && !settings.env_error) settings.env_error = config->errors.error;
            return new lls_client{ls::Client(std::move(settings))};
        },
        []() -> lls_client* { return nullptr; });
}

void lls_client_free(lls_client* client) { delete client; }

lls_stream* lls_client_stream_prompt(lls_client* client, const char* prompt, const lls_options* options) {
    return start_stream(client, options, ls::Error(), [&](ls::Client& c, const ls::ChatOptions& o) {
        return c.stream_chat(std::string_view(text_or_empty(prompt)), o);
    });
}

lls_stream* lls_client_stream_messages(lls_client* client, const char* messages_json, const lls_options* options) {
    std::vector<ls::Message> messages;
    ls::Error failure = guarded([&] { return ls::parse_messages(text_or_empty(messages_json), messages); },
                                [] { return out_of_memory(); });
    return start_stream(client, options, std::move(failure),
                        [&](ls::Client& c, const ls::ChatOptions& o) { return c.stream_chat(messages, o); });
}

/* ---- streams ---- */

void lls_stream_free(lls_stream* stream) { delete stream; }

lls_poll_status lls_stream_poll(lls_stream* stream, const lls_event** event) {
    if (event) *event = nullptr;
    return guarded(
        [&] {
            if (stream->failure) return LLS_POLL_FAILED;
            const ls::PollStatus status = stream->stream.poll();
            if (status == ls::PollStatus::event && event) *event = stream->show(stream->stream.current_event());
            return static_cast<lls_poll_status>(status);
        },
        [&] {
            stream->fail_out_of_memory();
            return LLS_POLL_FAILED;
        });
}

const char* lls_stream_next_chunk(lls_stream* stream, size_t* size) {
    if (size) *size = 0;
    return guarded(
        [&]() -> const char* {
            if (stream->failure) return nullptr;
            const std::optional<std::string_view> chunk = stream->stream.next_chunk();
            if (!chunk) return nullptr;
            if (size) *size = chunk->size();
            return view(*chunk).data;
        },
        [&]() -> const char* {
            stream->fail_out_of_memory();
            return nullptr;
        });
}

const lls_event* lls_stream_next_event(lls_stream* stream) {
    return guarded(
        [&]() -> const lls_event* {
            if (stream->failure) return nullptr;
            const ls::Event* e = stream->stream.next_event();
            return e ? stream->show(*e) : nullptr;
        },
        [&]() -> const lls_event* {
            stream->fail_out_of_memory();
            return nullptr;
        });
}

void lls_stream_cancel(lls_stream* stream) {
    guarded([&] { stream->stream.cancel(); }, [] {});
}

const lls_error* lls_stream_error(lls_stream* stream) { return stream->errors.show(stream->error()); }

lls_error_code lls_stream_stats(lls_stream* stream, lls_stats* stats) {
    return guarded_code([&] {
        stream->stats = stream->stream.stats();
        const ls::Stats& s = stream->stats;
        stats->first_byte_ms = s.first_byte_ms;
        stats->first_chunk_ms = s.first_chunk_ms;
        stats->total_ms = s.total_ms;
        stats->chunks = s.chunks;
        stats->chars = s.chars;
        stats->content_bytes = s.content_bytes;
        stats->received_bytes = s.received_bytes;
        stats->events = s.events;
        stats->skipped_events = s.skipped_events;
        stats->attempts = s.attempts;
        stats->has_usage = s.has_usage;
        stats->prompt_tokens = s.usage.prompt_tokens;
        stats->completion_tokens = s.usage.completion_tokens;
        stats->total_tokens = s.usage.total_tokens;
        stats->finish_reason = view(s.finish_reason);
        return LLS_OK;
    });
}

const char* lls_stream_reply_json(lls_stream* stream, size_t* size) {
    if (size) *size = 0;
    return guarded(
        [&]() -> const char* {
            stream->reply_json.clear();
            ls::write_message_json(stream->reply_json, stream->stream.reply().message());
            if (size) *size = stream->reply_json.size();
            return stream->reply_json.c_str();
        },
        []() -> const char* { return nullptr; });
}

const char* lls_stream_reply_text(lls_stream* stream, size_t* size) {
    const std::string& text = stream->stream.reply().message().content;
    if (size) *size = text.size();
    return text.c_str();
}

}  // extern "C"
