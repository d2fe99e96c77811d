// The JSON layer: RFC 8259 validation (detail::check_json and the validating cursor under
// detail::DeltaExtractor), the chat.completion.chunk delta extractor, string decoding (escapes,
// surrogates, invalid UTF-8), and the writer used for request bodies.
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>
#include "support/known_shape.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace d = llm_stream::detail;
using llm_stream::EventType;
using Result = d::DeltaExtractor::Result;

namespace {

/* ---------------------------------------------------------------------------------------------
   Helpers
   --------------------------------------------------------------------------------------------- */

// Input is copied into a heap block of exactly its size, so AddressSanitizer sees any read past
// the end (a std::string has a NUL and often spare capacity behind its last byte).
class ExactBytes {
public:
    explicit ExactBytes(std::string_view s) : size_(s.size()), data_(new char[s.size() ? s.size() : 1]) {
        if (size_) std::memcpy(data_.get(), s.data(), size_);
    }
    std::string_view view() const { return {data_.get(), size_}; }

private:
    std::size_t size_;
    std::unique_ptr<char[]> data_;
};

bool valid(std::string_view text, std::string* why_out = nullptr) {
    ExactBytes bytes(text);
    const llm_stream::Error e = d::check_json(bytes.view());
    if (why_out) *why_out = e.message;
    return !e;
}

// An event with its views copied out, so it outlives the extractor's buffers.
struct Ev {
    EventType type = EventType::content;
    int choice = 0;
    std::string text;
    int index = 0;
    std::optional<std::string> id, name, arguments;
    llm_stream::Usage usage;
};

std::optional<std::string> copy_opt(const std::optional<std::string_view>& v) {
    if (!v) return std::nullopt;
    return std::string(*v);
}

struct Extraction {
    Result result = Result::invalid;
    std::vector<Ev> events;
    std::string why;
    std::size_t offset = 0;
    std::string message;
    bool all_text_valid_utf8 = true;  // every text view of every event

    std::size_t count(EventType t) const {
        std::size_t n = 0;
        for (const Ev& e : events) n += e.type == t;
        return n;
    }
    // Text of the only event of type t, or "<none>" / "<several>" (never crashes a failing test).
    std::string only(EventType t) const {
        std::string found = "<none>";
        std::size_t n = 0;
        for (const Ev& e : events)
            if (e.type == t) { found = e.text; ++n; }
        return n > 1 ? std::string("<several>") : found;
    }
    const Ev* first(EventType t) const {
        for (const Ev& e : events)
            if (e.type == t) return &e;
        return nullptr;
    }
    std::vector<const Ev*> all(EventType t) const {
        std::vector<const Ev*> out;
        for (const Ev& e : events)
            if (e.type == t) out.push_back(&e);
        return out;
    }
};

bool view_utf8_ok(std::string_view v) { return d::utf8_valid(v.data(), v.data() + v.size()); }

Extraction run_extractor(d::DeltaExtractor& x, std::string_view json) {
    ExactBytes bytes(json);
    Extraction out;
    out.result = x.extract(bytes.view());
    for (const llm_stream::Event& e : x.events()) {
        Ev c;
        c.type = e.type;
        c.choice = e.choice;
        c.text = std::string(e.text);
        c.index = e.tool_call.index;
        c.id = copy_opt(e.tool_call.id);
        c.name = copy_opt(e.tool_call.name);
        c.arguments = copy_opt(e.tool_call.arguments);
        c.usage = e.usage;
        if (!view_utf8_ok(e.text)) out.all_text_valid_utf8 = false;
        for (const auto& v : {e.tool_call.id, e.tool_call.name, e.tool_call.arguments})
            if (v && !view_utf8_ok(*v)) out.all_text_valid_utf8 = false;
        out.events.push_back(std::move(c));
    }
    if (out.result == Result::invalid) out.why = x.error().message;
    out.offset = x.error_offset();
    out.message = std::string(x.server_message());
    return out;
}

// One extractor reused for every call, as a stream reuses it: state must never leak across events.
Extraction extract(std::string_view json) {
    static d::DeltaExtractor shared;
    return run_extractor(shared, json);
}

const char* name_of(Result r) {
    switch (r) {
    case Result::ok: return "ok";
    case Result::invalid: return "invalid";
    case Result::error_event: return "error_event";
    case Result::end: return "end";
    case Result::out_of_memory: return "out_of_memory";
    }
    return "?";
}

std::string replace_all(std::string text, std::string_view hole, std::string_view value) {
    for (std::size_t at = text.find(hole); at != std::string::npos; at = text.find(hole, at + value.size()))
        text.replace(at, hole.size(), value);
    return text;
}

std::string content_event(std::string_view content_json) {
    return "{\"choices\":[{\"index\":0,\"delta\":{\"content\":" + std::string(content_json) + "}}]}";
}

std::string decode_body(std::string_view body) {
    std::string out(body.size(), '\0');
    out.resize(d::json_decode_string(body.data(), body.data() + body.size(), &out[0]));
    return out;
}

/* An independent UTF-8 oracle written from RFC 3629 (decode, then check the value's range): the
   well-formed sequence starting at s[i] has length n > 0, else 0. */
std::size_t oracle_sequence(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    std::size_t n;
    std::uint32_t cp;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1Fu; }
    else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0Fu; }
    else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07u; }
    else return 0;
    if (i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k) {
        if ((b(i + k) & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (b(i + k) & 0x3Fu);
    }
    const std::uint32_t min_for_length[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_length[n]) return 0;            // overlong
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;      // surrogate
    if (cp > 0x10FFFF) return 0;                     // beyond Unicode
    return n;
}

std::string oracle_repair(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = oracle_sequence(s, i);
        if (n == 0) { ++i; continue; }
        out.append(s.substr(i, n));
        i += n;
    }
    return out;
}

bool oracle_valid(std::string_view s) { return oracle_repair(s) == s; }

std::string encode_cp(std::uint32_t cp) {
    char buf[4];
    return std::string(buf, d::utf8_encode(cp, buf));
}

const std::string kGrin = "\xF0\x9F\x98\x80";  // U+1F600

/* ---------------------------------------------------------------------------------------------
   The RFC 8259 table
   --------------------------------------------------------------------------------------------- */

struct Case {
    std::string text;
    bool ok;
};

std::vector<Case> rfc8259_table() {
    std::vector<Case> t = {
        // literals
        {"true", true}, {"false", true}, {"null", true},
        {"tru", false}, {"True", false}, {"NULL", false}, {"nul", false}, {"t", false}, {"truex", false},
        {"nulll", false}, {"undefined", false}, {"fals", false},
        // numbers
        {"0", true}, {"-0", true}, {"1", true}, {"-1", true}, {"123", true}, {"1.5", true},
        {"1.5e10", true}, {"1E+2", true}, {"1e-2", true}, {"-1.0e-5", true}, {"0.0", true}, {"0e0", true},
        {"1E2", true}, {"-0.0e-0", true}, {"9007199254740993", true},
        {"123456789012345678901234567890", true}, {"1e400", true}, {"-1e-400", true}, {"0.000001", true},
        {"01", false}, {"-01", false}, {"00", false}, {"-", false}, {"+1", false}, {".5", false},
        {"-.5", false}, {"1.", false}, {"1.e5", false}, {"1e", false}, {"1e+", false}, {"1E-", false},
        {"0x1", false}, {"0x10", false}, {"NaN", false}, {"-NaN", false}, {"Infinity", false},
        {"-Infinity", false}, {"1.5e", false}, {"--1", false}, {"1..2", false}, {"1e5.5", false},
        {"1 2", false}, {"- 1", false}, {"1.5.", false}, {"1e1e1", false}, {"0.e1", false},
        // strings
        {"\"\"", true}, {"\"abc\"", true}, {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", true},
        {"\"\\u0041\\u00e9\\uD83D\\uDE00\"", true}, {"\"\\uABCD\\uabcd\"", true},
        {"\"\\ud800\"", true},  // a lone surrogate escape is grammatical (RFC 8259 section 8.2)
        {"\"\\u0000\"", true}, {"\"a\x7F" "b\"", true}, {"\"\xC3\xA9\xE4\xBD\xA0" + kGrin + "\"", true},
        {"\"it's\"", true}, {"\"/\"", true}, {"\" \"", true},
        {"\"\\x41\"", false}, {"\"\\'\"", false}, {"\"\\a\"", false}, {"\"\\U0041\"", false},
        {"\"\\u12\"", false}, {"\"\\u12G4\"", false}, {"\"\\u\"", false}, {"\"\\u004\"", false},
        {"\"abc", false}, {"\"\\\"", false}, {"\"a\\", false}, {"\"", false}, {"\"\\", false},
        {"'single'", false}, {"\"a\tb\"", false}, {"\"a\nb\"", false}, {"\"a\rb\"", false},
        {std::string("\"a\0b\"", 5), false}, {"\"\x1F\"", false}, {"\"\x01\"", false},
        // arrays
        {"[]", true}, {"[ ]", true}, {"[1,2]", true}, {"[[]]", true}, {"[1,[2,[3]]]", true},
        {"[ \"a\" , {\"b\" : null} ]", true}, {"[true,false,null]", true},
        {"[", false}, {"[1", false}, {"[1,", false}, {"[1,]", false}, {"[,1]", false}, {"[1,,2]", false},
        {"[1 2]", false}, {"]", false}, {"[}", false}, {"[1}", false},
        // objects
        {"{}", true}, {"{ }", true}, {"{\"a\":1}", true}, {"{\"a\":{\"b\":[]}}", true},
        {"{\"a\":1,\"a\":2}", true},  // duplicate names: RFC 8259 says SHOULD be unique, not MUST
        {"{\"\":0}", true}, {"{ \"a\" : 1 , \"b\" : [ ] }", true}, {"{\"\\u0061\":1}", true},
        {"{", false}, {"{\"a\"", false}, {"{\"a\":", false}, {"{\"a\":1", false}, {"{\"a\":1,", false},
        {"{\"a\":1,}", false}, {"{,}", false}, {"{,\"a\":1}", false}, {"{\"a\" 1}", false},
        {"{\"a\",1}", false}, {"{\"a\"=1}", false}, {"{\"a\"::1}", false}, {"{a:1}", false},
        {"{'a':1}", false}, {"{\"a\":'b'}", false}, {"{1:1}", false}, {"{null:1}", false},
        {"{\"a\":1]", false}, {"{]", false}, {"}", false}, {"{\"a\":1 \"b\":2}", false},
        // comments are not JSON
        {"// c\n1", false}, {"/* c */ 1", false}, {"[1 /* c */]", false}, {"{\"a\":1} // c", false},
        {"# c\n1", false}, {"1 /**/", false},
        // whitespace: the four RFC 8259 characters only
        {" \t\r\n1 \t\r\n", true}, {"\n{}\n", true}, {"  [ 1 ,\t2 ]  ", true},
        {"\f1", false}, {"1\v", false}, {"\xC2\xA0" "1", false},
        // empty and trailing garbage
        {"", false}, {" ", false}, {"\n\t", false},
        {"1 x", false}, {"{} {}", false}, {"[]]", false}, {"{}}", false}, {"null,", false},
        {"\"a\"b", false}, {"\"a\" \"b\"", false}, {"true false", false}, {"{}x", false},
        {std::string("{}\0", 3), false},
    };
    return t;
}

// Templates that put a value where each part of the extractor reads one.
const char* const kValueTemplates[] = {
    "{\"x\":@}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":@}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":@,\"reasoning\":@}}]}",
    "{\"choices\":[{\"index\":@,\"delta\":{}}]}",
    "{\"choices\":[{\"index\":0,\"finish_reason\":@}]}",
    ("{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":@,\"id\":@,\"function\":{\"name\":@,"
     "\"arguments\":@}}]}}]}"),
    "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[@]}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":@}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"function\":@}]}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":@}]}",
    "{\"choices\":[@]}",
    "{\"choices\":@}",
    "{\"choices\":[],\"usage\":{\"prompt_tokens\":@,\"completion_tokens\":@,\"total_tokens\":@}}",
    "{\"choices\":[],\"usage\":@}",
    "{\"choices\":[{\"index\":0,\"usage\":@}]}",
    "{\"id\":@,\"choices\":[],\"object\":@}",
};
const char* const kErrorTemplates[] = {
    "{\"error\":{\"message\":@}}",
    "{\"error\":{\"code\":@}}",
    "{\"error\":{\"type\":@,\"param\":@}}",
};

}  // namespace

