// libFuzzer target: Ollama's NDJSON reader (detail::make_ollama_reader) on arbitrary bytes, taken as
// an NDJSON body: each '\n'-terminated line to one reader, as the Decoder hands them over.
//
// - A line that is an object (after whitespace) is read (ok, end or error_event) exactly when it is
//   valid JSON; any other line is invalid. invalid and error_event have no events and an error
//   with a UTF-8 message.
// - Text, reasoning, ids, names and arguments are valid UTF-8 (arguments sent as an object are
//   compacted JSON; sent as a string, the OpenAI form, they are kept as received, JSON or not, as every
//   reader keeps a model's broken arguments); tool calls are numbered 0, 1, 2, ... across the lines;
//   finish and usage come only with end, once each; a finish reason is never empty.
// - A fresh reader answers each line with the same result as the one that read the earlier lines.
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"

#include "fuzz_common.hpp"

#include <memory>
#include <string_view>

namespace {

using llm_stream::Event;
using llm_stream::EventType;
using llm_stream::detail::WireReader;
using Result = WireReader::Result;

using fuzz::utf8;

void check_event(const Event& e, Result result, int& next_call) {
    switch (e.type) {
    case EventType::content:
    case EventType::reasoning: FUZZ_CHECK(!e.text.empty() && utf8(e.text)); break;
    case EventType::tool_call:
        FUZZ_CHECK(e.tool_call.index == next_call++);
        FUZZ_CHECK(e.tool_call.id && utf8(*e.tool_call.id));
        FUZZ_CHECK(e.tool_call.name && utf8(*e.tool_call.name));
        FUZZ_CHECK(e.tool_call.arguments && utf8(*e.tool_call.arguments));
        break;
    case EventType::finish: FUZZ_CHECK(result == Result::end && !e.text.empty() && utf8(e.raw_reason)); break;
    case EventType::usage: FUZZ_CHECK(result == Result::end); break;
    }
    FUZZ_CHECK(e.choice == 0);
}

void check_line(WireReader& reader, std::string_view line, int& next_call) {
    const Result result = reader.read("", line);
    std::size_t lead = 0;
    while (lead < line.size() && (line[lead] == ' ' || line[lead] == '\t' || line[lead] == '\r')) ++lead;
    const bool object = lead < line.size() && line[lead] == '{';
    FUZZ_CHECK((result != Result::invalid) == (object && !llm_stream::detail::check_json(line)));
    FUZZ_CHECK(llm_stream::detail::make_ollama_reader()->read("", line) == result);
    if (result == Result::invalid || result == Result::error_event) {
        FUZZ_CHECK(reader.events().empty());
        const llm_stream::Error e = reader.error();
        FUZZ_CHECK(e && !e.message.empty() && utf8(e.message));
        return;
    }
    FUZZ_CHECK(result == Result::ok || result == Result::end);
    int finishes = 0, usages = 0;
    for (const Event& e : reader.events()) {
        check_event(e, result, next_call);
        finishes += e.type == EventType::finish;
        usages += e.type == EventType::usage;
    }
    FUZZ_CHECK(finishes == (result == Result::end ? 1 : 0) && usages <= 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > fuzz::max_input) return 0;
    const std::unique_ptr<char[]> copy = fuzz::exact_copy(data, size);
    std::string_view rest(copy.get(), size);
    const std::unique_ptr<WireReader> reader = llm_stream::detail::make_ollama_reader();
    int next_call = 0;
    while (!rest.empty()) {
        const std::size_t newline = rest.find('\n');
        const std::string_view line = rest.substr(0, newline);
        rest.remove_prefix(newline == std::string_view::npos ? rest.size() : newline + 1);
        check_line(*reader, line, next_call);
    }
    return 0;
}
