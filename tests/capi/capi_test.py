"""The C ABI (llm_stream_c.h) from Python through ctypes, standard library only: stub mode (chunks, the
tool-call events and the assembled reply as JSON, a conversation polled), and through tests/capi/run.sh
the loopback servers (LLS_TEST_URL, LLS_TEST_ERROR_URL, LLS_TEST_SILENT_URL): a recorded stream, an
HTTP error, a blocked read cancelled from another thread.

    python3 tests/capi/capi_test.py path/to/libllm_stream_c.so
"""
import ctypes
import json
import os
import sys
import threading
import time

LLS_OK, LLS_INVALID_CONFIG, LLS_HTTP_STATUS, LLS_CANCELLED = 0, 1, 7, 11
EVENT_CONTENT, EVENT_TOOL_CALL, EVENT_FINISH = 0, 2, 3
POLL_PENDING, POLL_EVENT, POLL_DONE, POLL_FAILED = 0, 1, 2, 3


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("http_status", ctypes.c_int), ("message", ctypes.c_char_p)]


class String(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("size", ctypes.c_size_t)]

    def bytes(self):
        return ctypes.string_at(self.data, self.size) if self.data else None


class Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("choice", ctypes.c_int), ("text", String), ("raw_reason", String),
                ("signature", String), ("tool_index", ctypes.c_int), ("tool_id", String), ("tool_name", String),
                ("tool_arguments", String), ("tool_signature", String), ("prompt_tokens", ctypes.c_int64),
                ("completion_tokens", ctypes.c_int64), ("total_tokens", ctypes.c_int64)]


class Stats(ctypes.Structure):
    _fields_ = [("first_byte_ms", ctypes.c_double), ("first_chunk_ms", ctypes.c_double), ("total_ms", ctypes.c_double)] + \
               [(name, ctypes.c_size_t) for name in
                ("chunks", "chars", "content_bytes", "received_bytes", "events", "skipped_events")] + \
               [("attempts", ctypes.c_int), ("has_usage", ctypes.c_int), ("prompt_tokens", ctypes.c_int64),
                ("completion_tokens", ctypes.c_int64), ("total_tokens", ctypes.c_int64), ("finish_reason", String)]


def load(path):
    lib = ctypes.CDLL(path)
    p = ctypes.c_void_p
    signatures = {  # name: (result, arguments)
        "lls_version": (ctypes.c_char_p, []),
        "lls_config_new": (p, []),
        "lls_config_free": (None, [p]),
        "lls_config_from_env": (ctypes.c_int, [p, ctypes.c_char_p]),
        "lls_config_set_base_url": (ctypes.c_int, [p, ctypes.c_char_p]),
        "lls_config_set_retries": (ctypes.c_int, [p, ctypes.c_int]),
        "lls_config_set_timeouts": (ctypes.c_int, [p, ctypes.c_int, ctypes.c_int, ctypes.c_int]),
        "lls_config_error": (ctypes.POINTER(Error), [p]),
        "lls_options_new": (p, []),
        "lls_options_free": (None, [p]),
        "lls_options_set_tools": (ctypes.c_int, [p, ctypes.c_char_p]),
        "lls_options_set_assemble_reply": (None, [p, ctypes.c_int]),
        "lls_client_new": (p, [p]),
        "lls_client_free": (None, [p]),
        "lls_client_stream_prompt": (p, [p, ctypes.c_char_p, p]),
        "lls_client_stream_messages": (p, [p, ctypes.c_char_p, p]),
        "lls_stream_free": (None, [p]),
        "lls_stream_poll": (ctypes.c_int, [p, ctypes.POINTER(ctypes.POINTER(Event))]),
        "lls_stream_next_chunk": (p, [p, ctypes.POINTER(ctypes.c_size_t)]),
        "lls_stream_next_event": (ctypes.POINTER(Event), [p]),
        "lls_stream_cancel": (None, [p]),
        "lls_stream_error": (ctypes.POINTER(Error), [p]),
        "lls_stream_stats": (ctypes.c_int, [p, ctypes.POINTER(Stats)]),
        "lls_stream_reply_json": (ctypes.c_char_p, [p, ctypes.POINTER(ctypes.c_size_t)]),
        "lls_stream_reply_text": (ctypes.c_char_p, [p, ctypes.POINTER(ctypes.c_size_t)]),
    }
    for name, (result, arguments) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = result, arguments
    return lib


lib = load(sys.argv[1])
failed = False


def check(ok, what):
    global failed
    print(("ok   - " if ok else "FAIL - ") + what)
    failed = failed or not ok


def client_of(base_url=None):
    config = lib.lls_config_new()
    if base_url:
        lib.lls_config_from_env(config, None)  # no .env here: the defaults
        lib.lls_config_set_base_url(config, base_url.encode())
        lib.lls_config_set_retries(config, 0)
        lib.lls_config_set_timeouts(config, 10000, 120000, 0)
    assert lib.lls_config_error(config).contents.code == LLS_OK
    client = lib.lls_client_new(config)
    lib.lls_config_free(config)
    return client


def chunks(stream):
    size = ctypes.c_size_t()
    text = b""
    while True:
        chunk = lib.lls_stream_next_chunk(stream, ctypes.byref(size))
        if not chunk:
            return text.decode()
        text += ctypes.string_at(chunk, size.value)