/* =============================================================================================
   RFC 8259 validation
   ============================================================================================= */

TEST_CASE("check_json: the RFC 8259 accept/reject table") {
    for (const Case& c : rfc8259_table()) {
        CAPTURE(c.text);
        std::string why;
        CHECK(valid(c.text, &why) == c.ok);
        if (!c.ok) CHECK_FALSE(why.empty());  // a rejection always says why
    }
}

TEST_CASE("check_json: every raw control character U+0000..U+001F is rejected inside a string; DEL is not") {
    for (int ch = 0; ch < 0x20; ++ch) {
        CAPTURE(ch);
        std::string s = "\"ab";
        s += static_cast<char>(ch);
        s += "cd\"";
        CHECK_FALSE(valid(s));
        // Also inside a member name and after an escape.
        CHECK_FALSE(valid("{" + s + ":1}"));
        CHECK_FALSE(valid("[\"\\n" + std::string(1, static_cast<char>(ch)) + "\"]"));
    }
    CHECK(valid("\"\x7F\""));
    CHECK_FALSE(d::check_json("[1]"));
    CHECK(d::check_json("[1").message.find("at byte 2") != std::string::npos);
    CHECK(valid("{\"\x7F\":\"\x7F\"}"));
    // Longer strings take a different (vectorised) path in the scanner: test controls at every offset.
    for (std::size_t at = 0; at < 40; ++at) {
        std::string body(40, 'x');
        body[at] = '\x1F';
        CAPTURE(at);
        CHECK_FALSE(valid("\"" + body + "\""));
        body[at] = '\x7F';
        CHECK(valid("\"" + body + "\""));
        body[at] = '\x20';
        CHECK(valid("\"" + body + "\""));
    }
}

TEST_CASE("check_json: strings that end at the very end of the input, at every length") {
    // The scanner reads 16 bytes at a time where it can: every length around that, with the input in
    // a block of exactly its size, so a read past the end would show under AddressSanitizer.
    for (std::size_t n = 0; n < 70; ++n) {
        const std::string body(n, 'x');
        CAPTURE(n);
        CHECK(valid("\"" + body + "\""));
        CHECK_FALSE(valid("\"" + body));
        CHECK_FALSE(valid("\"" + body + "\\"));
        CHECK_FALSE(valid("\"" + body + "\\u00"));
        CHECK(valid("\"" + body + "\\u00e9\""));
        CHECK(valid("[\"" + body + "\"]"));
        const Extraction x = extract(content_event("\"" + body + "\""));
        CHECK(x.result == Result::ok);
        CHECK(x.only(EventType::content) == (n ? body : std::string("<none>")));
    }
}

TEST_CASE("check_json: only the nine escapes of RFC 8259 are accepted") {
    const std::string allowed = "\"\\/bfnrt";
    for (int ch = 0; ch < 256; ++ch) {
        if (ch == 'u') continue;  // needs four hex digits, tested below
        const char c = static_cast<char>(ch);
        std::string s = "\"a\\";
        s += c;
        s += "b\"";
        CAPTURE(ch);
        CHECK(valid(s) == (allowed.find(c) != std::string::npos));
    }
    // \u takes exactly four hex digits of either case.
    for (const char* hex : {"0000", "ffff", "FFFF", "AbCd", "0009", "d834"}) {
        const std::string shown(hex); CAPTURE(shown);
        CHECK(valid(std::string("\"\\u") + hex + "\""));
    }
    for (const char* hex : {"", "0", "00", "000", "000g", "g000", "00 0", "-001", "+001", "0x00"}) {
        const std::string shown(hex); CAPTURE(shown);
        CHECK_FALSE(valid(std::string("\"\\u") + hex + "\""));
    }
    // Strings that end inside an escape.
    for (const char* s : {"\"\\", "\"\\u", "\"\\u0", "\"\\u00", "\"\\u004", "\"\\u0041", "\"\\n"}) {
        const std::string shown(s); CAPTURE(shown);
        CHECK_FALSE(valid(s));
    }
}

TEST_CASE("check_json: the nesting limit (detail::json_max_depth) is exact") {
    // Every array or object counts one level; json_max_depth levels are fine, one more is rejected.
    const int limit = d::json_max_depth;
    CHECK(limit > 2);
    auto arrays = [](int depth) { return std::string(static_cast<std::size_t>(depth), '[') +
                                         std::string(static_cast<std::size_t>(depth), ']'); };
    auto objects = [](int depth) {
        std::string s;
        for (int i = 0; i < depth; ++i) s += "{\"a\":";
        s += "1";
        for (int i = 0; i < depth; ++i) s += "}";
        // the innermost object holds the number: depth objects in all
        return s;
    };
    auto mixed = [](int depth) {
        std::string open, close;
        for (int i = 0; i < depth; ++i) {
            if (i % 2) { open += "{\"k\":"; close.insert(0, "}"); }
            else { open += "["; close.insert(0, "]"); }
        }
        return open + "0" + close;
    };
    CHECK(valid(arrays(limit)));
    CHECK_FALSE(valid(arrays(limit + 1)));
    CHECK(valid(objects(limit)));
    CHECK_FALSE(valid(objects(limit + 1)));
    CHECK(valid(mixed(limit)));
    CHECK_FALSE(valid(mixed(limit + 1)));
    std::string why;
    CHECK_FALSE(valid(arrays(limit + 1), &why));
    CHECK(why.find("deep") != std::string::npos);
    // Deep but wide is still fine: depth is not the number of containers.
    std::string wide = "[";
    for (int i = 0; i < 1000; ++i) wide += (i ? "," : "") + arrays(limit - 1);
    wide += "]";
    CHECK(valid(wide));
    // Hostile input: a very deep prefix is rejected at the limit without exhausting the stack.
    CHECK_FALSE(valid(std::string(1000000, '[')));
    CHECK_FALSE(valid(std::string(500000, '{') ));
    std::string deep_objects;
    for (int i = 0; i < 200000; ++i) deep_objects += "{\"a\":";
    CHECK_FALSE(valid(deep_objects));
}

/* A choice's index that is an integer outside 0..127 makes an event invalid (other values, such as
   1.5 or integers too large for 64 bits, are ignored). */
bool outside_choice_range(const char* tpl, const std::string& value) {
    if (std::string_view(tpl) != "{\"choices\":[{\"index\":@,\"delta\":{}}]}") return false;
    std::int64_t index = 0;
    bool is_int = false;
    d::JsonCursor c(value.data(), value.data() + value.size());
    c.skip_ws();
    return c.number(&index, &is_int) && is_int && (index < 0 || index >= d::max_choices);
}

TEST_CASE("DeltaExtractor: the RFC 8259 table holds wherever the extractor reads a value") {
    // A valid value anywhere in an event leaves it usable (ok, or error_event for "error" members);
    // an invalid one makes the whole event invalid, with a reason and no events.
    for (const Case& c : rfc8259_table()) {
        const bool blank = c.text.find_first_not_of(" \t\r\n") == std::string::npos;
        for (const char* tpl : kValueTemplates) {
            if (blank && std::strstr(tpl, "[@]")) continue;  // "[ ]" is a valid empty array
            const std::string json = replace_all(tpl, "@", c.text);
            CAPTURE(json);
            const Extraction x = extract(json);
            if (c.ok && !outside_choice_range(tpl, c.text)) {
                CHECK(x.result == Result::ok);
            } else {
                CHECK(x.result == Result::invalid);
                CHECK_FALSE(x.why.empty());
                CHECK(x.events.empty());
                CHECK(x.offset <= json.size());
            }
            CHECK(x.all_text_valid_utf8);
        }
        for (const char* tpl : kErrorTemplates) {
            const std::string json = replace_all(tpl, "@", c.text);
            CAPTURE(json);
            const Extraction x = extract(json);
            CHECK(x.result == (c.ok ? Result::error_event : Result::invalid));
            CHECK(x.events.empty());
        }
    }
}

TEST_CASE("DeltaExtractor: whole-event structure") {
    struct Top { const char* json; Result expected; };
    const Top cases[] = {
        {"{}", Result::ok},
        {" \t\r\n{\"choices\":[]}\r\n \t", Result::ok},  // surrounding whitespace is fine
        {"", Result::invalid},
        {"   ", Result::invalid},
        {"[]", Result::invalid},                     // top-level array
        {"[{\"choices\":[]}]", Result::invalid},
        {"\"{}\"", Result::invalid},                 // top-level string
        {"null", Result::invalid},
        {"1", Result::invalid},
        {"true", Result::invalid},
        {"{} {}", Result::invalid},                  // trailing garbage
        {"{}x", Result::invalid},
        {"{}]", Result::invalid},
        {"{},", Result::invalid},
        {"{\"choices\":[]},", Result::invalid},
        {"{\"choices\":[],}", Result::invalid},      // trailing comma
        {"{\"choices\" []}", Result::invalid},       // missing colon
        {"{'choices':[]}", Result::invalid},         // single quotes
        {"{\"choices\":[]} // done", Result::invalid},  // comment
        {"/**/{\"choices\":[]}", Result::invalid},
        {"{\"choices\":[]", Result::invalid},        // unterminated object
        {"{\"choices\":[", Result::invalid},         // unterminated array
        {"{\"choices\":[{\"delta\":{\"content\":\"abc", Result::invalid},  // unterminated string
        {"{\"a\":1,\"a\":2,\"choices\":[],\"choices\":[]}", Result::ok},  // duplicate names
    };
    for (const Top& c : cases) {
        const std::string json = c.json;
        CAPTURE(json);
        const Extraction x = extract(json);
        CHECK(name_of(x.result) == std::string(name_of(c.expected)));
        if (c.expected == Result::invalid) {
            CHECK_FALSE(x.why.empty());
            CHECK(x.events.empty());
        }
    }
}

