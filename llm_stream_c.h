/* llm_stream_c.h — the C ABI of llm_stream, for C, for languages that load native libraries (Python's
   ctypes, C#'s P/Invoke as Unity loads native plugins, Godot, ...) and for C++ programs that want the
   library behind a stable binary interface.

   BUILD
     The library is llm_stream_c.cpp (next to this header and llm_stream.hpp) compiled as a shared
     library: CMake's target llm_stream_c (option LLM_STREAM_C_ABI), Meson's (option capi), or by hand:
         c++ -std=c++17 -O2 -shared -fPIC -fvisibility=hidden llm_stream_c.cpp \
             -o libllm_stream_c.so -pthread        (add -DLLM_STREAM_MBEDTLS -lmbedtls -lmbedx509 -lmbedcrypto for https://)
     Only the functions below are exported. Define LLM_STREAM_C_STATIC to use it as a static library.

   NAMES
     Everything is prefixed lls_ (llm_stream). Enumerations are int-sized; booleans are int (0 or not).

   OWNERSHIP
     Object arguments must not be NULL, except where said. Every object made by an lls_*_new() or lls_client_stream_*() call is the caller's, freed by the
     matching lls_*_free() (NULL is accepted and ignored). Those calls return NULL only when memory ran
     out. Strings given to the library are NUL-terminated UTF-8 and copied (NULL reads as ""): free
     them whenever you like. Strings and structs the library returns belong to the object they came
     from and stay valid until the next call on that object (or its free); copy what you keep. An
     lls_string is a view, NOT NUL-terminated: read `size` bytes. A client's settings are copied from
     its config, a stream's from its options: free the config or options right after use. A stream
     keeps what it needs of its client, so the two may be freed in either order.

   ERRORS
     A call that can fail returns an lls_error_code (LLS_OK = 0 on success); the object's error (the
     lls_*_error() calls) says why, with a message naming the culprit. A config or options object
     remembers its first error, and the streams started with it fail with that error: a mistake is
     never silently dropped. No C++ exception crosses this interface: an allocation that fails is
     LLS_OUT_OF_MEMORY (in a library built with -fno-exceptions a failed allocation ends the program,
     as it does in the C++ standard library).

   THREADS
     The library starts no threads. A client may be used by several threads at once. A config, an
     options object and a stream belong to one thread at a time, except lls_stream_cancel(), which
     any thread may call while the stream exists (not while it is being freed).

   EXAMPLE (stub mode when LLM_BASE_URL is not set)
       lls_config* config = lls_config_new();
       lls_config_from_env(config, NULL);            (LLM_* variables, then ./.env)
       lls_client* client = lls_client_new(config);
       lls_config_free(config);
       lls_stream* stream = lls_client_stream_prompt(client, "Hello", NULL);
       size_t size;
       const char* chunk;
       while ((chunk = lls_stream_next_chunk(stream, &size)) != NULL) fwrite(chunk, 1, size, stdout);
       if (lls_stream_error(stream)->code != LLS_OK) fprintf(stderr, "%s\n", lls_stream_error(stream)->message);
       lls_stream_free(stream);
       lls_client_free(client);
*/
#ifndef LLM_STREAM_C_H
#define LLM_STREAM_C_H

#include <stddef.h>
#include <stdint.h>

#if defined(LLM_STREAM_C_STATIC)
#define LLS_API
#elif defined(_WIN32) || defined(__CYGWIN__)
#if defined(LLM_STREAM_C_BUILD)
#define LLS_API __declspec(dllexport)
#else
#define LLS_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define LLS_API __attribute__((visibility("default")))
#else
#define LLS_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------
   Errors (the values of llm_stream::ErrorCode)
   ------------------------------------------------------------------------------------------------ */

