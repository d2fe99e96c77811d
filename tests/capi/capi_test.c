/* The C ABI (llm_stream_c.h) from C99: stub mode (prompt, tools, a conversation, poll), the errors that
   need no server, and, through tests/capi/run.sh, the loopback test server: a recorded stream
   configured from a .env file, an HTTP error, and a blocked read cancelled from another thread.
   run.sh passes the servers' base URLs in LLS_TEST_URL, LLS_TEST_ERROR_URL and LLS_TEST_SILENT_URL and
   runs this in a fresh directory. Prints one line per check; exits 1 when one failed. */
#define _POSIX_C_SOURCE 200809L
#include "llm_stream_c.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failed = 0;

static void check(int ok, const char* what) {
    printf("%s - %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failed = 1;
}

static int contains(const char* text, const char* part) { return text != NULL && strstr(text, part) != NULL; }

static int equals(lls_string s, const char* text) { return s.data && s.size == strlen(text) && memcmp(s.data, text, s.size) == 0; }

static const char* required_env(const char* name) {
    const char* value = getenv(name);
    if (!value || !*value) {
        fprintf(stderr, "capi_test: %s is not set (run it through tests/capi/run.sh)\n", name);
        exit(2);
    }
    return value;
}

/* Every content chunk of `stream`, joined (at most 4095 bytes: the replies here are short). */
static void read_chunks(lls_stream* stream, char* text, size_t capacity) {
    size_t used = 0, size;
    const char* chunk;
    text[0] = '\0';
    while ((chunk = lls_stream_next_chunk(stream, &size)) != NULL) {
        if (used + size >= capacity) size = capacity - 1 - used;
        memcpy(text + used, chunk, size);
        used += size;
        text[used] = '\0';
    }
}

static lls_client* stub_client(void) {
    lls_config* config = lls_config_new();
    lls_client* client = lls_client_new(config);
    lls_config_free(config);
    return client;
}

static void version_and_names(void) {
    check(strncmp(lls_version(), "llm_stream ", 11) == 0, "lls_version names the library");
    check(strcmp(lls_error_code_name(LLS_TIMEOUT), "timeout") == 0 &&
              strcmp(lls_error_code_name(LLS_OUT_OF_MEMORY), "out_of_memory") == 0,
          "lls_error_code_name: the C++ names");
}

static void stub_prompt(void) {
    lls_client* client = stub_client();
    lls_options* options = lls_options_new();
    lls_stream* stream;
    char text[4096];
    size_t size = 0;
    lls_stats stats;
    lls_options_set_assemble_reply(options, 1);
    stream = lls_client_stream_prompt(client, "hi", options);
    lls_options_free(options);
    lls_client_free(client); /* the stream keeps what it needs */
    read_chunks(stream, text, sizeof text);
    check(lls_stream_error(stream)->code == LLS_OK && strcmp(lls_stream_error(stream)->message, "") == 0,
          "stub: the stream ends without an error");
    check(contains(text, "stub mode") && contains(text, "hi"), "stub: the text names stub mode and the prompt");
    check(strcmp(lls_stream_reply_text(stream, &size), text) == 0 && size == strlen(text),
          "stub: the assembled reply's text is the chunks joined");
    check(contains(lls_stream_reply_json(stream, &size), "{\"role\":\"assistant\",\"content\":\"") && size > 30,
          "stub: the reply as an OpenAI-format message");
    check(lls_stream_stats(stream, &stats) == LLS_OK && stats.chunks > 1 && stats.has_usage &&
              stats.total_tokens > 0 && equals(stats.finish_reason, "stop") && stats.attempts == 1 &&
              stats.first_byte_ms >= 0 && stats.first_chunk_ms >= stats.first_byte_ms &&
              stats.content_bytes == strlen(text),
          "stub: stats (chunks, usage, finish reason, attempts, first byte before first chunk)");
    lls_stream_free(stream);
}

static const char* calculator_tools =
    "[{\"type\":\"function\",\"function\":{\"name\":\"calculator\",\"description\":\"arithmetic\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"expression\":{\"type\":\"string\"}}}}}]";

/* The stub calls the offered tool: its fragments, the finish reason and the usage as events. */
static void stub_tool_events(void) {
    lls_client* client = stub_client();
    lls_options* options = lls_options_new();
    lls_stream* stream;
    const lls_event* event;
    char arguments[256] = "";
    int opened = 0, finished = 0, usage = 0;
    check(lls_options_set_tools(options, calculator_tools) == LLS_OK && lls_options_error(options)->code == LLS_OK,
          "tools: an OpenAI-format array is accepted");
    lls_options_set_assemble_reply(options, 1);
    stream = lls_client_stream_prompt(client, "6*7", options);
    while ((event = lls_stream_next_event(stream)) != NULL) {
        if (event->type == LLS_EVENT_TOOL_CALL) {
            if (event->tool_id.data) opened += equals(event->tool_id, "call_stub_1") && equals(event->tool_name, "calculator");
            if (event->tool_arguments.data && strlen(arguments) + event->tool_arguments.size < sizeof arguments)
                strncat(arguments, event->tool_arguments.data, event->tool_arguments.size);
        }
        finished += event->type == LLS_EVENT_FINISH && equals(event->text, "tool_calls");
        usage += event->type == LLS_EVENT_USAGE && event->total_tokens == event->prompt_tokens + event->completion_tokens;
    }
    check(opened == 1 && strcmp(arguments, "{\"expression\":\"6*7\"}") == 0,
          "tools: one call of the calculator, its arguments in fragments");
    check(finished == 1 && usage == 1, "tools: finish reason tool_calls, then usage");
    check(contains(lls_stream_reply_json(stream, NULL), "\"tool_calls\":[{\"id\":\"call_stub_1\""),
          "tools: the assembled reply carries the call");
    lls_stream_free(stream);
    lls_options_free(options);
    lls_client_free(client);
}

/* A conversation as JSON, driven by poll() as a frame loop would: the stub quotes the tool's result. */
static void stub_conversation_polled(void) {
    static const char* messages =
        "[{\"role\":\"user\",\"content\":\"6*7\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
        "\"function\":{\"name\":\"calculator\",\"arguments\":\"{\\\"expression\\\":\\\"6*7\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"42\"}]";
    lls_client* client = stub_client();
    lls_stream* stream = lls_client_stream_messages(client, messages, NULL);
    const lls_event* event;
    lls_poll_status status = LLS_POLL_PENDING;
    char text[4096] = "";
    struct timespec frame = {0, 1000 * 1000};
    long frames;
    for (frames = 0; frames < 100000 && status != LLS_POLL_DONE && status != LLS_POLL_FAILED; ++frames) {
        status = lls_stream_poll(stream, &event);
        if (status == LLS_POLL_PENDING) nanosleep(&frame, NULL);
        if (status == LLS_POLL_EVENT && event->type == LLS_EVENT_CONTENT && strlen(text) + event->text.size < sizeof text)
            strncat(text, event->text.data, event->text.size);
    }
    check(status == LLS_POLL_DONE && contains(text, "calculator returned") && contains(text, "42"),
          "conversation: polled to the end, the tool's result quoted");
    check(lls_stream_poll(stream, &event) == LLS_POLL_DONE && event == NULL, "conversation: done stays done");
    lls_stream_free(stream);
    lls_client_free(client);
}

/* The stream, read and polled, fails with `code` and a message containing `part`. */
static int stream_fails(lls_stream* stream, lls_error_code code, const char* part) {
    const lls_error* error;
    if (lls_stream_next_chunk(stream, NULL) != NULL || lls_stream_next_event(stream) != NULL) return 0;
    if (lls_stream_poll(stream, NULL) != LLS_POLL_FAILED) return 0;
    error = lls_stream_error(stream);
    return error->code == code && contains(error->message, part);
}

/* A stream of a client made from `config` (freed here) fails with `code` and a message containing `part`. */
static int client_streams_fail(lls_config* config, lls_error_code code, const char* part) {
    lls_client* client = lls_client_new(config);
    lls_stream* stream;
    int fails;
    lls_config_free(config);
    stream = lls_client_stream_prompt(client, "hi", NULL);
    fails = stream_fails(stream, code, part);
    lls_stream_free(stream);
    lls_client_free(client);
    return fails;
}

static void errors_without_a_server(void) {
    lls_client* client = stub_client();
    lls_options* options = lls_options_new();
    lls_config* config = lls_config_new();
    lls_stream* stream;
    FILE* file;

    check(lls_options_set_tools(options, "{\"not\":\"an array\"}") == LLS_INVALID_ARGUMENT &&
              lls_options_error(options)->code == LLS_INVALID_ARGUMENT && *lls_options_error(options)->message,
          "options: tools that are not an array are refused with a message");
    stream = lls_client_stream_prompt(client, "hi", options);
    check(stream_fails(stream, LLS_INVALID_ARGUMENT, lls_options_error(options)->message),
          "options: a stream with them fails with that error");
    lls_stream_free(stream);
    lls_options_free(options);

    options = lls_options_new();
    lls_options_set_max_tokens(options, 0);
    stream = lls_client_stream_prompt(client, "hi", options);
    check(stream_fails(stream, LLS_INVALID_ARGUMENT, "max_tokens"), "options: max tokens 0, named by the stream's error");
    lls_stream_free(stream);
    lls_options_free(options);

    stream = lls_client_stream_messages(client, "[{\"role\":\"wizard\",\"content\":\"x\"}]", NULL);
    check(stream_fails(stream, LLS_INVALID_ARGUMENT, "messages[0]"), "messages: an unknown role, named");
    lls_stream_free(stream);
    lls_client_free(client);

    check(lls_config_set_timeouts(config, -1, 1000, 0) == LLS_INVALID_ARGUMENT &&
              contains(lls_config_error(config)->message, "negative"),
          "config: a negative timeout is refused");
    lls_config_free(config);

    config = lls_config_new();
    check(lls_config_set_api(config, "telepathy") == LLS_INVALID_CONFIG &&
              contains(lls_config_error(config)->message, "anthropic"),
          "config: an unknown API is refused, the names listed");
    check(client_streams_fail(config, LLS_INVALID_CONFIG, "telepathy"), "config: its client's streams fail with that error");

    config = lls_config_new();
    lls_config_set_base_url(config, "ftp://example.com/v1");
    check(client_streams_fail(config, LLS_INVALID_CONFIG, "LLM_BASE_URL"), "config: a bad base URL, named");

    file = fopen("broken.env", "w");
    fputs("LLM_MODEL=\"unterminated\n", file);
    fclose(file);
    config = lls_config_new();
    check(lls_config_from_env(config, "broken.env") == LLS_INVALID_CONFIG &&
              contains(lls_config_error(config)->message, "broken.env line 1"),
          "config: a malformed .env file, with its line");
    lls_config_free(config);
}

/* A client of the loopback server at `url`, configured from a .env file and the setters. */
static lls_client* loopback_client(const char* url) {
    FILE* file = fopen("loopback.env", "w");
    lls_config* config = lls_config_new();
    lls_client* client;
    fprintf(file, "LLM_BASE_URL=%s\nLLM_MODEL=from-dotenv\n", url);
    fclose(file);
    check(lls_config_from_env(config, "loopback.env") == LLS_OK, "loopback: configured from a .env file");
    lls_config_set_api(config, "openai");
    lls_config_set_api_key(config, "sk-capi-test");
    lls_config_set_model(config, "deepseek-chat");
    lls_config_set_timeouts(config, 10000, 120000, 0);
    lls_config_set_retries(config, 0);
    lls_config_set_tls(config, NULL, 1);
    check(lls_config_error(config)->code == LLS_OK, "loopback: the setters accepted every value");
    client = lls_client_new(config);
    lls_config_free(config);
    return client;
}

static void loopback_stream(void) {
    lls_client* client = loopback_client(required_env("LLS_TEST_URL"));
    lls_options* options = lls_options_new();
    lls_stream* stream;
    lls_stats stats;
    char text[4096];
    lls_options_set_system(options, "Be brief.");
    lls_options_set_model(options, "deepseek-chat");
    lls_options_set_max_tokens(options, 100);
    lls_options_set_temperature(options, 0.5);
    lls_options_set_extra_json(options, "{\"top_k\":20}");
    stream = lls_client_stream_prompt(client, "Hello", options);
    read_chunks(stream, text, sizeof text);
    check(strcmp(text, "Hello! How can I assist you today? \xF0\x9F\x98\x8A") == 0 &&
              lls_stream_error(stream)->code == LLS_OK,
          "loopback: the recorded reply, whole");
    check(lls_stream_stats(stream, &stats) == LLS_OK && stats.has_usage && stats.total_tokens == 23 &&
              equals(stats.finish_reason, "stop") && stats.received_bytes > 0,
          "loopback: stats with the server's usage");
    lls_stream_free(stream);
    lls_options_free(options);
    lls_client_free(client);
}

static void loopback_http_error(void) {
    lls_client* client = loopback_client(required_env("LLS_TEST_ERROR_URL"));
    lls_stream* stream = lls_client_stream_prompt(client, "Hello", NULL);
    check(stream_fails(stream, LLS_HTTP_STATUS, "Invalid API key") && lls_stream_error(stream)->http_status == 401,
          "loopback: HTTP 401, with the server's message");
    lls_stream_free(stream);
    lls_client_free(client);
}

static void* cancel_soon(void* stream) {
    struct timespec pause = {0, 100 * 1000 * 1000};
    nanosleep(&pause, NULL);  /* most likely blocked by then; cancelled before or after, it ends */
    lls_stream_cancel((lls_stream*)stream);
    return NULL;
}

/* The server sends its head and then nothing for an hour: only the cancel can end the read. */
static void loopback_cancel(void) {
    lls_client* client = loopback_client(required_env("LLS_TEST_SILENT_URL"));
    lls_stream* stream = lls_client_stream_prompt(client, "Hello", NULL);
    pthread_t canceller;
    const char* chunk;
    check(pthread_create(&canceller, NULL, cancel_soon, stream) == 0, "cancel: a thread started");
    chunk = lls_stream_next_chunk(stream, NULL);
    pthread_join(canceller, NULL);
    check(chunk == NULL && lls_stream_error(stream)->code == LLS_CANCELLED,
          "cancel: from another thread, it ends the blocked read with LLS_CANCELLED");
    lls_stream_free(stream);
    lls_client_free(client);
}

int main(void) {
    version_and_names();
    stub_prompt();
    stub_tool_events();
    stub_conversation_polled();
    errors_without_a_server();
    loopback_stream();
    loopback_http_error();
    loopback_cancel();
    return failed;
}