TEST_CASE("DeltaExtractor: the nesting limit matches check_json's, counted from the event object") {
    const int limit = d::json_max_depth;
    auto nest = [](std::string_view prefix, std::string_view suffix, int arrays) {
        return std::string(prefix) + std::string(static_cast<std::size_t>(arrays), '[') +
               std::string(static_cast<std::size_t>(arrays), ']') + std::string(suffix);
    };
    // The event object is level 1, so a member may hold limit - 1 more levels.
    CHECK(extract(nest("{\"x\":", "}", limit - 1)).result == Result::ok);
    CHECK(extract(nest("{\"x\":", "}", limit)).result == Result::invalid);
    CHECK(valid(nest("{\"x\":", "}", limit - 1)));
    CHECK_FALSE(valid(nest("{\"x\":", "}", limit)));
    // Under choices[].delta.content there are already 4 levels (event, choices, choice, delta).
    const std::string pre = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":";
    const std::string post = "}}]}";
    CHECK(extract(nest(pre, post, limit - 4)).result == Result::ok);
    CHECK(extract(nest(pre, post, limit - 3)).result == Result::invalid);
    CHECK(valid(nest(pre, post, limit - 4)));
    CHECK_FALSE(valid(nest(pre, post, limit - 3)));
    // Tool calls: event, choices, choice, delta, tool_calls, call, function = 7 levels.
    const std::string tpre = "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"x\":";
    const std::string tpost = "}}]}}]}";
    CHECK(extract(nest(tpre, tpost, limit - 7)).result == Result::ok);
    CHECK(extract(nest(tpre, tpost, limit - 6)).result == Result::invalid);
    CHECK(valid(nest(tpre, tpost, limit - 7)));
    CHECK_FALSE(valid(nest(tpre, tpost, limit - 6)));
    // Usage and error objects are level 2.
    CHECK(extract(nest("{\"usage\":{\"x\":", "}}", limit - 2)).result == Result::ok);
    CHECK(extract(nest("{\"usage\":{\"x\":", "}}", limit - 1)).result == Result::invalid);
    CHECK(extract(nest("{\"error\":{\"x\":", "}}", limit - 2)).result == Result::error_event);
    CHECK(extract(nest("{\"error\":{\"x\":", "}}", limit - 1)).result == Result::invalid);
    // And a hostile one.
    CHECK(extract("{\"choices\":" + std::string(300000, '[')).result == Result::invalid);
}

TEST_CASE("DeltaExtractor and check_json agree on mutated events (fuzz)") {
    // Every byte-level mutation of real events: for object-shaped text, the extractor returns
    // invalid exactly when check_json rejects it, and whatever it returns is valid UTF-8.
    const std::vector<std::string> seeds = {
        "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi \\u00e9\\ud83d\\ude00\"},"
        "\"finish_reason\":null}],\"usage\":null}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_1\",\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\": [1, -2.5e3, true]}\"}}]},\"finish_reason\":\"tool_calls\"}]}",
        "{\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":-0,\"total_tokens\":1.5E+3}}",
        "{\"error\":{\"message\":\"Rate limit \\\"x\\\"\",\"type\":\"rate_limit_error\",\"code\":429}}",
        "{\"choices\":[{\"delta\":{\"reasoning_content\":\"\xE6\x80\x9D\",\"reasoning\":\"r\"},\"index\":0}]}",
    };
    const std::string alphabet = "{}[]:,\"\\/ untrfals0123456789-+.eE\t\n\x01\x7F\xC3\xA9\xFF";
    std::mt19937 rng(20260601u);
    int agreed = 0;
    for (int round = 0; round < 6000; ++round) {
        std::string s = seeds[static_cast<std::size_t>(rng() % seeds.size())];
        const int edits = 1 + static_cast<int>(rng() % 3);
        for (int e = 0; e < edits; ++e) {
            const std::size_t at = rng() % (s.size() + 1);
            const char c = alphabet[rng() % alphabet.size()];
            switch (rng() % 3) {
            case 0: if (at < s.size()) s[at] = c; break;
            case 1: s.insert(s.begin() + static_cast<std::ptrdiff_t>(at), c); break;
            default: if (at < s.size()) s.erase(at, 1); break;
            }
        }
        const bool v = valid(s);
        const Extraction x = extract(s);
        const bool object_shaped = !s.empty() && s.find_first_not_of(" \t\r\n") != std::string::npos &&
                                   s[s.find_first_not_of(" \t\r\n")] == '{';
        CAPTURE(s);
        if (object_shaped) {
            CHECK((x.result != Result::invalid) == v);
            agreed += (x.result != Result::invalid) == v;
        } else {
            CHECK(x.result == Result::invalid);
        }
        if (x.result == Result::invalid) CHECK(x.events.empty());
        CHECK(x.all_text_valid_utf8);
    }
    CHECK(agreed > 1000);
}

TEST_CASE("DeltaExtractor: a chunk shaped like the last one is read exactly as a fresh extractor reads it") {
    const std::vector<llm_test::ShapeSeed> seeds = {
        {R"({"id":"chatcmpl-CiKI","object":"chat.completion.chunk","created":1764680501,"model":"gpt-4.1",)"
         R"("system_fingerprint":"fp_1a97","usage":null,"choices":[{"index":0,"delta":{"content":)",
         R"("Hel")", R"(},"logprobs":null,"finish_reason":null}])", R"(,"obfuscation":"58LAb"})"},
        {R"({"choices":[{"delta":{"content":)", R"("\u00e9t\ud83d\ude00")", R"(,"role":null},"index":3}])", R"(,"usage":null} )"},
        {R"({"choices":[{"index":0,"delta":{"content":"a","content":)", R"("b")", R"(}}])", R"(,"id":"x"})"},
        // sglang 0.4.3: an empty finish reason (no finish) in every chunk, so in the shape
        {R"({"id":"6b1f","object":"chat.completion.chunk","created":1740000000,"model":"qwen","choices":[{"index":0,)"
         R"("delta":{"role":null,"content":)", R"("Hi")", R"(,"reasoning_content":null,"tool_calls":null},"logprobs":null,)"
         R"("finish_reason":"","matched_stop":null}])", R"(,"usage":null})"},
    };
    const std::vector<std::string> texts = {R"("")", R"("x")", R"("\"q\\")", R"("\ude00 ok")", R"("\u0041\n")",
                                            "\"\xC3\xA9\"", "\"\x01\"", "\"\xFF\"", R"("open)", R"("a""b")", "null", "12"};
    const std::vector<std::string> tails = {"}", R"(,"usage":{"prompt_tokens":1}})",
                                            R"(,"choices":[{"index":1,"delta":{"content":"z"}}]})",
                                            R"(,"error":{"message":"m"}})", ",}", "}}", R"(,"o":[1,{"p":"q"}]} )" "\n", ""};
    const int quick = llm_test::check_known_shape([] { return std::make_unique<d::DeltaExtractor>(); }, seeds, texts,
                                                  tails, 20000);
    CHECK(quick > 2000);
}

/* =============================================================================================
   DeltaExtractor: what it extracts
   ============================================================================================= */

TEST_CASE("DeltaExtractor: content, reasoning_content and reasoning") {
    SUBCASE("content") {
        const Extraction x = extract(content_event("\"Hello\""));
        CHECK(x.result == Result::ok);
        CHECK(x.events.size() == 1);
        if (x.events.size() == 1) {
            CHECK(x.events[0].type == EventType::content);
            CHECK(x.events[0].text == "Hello");
        }
    }
    SUBCASE("reasoning_content (DashScope, DeepSeek)") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{\"content\":null,\"reasoning_content\":\"think\"}}]}");
        CHECK(x.result == Result::ok);
        CHECK(x.events.size() == 1);
        CHECK(x.only(EventType::reasoning) == "think");
        CHECK(x.count(EventType::content) == 0);
    }
    SUBCASE("reasoning (OpenRouter, vLLM)") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"hmm\"}}]}");
        CHECK(x.result == Result::ok);
        CHECK(x.events.size() == 1);
        CHECK(x.only(EventType::reasoning) == "hmm");
    }
    SUBCASE("reasoning_content is preferred when both are present, in either order") {
        for (const char* json : {
                 "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"A\",\"reasoning\":\"B\"}}]}",
                 "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"B\",\"reasoning_content\":\"A\"}}]}"}) {
            const std::string shown(json); CAPTURE(shown);
            const Extraction x = extract(json);
            CHECK(x.result == Result::ok);
            CHECK(x.count(EventType::reasoning) == 1);
            CHECK(x.only(EventType::reasoning) == "A");
        }
    }
    SUBCASE("reasoning_content null falls back to reasoning") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":null,\"reasoning\":\"B\"}}]}");
        CHECK(x.only(EventType::reasoning) == "B");
    }
    SUBCASE("reasoning and content in one delta: both, reasoning first") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"C\",\"reasoning_content\":\"R\"}}]}");
        CHECK(x.result == Result::ok);
        CHECK(x.events.size() == 2);
        if (x.events.size() == 2) {
            CHECK(x.events[0].type == EventType::reasoning);
            CHECK(x.events[0].text == "R");
            CHECK(x.events[1].type == EventType::content);
            CHECK(x.events[1].text == "C");
        }
    }
    SUBCASE("any key order: index after delta, delta last, finish_reason first") {
        for (const char* json : {
                 "{\"choices\":[{\"delta\":{\"content\":\"x\"},\"index\":0}]}",
                 "{\"choices\":[{\"finish_reason\":null,\"logprobs\":null,\"index\":0,\"delta\":{\"content\":\"x\"}}]}",
                 "{\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"x\"}}],\"id\":\"1\"}",
                 "{\"choices\":[{\"delta\":{\"content\":\"x\",\"role\":\"assistant\"}}],\"usage\":null}"}) {
            const std::string shown(json); CAPTURE(shown);
            const Extraction x = extract(json);
            CHECK(x.result == Result::ok);
            CHECK(x.events.size() == 1);
            CHECK(x.only(EventType::content) == "x");
        }
    }
}