typedef enum lls_error_code {
    LLS_OK = 0,
    LLS_INVALID_CONFIG = 1,    /* bad URL, bad setting, unusable .env value */
    LLS_INVALID_ARGUMENT = 2,  /* bad options, messages or tools */
    LLS_DNS = 3,               /* the host name could not be resolved */
    LLS_CONNECT = 4,           /* the connection failed or was reset before a response */
    LLS_TLS = 5,               /* handshake or certificate verification failed, or no TLS in this build */
    LLS_TIMEOUT = 6,           /* connect, read or deadline */
    LLS_HTTP_STATUS = 7,       /* the server answered with a non-2xx status (lls_error.http_status) */
    LLS_PROTOCOL = 8,          /* malformed HTTP, SSE or JSON, or a stream cut short */
    LLS_LIMIT_EXCEEDED = 9,    /* a line, header block or event larger than the limits */
    LLS_SERVER_ERROR = 10,     /* an error event inside the stream */
    LLS_CANCELLED = 11,        /* lls_stream_cancel() was called */
    LLS_IO = 12,               /* any other transport failure */
    LLS_OUT_OF_MEMORY = 13,    /* an allocation failed */
    LLS_PROXY = 14             /* the HTTP proxy refused the tunnel or answered it wrongly */
} lls_error_code;

typedef struct lls_error {
    lls_error_code code;  /* LLS_OK when there is no error */
    int http_status;      /* the response's status when there was one, else 0 */
    const char* message;  /* NUL-terminated, for humans ("" when there is no error); never the API key */
} lls_error;

/* A short stable name for a code, such as "timeout" (static storage). */
LLS_API const char* lls_error_code_name(lls_error_code code);

/* "llm_stream 0.2.0 (tls: none)" or with the TLS backend's name and version (static storage). */
LLS_API const char* lls_version(void);

/* ------------------------------------------------------------------------------------------------
   Configuration, read when a client is made
   ------------------------------------------------------------------------------------------------ */

typedef struct lls_config lls_config;

/* The defaults: stub mode (no base URL), API "openai", model "gpt-4o-mini", 30 s connect and read
   timeouts, no deadline, 3 retries, TLS verification on with the system's CAs. */
LLS_API lls_config* lls_config_new(void);
LLS_API void lls_config_free(lls_config* config);

/* As llm-chat: LLM_API, LLM_API_KEY, LLM_BASE_URL, LLM_MODEL, LLM_STUB_DELAY_MS and the proxy variables
   from the environment, then the file `dotenv_path` (NULL: ".env" in the working directory; a missing
   file is fine) for what the environment does not set. LLS_INVALID_CONFIG for a malformed file
   (".env line 3: unterminated double quote") or an LLM_BASE_URL set but empty; what could be read is
   kept either way. It replaces every setting: call it before the setters below. */
LLS_API lls_error_code lls_config_from_env(lls_config* config, const char* dotenv_path);
/* "openai", "responses", "anthropic", "gemini" or "ollama"; LLS_INVALID_CONFIG otherwise. */
LLS_API lls_error_code lls_config_set_api(lls_config* config, const char* name);
/* A base such as "https://api.openai.com/v1" or a full URL ending in the API's path; "" or NULL: stub
   mode. Checked when a stream starts. */
LLS_API lls_error_code lls_config_set_base_url(lls_config* config, const char* url);
LLS_API lls_error_code lls_config_set_api_key(lls_config* config, const char* key);
LLS_API lls_error_code lls_config_set_model(lls_config* config, const char* model);
/* Milliseconds: connect and read (the longest silence) per attempt, deadline for the whole request
   with its retries (0: none). LLS_INVALID_ARGUMENT when one is negative. */
LLS_API lls_error_code lls_config_set_timeouts(lls_config* config, int connect_ms, int read_ms, int deadline_ms);
/* Attempts after the first one for connection failures, timeouts, 408, 409, 429 and 5xx. */
LLS_API lls_error_code lls_config_set_retries(lls_config* config, int max_retries);
/* A PEM file of trusted CAs (NULL or "": SSL_CERT_FILE, then the system bundle) and whether to verify
   the certificate chain and host name at all (0 only by explicit choice). */
