// The C ABI (llm_stream_c.h) from C# through P/Invoke, as Unity loads a native plugin: [DllImport] of
// "llm_stream_c" (libllm_stream_c.so on the library path). Stub mode (chunks, events, the reply as
// JSON), and through tests/capi/run.sh the loopback servers (LLS_TEST_URL, LLS_TEST_ERROR_URL,
// LLS_TEST_SILENT_URL): a recorded stream, an HTTP error, a blocked read cancelled from another thread.
//
//   mcs -out:capi_test.exe tests/capi/capi_test.cs && LD_LIBRARY_PATH=dir/of/the/library mono capi_test.exe
using System;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

static class Native {
    const string Library = "llm_stream_c";

    [StructLayout(LayoutKind.Sequential)]
    public struct LlsString {
        public IntPtr data;
        public UIntPtr size;
        public string Text() { return data == IntPtr.Zero ? null : Utf8(data, (int)size.ToUInt64()); }
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct LlsError {
        public int code;
        public int http_status;
        public IntPtr message;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct LlsEvent {
        public int type;
        public int choice;
        public LlsString text, raw_reason, signature;
        public int tool_index;
        public LlsString tool_id, tool_name, tool_arguments, tool_signature;
        public long prompt_tokens, completion_tokens, total_tokens;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct LlsStats {
        public double first_byte_ms, first_chunk_ms, total_ms;
        public UIntPtr chunks, chars, content_bytes, received_bytes, events, skipped_events;
        public int attempts, has_usage;
        public long prompt_tokens, completion_tokens, total_tokens;
        public LlsString finish_reason;
    }

    // Strings to the library: NUL-terminated UTF-8 (Mono's default LPStr is not UTF-8 everywhere).
    public static byte[] Z(string s) { return Encoding.UTF8.GetBytes(s + "\0"); }

    public static string Utf8(IntPtr data, int size) {
        byte[] bytes = new byte[size];
        Marshal.Copy(data, bytes, 0, size);
        return Encoding.UTF8.GetString(bytes);
    }

    public static string Utf8z(IntPtr data) {
        int size = 0;
        while (Marshal.ReadByte(data, size) != 0) ++size;
        return Utf8(data, size);
    }

    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern IntPtr lls_version();
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern IntPtr lls_config_new();
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern void lls_config_free(IntPtr config);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern int lls_config_set_base_url(IntPtr config, byte[] url);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern int lls_config_set_retries(IntPtr config, int retries);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern int lls_config_set_timeouts(IntPtr config, int connect_ms, int read_ms, int deadline_ms);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern IntPtr lls_options_new();
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern void lls_options_free(IntPtr options);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern int lls_options_set_system(IntPtr options, byte[] text);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern void lls_options_set_assemble_reply(IntPtr options, int assemble);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern IntPtr lls_client_new(IntPtr config);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern void lls_client_free(IntPtr client);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern IntPtr lls_client_stream_prompt(IntPtr client, byte[] prompt, IntPtr options);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern void lls_stream_free(IntPtr stream);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern int lls_stream_poll(IntPtr stream, out IntPtr evt);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern IntPtr lls_stream_next_chunk(IntPtr stream, out UIntPtr size);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern IntPtr lls_stream_next_event(IntPtr stream);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern void lls_stream_cancel(IntPtr stream);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern IntPtr lls_stream_error(IntPtr stream);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern int lls_stream_stats(IntPtr stream, out LlsStats stats);
    [DllImport(Library, CallingConvention = CallingConvention.Cdecl)] public static extern IntPtr lls_stream_reply_json(IntPtr stream, out UIntPtr size);
}

static class CapiTest {
    const int LLS_OK = 0, LLS_HTTP_STATUS = 7, LLS_CANCELLED = 11;
    const int EVENT_CONTENT = 0, EVENT_FINISH = 3, EVENT_USAGE = 4;
    const int POLL_PENDING = 0, POLL_EVENT = 1, POLL_DONE = 2;
    static bool failed;

    static void Check(bool ok, string what) {
        Console.WriteLine((ok ? "ok   - " : "FAIL - ") + what);
        if (!ok) failed = true;
    }

    static IntPtr Client(string baseUrl) {
        IntPtr config = Native.lls_config_new();
        if (baseUrl != null) {
            Native.lls_config_set_base_url(config, Native.Z(baseUrl));
            Native.lls_config_set_retries(config, 0);
            Native.lls_config_set_timeouts(config, 10000, 120000, 0);
        }
        IntPtr client = Native.lls_client_new(config);
        Native.lls_config_free(config);
        return client;
    }

    static string Chunks(IntPtr stream) {
        UIntPtr size;
        IntPtr chunk;
        var bytes = new System.Collections.Generic.List<byte>();
        while ((chunk = Native.lls_stream_next_chunk(stream, out size)) != IntPtr.Zero) {
            byte[] piece = new byte[(int)size.ToUInt64()];
            Marshal.Copy(chunk, piece, 0, piece.Length);
            bytes.AddRange(piece);  // a character may be split between chunks: decode the whole
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    static Native.LlsError Error(IntPtr stream) {
        return (Native.LlsError)Marshal.PtrToStructure(Native.lls_stream_error(stream), typeof(Native.LlsError));
    }

    static void StubPrompt() {
        IntPtr client = Client(null);
        IntPtr options = Native.lls_options_new();
        Native.lls_options_set_system(options, Native.Z("Be brief."));
        Native.lls_options_set_assemble_reply(options, 1);
        IntPtr stream = Native.lls_client_stream_prompt(client, Native.Z("跑鞋"), options);
        string text = Chunks(stream);
        Check(text.Contains("stub mode") && text.Contains("跑鞋") && Error(stream).code == LLS_OK,
              "stub: the text, UTF-8 both ways");
        UIntPtr size;
        IntPtr json = Native.lls_stream_reply_json(stream, out size);
        Check(Native.Utf8(json, (int)size.ToUInt64()).StartsWith("{\"role\":\"assistant\",\"content\":\"你好"),
              "stub: the reply as JSON");
        Native.LlsStats stats;
        Check(Native.lls_stream_stats(stream, out stats) == LLS_OK && stats.has_usage != 0 &&
              stats.chunks.ToUInt64() > 1 && stats.finish_reason.Text() == "stop" &&
              stats.first_byte_ms >= 0 && stats.first_chunk_ms >= stats.first_byte_ms, "stub: stats");
        Native.lls_stream_free(stream);
        Native.lls_options_free(options);
        Native.lls_client_free(client);
    }

    // Typed events, blocking and then polled as a game's frame loop would.
    static void StubEvents() {
        IntPtr client = Client(null);
        IntPtr stream = Native.lls_client_stream_prompt(client, Native.Z("hi"), IntPtr.Zero);
        string finish = null;
        IntPtr e;
        while ((e = Native.lls_stream_next_event(stream)) != IntPtr.Zero) {
            var evt = (Native.LlsEvent)Marshal.PtrToStructure(e, typeof(Native.LlsEvent));
            if (evt.type == EVENT_FINISH) finish = evt.text.Text();
        }
        Check(finish == "stop", "events: the finish reason");
        Native.lls_stream_free(stream);

        stream = Native.lls_client_stream_prompt(client, Native.Z("hi"), IntPtr.Zero);
        int status = POLL_PENDING, usage = 0;
        var bytes = new System.Collections.Generic.List<byte>();
        for (int frame = 0; frame < 100000 && (status == POLL_PENDING || status == POLL_EVENT); ++frame) {
            status = Native.lls_stream_poll(stream, out e);
            if (status == POLL_PENDING) Thread.Sleep(1);
            if (status != POLL_EVENT) continue;
            var evt = (Native.LlsEvent)Marshal.PtrToStructure(e, typeof(Native.LlsEvent));
            if (evt.type == EVENT_CONTENT) {
                byte[] piece = new byte[(int)evt.text.size.ToUInt64()];
                Marshal.Copy(evt.text.data, piece, 0, piece.Length);
                bytes.AddRange(piece);
            }
            if (evt.type == EVENT_USAGE && evt.total_tokens > 0) ++usage;
        }
        Check(status == POLL_DONE && usage == 1 && Encoding.UTF8.GetString(bytes.ToArray()).Contains("“hi”"),
              "poll: a frame loop reads the whole reply and its usage");
        Native.lls_stream_free(stream);
        Native.lls_client_free(client);
    }

    static void Loopback() {
        IntPtr client = Client(Environment.GetEnvironmentVariable("LLS_TEST_URL"));
        IntPtr stream = Native.lls_client_stream_prompt(client, Native.Z("Hello"), IntPtr.Zero);
        Check(Chunks(stream) == "Hello! How can I assist you today? 😊" && Error(stream).code == LLS_OK,
              "loopback: the recorded reply");
        Native.lls_stream_free(stream);
        Native.lls_client_free(client);

        client = Client(Environment.GetEnvironmentVariable("LLS_TEST_ERROR_URL"));
        stream = Native.lls_client_stream_prompt(client, Native.Z("Hello"), IntPtr.Zero);
        Chunks(stream);
        Native.LlsError error = Error(stream);
        Check(error.code == LLS_HTTP_STATUS && error.http_status == 401 && Native.Utf8z(error.message).Contains("Invalid API key"),
              "loopback: HTTP 401 with the server's message");
        Native.lls_stream_free(stream);
        Native.lls_client_free(client);
    }

    static void CancelFromAThread() {
        IntPtr client = Client(Environment.GetEnvironmentVariable("LLS_TEST_SILENT_URL"));
        IntPtr stream = Native.lls_client_stream_prompt(client, Native.Z("Hello"), IntPtr.Zero);
        var canceller = new Thread(() => { Thread.Sleep(100); Native.lls_stream_cancel(stream); });
        canceller.Start();
        UIntPtr size;
        IntPtr chunk = Native.lls_stream_next_chunk(stream, out size);  // blocked: the server sends nothing
        canceller.Join();
        Check(chunk == IntPtr.Zero && Error(stream).code == LLS_CANCELLED,
              "cancel: from another thread, it ends the blocked read with LLS_CANCELLED");
        Native.lls_stream_free(stream);
        Native.lls_client_free(client);
    }

    static int Main() {
        string version = Native.Utf8z(Native.lls_version());
        Check(version.StartsWith("llm_stream "), "the plugin loads: " + version);
        StubPrompt();
        StubEvents();
        Loopback();
        CancelFromAThread();
        return failed ? 1 : 0;
    }
}