TEST_CASE("DeltaExtractor: values that produce no event") {
    struct NoEvent { const char* json; const char* why; };
    const NoEvent cases[] = {
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":null}}]}", "null content"},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"}}]}", "empty content"},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}", "role-only first delta"},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":42}}]}", "number content"},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":{\"text\":\"x\"}}}]}", "object content"},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}}]}", "array content"},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":true}}]}", "boolean content"},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"\",\"reasoning\":null}}]}", "empty reasoning"},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":7}}]}", "number reasoning"},
        {"{\"choices\":[{\"index\":0,\"delta\":{}}]}", "empty delta"},
        {"{\"choices\":[{\"index\":0,\"delta\":null}]}", "null delta"},
        {"{\"choices\":[{\"index\":0,\"delta\":\"content\"}]}", "string delta"},
        {"{\"choices\":[{\"index\":0}]}", "no delta"},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":null}}]}", "null tool_calls"},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[]}}]}", "empty tool_calls"},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":{\"index\":0}}}]}", "tool_calls not an array"},
        {"{\"choices\":[],\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}",
         "Azure content-filter preamble"},
        {"{\"choices\":[]}", "empty choices"},
        {"{\"choices\":null}", "null choices"},
        {"{\"choices\":{\"index\":0,\"delta\":{\"content\":\"x\"}}}", "choices not an array"},
        {"{\"choices\":[null,1,\"x\",[]]}", "choices of other types"},
        {"{\"usage\":null,\"choices\":[]}", "null usage"},
        {"{\"usage\":\"12\",\"choices\":[]}", "string usage"},
        {"{\"content\":\"top-level content is not a delta\"}", "content at the top"},
        {"{\"delta\":{\"content\":\"x\"}}", "delta at the top"},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"text\":\"x\",\"Content\":\"y\",\"content \":\"z\"}}]}",
         "names are exact and case-sensitive"},
        {"{\"error\":null,\"choices\":[]}", "null error"},
    };
    for (const NoEvent& c : cases) {
        const std::string shown_why(c.why); CAPTURE(shown_why);
        const std::string shown_json(c.json); CAPTURE(shown_json);
        const Extraction x = extract(c.json);
        CHECK(x.result == Result::ok);
        CHECK(x.events.empty());
    }
}

TEST_CASE("DeltaExtractor: unrelated nested \"choices\" and \"content\" keys are ignored") {
    // As in tests/data/streams/json-edge-cases.sse.
    const Extraction x = extract(
        "{\"model\":\"m\",\"usage\":null,\"extra\":{\"choices\":[{\"delta\":{\"content\":\"WRONG\"}}]},"
        "\"choices\":[{\"index\":0,\"delta\":{\"content\":null}}]}");
    CHECK(x.result == Result::ok);
    CHECK(x.events.empty());

    const Extraction y = extract(
        "{\"choices\":[{\"finish_reason\":null,\"delta\":{\"tool_calls\":null,\"content\":\"!\"},"
        "\"logprobs\":{\"content\":[{\"token\":\"x\",\"bytes\":[33]}]},\"index\":0}]}");
    CHECK(y.result == Result::ok);
    CHECK(y.events.size() == 1);
    CHECK(y.only(EventType::content) == "!");

    const Extraction z = extract(
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"right\",\"extra\":{\"content\":\"WRONG\","
        "\"reasoning_content\":\"WRONG\",\"tool_calls\":[{\"index\":0,\"id\":\"WRONG\"}]}},"
        "\"extra\":{\"delta\":{\"content\":\"WRONG\"},\"finish_reason\":\"WRONG\"}}],"
        "\"meta\":{\"usage\":{\"prompt_tokens\":99},\"error\":{\"message\":\"WRONG\"}}}");
    CHECK(z.result == Result::ok);
    CHECK(z.events.size() == 1);
    CHECK(z.only(EventType::content) == "right");
}

TEST_CASE("DeltaExtractor: usage") {
    SUBCASE("with empty choices (stream_options.include_usage)") {
        const Extraction x = extract("{\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":1459,"
                                     "\"completion_tokens\":91,\"total_tokens\":1550,"
                                     "\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
        CHECK(x.result == Result::ok);
        CHECK(x.events.size() == 1);
        if (x.events.size() == 1) {
            CHECK(x.events[0].type == EventType::usage);
            CHECK(x.events[0].usage.prompt_tokens == 1459);
            CHECK(x.events[0].usage.completion_tokens == 91);
            CHECK(x.events[0].usage.total_tokens == 1550);
        }
    }
    SUBCASE("usage before choices, and large counts") {
        const Extraction x = extract("{\"usage\":{\"total_tokens\":9000000000,\"prompt_tokens\":4000000000,"
                                     "\"completion_tokens\":5000000000},\"choices\":[]}");
        const Ev* u = x.first(EventType::usage);
        CHECK(u != nullptr);
        if (u) {
            CHECK(u->usage.prompt_tokens == 4000000000LL);
            CHECK(u->usage.completion_tokens == 5000000000LL);
            CHECK(u->usage.total_tokens == 9000000000LL);
        }
    }
    SUBCASE("counts are read exactly up to the int64 range; fractions, exponents and larger ones are left out") {
        struct Count { const char* json; long long expected; };
        const Count counts[] = {
            {"0", 0}, {"-0", 0}, {"7", 7}, {"-5", -5}, {"999999999999999999", 999999999999999999LL},
            {"-999999999999999999", -999999999999999999LL}, {"1000000000000000000", 1000000000000000000LL},
            {"9223372036854775807", 9223372036854775807LL}, {"-9223372036854775808", -9223372036854775807LL - 1},
            {"9223372036854775808", 0}, {"99999999999999999999", 0}, {"7.0", 0}, {"1e3", 0}, {"2E+1", 0},
            {"3.5e-2", 0},
        };
        for (const Count& count : counts) {
            CAPTURE(count.json);
            const Extraction x = extract(std::string("{\"choices\":[],\"usage\":{\"total_tokens\":") + count.json + "}}");
            const Ev* u = x.first(EventType::usage);
            REQUIRE(u != nullptr);
            CHECK(u->usage.total_tokens == count.expected);
        }
    }
    SUBCASE("usage null: no usage event") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}],\"usage\":null}");
        CHECK(x.result == Result::ok);
        CHECK(x.count(EventType::usage) == 0);
        CHECK(x.only(EventType::content) == "a");
    }
    SUBCASE("usage in the same chunk as the last delta (OpenRouter, llama.cpp)") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\"}],"
                                     "\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}");
        CHECK(x.result == Result::ok);
        CHECK(x.events.size() == 2);
        if (x.events.size() == 2) {
            CHECK(x.events[0].type == EventType::finish);
            CHECK(x.events[0].text == "stop");
            CHECK(x.events[1].type == EventType::usage);
            CHECK(x.events[1].usage.total_tokens == 13);
        }
    }
    SUBCASE("choice-level usage") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\","
                                     "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}]}");
        CHECK(x.result == Result::ok);
        const Ev* u = x.first(EventType::usage);
        CHECK(u != nullptr);
        if (u) {
            CHECK(u->usage.prompt_tokens == 3);
            CHECK(u->usage.completion_tokens == 4);
            CHECK(u->usage.total_tokens == 7);
        }
        CHECK(x.count(EventType::usage) == 1);
    }
    SUBCASE("top-level usage wins over choice-level usage; only one usage event") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{},\"usage\":{\"total_tokens\":1}}],"
                                     "\"usage\":{\"total_tokens\":2}}");
        CHECK(x.count(EventType::usage) == 1);
        const Ev* u = x.first(EventType::usage);
        if (u) CHECK(u->usage.total_tokens == 2);
    }
    SUBCASE("non-integer counts are ignored, not fatal") {
        const Extraction x = extract("{\"choices\":[],\"usage\":{\"prompt_tokens\":\"5\",\"completion_tokens\":2.5,"
                                     "\"total_tokens\":null,\"extra\":[1,2]}}");
        CHECK(x.result == Result::ok);
        const Ev* u = x.first(EventType::usage);
        CHECK(u != nullptr);
        if (u) {
            CHECK(u->usage.prompt_tokens == 0);
            CHECK(u->usage.completion_tokens == 0);
            CHECK(u->usage.total_tokens == 0);
        }
    }
}

TEST_CASE("DeltaExtractor: tool calls") {
    SUBCASE("opening fragments of several calls, then argument fragments") {
        const Extraction x = extract(
            "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":["
            "{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}},"
            "{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{\\\"tz\\\"\"}}"
            "]}}]}");
        CHECK(x.result == Result::ok);
        const auto calls = x.all(EventType::tool_call);
        CHECK(calls.size() == 2);
        if (calls.size() == 2) {
            CHECK(calls[0]->index == 0);
            CHECK(calls[0]->id == std::optional<std::string>("call_a"));
            CHECK(calls[0]->name == std::optional<std::string>("get_weather"));
            CHECK(calls[0]->arguments == std::optional<std::string>(""));  // sent, though empty
            CHECK(calls[1]->index == 1);
            CHECK(calls[1]->id == std::optional<std::string>("call_b"));
            CHECK(calls[1]->name == std::optional<std::string>("get_time"));
            CHECK(calls[1]->arguments == std::optional<std::string>("{\"tz\""));
        }
    }
    SUBCASE("a later fragment carries only index and arguments") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,"
                                     "\"function\":{\"arguments\":\"\\\"x\\\": 1}\"}}]}}]}");
        const auto calls = x.all(EventType::tool_call);
        CHECK(calls.size() == 1);
        if (calls.size() == 1) {
            CHECK(calls[0]->index == 1);
            CHECK_FALSE(calls[0]->id.has_value());
            CHECK_FALSE(calls[0]->name.has_value());
            CHECK(calls[0]->arguments == std::optional<std::string>("\"x\": 1}"));
        }
    }
    SUBCASE("null fields are absent; the index and the function may come in any order") {
        const Extraction x = extract("{\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":null,"
                                     "\"name\":\"f\"},\"id\":null,\"index\":3}]},\"index\":0}]}");
        const auto calls = x.all(EventType::tool_call);
        CHECK(calls.size() == 1);
        if (calls.size() == 1) {
            CHECK(calls[0]->index == 3);
            CHECK_FALSE(calls[0]->id.has_value());
            CHECK(calls[0]->name == std::optional<std::string>("f"));
            CHECK_FALSE(calls[0]->arguments.has_value());
        }
    }
    SUBCASE("a fragment without an index is index 0; without a function it has only an id") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"call_z\",\"type\":\"function\"}]}}]}");
        const auto calls = x.all(EventType::tool_call);
        CHECK(calls.size() == 1);
        if (calls.size() == 1) {
            CHECK(calls[0]->index == 0);
            CHECK(calls[0]->id == std::optional<std::string>("call_z"));
            CHECK_FALSE(calls[0]->name.has_value());
            CHECK_FALSE(calls[0]->arguments.has_value());
        }
    }
    SUBCASE("content, tool calls and the finish reason in one chunk: in that order") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"finish_reason\":\"tool_calls\",\"delta\":{"
                                     "\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"}\"}}],\"content\":\"ok\"}}]}");
        CHECK(x.events.size() == 3);
        if (x.events.size() == 3) {
            CHECK(x.events[0].type == EventType::content);
            CHECK(x.events[1].type == EventType::tool_call);
            CHECK(x.events[2].type == EventType::finish);
            CHECK(x.events[2].text == "tool_calls");
        }
    }
    SUBCASE("tool-call elements that are not objects are skipped") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[null,1,{\"index\":2,\"id\":\"k\"},\"x\"]}}]}");
        CHECK(x.result == Result::ok);
        const auto calls = x.all(EventType::tool_call);
        CHECK(calls.size() == 1);
        if (calls.size() == 1) CHECK(calls[0]->index == 2);
    }
}

