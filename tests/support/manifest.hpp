// tests/data/streams/manifest.json: what each recorded stream must decode to, read with the library's own
// validating cursor (so include llm_stream.hpp with LLM_STREAM_INTERNALS first, then doctest), and
// add_event() to gather a stream's events into the same shape for comparison.
#ifndef LLM_STREAM_TEST_MANIFEST_HPP
#define LLM_STREAM_TEST_MANIFEST_HPP

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "test_data.hpp"

namespace llm_test {

inline const std::string kStreamsDir = std::string(LLM_STREAM_TEST_DATA_DIR) + "/streams";

/* ---------------------------------------------------------------------------------------------
   What a stream decodes to
   --------------------------------------------------------------------------------------------- */

struct ToolCall {
    int index = 0;
    std::string id, name, arguments;
    bool operator==(const ToolCall& o) const {
        return index == o.index && id == o.id && name == o.name && arguments == o.arguments;
    }
};

struct UsageCounts {
    std::int64_t prompt = 0, completion = 0, total = 0;
    bool operator==(const UsageCounts& o) const {
        return prompt == o.prompt && completion == o.completion && total == o.total;
    }
};

struct Outcome {
    std::string content;
    std::string reasoning;
    std::vector<ToolCall> tool_calls;  // ordered by index
    std::optional<std::string> finish_reason;
    std::optional<std::string> raw_finish_reason;  // the provider's own value
    std::optional<UsageCounts> usage;
    std::optional<std::string> error;  // a mid-stream error: the server's message
    bool operator==(const Outcome& o) const {
        return content == o.content && reasoning == o.reasoning && tool_calls == o.tool_calls &&
               finish_reason == o.finish_reason && raw_finish_reason == o.raw_finish_reason && usage == o.usage;
    }  // `error` is checked on its own: the decoded message adds the error's type to the server's text
};

inline std::string describe(const Outcome& o) {
    std::ostringstream s;
    s << "content=[" << o.content << "] reasoning=[" << o.reasoning << "] tool_calls=" << o.tool_calls.size();
    for (const ToolCall& t : o.tool_calls)
        s << " {" << t.index << "," << t.id << "," << t.name << ",[" << t.arguments << "]}";
    s << " finish=" << (o.finish_reason ? "[" + *o.finish_reason + "]" : std::string("none"));
    s << " raw=" << (o.raw_finish_reason ? "[" + *o.raw_finish_reason + "]" : std::string("none"));
    if (o.error) s << " error=[" << *o.error << "]";
    if (o.usage) s << " usage=" << o.usage->prompt << "/" << o.usage->completion << "/" << o.usage->total;
    else s << " usage=none";
    return s.str();
}

struct Entry {
    std::string file;
    llm_stream::Api api = llm_stream::Api::openai;
    Outcome expected;
};

/* Adds one event to what a stream decoded to: text appended, a tool call's id and name from the first
   fragment that has them and its arguments concatenated, the last finish reason and usage. */
inline void add_event(Outcome& outcome, const llm_stream::Event& e) {
    switch (e.type) {
    case llm_stream::EventType::content: outcome.content.append(e.text); break;
    case llm_stream::EventType::reasoning: outcome.reasoning.append(e.text); break;
    case llm_stream::EventType::tool_call: {
        const llm_stream::ToolCallDelta& t = e.tool_call;
        auto it = std::find_if(outcome.tool_calls.begin(), outcome.tool_calls.end(),
                               [&](const ToolCall& c) { return c.index == t.index; });
        if (it == outcome.tool_calls.end()) {
            ToolCall c;
            c.index = t.index;
            it = outcome.tool_calls.insert(
                std::upper_bound(outcome.tool_calls.begin(), outcome.tool_calls.end(), c,
                                 [](const ToolCall& a, const ToolCall& b) { return a.index < b.index; }),
                c);
        }
        if (t.id && it->id.empty()) it->id = std::string(*t.id);
        if (t.name && it->name.empty()) it->name = std::string(*t.name);
        if (t.arguments) it->arguments.append(*t.arguments);
        break;
    }
    case llm_stream::EventType::finish:
        outcome.finish_reason = std::string(e.text);
        outcome.raw_finish_reason = std::string(e.raw_reason);
        break;
    case llm_stream::EventType::usage:
        outcome.usage = UsageCounts{e.usage.prompt_tokens, e.usage.completion_tokens, e.usage.total_tokens};
        break;
    }
}

namespace manifest_reader {

using JsonCursor = llm_stream::detail::JsonCursor;
using JsonSpan = llm_stream::detail::JsonSpan;

inline std::string decode(const JsonSpan& s) {
    std::string out(s.size(), '\0');
    if (s.size()) out.resize(llm_stream::detail::json_decode_string(s.begin, s.end, &out[0]));
    return out;
}

inline bool read_string(JsonCursor& c, std::string& out) {
    if (!c.at('"')) return c.fail("expected a string");
    JsonSpan span;
    if (!c.string(span)) return false;
    out = decode(span);
    return true;
}

inline bool read_integer(JsonCursor& c, std::int64_t& out) {
    bool is_int = false;
    if (!c.number(&out, &is_int)) return false;
    return is_int || c.fail("expected an integer");
}

inline bool read_optional_string(JsonCursor& c, std::optional<std::string>& out) {
    if (c.at('n')) {
        out.reset();
        return c.literal("null", 4);
    }
    std::string s;
    if (!read_string(c, s)) return false;
    out = s;
    return true;
}

inline bool read_usage(JsonCursor& c, int depth, std::optional<UsageCounts>& out) {
    if (c.at('n')) {
        out.reset();
        return c.literal("null", 4);
    }
    if (!c.at('{')) return c.fail("usage must be an object or null");
    UsageCounts u;
    const bool ok = c.object(depth + 1, [&](const JsonSpan& key, int dd) {
        const std::string k = decode(key);
        if (k == "prompt_tokens") return read_integer(c, u.prompt);
        if (k == "completion_tokens") return read_integer(c, u.completion);
        if (k == "total_tokens") return read_integer(c, u.total);
        return c.skip_value(dd);
    });
    if (ok) out = u;
    return ok;
}

inline bool read_tool_calls(JsonCursor& c, int depth, std::vector<ToolCall>& out) {
    if (!c.at('[')) return c.fail("tool_calls must be an array");
    return c.array(depth + 1, [&](int dd) {
        if (!c.at('{')) return c.fail("a tool call must be an object");
        ToolCall t;
        const bool ok = c.object(dd + 1, [&](const JsonSpan& key, int ddd) {
            const std::string k = decode(key);
            if (k == "index") {
                std::int64_t i = 0;
                if (!read_integer(c, i)) return false;
                t.index = static_cast<int>(i);
                return true;
            }
            if (k == "id") return read_string(c, t.id);
            if (k == "name") return read_string(c, t.name);
            if (k == "arguments") return read_string(c, t.arguments);
            return c.skip_value(ddd);
        });
        if (ok) out.push_back(t);
        return ok;
    });
}

/* A mid-stream error's message, from {"code": "server_error", "message": ...} (or null). */
inline bool read_error(JsonCursor& c, int depth, std::optional<std::string>& out) {
    if (c.at('n')) {
        out.reset();
        return c.literal("null", 4);
    }
    if (!c.at('{')) return c.fail("error must be an object or null");
    std::string message, code;
    const bool ok = c.object(depth + 1, [&](const JsonSpan& key, int dd) {
        const std::string k = decode(key);
        if (k == "message") return read_string(c, message);
        if (k == "code") return read_string(c, code);
        return c.skip_value(dd);
    });
    if (ok && code != "server_error") return c.fail("an expected error's code must be server_error");
    out = message;
    return ok;
}

inline bool read_expected(JsonCursor& c, int depth, Outcome& out, int& fields) {
    if (!c.at('{')) return c.fail("expected must be an object");
    return c.object(depth + 1, [&](const JsonSpan& key, int dd) {
        const std::string k = decode(key);
        ++fields;
        if (k == "content") return read_string(c, out.content);
        if (k == "reasoning") return read_string(c, out.reasoning);
        if (k == "tool_calls") return read_tool_calls(c, dd, out.tool_calls);
        if (k == "finish_reason") return read_optional_string(c, out.finish_reason);
        if (k == "usage") return read_usage(c, dd, out.usage);
        --fields;  // the optional ones (APIs other than openai):
        if (k == "raw_finish_reason") return read_optional_string(c, out.raw_finish_reason);
        if (k == "error") return read_error(c, dd, out.error);
        return c.skip_value(dd);
    });
}

}  // namespace manifest_reader

inline bool parse_manifest(std::string_view text, std::vector<Entry>& entries, std::string& why) {
    using namespace manifest_reader;
    if (const llm_stream::Error e = llm_stream::detail::check_json(text)) {
        why = "manifest.json is not valid JSON: " + e.message;
        return false;
    }
    JsonCursor c(text.data(), text.data() + text.size());
    c.skip_ws();
    if (!c.at('[')) {
        why = "manifest.json must be an array";
        return false;
    }
    const bool ok = c.array(1, [&](int depth) {
        if (!c.at('{')) return c.fail("an entry must be an object");
        Entry e;
        bool have_file = false;
        int expected_fields = -1;
        const bool entry_ok = c.object(depth + 1, [&](const JsonSpan& key, int dd) {
            const std::string k = decode(key);
            if (k == "file") {
                have_file = true;
                return read_string(c, e.file);
            }
            if (k == "expected") {
                expected_fields = 0;
                return read_expected(c, dd, e.expected, expected_fields);
            }
            if (k == "api") {
                std::string name;
                return read_string(c, name) && (!llm_stream::parse_api(name, e.api) || c.fail("unknown api"));
            }
            return c.skip_value(dd);
        });
        if (!entry_ok) return false;
        if (!have_file) return c.fail("an entry has no file");
        if (expected_fields != 5) return c.fail("an entry's expected needs all five fields");
        // Chat completions' finish reasons are the vocabulary: the raw value is the same.
        if (e.api == llm_stream::Api::openai && !e.expected.raw_finish_reason)
            e.expected.raw_finish_reason = e.expected.finish_reason;
        entries.push_back(e);
        return true;
    });
    if (!ok) {
        why = std::string("manifest.json: ") + c.why + " at byte " + std::to_string(c.p - c.start);
        return false;
    }
    return true;
}

inline const std::vector<Entry>& manifest() {
    static const std::vector<Entry> entries = [] {
        std::vector<Entry> out;
        std::string text, why;
        if (!read_file(kStreamsDir + "/manifest.json", text)) {
            std::fprintf(stderr, "cannot read %s/manifest.json\n", kStreamsDir.c_str());
            return out;
        }
        if (!parse_manifest(text, out, why)) {
            std::fprintf(stderr, "%s\n", why.c_str());
            out.clear();
        }
        return out;
    }();
    return entries;
}

}  // namespace llm_test

namespace doctest {
template <> struct StringMaker<llm_test::Outcome> {
    static String convert(const llm_test::Outcome& o) { return llm_test::describe(o).c_str(); }
};
}  // namespace doctest

#endif
