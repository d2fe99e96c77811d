// libFuzzer target: Gemini's stream reader (detail::make_gemini_reader) on arbitrary bytes, as one
// SSE event's data (a GenerateContentResponse, an error object, or a whole reply's array).
//
// - ok/end => every text, id and name is valid UTF-8; every tool call's arguments are valid compact
//   JSON (a JSON object, no whitespace outside strings); finish events carry both the raw reason and
//   a reason in the common vocabulary; invalid => no events and a protocol error saying where;
//   error_event => no events and a server_error whose message is valid UTF-8.
// - text that is not valid JSON is never ok.
// - a reader reused after a rich message and after an error answers like a fresh one (the primer makes
//   no call and does not finish: both count for the rest of the stream, in the next call's index, in
//   STOP's meaning, and in whether usage is final).
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"

#include "fuzz_common.hpp"

#include <memory>
#include <string>
#include <vector>

namespace {

using llm_stream::Event;
using llm_stream::EventType;
using llm_stream::detail::WireReader;
using llm_stream::detail::check_json;

using fuzz::utf8;

bool compact_object(std::string_view text) {
    if (text.empty() || text.front() != '{' || check_json(text)) return false;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string && c == '\\') ++i;
        else if (c == '"') in_string = !in_string;
        else if (!in_string && (c == ' ' || c == '\n' || c == '\r' || c == '\t')) return false;
    }
    return true;
}

/* The reader's answer as text, checking each event on the way. */
std::string answer(WireReader& reader, std::string_view input) {
    const WireReader::Result result = reader.read("", input);
    std::string out = std::to_string(static_cast<int>(result));
    if (result == WireReader::Result::invalid || result == WireReader::Result::error_event) {
        FUZZ_CHECK(reader.events().empty());
        const llm_stream::Error e = reader.error();
        FUZZ_CHECK(e.code == (result == WireReader::Result::invalid ? llm_stream::ErrorCode::protocol
                                                                    : llm_stream::ErrorCode::server_error));
        FUZZ_CHECK(utf8(e.message));
        return out + e.message;
    }
    for (const Event& e : reader.events()) {
        FUZZ_CHECK(e.choice >= 0 && e.choice < llm_stream::detail::max_choices);
        FUZZ_CHECK(utf8(e.text) && utf8(e.raw_reason));
        out += "|" + std::to_string(static_cast<int>(e.type)) + ":" + std::to_string(e.choice) + ":" + std::string(e.text);
        if (e.type == EventType::finish) FUZZ_CHECK(!e.raw_reason.empty() && !e.text.empty());
        if (e.type == EventType::tool_call) {
            FUZZ_CHECK(e.tool_call.id && e.tool_call.name && e.tool_call.arguments);
            FUZZ_CHECK(utf8(*e.tool_call.id) && utf8(*e.tool_call.name));
            FUZZ_CHECK(compact_object(*e.tool_call.arguments));
            out += std::to_string(e.tool_call.index) + "/" + std::string(*e.tool_call.id) + "/" + std::string(*e.tool_call.name) + "/" + std::string(*e.tool_call.arguments);
        }
        if (e.type == EventType::usage) out += std::to_string(e.usage.total_tokens);
    }
    return out;
}

const char primer[] =
    R"({"candidates": [{"content": {"parts": [{"text": "t", "thought": true}, {"text": "c\u00e9"}]}}],)"
    R"( "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 2, "totalTokenCount": 3}})";
const char primer_error[] = R"({"error": {"code": 500, "message": "boom", "status": "INTERNAL"}})";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > fuzz::max_input) return 0;
    const std::unique_ptr<char[]> copy = fuzz::exact_copy(data, size);
    const std::string_view input(copy.get(), size);

    const std::unique_ptr<WireReader> fresh = llm_stream::detail::make_gemini_reader();
    FUZZ_CHECK(fresh != nullptr);
    const std::string first = answer(*fresh, input);
    const std::string_view trimmed = llm_stream::detail::trim_ascii_space(input);
    if (!trimmed.empty() && check_json(trimmed)) FUZZ_CHECK(first[0] == '0' + static_cast<int>(WireReader::Result::invalid));

    const std::unique_ptr<WireReader> after_events = llm_stream::detail::make_gemini_reader();
    FUZZ_CHECK(after_events->read("", primer) == WireReader::Result::ok);
    FUZZ_CHECK(after_events->events().size() == 2);  // reasoning, content (usage waits for the finish)
    FUZZ_CHECK(answer(*after_events, input) == first);
    const std::unique_ptr<WireReader> after_error = llm_stream::detail::make_gemini_reader();
    FUZZ_CHECK(after_error->read("", primer_error) == WireReader::Result::error_event);
    FUZZ_CHECK(answer(*after_error, input) == first);
    return 0;
}