/* "choice:type:text" (tool calls: "choice:tool_call:index|id") of each event, in order. */
std::vector<std::string> choice_trace(const Extraction& x) {
    std::vector<std::string> out;
    for (const Ev& e : x.events) {
        std::string line = std::to_string(e.choice) + ":" + std::to_string(static_cast<int>(e.type)) + ":";
        line += e.type == EventType::tool_call ? std::to_string(e.index) + "|" + e.id.value_or("-") : e.text;
        out.push_back(line);
    }
    return out;
}

TEST_CASE("DeltaExtractor: every choice is followed, its events in the order of the JSON") {
    const std::string content = std::to_string(static_cast<int>(EventType::content));
    const std::string tool = std::to_string(static_cast<int>(EventType::tool_call));
    const std::string finish = std::to_string(static_cast<int>(EventType::finish));
    SUBCASE("two choices in one event, whichever comes first, the index before or after the delta") {
        const std::string b = "\"delta\":{\"content\":\"B\",\"tool_calls\":[{\"index\":0,\"id\":\"call_B\"}]},\"finish_reason\":\"length\"";
        const std::string a = "\"delta\":{\"content\":\"A\",\"tool_calls\":[{\"index\":0,\"id\":\"call_A\"}]}";
        const std::vector<std::string> b_events = {"1:" + content + ":B", "1:" + tool + ":0|call_B", "1:" + finish + ":length"};
        const std::vector<std::string> a_events = {"0:" + content + ":A", "0:" + tool + ":0|call_A"};
        auto both = [](std::vector<std::string> first, const std::vector<std::string>& second) {
            first.insert(first.end(), second.begin(), second.end());
            return first;
        };
        const std::pair<std::string, std::vector<std::string>> cases[] = {
            {"{\"choices\":[{\"index\":1," + b + "},{\"index\":0," + a + "}]}", both(b_events, a_events)},
            {"{\"choices\":[{\"index\":0," + a + "},{\"index\":1," + b + "}]}", both(a_events, b_events)},
            {"{\"choices\":[{" + b + ",\"index\":1},{" + a + ",\"index\":0}]}", both(b_events, a_events)},
            {"{\"choices\":[{" + a + "},{" + b + ",\"index\":1}]}", both(a_events, b_events)},  // no index: 0
        };
        for (const auto& c : cases) {
            CAPTURE(c.first);
            const Extraction x = extract(c.first);
            CHECK(x.result == Result::ok);
            CHECK(choice_trace(x) == c.second);
        }
    }
    SUBCASE("an event with only another choice yields that choice's events") {
        const Extraction x = extract("{\"choices\":[{\"index\":2,\"delta\":{\"content\":\"C\",\"reasoning_content\":\"r\"},"
                                     "\"finish_reason\":\"stop\"}]}");
        CHECK(x.result == Result::ok);
        CHECK(choice_trace(x) == std::vector<std::string>{"2:" + std::to_string(static_cast<int>(EventType::reasoning)) + ":r",
                                                          "2:" + content + ":C", "2:" + finish + ":stop"});
    }
    SUBCASE("a repeated choice index in one event: both, in order") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"first\",\"tool_calls\":[{\"id\":\"1\"}]}},"
                                     "{\"index\":0,\"delta\":{\"content\":\"second\",\"tool_calls\":[{\"id\":\"2\"}]}}]}");
        CHECK(x.result == Result::ok);
        CHECK(choice_trace(x) == std::vector<std::string>{"0:" + content + ":first", "0:" + tool + ":0|1",
                                                          "0:" + content + ":second", "0:" + tool + ":0|2"});
    }
    SUBCASE("a choice index outside 0..127 makes the event invalid, whatever else it holds") {
        for (const char* json : {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"}},{\"index\":128,\"delta\":{}}]}",
                                 "{\"choices\":[{\"index\":-1,\"delta\":{\"content\":\"x\"}}]}",
                                 "{\"choices\":[{\"delta\":{\"content\":\"x\"},\"index\":4294967296}]}"}) {
            CAPTURE(json);
            const Extraction x = extract(json);
            CHECK(x.result == Result::invalid);
            CHECK(x.events.empty());
            CHECK(x.why.find("a choice's index must be from 0 to 127") == 0);
        }
        const Extraction last = extract("{\"choices\":[{\"index\":127,\"delta\":{\"content\":\"z\"}}]}");
        CHECK(choice_trace(last) == std::vector<std::string>{"127:" + content + ":z"});
    }
}

TEST_CASE("DeltaExtractor: finish_reason") {
    const Extraction s = extract("{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}");
    CHECK(s.result == Result::ok);
    CHECK(s.events.size() == 1);
    CHECK(s.only(EventType::finish) == "stop");

    const Extraction n = extract("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}");
    CHECK(n.count(EventType::finish) == 0);
    CHECK(n.events.size() == 1);

    for (const char* reason : {"length", "tool_calls", "content_filter", "function_call"}) {
        const Extraction x = extract(std::string("{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"") + reason + "\"}]}");
        CHECK(x.only(EventType::finish) == reason);
    }
    const Extraction esc = extract("{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"st\\u006fp\"}]}");
    CHECK(esc.only(EventType::finish) == "stop");
    const Extraction num = extract("{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":1}]}");
    CHECK(num.result == Result::ok);
    CHECK(num.count(EventType::finish) == 0);

    // A reason that decodes to nothing is none, as null is: sglang 0.4.3 and Ollama's /v1 sent
    // "finish_reason":"" on every chunk; an invalid byte alone, or a lone surrogate, decodes to nothing.
    for (const char* empty : {"", "\xff", "\\udc00"}) {
        CAPTURE(empty);
        const Extraction x = extract(std::string("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},"
                                                 "\"finish_reason\":\"") + empty + "\"}]}");
        CHECK(x.result == Result::ok);
        CHECK(x.count(EventType::finish) == 0);
        CHECK(x.only(EventType::content) == "Hi");
    }
}

TEST_CASE("DeltaExtractor: an error object ends the stream with its message, type and code") {
    SUBCASE("string code") {
        const Extraction x = extract("{\"error\":{\"message\":\"Rate limit reached for gpt-4o\",\"type\":\"requests\","
                                     "\"param\":null,\"code\":\"rate_limit_exceeded\"}}");
        CHECK(x.result == Result::error_event);
        CHECK(x.events.empty());
        CHECK(x.message.find("Rate limit reached for gpt-4o") != std::string::npos);
        CHECK(x.message.find("requests") != std::string::npos);
        CHECK(x.message.find("rate_limit_exceeded") != std::string::npos);
    }
    SUBCASE("numeric code, members in another order") {
        const Extraction x = extract("{\"error\":{\"code\":429,\"type\":\"throttling\",\"message\":\"Too many requests\"}}");
        CHECK(x.result == Result::error_event);
        CHECK(x.message.find("Too many requests") != std::string::npos);
        CHECK(x.message.find("throttling") != std::string::npos);
        CHECK(x.message.find("429") != std::string::npos);
    }
    SUBCASE("escapes in the message are decoded") {
        const Extraction x = extract("{\"error\":{\"message\":\"mod\\u00e8le \\\"x\\\" introuvable\"}}");
        CHECK(x.result == Result::error_event);
        CHECK(x.message.find("mod\xC3\xA8le \"x\" introuvable") != std::string::npos);
        CHECK(d::utf8_valid(x.message.data(), x.message.data() + x.message.size()));
    }
    SUBCASE("\"error\": \"plain string\"") {
        const Extraction x = extract("{\"error\":\"plain string\"}");
        CHECK(x.result == Result::error_event);
        CHECK(x.message.find("plain string") != std::string::npos);
    }
    SUBCASE("an error alongside choices wins, and yields no events") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"partial\"}}],"
                                     "\"error\":{\"message\":\"upstream failed\",\"code\":502}}");
        CHECK(x.result == Result::error_event);
        CHECK(x.events.empty());
        CHECK(x.message.find("upstream failed") != std::string::npos);
    }
    SUBCASE("an error without a message still has a non-empty message") {
        const Extraction x = extract("{\"error\":{}}");
        CHECK(x.result == Result::error_event);
        CHECK_FALSE(x.message.empty());
        const Extraction y = extract("{\"error\":{\"code\":500}}");
        CHECK(y.result == Result::error_event);
        CHECK(y.message.find("500") != std::string::npos);
    }
    SUBCASE("\"error\": null is not an error") {
        const Extraction x = extract("{\"error\":null,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"fine\"}}]}");
        CHECK(x.result == Result::ok);
        CHECK(x.only(EventType::content) == "fine");
    }
    SUBCASE("an invalid event that mentions an error is just invalid") {
        const Extraction x = extract("{\"error\":{\"message\":\"x\"},");
        CHECK(x.result == Result::invalid);
        CHECK(x.events.empty());
    }
    SUBCASE("a nested \"error\" member is not an error event") {
        const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\",\"error\":{\"message\":\"no\"}}}],"
                                     "\"x\":{\"error\":\"no\"}}");
        CHECK(x.result == Result::ok);
        CHECK(x.only(EventType::content) == "ok");
    }
}

TEST_CASE("DeltaExtractor: escaped member names still match") {
    const Extraction x = extract("{\"ch\\u006fices\":[{\"ind\\u0065x\":0,\"d\\u0065lta\":{\"\\u0063ontent\":\"a\","
                                 "\"reasoning\\u005fcontent\":\"r\",\"tool\\u005fcalls\":[{\"\\u0069d\":\"c\",\"function\":"
                                 "{\"n\\u0061me\":\"f\",\"\\u0061rguments\":\"{}\"}}]},\"finish\\u005freason\":\"stop\"}],"
                                 "\"\\u0075sage\":{\"total\\u005ftokens\":5}}");
    CHECK(x.result == Result::ok);
    CHECK(x.only(EventType::content) == "a");
    CHECK(x.only(EventType::reasoning) == "r");
    CHECK(x.only(EventType::finish) == "stop");
    const Ev* call = x.first(EventType::tool_call);
    CHECK(call != nullptr);
    if (call) {
        CHECK(call->id == std::optional<std::string>("c"));
        CHECK(call->name == std::optional<std::string>("f"));
        CHECK(call->arguments == std::optional<std::string>("{}"));
    }
    const Ev* usage = x.first(EventType::usage);
    CHECK(usage != nullptr);
    if (usage) CHECK(usage->usage.total_tokens == 5);

    // \/ is a solidus; a name with an escape that decodes to something else does not match.
    const Extraction solidus = extract("{\"choices\":[{\"index\":0,\"delta\":{\"co\\/ntent\":\"x\"}}]}");
    CHECK(solidus.result == Result::ok);
    CHECK(solidus.events.empty());
    const Extraction e = extract("{\"\\u0065rror\":{\"m\\u0065ssage\":\"boom\"}}");
    CHECK(e.result == Result::error_event);
    CHECK(e.message.find("boom") != std::string::npos);
}

