// libFuzzer target: the conversation readers (parse_messages, parse_tools) on arbitrary bytes.
//
// - Either reader succeeds or returns invalid_argument with a message, leaving its output untouched.
// - When parse_messages succeeds, the messages written back (write_message_json, the request body's
//   writer) are valid JSON that parses to equal messages; the same for parse_tools and the tools'
//   writer. What was read, build_request either sends (a valid JSON body) or refuses as invalid_argument.
#define LLM_STREAM_INTERNALS  // detail::write_tools and check_json too; the implementation is linked in
#include "llm_stream.hpp"

#include "fuzz_common.hpp"
#include "../tests/support/message_equal.hpp"

#include <cstring>
#include <memory>

namespace {

using llm_stream::Error;
using llm_stream::ErrorCode;
using llm_stream::Message;
using llm_stream::Tool;

void check_refusal(const Error& e) {
    FUZZ_CHECK(e.code == ErrorCode::invalid_argument);
    FUZZ_CHECK(!e.message.empty());
}

std::string written(const std::vector<Message>& messages) {
    std::string out = "[";
    for (std::size_t i = 0; i < messages.size(); ++i) {
        if (i) out += ',';
        llm_stream::write_message_json(out, messages[i]);
    }
    out += ']';
    return out;
}

void check_messages(std::string_view input) {
    std::vector<Message> messages = {Message::user("sentinel")};
    if (const Error e = llm_stream::parse_messages(input, messages)) {
        check_refusal(e);
        FUZZ_CHECK(messages.size() == 1 && messages[0].content == "sentinel");
        return;
    }
    const std::string json = written(messages);
    FUZZ_CHECK(!llm_stream::detail::check_json(json));
    std::vector<Message> again;
    FUZZ_CHECK(!llm_stream::parse_messages(json, again));
    FUZZ_CHECK(llm_test::equal(messages, again));

    llm_stream::Config config;
    config.model = "m";
    llm_stream::ChatOptions options;
    options.system.clear();
    llm_stream::Request request;
    if (const Error e = llm_stream::build_request(config, messages, options, request)) check_refusal(e);
    else FUZZ_CHECK(!llm_stream::detail::check_json(request.body));
}

void check_tools(std::string_view input) {
    std::vector<Tool> tools;
    if (const Error e = llm_stream::parse_tools(input, tools)) {
        check_refusal(e);
        FUZZ_CHECK(tools.empty());
        return;
    }
    std::string json;
    llm_stream::detail::write_tools(json, tools);
    FUZZ_CHECK(!llm_stream::detail::check_json(json));
    std::vector<Tool> again;
    FUZZ_CHECK(!llm_stream::parse_tools(json, again));
    FUZZ_CHECK(llm_test::equal(tools, again));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > fuzz::max_input) return 0;
    const std::unique_ptr<char[]> copy = fuzz::exact_copy(data, size);
    const std::string_view input(copy.get(), size);
    check_messages(input);
    check_tools(input);
    return 0;
}
