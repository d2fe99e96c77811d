// The stub in each API's wire format against the chat-completions (openai) stub: the reply a stub
// makes, assembled, and a check that another API's stub decodes to the same reply. Include after doctest.
#ifndef LLM_STREAM_TEST_STUB_CHECK_HPP
#define LLM_STREAM_TEST_STUB_CHECK_HPP

#include <chrono>
#include <cstddef>
#include <string_view>
#include <vector>

#include "llm_stream.hpp"
#include "ensure.hpp"

namespace llm_test {

/* The reply the stub makes for `messages` in `api`'s wire format, assembled (no delay, no log). */
inline llm_stream::Reply stub_reply(llm_stream::Api api, const std::vector<llm_stream::Message>& messages,
                                    llm_stream::ChatOptions options) {
    llm_stream::Config config;
    config.api = api;
    config.model = "m";
    config.stub_chunk_delay = std::chrono::milliseconds(0);
    config.log_level = llm_stream::LogLevel::off;
    options.assemble_reply = true;
    llm_stream::Client client(config);
    llm_stream::Stream stream = client.stream_chat(messages, options);
    while (stream.next_event()) {}
    CHECK_FALSE(stream.error());
    return stream.reply();
}

/* `api`'s stub decodes to the openai stub's reply: text, reasoning, calls, finish reason and usage.
   Only what is the API's own differs: its raw finish reason (checked when given) and, when given,
   the id it gives every call. */
inline void check_same_as_openai_stub(llm_stream::Api api, const std::vector<llm_stream::Message>& messages,
                                      const llm_stream::ChatOptions& options, std::string_view raw_finish_reason = {},
                                      std::string_view own_call_id = {}) {
    const llm_stream::Reply got = stub_reply(api, messages, options);
    const llm_stream::Reply openai = stub_reply(llm_stream::Api::openai, messages, options);
    ENSURE(got.choices.size() == 1);
    ENSURE(openai.choices.size() == 1);
    const llm_stream::Message& g = got.message();
    const llm_stream::Message& o = openai.message();
    CHECK(g.content == o.content);
    CHECK(g.reasoning == o.reasoning);
    ENSURE(g.tool_calls.size() == o.tool_calls.size());
    for (std::size_t i = 0; i < g.tool_calls.size(); ++i) {
        CHECK(g.tool_calls[i].id == (own_call_id.empty() ? std::string_view(o.tool_calls[i].id) : own_call_id));
        CHECK(g.tool_calls[i].name == o.tool_calls[i].name);
        CHECK(g.tool_calls[i].arguments == o.tool_calls[i].arguments);
    }
    CHECK(got.choices[0].finish_reason == openai.choices[0].finish_reason);
    if (!raw_finish_reason.empty()) CHECK(got.choices[0].raw_finish_reason == raw_finish_reason);
    CHECK(got.has_usage);
    CHECK(got.usage.prompt_tokens == openai.usage.prompt_tokens);
    CHECK(got.usage.completion_tokens == openai.usage.completion_tokens);
    CHECK(got.usage.total_tokens == openai.usage.total_tokens);
}

}  // namespace llm_test

#endif