TEST_CASE("DeltaExtractor: fully escaped long member names still match") {
    // Every character of a name may be written as \uXXXX: "reasoning_content" and
    // "completion_tokens" are then 102 bytes long, but the same names.
    auto escape_all = [](std::string_view name) {
        std::string out;
        char buf[8];
        for (char c : name) {
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
            out += buf;
        }
        return out;
    };
    const Extraction x = extract("{\"choices\":[{\"index\":0,\"delta\":{\"" + escape_all("reasoning_content") +
                                 "\":\"R\"}}],\"usage\":{\"" + escape_all("completion_tokens") + "\":7}}");
    CHECK(x.result == Result::ok);
    CHECK(x.only(EventType::reasoning) == "R");
    const Ev* usage = x.first(EventType::usage);
    CHECK(usage != nullptr);
    if (usage) CHECK(usage->usage.completion_tokens == 7);
}

/* =============================================================================================
   Decoding of string values
   ============================================================================================= */

TEST_CASE("DeltaExtractor: escapes in values") {
    struct Decode { const char* json_string; std::string expected; };
    const Decode cases[] = {
        {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t"},
        {"\"\\u0041\\u0062\"", "Ab"},
        {"\"\\u00e9\\u00E9\"", "\xC3\xA9\xC3\xA9"},                   // 2-byte
        {"\"\\u4f60\\u597D\"", "\xE4\xBD\xA0\xE5\xA5\xBD"},           // 3-byte, BMP
        {"\"\\uffff\\u0800\\u07ff\\u0080\\u007f\"", "\xEF\xBF\xBF\xE0\xA0\x80\xDF\xBF\xC2\x80\x7F"},
        {"\"\\ud83d\\ude00\"", kGrin},                                 // surrogate pair -> 4 bytes
        {"\"\\uD83D\\uDE00\"", kGrin},
        {"\"\\udbff\\udfff\"", "\xF4\x8F\xBF\xBF"},                   // U+10FFFF
        {"\"\\ud800\\udc00\"", "\xF0\x90\x80\x80"},                   // U+10000
        {"\"a\\ud83db\"", "ab"},                                       // lone high surrogate
        {"\"a\\ude00b\"", "ab"},                                       // lone low surrogate
        {"\"a\\ud83d\"", "a"},                                         // high surrogate at the end
        {"\"\\ud83d\\u0041\"", "A"},                                   // high + non-surrogate escape: A kept
        {"\"\\ud83d\\n\"", "\n"},                                      // high + another escape
        {"\"\\ud83dx\"", "x"},                                         // high + raw character
        {"\"\\ud83d\\ud83d\\ude00\"", kGrin},                          // high, then a full pair
        {"\"\\ude00\\ud83d\"", ""},                                    // low then high: both lone
        {"\"\\ud83d\\ud83d\"", ""},
        {"\"\\u0000\"", std::string("\0", 1)},                         // NUL kept as a byte
        {"\"a\\u0000b\"", std::string("a\0b", 3)},
        {"\"\xC3\xA9\\u00e9\xE4\xBD\xA0\"", "\xC3\xA9\xC3\xA9\xE4\xBD\xA0"},  // raw and escaped mixed
    };
    for (const Decode& c : cases) {
        const std::string shown(c.json_string); CAPTURE(shown);
        const Extraction x = extract(content_event(c.json_string));
        CHECK(x.result == Result::ok);
        CHECK(x.all_text_valid_utf8);
        if (c.expected.empty()) {
            CHECK(x.events.empty());  // nothing left to say: no empty content event
        } else {
            CHECK(x.only(EventType::content) == c.expected);
        }
        // The same decoding applies everywhere a string is taken.
        const Extraction r = extract(std::string("{\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":") +
                                     c.json_string + "}}]}");
        if (!c.expected.empty()) CHECK(r.only(EventType::reasoning) == c.expected);
        const Extraction t = extract(std::string("{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":") +
                                     c.json_string + ",\"function\":{\"name\":" + c.json_string +
                                     ",\"arguments\":" + c.json_string + "}}]}}]}");
        const Ev* call = t.first(EventType::tool_call);
        CHECK(call != nullptr);
        if (call) {
            CHECK(call->id == std::optional<std::string>(c.expected));
            CHECK(call->name == std::optional<std::string>(c.expected));
            CHECK(call->arguments == std::optional<std::string>(c.expected));
        }
        CHECK(t.all_text_valid_utf8);
        // And json_decode_string directly, on the body between the quotes.
        const std::string_view body(c.json_string + 1, std::strlen(c.json_string) - 2);
        CHECK(decode_body(body) == c.expected);
    }
}

TEST_CASE("DeltaExtractor: invalid raw UTF-8 in values is dropped, the rest kept") {
    struct Repair { std::string raw; std::string expected; };
    const Repair cases[] = {
        {"a\xFF" "b", "ab"},
        {"a\xFE\xFF" "b", "ab"},
        {"\xC0\x80", ""},                            // overlong NUL
        {"x\xC0\x80y", "xy"},
        {"\xC1\xBF", ""},                            // overlong
        {"\xE0\x80\x80", ""},                        // overlong 3-byte
        {"\xE0\x9F\xBF", ""},
        {"\xF0\x80\x80\x80", ""},                    // overlong 4-byte
        {"\xF0\x8F\xBF\xBF", ""},
        {"a\xED\xA0\x80" "b", "ab"},                 // surrogate U+D800 encoded in UTF-8
        {"\xED\xBF\xBF", ""},                        // U+DFFF
        {"\xED\x9F\xBF", "\xED\x9F\xBF"},            // U+D7FF is fine
        {"\xEE\x80\x80", "\xEE\x80\x80"},            // U+E000 is fine
        {"\xF4\x90\x80\x80", ""},                    // beyond U+10FFFF
        {"\xF5\x80\x80\x80", ""},
        {"\xF4\x8F\xBF\xBF", "\xF4\x8F\xBF\xBF"},    // U+10FFFF is fine
        {"\xE4\xBD" "b", "b"},                       // truncated 3-byte
        {"b\xE4\xBD", "b"},                          // truncated at the end of the string
        {"\xF0\x9F\x98" "!", "!"},                   // truncated 4-byte
        {"\xC3", ""},
        {"\x80\xBF" "z", "z"},                       // lone continuation bytes
        {"\xC3\xA9\xC3", "\xC3\xA9"},
        {"\xE4\xBD\xA0\xFF\xE5\xA5\xBD", "\xE4\xBD\xA0\xE5\xA5\xBD"},
        {"\xFF" "\\u00e9", "\xC3\xA9"},              // invalid raw byte next to an escape
    };
    for (const Repair& c : cases) {
        CAPTURE(c.raw);
        const Extraction x = extract(content_event("\"" + c.raw + "\""));
        CHECK(x.result == Result::ok);  // invalid bytes do not make the event invalid
        CHECK(x.all_text_valid_utf8);
        if (c.expected.empty()) CHECK(x.events.empty());
        else CHECK(x.only(EventType::content) == c.expected);
        if (c.raw.find('\\') == std::string::npos) CHECK(oracle_repair(c.raw) == c.expected);
        // Also in tool-call fields and the finish reason.
        const Extraction t = extract("{\"choices\":[{\"index\":0,\"finish_reason\":\"" + c.raw +
                                     "\",\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"" +
                                     c.raw + "\"}}]}}]}");
        CHECK(t.all_text_valid_utf8);
        const Ev* call = t.first(EventType::tool_call);
        CHECK(call != nullptr);
        if (call) CHECK(call->arguments == std::optional<std::string>(c.expected));
        const Ev* fin = t.first(EventType::finish);
        if (c.expected.empty()) {
            CHECK(fin == nullptr);  // a reason that decodes to nothing is none
        } else {
            CHECK(fin != nullptr);
            if (fin) CHECK(fin->text == c.expected);
        }
    }
}

TEST_CASE("DeltaExtractor: an invalid event is never half-used") {
    d::DeltaExtractor x;
    // A good event first, so stale events would show.
    Extraction good = run_extractor(x, content_event("\"one\"") );
    CHECK(good.result == Result::ok);
    CHECK(good.events.size() == 1);

    const std::string broken[] = {
        // the content is complete and valid; the error comes later in the event
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"}}],\"x\":tru}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"},\"finish_reason\":\"stop\"}],\"usage\":{\"total_tokens\":1}}}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"}}]} x",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"}}],}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"}}],\"usage\":{\"total_tokens\":01}}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\",\"x\":\"\\q\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"}}],\"x\":\"a\tb\"}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\"}],\"content\":\"two\"}}],\"error\":nul}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"}}]",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"}}]}{\"choices\":[]}",
        "[{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"}}]}]",
    };
    for (const std::string& json : broken) {
        CAPTURE(json);
        const Extraction e = run_extractor(x, json);
        CHECK(e.result == Result::invalid);
        CHECK_FALSE(e.why.empty());
        CHECK(e.events.empty());
        CHECK(e.offset <= json.size());
        // The extractor is fine for the next event.
        const Extraction after = run_extractor(x, content_event("\"three\""));
        CHECK(after.result == Result::ok);
        CHECK(after.only(EventType::content) == "three");
    }
}

TEST_CASE("DeltaExtractor: error_offset points at the offending byte") {
    struct Where { const char* json; std::size_t offset; };
    const Where cases[] = {
        {"{} x", 3},                    // trailing garbage
        {"{\"a\":tru}", 5},            // the bad literal
        {"{\"a\":1,}", 7},             // where a member name was expected
        {"{\"a\" 1}", 5},              // where ':' was expected
        {"[1]", 0},                    // not an object
    };
    for (const Where& c : cases) {
        const std::string shown(c.json); CAPTURE(shown);
        const Extraction x = extract(c.json);
        CHECK(x.result == Result::invalid);
        CHECK(x.offset == c.offset);
    }
}

TEST_CASE("DeltaExtractor: a fresh event clears the previous one's events") {
    d::DeltaExtractor x;
    CHECK(run_extractor(x, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\",\"tool_calls\":[{\"id\":\"t\"}]},"
                           "\"finish_reason\":\"stop\"}],\"usage\":{\"total_tokens\":3}}").events.size() == 4);
    CHECK(run_extractor(x, "{\"choices\":[]}").events.empty());
    CHECK(run_extractor(x, "{\"error\":\"e\"}").events.empty());
    const Extraction after_error = run_extractor(x, content_event("\"b\""));
    CHECK(after_error.result == Result::ok);
    CHECK(after_error.why.empty());
    CHECK(after_error.only(EventType::content) == "b");
}

