// libFuzzer target: the OpenAI Responses API reader (detail::make_responses_reader) on arbitrary bytes.
//
// The input is a stream's messages, one per line (as the SSE data lines of a recorded stream; the
// seeds are tests/data/streams/responses-*.sse's), read in order by one reader, whose state (the
// calls opened so far) carries from one message to the next.
//
// - ok/end => every text, id, name and argument is valid UTF-8, no text event is empty, a finish
//   has a reason, an arguments fragment's index is that of a call opened before.
// - invalid => no events, a protocol error that says where; error_event => no events, a
//   server_error whose message is valid UTF-8.
// - Each message that is not a valid JSON object is invalid (blank ones are keep-alives); each
//   invalid message is not a valid JSON object (or one call too many).
// - A second reader fed the same messages gives the same results and events.
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"

#include "fuzz_common.hpp"

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using llm_stream::Event;
using llm_stream::EventType;
using llm_stream::detail::WireReader;
using Result = WireReader::Result;

using fuzz::utf8;
using fuzz::utf8_or_absent;

/* One message's outcome as text, to compare two readers. */
std::string outcome(Result result, const WireReader& reader) {
    std::string out = std::to_string(static_cast<int>(result)) + ":";
    for (const Event& e : reader.events()) {
        out += std::to_string(static_cast<int>(e.type)) + "," + std::string(e.text) + "," + std::string(e.raw_reason) +
               "," + std::to_string(e.tool_call.index) + "," + std::string(e.tool_call.id.value_or("-")) + "," +
               std::string(e.tool_call.name.value_or("-")) + "," + std::string(e.tool_call.arguments.value_or("-")) +
               "," + std::to_string(e.usage.total_tokens) + ";";
    }
    if (result == Result::invalid || result == Result::error_event) out += reader.error().message;
    return out;
}

void check_events(const WireReader& reader, int& calls_opened) {
    for (const Event& e : reader.events()) {
        FUZZ_CHECK(utf8(e.text) && utf8(e.raw_reason));
        if (e.type == EventType::content || e.type == EventType::reasoning) FUZZ_CHECK(!e.text.empty());
        if (e.type == EventType::finish) FUZZ_CHECK(!e.text.empty());
        if (e.type != EventType::tool_call) continue;
        FUZZ_CHECK(utf8_or_absent(e.tool_call.id) && utf8_or_absent(e.tool_call.name) && utf8_or_absent(e.tool_call.arguments));
        // A fragment belongs to a call opened before (an opening event has the id); a new
        // response counts its calls from 0 again, so the indexes stay below the calls opened so far.
        FUZZ_CHECK(e.tool_call.index >= 0 && e.tool_call.index <= calls_opened);
        if (e.tool_call.id) ++calls_opened;
        else FUZZ_CHECK(e.tool_call.index < calls_opened);
    }
}

void check_message(std::string_view message, Result result, const WireReader& reader, int& calls_opened) {
    const bool valid_json = !llm_stream::detail::check_json(message);
    const std::string_view trimmed = llm_stream::detail::trim_ascii_space(message);
    const bool blank = trimmed.empty();
    const bool object = !blank && trimmed.front() == '{';  // the only JSON an event may be
    switch (result) {
    case Result::ok:
    case Result::end:
        FUZZ_CHECK((valid_json && object) || blank);
        check_events(reader, calls_opened);
        break;
    case Result::invalid:
        FUZZ_CHECK(reader.events().empty());
        FUZZ_CHECK(!valid_json || !object || reader.error().message.find("function calls") != std::string::npos);
        FUZZ_CHECK(reader.error().code == llm_stream::ErrorCode::protocol);
        FUZZ_CHECK(reader.error().message.find(" at byte ") != std::string::npos);
        break;
    case Result::error_event:
        FUZZ_CHECK(valid_json && object && reader.events().empty());
        FUZZ_CHECK(reader.error().code == llm_stream::ErrorCode::server_error && utf8(reader.error().message));
        break;
    case Result::out_of_memory:
        break;
    }
}

std::vector<std::string_view> lines(std::string_view input) {
    std::vector<std::string_view> out;
    while (!input.empty()) {
        const std::size_t end = input.find('\n');
        out.push_back(input.substr(0, end));
        if (end == std::string_view::npos) break;
        input.remove_prefix(end + 1);
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > fuzz::max_input) return 0;
    const std::unique_ptr<char[]> copy = fuzz::exact_copy(data, size);
    const std::vector<std::string_view> messages = lines(std::string_view(copy.get(), size));
    const std::unique_ptr<WireReader> reader = llm_stream::detail::make_responses_reader();
    const std::unique_ptr<WireReader> again = llm_stream::detail::make_responses_reader();
    FUZZ_CHECK(reader && again);
    int calls_opened = 0;
    for (std::string_view message : messages) {
        const Result result = reader->read("", message);
        check_message(message, result, *reader, calls_opened);
        FUZZ_CHECK(outcome(result, *reader) == outcome(again->read("", message), *again));
    }
    return 0;
}