LLS_API lls_error_code lls_config_set_tls(lls_config* config, const char* ca_file, int verify);
/* The config's first error (LLS_OK when none). */
LLS_API const lls_error* lls_config_error(lls_config* config);

/* ------------------------------------------------------------------------------------------------
   Options of one request, read when a stream starts
   ------------------------------------------------------------------------------------------------ */

typedef struct lls_options lls_options;

/* The defaults: the system message "You are a helpful sales assistant." (prompt streams only), usage
   asked for, the reply not assembled. */
LLS_API lls_options* lls_options_new(void);
LLS_API void lls_options_free(lls_options* options);

/* The system message of a prompt stream; "" sends none. */
LLS_API lls_error_code lls_options_set_system(lls_options* options, const char* text);
/* Overrides the config's model; "" keeps it. */
LLS_API lls_error_code lls_options_set_model(lls_options* options, const char* model);
/* Checked when a stream starts (max tokens > 0, temperature 0..2), as everything else. */
LLS_API void lls_options_set_max_tokens(lls_options* options, int max_tokens);
LLS_API void lls_options_set_temperature(lls_options* options, double temperature);
/* An OpenAI-format JSON array of tools ([{"type":"function","function":{"name":...}}]);
   LLS_INVALID_ARGUMENT naming the culprit when it is not one. */
LLS_API lls_error_code lls_options_set_tools(lls_options* options, const char* json);
/* A JSON object merged into the request body ({"top_k":20}); checked when a stream starts. */
LLS_API lls_error_code lls_options_set_extra_json(lls_options* options, const char* json);
/* Assemble the reply as events arrive, for lls_stream_reply_json()/_text() (costs a few allocations
   per stream; reading chunks and events alone allocates nothing per event). */
LLS_API void lls_options_set_assemble_reply(lls_options* options, int assemble);
/* The options' first error (LLS_OK when none). */
LLS_API const lls_error* lls_options_error(lls_options* options);

/* ------------------------------------------------------------------------------------------------
   Client and streams
   ------------------------------------------------------------------------------------------------ */

typedef struct lls_client lls_client;
typedef struct lls_stream lls_stream;

/* A client with a copy of `config` (NULL: lls_config_new()'s defaults) and a small pool of idle
   connections. When the config holds an error, every stream of this client fails with it. */
LLS_API lls_client* lls_client_new(const lls_config* config);
LLS_API void lls_client_free(lls_client* client);

/* One user turn: `prompt` after the options' system message. `options` may be NULL (the defaults).
   Returns without waiting for the server: polling or reading the stream carries it on. A stream that
   cannot start (bad options, a config error) is returned all the same, failed, with its error. */
LLS_API lls_stream* lls_client_stream_prompt(lls_client* client, const char* prompt, const lls_options* options);
/* A whole conversation, an OpenAI-format JSON array of messages (roles, text or parts content,
   tool_calls, tool_call_id, name), sent as given; a malformed array is the stream's error
   (LLS_INVALID_ARGUMENT, "messages[2].tool_call_id ..."). */
LLS_API lls_stream* lls_client_stream_messages(lls_client* client, const char* messages_json,
                                               const lls_options* options);
LLS_API void lls_stream_free(lls_stream* stream);

/* A view of bytes: NOT NUL-terminated. `data` is NULL only for a member that is absent. */
typedef struct lls_string {
    const char* data;
    size_t size;
} lls_string;

typedef enum lls_event_type {
    LLS_EVENT_CONTENT = 0,    /* text: a piece of the reply */
    LLS_EVENT_REASONING = 1,  /* text: a piece of the model's reasoning; or a signature */
    LLS_EVENT_TOOL_CALL = 2,  /* tool_*: a fragment of a tool call */
    LLS_EVENT_FINISH = 3,     /* text: "stop", "length", "tool_calls", "content_filter" or the provider's */
    LLS_EVENT_USAGE = 4       /* *_tokens */
} lls_event_type;

