// The request side as the tests of each API see it: the body build_request() writes for a
// configuration (the text of its refusal instead when it refuses), and a refusal that names its field.
// Include after doctest.
#ifndef LLM_STREAM_TEST_REQUEST_CHECK_HPP
#define LLM_STREAM_TEST_REQUEST_CHECK_HPP

#include <string>
#include <string_view>
#include <vector>

#include "llm_stream.hpp"

namespace llm_test {

/* Options that write nothing of their own (no system prompt, no usage request), so each test shows
   only what it sets. */
inline llm_stream::ChatOptions bare_options() {
    llm_stream::ChatOptions options;
    options.system.clear();
    options.include_usage = false;
    return options;
}

/* The body for `messages` under `options`; "(error) ..." when build_request refuses them. */
inline std::string request_body(const llm_stream::Config& config, const std::vector<llm_stream::Message>& messages,
                                const llm_stream::ChatOptions& options) {
    llm_stream::Request request;
    if (const llm_stream::Error e = llm_stream::build_request(config, messages, options, request))
        return "(error) " + e.message;
    return request.body;
}

/* build_request refuses with invalid_argument and a message that names `field`. */
inline void check_request_refused(const llm_stream::Config& config, const std::vector<llm_stream::Message>& messages,
                                  const llm_stream::ChatOptions& options, std::string_view field) {
    llm_stream::Request request;
    const llm_stream::Error e = llm_stream::build_request(config, messages, options, request);
    INFO("field: ", field, "; error: ", e.message);
    CHECK(e.code == llm_stream::ErrorCode::invalid_argument);
    CHECK(e.message.find(field) != std::string::npos);
}

}  // namespace llm_test

#endif