TEST_CASE("DeltaExtractor: large values and many events") {
    d::DeltaExtractor x;
    // A 1 MiB content string with escapes and multi-byte characters (events up to at least 1 MiB).
    std::string expected, body;
    while (expected.size() < (1u << 20)) {
        expected += "ab\"\xE4\xBD\xA0\n" + kGrin;
        body += "ab\\\"\xE4\xBD\xA0\\n\\ud83d\\ude00";
    }
    const Extraction big = run_extractor(x, content_event("\"" + body + "\""));
    CHECK(big.result == Result::ok);
    CHECK(big.only(EventType::content) == expected);
    // Then many small events through the same extractor.
    std::string all;
    for (int i = 0; i < 2000; ++i) {
        const Extraction e = run_extractor(x, content_event("\"" + std::to_string(i) + ",\""));
        all += e.only(EventType::content);
    }
    CHECK(all.size() > 2000 * 2);
    CHECK(all.substr(0, 8) == "0,1,2,3,");
    CHECK(all.substr(all.size() - 5) == "1999,");
}

/* =============================================================================================
   utf8_valid
   ============================================================================================= */

TEST_CASE("utf8_valid") {
    struct U { std::string s; bool ok; };
    const U cases[] = {
        {"", true}, {"plain ascii", true}, {std::string("\0\x7F", 2), true},
        {"\xC2\x80", true}, {"\xDF\xBF", true}, {"\xC3\xA9", true},
        {"\xE0\xA0\x80", true}, {"\xE4\xBD\xA0", true}, {"\xED\x9F\xBF", true}, {"\xEE\x80\x80", true},
        {"\xEF\xBF\xBF", true}, {"\xF0\x90\x80\x80", true}, {kGrin, true}, {"\xF4\x8F\xBF\xBF", true},
        {"\x80", false}, {"\xBF", false}, {"\xC0\x80", false}, {"\xC1\xBF", false}, {"\xC2", false},
        {"\xC2\x41", false}, {"\xE0\x80\x80", false}, {"\xE0\x9F\xBF", false}, {"\xED\xA0\x80", false},
        {"\xED\xBF\xBF", false}, {"\xE4\xBD", false}, {"\xF0\x80\x80\x80", false},
        {"\xF0\x8F\xBF\xBF", false}, {"\xF4\x90\x80\x80", false}, {"\xF5\x80\x80\x80", false},
        {"\xF0\x9F\x98", false}, {"\xFE", false}, {"\xFF", false}, {"a\xFF" "b", false},
        {"\xC3\xA9\xC3", false}, {"\xF8\x88\x80\x80\x80", false},
    };
    for (const U& c : cases) {
        CAPTURE(c.s);
        ExactBytes b(c.s);
        CHECK(d::utf8_valid(b.view().data(), b.view().data() + b.view().size()) == c.ok);
        CHECK(oracle_valid(c.s) == c.ok);  // the table agrees with the test's own decoder
    }
    // Every code point encodes to valid UTF-8, except the surrogates which cannot be.
    for (std::uint32_t cp = 0; cp <= 0x10FFFF; cp += (cp < 0x20000 ? 1 : 97)) {
        const std::string s = encode_cp(cp);
        const bool expect = !(cp >= 0xD800 && cp <= 0xDFFF);
        if (d::utf8_valid(s.data(), s.data() + s.size()) != expect) {
            CAPTURE(cp);
            CHECK(false);
        }
    }
    // Random bytes: the library agrees with the oracle.
    std::mt19937 rng(7u);
    for (int i = 0; i < 20000; ++i) {
        std::string s(1 + rng() % 24, '\0');  // past 8 bytes: the word paths too
        for (char& c : s) c = static_cast<char>(rng() % 3 == 0 ? 0x80 + rng() % 0x40 : rng() % 256);
        ExactBytes b(s);
        const bool lib = d::utf8_valid(b.view().data(), b.view().data() + b.view().size());
        if (lib != oracle_valid(s)) {
            CAPTURE(s);
            CHECK(lib == oracle_valid(s));
        }
    }
}

/* The ASCII fast path reads 8 bytes at a time: a bad byte at every position of longer ASCII runs. */
TEST_CASE("utf8_valid: an invalid or multi-byte sequence at every position of an ASCII run") {
    const std::string inserts[] = {"\xFF", "\x80", "\xC2", "\xE4\xBD", "\xC3\xA9", "\xE4\xBD\xA0", kGrin,
                                   "\xE4\xBD\x41", "\xEF\xC0\x80", "\xED\xA0\x80", "\xE1\x80\x80\xEC\xBF\xBF"};
    for (std::size_t length = 0; length <= 40; ++length)
        for (std::size_t at = 0; at <= length; ++at)
            for (const std::string& insert : inserts) {
                const std::string s = std::string(at, 'a') + insert + std::string(length - at, 'b');
                ExactBytes b(s);
                if (d::utf8_valid(b.view().data(), b.view().data() + b.view().size()) != oracle_valid(s)) {
                    CAPTURE(s);
                    CHECK(false);
                }
            }
}

/* =============================================================================================
   The string scan: the block paths (SSE2 where the CPU has it, SWAR everywhere) against the scalar one
   ============================================================================================= */

namespace {
bool is_string_stop(unsigned char c) { return c == '"' || c == '\\' || c < 0x20; }

/* Every block path stops where the scalar reference does, on `s` copied to an exact-size block, scanning
   from its first byte and from a few later ones (the bytes before them readable: a short tail is then
   read as the block's last 16 bytes). */
void check_string_stop(const std::string& s) {
    ExactBytes b(s);
    const char* const first = b.view().data();
    const char* const last = first + b.view().size();
    CAPTURE(s);
    static const std::size_t skips[] = {0, 1, 7, 15};
    for (const std::size_t skip : skips) {
        if (skip > s.size()) break;
        CAPTURE(skip);
        const char* const from = first + skip;
        const char* const expected = d::json_string_stop_scalar(from, last);
        CHECK(d::json_string_stop_swar(from, last) == expected);
#if LLM_STREAM_SSE2
        CHECK(d::json_string_stop_sse2(from, last, first) == expected);
        CHECK(d::json_string_stop_sse2(from, last, from) == expected);
#endif
        CHECK(d::json_string_stop(from, last, first) == expected);
    }
}
}  // namespace

TEST_CASE("json_word_has_stop: each byte value at each place of a word, among other bytes") {
    const unsigned char fills[] = {'a', ' ', '!', 0x7F, 0x80, 0xFF, '"' + 1, '\\' + 1};
    for (const unsigned char fill : fills)
        for (unsigned value = 0; value < 256; ++value)
            for (std::size_t at = 0; at < 8; ++at) {
                unsigned char bytes[8];
                std::memset(bytes, fill, sizeof bytes);
                bytes[at] = static_cast<unsigned char>(value);
                std::uint64_t word;
                std::memcpy(&word, bytes, 8);
                const bool expected = is_string_stop(fill) || is_string_stop(static_cast<unsigned char>(value));
                if (d::json_word_has_stop(word) != expected) {
                    CAPTURE(value);
                    CAPTURE(at);
                    CAPTURE(static_cast<unsigned>(fill));
                    CHECK(false);
                }
            }
}

TEST_CASE("json_string_stop: every stop byte at every position, near 8- and 16-byte block edges") {
    std::vector<char> stops = {'"', '\\'};
    for (int c = 0; c < 0x20; ++c) stops.push_back(static_cast<char>(c));
    const std::string fills[] = {"a", "\xE4\xBD\xA0", "\xFF", "\x80 ", "\x7F!#[]"};  // ASCII, UTF-8, invalid bytes
    for (const std::string& fill : fills)
        for (std::size_t length = 0; length <= 40; ++length) {
            std::string body;
            while (body.size() < length) body += fill;
            body.resize(length);
            check_string_stop(body);  // no stop at all: the end
            for (std::size_t at = 0; at < length; ++at)
                for (const char stop : stops) {
                    std::string s = body;
                    s[at] = stop;
                    check_string_stop(s);
                }
        }
}

TEST_CASE("find_line_break (SSE): an LF or a CR at every position of lines up to 70 bytes, or none, from the "
          "first byte or a later one") {
    for (std::size_t length = 0; length <= 70; ++length)
        for (std::size_t at = 0; at <= length; ++at)
            for (const char* line_break : {"\n", "\r", "\r\n", ""}) {
                std::string s(length, 'x');
                for (std::size_t i = 0; i < length; ++i) s[i] = static_cast<char>("ab\x0B\x0C\xE4\x80\xFF "[i % 8]);
                s.insert(at, line_break);
                ExactBytes b(s);
                const char* const first = b.view().data();
                const char* const last = first + b.view().size();
                for (std::size_t from = 0; from <= s.size(); from += 5) {
                    const std::size_t expected = std::min(s.find_first_of("\r\n", from), s.size());
                    if (d::find_line_break(first + from, last, first) != first + expected) {
                        CAPTURE(s);
                        CAPTURE(from);
                        CHECK(false);
                    }
                }
            }
}

TEST_CASE("json_string_stop: random bytes, mostly ones that do not stop the scan") {
    std::mt19937 rng(11u);
    for (int i = 0; i < 20000; ++i) {
        std::string s(rng() % 70, '\0');
        for (char& c : s) {
            const unsigned r = static_cast<unsigned>(rng() % 64);
            c = static_cast<char>(r == 0 ? "\"\\\x01\x1F"[rng() % 4] : 0x20 + rng() % 0xE0);
        }
        check_string_stop(s);
    }
}

/* =============================================================================================
   json_write_string, json_decode_string, json_write_number
   ============================================================================================= */

namespace {
std::string write_string(std::string_view s) {
    std::string out;
    d::json_write_string(out, s);
    return out;
}
}  // namespace

TEST_CASE("json_write_string: escapes") {
    CHECK(write_string("") == "\"\"");
    CHECK(write_string("plain") == "\"plain\"");
    CHECK(write_string("say \"hi\"") == "\"say \\\"hi\\\"\"");
    CHECK(write_string("back\\slash") == "\"back\\\\slash\"");
    CHECK(write_string("\n\t\b\f\r") == "\"\\n\\t\\b\\f\\r\"");
    CHECK(write_string(std::string("\0", 1)) == "\"\\u0000\"");
    CHECK(write_string("\x01\x1F\x0B") == "\"\\u0001\\u001f\\u000b\"");
    CHECK(write_string("\x7F") == "\"\x7F\"");           // DEL needs no escape
    const std::string solidus = write_string("a/b");  // "/" may or may not be escaped; it reads back
    CHECK(valid(solidus));
    CHECK(decode_body(std::string_view(solidus).substr(1, solidus.size() - 2)) == "a/b");
    // Non-ASCII passes through unchanged.
    const std::string text = "caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD " + kGrin + " \xF4\x8F\xBF\xBF";
    CHECK(write_string(text) == "\"" + text + "\"");
    // Invalid UTF-8 is dropped.
    CHECK(write_string("a\xFF" "b") == "\"ab\"");
    CHECK(write_string("\xC0\x80") == "\"\"");
    CHECK(write_string("x\xED\xA0\x80y") == "\"xy\"");
    CHECK(write_string("\xE4\xBD") == "\"\"");
    CHECK(write_string("ok\xF0\x9F\x98") == "\"ok\"");
    // It appends.
    std::string out = "{\"k\":";
    d::json_write_string(out, "v");
    CHECK(out == "{\"k\":\"v\"");
}

