// libFuzzer target: the Anthropic Messages reader (detail::make_anthropic_reader) on arbitrary
// messages. The input is one message per line: "NAME\tDATA" (an SSE event's name and data) or DATA
// alone (no event name), as make_seeds writes the recorded anthropic-*.sse streams.
//
// - ok/end: content and reasoning events are non-empty valid UTF-8, as are ids, names, argument
//   fragments and finish reasons; a tool call's index is below the number of tool_use blocks opened
//   so far; usage totals add up.
// - invalid: no events and a protocol error naming a byte within the data; data that is not valid
//   JSON is always invalid (or an error event when the event is named "error").
// - error_event: no events, a server_error whose message is valid UTF-8.
// - A second reader fed the same messages answers exactly the same (no state leaks between calls
//   other than the stream's own).
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

using fuzz::utf8;
using fuzz::utf8_or_absent;


/* One message's outcome, copied out so that two readers can be compared. */
struct Outcome {
    WireReader::Result result = WireReader::Result::ok;
    std::string text;  // every event, flattened
    std::string error;
    bool operator==(const Outcome& o) const { return result == o.result && text == o.text && error == o.error; }
};

void check_event(const Event& e, int& tool_calls) {
    FUZZ_CHECK(utf8(e.text) && utf8(e.raw_reason) && utf8(e.signature));
    // A thinking block's signature (or a redacted block's data) is a reasoning event without text.
    const bool signature = e.type == EventType::reasoning && !e.signature.empty();
    if (e.type == EventType::content || e.type == EventType::reasoning) FUZZ_CHECK(!e.text.empty() || signature);
    if (e.type == EventType::finish) FUZZ_CHECK(!e.text.empty() && !e.raw_reason.empty());
    if (e.type == EventType::usage)
        FUZZ_CHECK(e.usage.total_tokens == e.usage.prompt_tokens + e.usage.completion_tokens);
    if (e.type != EventType::tool_call) return;
    FUZZ_CHECK(utf8_or_absent(e.tool_call.id) && utf8_or_absent(e.tool_call.name) && utf8_or_absent(e.tool_call.arguments));
    if (!e.tool_call.arguments) tool_calls = std::max(tool_calls, e.tool_call.index + 1);  // a call opens
    FUZZ_CHECK(e.tool_call.index >= 0 && e.tool_call.index < tool_calls);
}

Outcome read_one(WireReader& reader, std::string_view name, std::string_view data, int& tool_calls) {
    Outcome out;
    out.result = reader.read(name, data);
    for (const Event& e : reader.events()) {
        check_event(e, tool_calls);
        out.text += std::to_string(static_cast<int>(e.type)) + ':' + std::string(e.text) + '|' +
                    std::string(e.tool_call.arguments.value_or("")) + '|' +
                    std::to_string(e.usage.total_tokens) + '\n';
    }
    const bool valid_json = !llm_stream::detail::check_json(data);
    switch (out.result) {
    case WireReader::Result::ok:
    case WireReader::Result::end:
        FUZZ_CHECK(valid_json);
        break;
    case WireReader::Result::invalid:
        FUZZ_CHECK(reader.events().empty());
        FUZZ_CHECK(reader.error().code == llm_stream::ErrorCode::protocol);
        out.error = reader.error().message;
        break;
    case WireReader::Result::error_event:
        FUZZ_CHECK(reader.events().empty());
        FUZZ_CHECK(valid_json || name == "error");
        FUZZ_CHECK(reader.error().code == llm_stream::ErrorCode::server_error);
        FUZZ_CHECK(utf8(reader.error().message));
        out.error = reader.error().message;
        break;
    case WireReader::Result::out_of_memory:
        FUZZ_CHECK(false);
        break;
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > fuzz::max_input) return 0;
    const std::unique_ptr<char[]> copy = fuzz::exact_copy(data, size);
    std::string_view rest(copy.get(), size);
    const std::unique_ptr<WireReader> first = llm_stream::detail::make_anthropic_reader();
    const std::unique_ptr<WireReader> second = llm_stream::detail::make_anthropic_reader();
    int first_calls = 0, second_calls = 0;
    while (!rest.empty()) {
        const std::size_t eol = rest.find('\n');
        std::string_view line = rest.substr(0, eol);
        rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 1);
        const std::size_t tab = line.find('\t');
        const std::string_view name = tab == std::string_view::npos ? std::string_view() : line.substr(0, tab);
        if (tab != std::string_view::npos) line.remove_prefix(tab + 1);
        const Outcome a = read_one(*first, name, line, first_calls);
        FUZZ_CHECK(a == read_one(*second, name, line, second_calls));
    }
    return 0;
}