def stub_prompt():
    client = client_of()
    options = lib.lls_options_new()
    lib.lls_options_set_assemble_reply(options, 1)
    stream = lib.lls_client_stream_prompt(client, "运动鞋".encode(), options)
    text = chunks(stream)
    check("stub mode" in text and "运动鞋" in text, "stub: the text, UTF-8 kept, names the prompt")
    reply = json.loads(lib.lls_stream_reply_json(stream, None).decode())
    check(reply == {"role": "assistant", "content": text}, "stub: the reply as JSON is the text")
    check(lib.lls_stream_reply_text(stream, None).decode() == text, "stub: the reply's text")
    stats = Stats()
    check(lib.lls_stream_stats(stream, ctypes.byref(stats)) == LLS_OK and stats.chunks > 1 and
          stats.finish_reason.bytes() == b"stop" and 0 <= stats.first_byte_ms <= stats.first_chunk_ms, "stub: stats")
    lib.lls_stream_free(stream)
    lib.lls_options_free(options)
    lib.lls_client_free(client)


def stub_tool_call():
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"sku": {"type": "string"}, "count": {"type": "integer"}}}}}]
    client = client_of()
    options = lib.lls_options_new()
    check(lib.lls_options_set_tools(options, json.dumps(tools).encode()) == LLS_OK, "tools: accepted")
    lib.lls_options_set_assemble_reply(options, 1)
    stream = lib.lls_client_stream_prompt(client, b"AB-12", options)
    arguments, finish = b"", None
    while True:
        event = lib.lls_stream_next_event(stream)
        if not event:
            break
        e = event.contents
        if e.type == EVENT_TOOL_CALL and e.tool_arguments.data:
            arguments += e.tool_arguments.bytes()
        if e.type == EVENT_FINISH:
            finish = e.text.bytes()
    check(json.loads(arguments) == {"sku": "AB-12", "count": 1} and finish == b"tool_calls",
          "tools: the call's arguments from its fragments, finish reason tool_calls")
    reply = json.loads(lib.lls_stream_reply_json(stream, None).decode())
    call = reply["tool_calls"][0]
    check(call["id"] == "call_stub_1" and call["function"]["name"] == "lookup", "tools: the reply carries the call")
    lib.lls_stream_free(stream)
    lib.lls_options_free(options)
    lib.lls_client_free(client)


def stub_conversation_polled():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Shoes?"}]
    client = client_of()
    stream = lib.lls_client_stream_messages(client, json.dumps(messages).encode(), None)
    event = ctypes.POINTER(Event)()
    text, status = b"", POLL_PENDING
    for _ in range(100000):  # frames
        status = lib.lls_stream_poll(stream, ctypes.byref(event))
        if status == POLL_EVENT and event.contents.type == EVENT_CONTENT:
            text += event.contents.text.bytes()
        elif status == POLL_PENDING:
            time.sleep(0.001)
        elif status != POLL_EVENT:
            break
    check(status == POLL_DONE and "Shoes?" in text.decode(), "conversation: polled to the end, the last turn quoted")
    lib.lls_stream_free(stream)
    lib.lls_client_free(client)


def error_of(stream):
    while lib.lls_stream_next_chunk(stream, None):
        pass
    return lib.lls_stream_error(stream).contents


def loopback():
    client = client_of(os.environ["LLS_TEST_URL"])
    stream = lib.lls_client_stream_prompt(client, b"Hello", None)
    check(chunks(stream) == "Hello! How can I assist you today? 😊" and error_of(stream).code == LLS_OK,
          "loopback: the recorded reply")
    lib.lls_stream_free(stream)
    lib.lls_client_free(client)

    client = client_of(os.environ["LLS_TEST_ERROR_URL"])
    stream = lib.lls_client_stream_prompt(client, b"Hello", None)
    error = error_of(stream)
    check(error.code == LLS_HTTP_STATUS and error.http_status == 401 and b"Invalid API key" in error.message,
          "loopback: HTTP 401 with the server's message")
    lib.lls_stream_free(stream)
    lib.lls_client_free(client)

    client = client_of("ftp://example.com/v1")
    stream = lib.lls_client_stream_prompt(client, b"Hello", None)
    check(error_of(stream).code == LLS_INVALID_CONFIG, "a bad base URL: LLS_INVALID_CONFIG")
    lib.lls_stream_free(stream)
    lib.lls_client_free(client)


def cancel_from_a_thread():
    client = client_of(os.environ["LLS_TEST_SILENT_URL"])
    stream = lib.lls_client_stream_prompt(client, b"Hello", None)
    canceller = threading.Timer(0.1, lib.lls_stream_cancel, args=(stream,))
    canceller.start()
    chunk = lib.lls_stream_next_chunk(stream, None)  # blocked: the server sends nothing; ctypes drops the GIL
    canceller.join()
    check(chunk is None and lib.lls_stream_error(stream).contents.code == LLS_CANCELLED,
          "cancel: from another thread, it ends the blocked read with LLS_CANCELLED")
    lib.lls_stream_free(stream)
    lib.lls_client_free(client)


check(lib.lls_version().startswith(b"llm_stream "), "the library loads: " + lib.lls_version().decode())
stub_prompt()
stub_tool_call()
stub_conversation_polled()
loopback()
cancel_from_a_thread()
sys.exit(1 if failed else 0)
