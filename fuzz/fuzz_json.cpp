// libFuzzer target: the JSON layer (detail::check_json, DeltaExtractor, json_write_string,
// json_decode_string) on arbitrary bytes.
//
// - check_json agrees with an independent RFC 8259 validator written here (same nesting limit;
//   like the library it does not judge the UTF-8 inside strings, which decoding repairs).
// - DeltaExtractor: ok => every text/tool field is valid UTF-8, a finish reason never empty;
//   invalid => no events; error_event
//   => no events and a valid UTF-8 message; for input that is an object (after whitespace),
//   ok/error_event <=> check_json, but for a choice index outside 0..127, which is refused. A reused
//   extractor (after a rich event) answers exactly like a fresh one.
// - json_write_string(input) is valid UTF-8 and valid JSON, and reads back (json_decode_string,
//   and through DeltaExtractor as a delta's content) as the UTF-8-repaired input.
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"

#include "fuzz_common.hpp"

#include <cstring>
#include <memory>
#include <optional>

namespace {

using llm_stream::Event;
using llm_stream::EventType;
using llm_stream::detail::DeltaExtractor;
using llm_stream::detail::check_json;

using fuzz::utf8;

// --- An independent validator: recursive descent over RFC 8259's grammar ---------------------
class Reference {
public:
    Reference(const char* p, const char* end) : p_(p), end_(end) {}
    bool text() {
        ws();
        if (!value(1)) return false;
        ws();
        return p_ == end_;
    }

private:
    const char* p_;
    const char* end_;
    bool more() const { return p_ < end_; }
    void ws() {
        while (more() && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
    }
    bool eat(char c) {
        if (more() && *p_ == c) { ++p_; return true; }
        return false;
    }
    static bool digit(char c) { return c >= '0' && c <= '9'; }
    static bool hex(char c) { return digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
    // level: the nesting level a container here would have (the library allows 64).
    bool value(int level) {
        if (!more()) return false;
        switch (*p_) {
        case '{': return object(level);
        case '[': return array(level);
        case '"': return string();
        case 't': return word("true");
        case 'f': return word("false");
        case 'n': return word("null");
        default: return number();
        }
    }
    bool word(const char* w) {
        const std::size_t n = std::strlen(w);
        if (static_cast<std::size_t>(end_ - p_) < n || std::memcmp(p_, w, n) != 0) return false;
        p_ += n;
        return true;
    }
    bool number() {
        eat('-');
        if (eat('0')) {
        } else if (more() && digit(*p_) && *p_ != '0') {
            while (more() && digit(*p_)) ++p_;
        } else {
            return false;
        }
        if (eat('.')) {
            if (!more() || !digit(*p_)) return false;
            while (more() && digit(*p_)) ++p_;
        }
        if (eat('e') || eat('E')) {
            if (!eat('+')) eat('-');
            if (!more() || !digit(*p_)) return false;
            while (more() && digit(*p_)) ++p_;
        }
        return true;
    }
    bool string() {
        ++p_;
        while (more()) {
            const unsigned char c = static_cast<unsigned char>(*p_++);
            if (c == '"') return true;
            if (c < 0x20) return false;
            if (c != '\\') continue;
            if (!more()) return false;
            const char e = *p_++;
            if (e == 'u') {
                for (int i = 0; i < 4; ++i)
                    if (!more() || !hex(*p_++)) return false;
            } else if (!std::strchr("\"\\/bfnrt", e) || e == '\0') {
                return false;
            }
        }
        return false;
    }
    bool object(int level) {
        if (level > llm_stream::detail::json_max_depth) return false;
        ++p_;
        ws();
        if (eat('}')) return true;
        for (;;) {
            if (!more() || *p_ != '"' || !string()) return false;
            ws();
            if (!eat(':')) return false;
            ws();
            if (!value(level + 1)) return false;
            ws();
            if (eat(',')) { ws(); continue; }
            return eat('}');
        }
    }
    bool array(int level) {
        if (level > llm_stream::detail::json_max_depth) return false;
        ++p_;
        ws();
        if (eat(']')) return true;
        for (;;) {
            if (!value(level + 1)) return false;
            ws();
            if (eat(',')) { ws(); continue; }
            return eat(']');
        }
    }
};

// --- DeltaExtractor results, copied out so two runs can be compared ---------------------------
struct Copied {
    int type = 0;
    std::string text;
    int index = 0;
    std::string id, name, arguments;  // "\x01" marks absent
    std::int64_t prompt = 0, completion = 0, total = 0;
    bool operator==(const Copied& o) const {
        return type == o.type && text == o.text && index == o.index && id == o.id && name == o.name &&
               arguments == o.arguments && prompt == o.prompt && completion == o.completion && total == o.total;
    }
};

struct Extracted {
    DeltaExtractor::Result result = DeltaExtractor::Result::invalid;
    std::vector<Copied> events;
    std::string error_message;
    std::string why;
    std::size_t error_offset = 0;
};

std::string optional_text(const std::optional<std::string_view>& v) {
    FUZZ_CHECK(!v || utf8(*v));
    return v ? std::string(*v) : std::string("\x01");
}

Extracted extract(DeltaExtractor& x, std::string_view json) {
    Extracted out;
    out.result = x.extract(json);
    for (const Event& e : x.events()) {
        Copied c;
        c.type = static_cast<int>(e.type);
        FUZZ_CHECK(utf8(e.text));
        c.text = std::string(e.text);
        if (e.type == EventType::content || e.type == EventType::reasoning || e.type == EventType::finish)
            FUZZ_CHECK(!e.text.empty());  // a finish reason that decodes to nothing is no finish
        if (e.type == EventType::tool_call) {
            c.index = e.tool_call.index;
            c.id = optional_text(e.tool_call.id);
            c.name = optional_text(e.tool_call.name);
            c.arguments = optional_text(e.tool_call.arguments);
        }
        if (e.type == EventType::usage) {
            c.prompt = e.usage.prompt_tokens;
            c.completion = e.usage.completion_tokens;
            c.total = e.usage.total_tokens;
        }
        out.events.push_back(c);
    }
    switch (out.result) {
    case DeltaExtractor::Result::ok: break;
    case DeltaExtractor::Result::invalid:
        FUZZ_CHECK(x.events().empty());
        FUZZ_CHECK(!x.error().message.empty());
        FUZZ_CHECK(x.error_offset() <= json.size());
        out.why = x.error().message;
        out.error_offset = x.error_offset();
        break;
    case DeltaExtractor::Result::error_event:
        FUZZ_CHECK(x.events().empty());
        FUZZ_CHECK(!x.server_message().empty());
        FUZZ_CHECK(utf8(x.server_message()));
        out.error_message = std::string(x.server_message());
        break;
    case DeltaExtractor::Result::end:  // only read() knows [DONE]
    case DeltaExtractor::Result::out_of_memory:
        FUZZ_CHECK(false);
        break;
    }
    return out;
}

void same(const Extracted& a, const Extracted& b) {
    FUZZ_CHECK(a.result == b.result);
    FUZZ_CHECK(a.events.size() == b.events.size());
    for (std::size_t i = 0; i < a.events.size(); ++i) FUZZ_CHECK(a.events[i] == b.events[i]);
    FUZZ_CHECK(a.error_message == b.error_message);
    FUZZ_CHECK(a.why == b.why);
    FUZZ_CHECK(a.error_offset == b.error_offset);
}

// An event that sets every field the extractor keeps, so state left behind would show.
const char primer[] =
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\u00e9crit\",\"reasoning_content\":\"r\","
    "\"tool_calls\":[{\"index\":3,\"id\":\"call_1\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]},"
    "\"finish_reason\":\"stop\",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}],"
    "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":5,\"total_tokens\":9}}";
const char primer_error[] = "{\"error\":{\"message\":\"m\",\"type\":\"t\",\"code\":42}}";

std::string repaired(std::string_view s) {
    std::string out(s.size(), '\0');
    out.resize(llm_stream::detail::utf8_repair(s.data(), s.data() + s.size(), &out[0]));
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > fuzz::max_input) return 0;
    const std::unique_ptr<char[]> copy = fuzz::exact_copy(data, size);
    const std::string_view input(copy.get(), size);

    // 1. check_json against the reference.
    const bool valid = !check_json(input);
    FUZZ_CHECK(valid == Reference(input.data(), input.data() + input.size()).text());

    // 2. DeltaExtractor, fresh and reused.
    DeltaExtractor fresh;
    const Extracted first = extract(fresh, input);
    same(first, extract(fresh, input));  // the same extractor again
    {
        DeltaExtractor reused;
        FUZZ_CHECK(reused.extract(primer) == DeltaExtractor::Result::ok);
        FUZZ_CHECK(reused.events().size() == 5);  // reasoning, content, tool call, finish, usage
        same(first, extract(reused, input));
        FUZZ_CHECK(reused.extract(primer_error) == DeltaExtractor::Result::error_event);
        same(first, extract(reused, input));
    }
    std::size_t lead = 0;
    while (lead < size && (input[lead] == ' ' || input[lead] == '\t' || input[lead] == '\n' || input[lead] == '\r'))
        ++lead;
    // Valid JSON is refused for one reason of the extractor's own: a choice index outside 0..127.
    const bool bad_index = first.why.find("a choice's index must be") != std::string::npos;
    if (lead < size && input[lead] == '{')
        FUZZ_CHECK((first.result != DeltaExtractor::Result::invalid) == (valid && !bad_index));
    else
        FUZZ_CHECK(first.result == DeltaExtractor::Result::invalid);

    // 3. The public member readers see a member only in one valid JSON object, and its value is
    //    itself valid JSON.
    for (const char* name : {"content", "a", ""}) {
        const std::optional<std::string_view> member = llm_stream::json_member(input, name);
        if (!member) continue;
        FUZZ_CHECK(valid && lead < size && input[lead] == '{');
        FUZZ_CHECK(!check_json(*member));
    }

    // 4. json_write_string round trip.
    std::string written;
    llm_stream::detail::json_write_string(written, input);
    FUZZ_CHECK(written.size() >= 2 && written.front() == '"' && written.back() == '"');
    FUZZ_CHECK(utf8(written));
    FUZZ_CHECK(!check_json(written));
    const std::string expected = repaired(input);
    {
        std::unique_ptr<char[]> out(new char[written.size()]);
        const std::size_t n = llm_stream::detail::json_decode_string(written.data() + 1,
                                                                     written.data() + written.size() - 1, out.get());
        FUZZ_CHECK(std::string_view(out.get(), n) == expected);
    }
    const std::string chunk = "{\"choices\":[{\"delta\":{\"content\":" + written + "}}]}";
    DeltaExtractor x;
    FUZZ_CHECK(x.extract(chunk) == DeltaExtractor::Result::ok);
    if (expected.empty()) {
        FUZZ_CHECK(x.events().empty());
    } else {
        FUZZ_CHECK(x.events().size() == 1);
        FUZZ_CHECK(x.events()[0].type == EventType::content);
        FUZZ_CHECK(x.events()[0].text == expected);
    }
    return 0;
}
