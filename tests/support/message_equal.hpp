// Field-by-field equality of the request model (Message, ContentPart, ToolCall, Tool), which declares
// no operator==: the round-trip checks of test_request and fuzz_messages compare through these.
#ifndef LLM_STREAM_TEST_MESSAGE_EQUAL_HPP
#define LLM_STREAM_TEST_MESSAGE_EQUAL_HPP

#include <algorithm>
#include <vector>

#include "llm_stream.hpp"

namespace llm_test {

template <class T, class Equal>
bool equal_lists(const std::vector<T>& a, const std::vector<T>& b, Equal equal_items) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), equal_items);
}

inline bool equal(const llm_stream::ContentPart& a, const llm_stream::ContentPart& b) {
    const bool same_bytes = a.bytes == b.bytes || (a.bytes && b.bytes && *a.bytes == *b.bytes);
    return a.kind == b.kind && a.text == b.text && a.mime_type == b.mime_type && same_bytes && a.detail == b.detail;
}

inline bool equal(const llm_stream::ToolCall& a, const llm_stream::ToolCall& b) {
    return a.id == b.id && a.name == b.name && a.arguments == b.arguments && a.signature == b.signature;
}

inline bool equal(const llm_stream::Message& a, const llm_stream::Message& b) {
    using Part = llm_stream::ContentPart;
    using Call = llm_stream::ToolCall;
    return a.role == b.role && a.content == b.content &&
           equal_lists(a.parts, b.parts, [](const Part& x, const Part& y) { return equal(x, y); }) &&
           equal_lists(a.tool_calls, b.tool_calls, [](const Call& x, const Call& y) { return equal(x, y); }) &&
           a.tool_call_id == b.tool_call_id && a.name == b.name && a.reasoning == b.reasoning &&
           a.reasoning_signature == b.reasoning_signature && a.redacted_reasoning == b.redacted_reasoning &&
           a.extra_json == b.extra_json;
}

inline bool equal(const llm_stream::Tool& a, const llm_stream::Tool& b) {
    return a.name == b.name && a.description == b.description && a.parameters == b.parameters && a.strict == b.strict;
}

inline bool equal(const std::vector<llm_stream::Message>& a, const std::vector<llm_stream::Message>& b) {
    using llm_stream::Message;
    return equal_lists(a, b, [](const Message& x, const Message& y) { return equal(x, y); });
}

inline bool equal(const std::vector<llm_stream::Tool>& a, const std::vector<llm_stream::Tool>& b) {
    using llm_stream::Tool;
    return equal_lists(a, b, [](const Tool& x, const Tool& y) { return equal(x, y); });
}

}  // namespace llm_test

#endif