/* One event, as llm_stream::Event. Its views stay valid until the next call on the stream. */
typedef struct lls_event {
    lls_event_type type;
    int choice;                /* 0 unless the request asked for several choices */
    lls_string text;
    lls_string raw_reason;     /* finish: the provider's own reason ("end_turn", ...) */
    lls_string signature;      /* reasoning: the provider's token for it, in an event of its own */
    int tool_index;            /* tool call: fragments with the same index make one call */
    lls_string tool_id;        /* tool call: in the fragment that opens the call; else data is NULL */
    lls_string tool_name;      /* likewise */
    lls_string tool_arguments; /* a piece of the arguments' JSON text; data NULL when absent */
    lls_string tool_signature; /* Gemini: the call's thoughtSignature */
    int64_t prompt_tokens;     /* usage */
    int64_t completion_tokens;
    int64_t total_tokens;
} lls_event;

typedef enum lls_poll_status {
    LLS_POLL_PENDING = 0,  /* nothing yet: call again later (next frame) */
    LLS_POLL_EVENT = 1,    /* *event holds a new event */
    LLS_POLL_DONE = 2,     /* the stream ended normally */
    LLS_POLL_FAILED = 3    /* lls_stream_error() says why */
} lls_poll_status;

/* Never blocks: advances the stream as far as it can. `event` (may be NULL) receives the event when
   the status is LLS_POLL_EVENT, else NULL. For frame loops (on Windows a host name in the URL is
   still looked up by a blocking getaddrinfo). */
LLS_API lls_poll_status lls_stream_poll(lls_stream* stream, const lls_event** event);
/* Blocks until the next content chunk of choice 0; returns it (`size` bytes, NOT NUL-terminated;
   `size` may be NULL) or NULL at the end or on error. Other events are consumed on the way. */
LLS_API const char* lls_stream_next_chunk(lls_stream* stream, size_t* size);
/* Blocks until the next event; NULL at the end or on error. */
LLS_API const lls_event* lls_stream_next_event(lls_stream* stream);
/* Ends the stream with LLS_CANCELLED and wakes a blocked call. Any thread. */
LLS_API void lls_stream_cancel(lls_stream* stream);
/* The stream's error: LLS_OK while it runs and when it ended normally. */
LLS_API const lls_error* lls_stream_error(lls_stream* stream);

typedef struct lls_stats {
    double first_byte_ms;   /* request start to the response's first byte (the last attempt's); -1 before it */
    double first_chunk_ms;  /* request start to the first content chunk; -1 before it */
    double total_ms;        /* request start to the end (so far, while running) */
    size_t chunks;          /* content chunks delivered */
    size_t chars;           /* Unicode characters of content delivered */
    size_t content_bytes;   /* UTF-8 bytes of content delivered */
    size_t received_bytes;  /* bytes read from the transport, all attempts */
    size_t events;          /* SSE events (or NDJSON lines) decoded */
    size_t skipped_events;  /* those whose JSON could not be decoded */
    int attempts;           /* HTTP attempts made (1 + retries) */
    int has_usage;          /* the server reported usage: */
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t total_tokens;
    lls_string finish_reason;  /* the last one reported; size 0 if none */
} lls_stats;

/* The stream's statistics so far into *stats; LLS_OUT_OF_MEMORY is the only failure. */
LLS_API lls_error_code lls_stream_stats(lls_stream* stream, lls_stats* stats);
/* The assistant message assembled so far (complete once the stream is done; with
   lls_options_set_assemble_reply) as one OpenAI-format JSON object, ready to append to a messages
   array: {"role":"assistant","content":...,"tool_calls":[...]}. NUL-terminated; `size` may be NULL;
   NULL when memory ran out. */
LLS_API const char* lls_stream_reply_json(lls_stream* stream, size_t* size);
/* The text of that message (NUL-terminated, `size` bytes; "" without assembling). */
LLS_API const char* lls_stream_reply_text(lls_stream* stream, size_t* size);

#ifdef __cplusplus
}
#endif

#endif /* LLM_STREAM_C_H */