TEST_CASE("json_write_string: every byte value, written and read back") {
    for (int ch = 0; ch < 0x80; ++ch) {
        const std::string s(1, static_cast<char>(ch));
        const std::string w = write_string(s);
        CAPTURE(ch);
        CHECK(valid(w));
        for (char c : w) CHECK(static_cast<unsigned char>(c) >= 0x20);  // no raw control characters
        CHECK(decode_body(std::string_view(w).substr(1, w.size() - 2)) == s);
        CHECK(extract(content_event(w)).only(EventType::content) == s);
    }
    for (int ch = 0x80; ch < 0x100; ++ch) {  // a lone byte >= 0x80 is never valid UTF-8
        CHECK(write_string(std::string(1, static_cast<char>(ch))) == "\"\"");
    }
}

TEST_CASE("json_write_number") {
    auto num = [](double v) {
        std::string out;
        d::json_write_number(out, v);
        return out;
    };
    CHECK(num(0.7) == "0.7");
    CHECK(num(1) == "1");
    CHECK(num(0) == "0");
    CHECK(num(2) == "2");
    CHECK(num(1.5) == "1.5");
    CHECK(num(-0.25) == "-0.25");
    CHECK(num(0.1 + 0.2) == "0.30000000000000004");
    CHECK(num(100) == "100");
    const std::string tiny = num(1e-7);
    CHECK((tiny == "1e-7" || tiny == "1e-07"));  // both are JSON; shortest digits either way
    CHECK(valid(tiny));
    CHECK(std::strtod(tiny.c_str(), nullptr) == 1e-7);
    // It appends.
    std::string out = "{\"temperature\":";
    d::json_write_number(out, 0.7);
    CHECK(out == "{\"temperature\":0.7");
    // Shortest round trip, valid JSON, for edge and random finite doubles.
    std::vector<double> values = {1e21, 1e22, 1e-5, 123456789.125, 5e-324, 2.2250738585072014e-308,
                                  1.7976931308262157e308, -1.7976931308262157e308, 0.1, 1.0 / 3,
                                  9007199254740993.0, 2.0, 0.5, 1e100, -0.0};
    std::mt19937_64 rng(12345u);
    for (int i = 0; i < 5000; ++i) {
        std::uint64_t bits = rng();
        double v;
        std::memcpy(&v, &bits, sizeof v);
        if (std::isfinite(v)) values.push_back(v);
        values.push_back(static_cast<double>(rng() % 2001) / 1000.0);  // temperatures 0..2
    }
    for (double v : values) {
        const std::string s = num(v);
        CAPTURE(s);
        CHECK(valid(s));
        const double back = std::strtod(s.c_str(), nullptr);
        CHECK(std::memcmp(&back, &v, sizeof v) == 0);  // same bits, sign of zero included
        // Shortest: one significant digit fewer never reads back as the same value. (Integers below
        // 1e21 are written in full, like printf's %f, which is fewer characters than an exponent.)
        std::string digits;
        const std::string mantissa = s.substr(0, s.find_first_of("eE"));
        for (char c : mantissa)
            if (c >= '0' && c <= '9') digits += c;
        digits.erase(0, std::min(digits.size(), digits.find_first_not_of('0')));
        if (mantissa.find('.') == std::string::npos && !digits.empty())
            digits.erase(digits.find_last_not_of('0') + 1);  // 1e21 may be written 1000000000000000000000
        const bool integral_form = s.find_first_of(".eE") == std::string::npos;
        if (integral_form) CHECK(s.size() <= 23);
        if (v != 0 && digits.size() > 1 && !integral_form) {
            char shorter[64];
            std::snprintf(shorter, sizeof shorter, "%.*e", static_cast<int>(digits.size()) - 2, v);
            const std::string shown(shorter); CAPTURE(shown);
            CHECK(std::strtod(shorter, nullptr) != v);
        }
    }
}

/* =============================================================================================
   Property: random strings survive write -> extract
   ============================================================================================= */

namespace {
std::string random_text(std::mt19937& rng) {
    std::string s;
    const std::size_t pieces = rng() % 24;
    for (std::size_t i = 0; i < pieces; ++i) {
        switch (rng() % 11) {
        case 0: case 1: case 2: s += static_cast<char>(0x20 + rng() % 0x5F); break;  // printable ASCII
        case 3: s += static_cast<char>(rng() % 0x20); break;                         // control
        case 4: s += "\"\\/\x7F"[rng() % 4]; break;
        case 5: s += encode_cp(0x80 + rng() % (0x800 - 0x80)); break;
        case 6: {
            std::uint32_t cp = 0x800 + rng() % (0x10000 - 0x800);
            if (cp >= 0xD800 && cp <= 0xDFFF) cp -= 0x1000;
            s += encode_cp(cp);
            break;
        }
        case 7: s += encode_cp(0x10000 + rng() % (0x110000 - 0x10000)); break;
        case 8: s += static_cast<char>(0x80 + rng() % 0x80); break;                  // stray high byte
        case 9: {                                                                   // truncated sequence
            std::string full = encode_cp(0x800 + rng() % 0x1000);
            s += full.substr(0, 1 + rng() % (full.size() - 1));
            break;
        }
        default: {                                                                  // surrogate in UTF-8
            s += encode_cp(0xE000);
            s[s.size() - 3] = '\xED';
            s[s.size() - 2] = static_cast<char>(0xA0 + rng() % 0x20);
            break;
        }
        }
    }
    return s;
}
}  // namespace

TEST_CASE("property: json_write_string output parses back to the (repaired) input") {
    std::mt19937 rng(0xC0FFEEu);
    d::DeltaExtractor x;
    int nonempty = 0;
    for (int i = 0; i < 4000; ++i) {
        const std::string input = random_text(rng);
        const std::string repaired = oracle_repair(input);
        std::string lib_repaired(input.size(), '\0');
        lib_repaired.resize(d::utf8_repair(input.data(), input.data() + input.size(), &lib_repaired[0]));
        const std::string written = write_string(input);
        CAPTURE(input);
        CAPTURE(written);
        CHECK(lib_repaired == repaired);
        CHECK(valid(written));
        CHECK(d::utf8_valid(written.data(), written.data() + written.size()));
        CHECK(decode_body(std::string_view(written).substr(1, written.size() - 2)) == repaired);

        const Extraction e = run_extractor(x, content_event(written));
        CHECK(e.result == Result::ok);
        if (repaired.empty()) {
            CHECK(e.events.empty());
        } else {
            ++nonempty;
            CHECK(e.only(EventType::content) == repaired);
        }
        // Writing the repaired text again changes nothing: the writer's output is canonical.
        CHECK(write_string(repaired) == written);
    }
    CHECK(nonempty > 3000);
}

TEST_CASE("property: escaping every character as \\u (with surrogate pairs) decodes to the same text") {
    std::mt19937 rng(99u);
    for (int i = 0; i < 2000; ++i) {
        const std::string text = oracle_repair(random_text(rng));
        // Re-encode each code point as \uXXXX (pairs above the BMP).
        std::string escaped;
        for (std::size_t k = 0; k < text.size();) {
            const std::size_t n = oracle_sequence(text, k);
            std::uint32_t cp = static_cast<unsigned char>(text[k]);
            if (n > 1) {
                cp &= n == 2 ? 0x1Fu : n == 3 ? 0x0Fu : 0x07u;
                for (std::size_t j = 1; j < n; ++j) cp = (cp << 6) | (static_cast<unsigned char>(text[k + j]) & 0x3Fu);
            }
            char buf[16];
            if (cp >= 0x10000) {
                const std::uint32_t v = cp - 0x10000;
                std::snprintf(buf, sizeof buf, "\\u%04X\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            } else {
                std::snprintf(buf, sizeof buf, (i % 2) ? "\\u%04x" : "\\u%04X", cp);
            }
            escaped += buf;
            k += n;
        }
        CAPTURE(escaped);
        CHECK(valid("\"" + escaped + "\""));
        CHECK(decode_body(escaped) == text);
        const Extraction e = extract(content_event("\"" + escaped + "\""));
        if (text.empty()) CHECK(e.events.empty());
        else CHECK(e.only(EventType::content) == text);
    }
}

TEST_CASE("json_member and friends read a tool call's arguments") {
    const std::string args =
        R"( {"expression":"6*7","unit":"\u00b0C \ud83d\ude0a","n":-12.5e1,"exact":true,"off":false,)"
        R"("nothing":null,"nested":{"a":[1,{"b":"c"}]},"\u006eame":"escaped key","n2":1e400} )";
    CHECK(llm_stream::json_string_member(args, "expression") == std::optional<std::string>("6*7"));
    CHECK(llm_stream::json_string_member(args, "unit") == std::optional<std::string>("\xC2\xB0" "C \xF0\x9F\x98\x8A"));
    CHECK(llm_stream::json_string_member(args, "name") == std::optional<std::string>("escaped key"));
    CHECK(llm_stream::json_number_member(args, "n") == std::optional<double>(-125.0));
    CHECK(llm_stream::json_bool_member(args, "exact") == std::optional<bool>(true));
    CHECK(llm_stream::json_bool_member(args, "off") == std::optional<bool>(false));
    CHECK(llm_stream::json_member(args, "nothing") == std::optional<std::string_view>("null"));
    const std::optional<std::string_view> nested = llm_stream::json_member(args, "nested");
    CHECK(nested == std::optional<std::string_view>(R"({"a":[1,{"b":"c"}]})"));
    CHECK(llm_stream::json_member(*nested, "a") == std::optional<std::string_view>(R"([1,{"b":"c"}])"));

    SUBCASE("another type, a missing member, a number out of range: nothing") {
        CHECK_FALSE(llm_stream::json_string_member(args, "n"));
        CHECK_FALSE(llm_stream::json_number_member(args, "expression"));
        CHECK_FALSE(llm_stream::json_bool_member(args, "nothing"));
        CHECK_FALSE(llm_stream::json_member(args, "missing"));
        CHECK_FALSE(llm_stream::json_member(args, "b"));  // only the top level is searched
        CHECK_FALSE(llm_stream::json_number_member(args, "n2"));
    }
    SUBCASE("text that is not one valid JSON object: nothing, even where the member reads well") {
        CHECK_FALSE(llm_stream::json_string_member(R"({"expression":"6*7")", "expression"));  // cut short
        CHECK_FALSE(llm_stream::json_string_member(R"({"expression":"6*7"} x)", "expression"));
        CHECK_FALSE(llm_stream::json_string_member(R"({"expression":"6*7",})", "expression"));
        CHECK_FALSE(llm_stream::json_member(R"(["expression"])", "expression"));
        CHECK_FALSE(llm_stream::json_member("", "expression"));
    }
    SUBCASE("a repeated member: the last one") {
        CHECK(llm_stream::json_number_member(R"({"k":1,"k":2})", "k") == std::optional<double>(2.0));
    }
}
