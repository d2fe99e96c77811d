// libFuzzer target: the whole pipeline (detail::replay_stream: HTTP reader -> SSE parser -> JSON
// delta extractor -> Stream) on arbitrary bytes.
//
// Input starting with "HTTP/" is the whole response; anything else is a body, wrapped (chosen by
// the input's PRNG) in a 200 text/event-stream response (chunked at random sizes, Content-Length
// or close-delimited), a 200 application/json reply, or a non-2xx error. The transport splits the
// response at PRNG-chosen points. The stream must end (no hang, bounded calls), never crash or
// leak, deliver only valid UTF-8, keep its stats consistent with what it delivered, and answer
// the same through poll() as through next_event().
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"

#include "fuzz_stream.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > fuzz::max_input || fuzz::skip_known(data, size)) return 0;
    fuzz::Rng rng(fuzz::hash(data, size));
    llm_stream::Config config = fuzz::fuzz_config(rng);
    if (rng.below(4) == 0) config.limits.receive_buffer_bytes = 1 + rng.below(64);

    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::string response;
    if (input.substr(0, 5) == "HTTP/") {
        response.assign(input);
    } else {
        const int chunk_style = static_cast<int>(rng.below(4));
        switch (rng.below(8)) {
        case 0: response = fuzz::http_response(input, fuzz::Framing::content_length, rng, 0); break;
        case 1: response = fuzz::http_response(input, fuzz::Framing::close, rng, 0); break;
        case 2:
            response = fuzz::http_response(input, fuzz::Framing::chunked, rng, chunk_style, "HTTP/1.1 200 OK",
                                           "application/json");
            break;
        case 3:
            response = fuzz::http_response(input, fuzz::Framing::content_length, rng, 0,
                                           rng.below(2) ? "HTTP/1.1 429 Too Many Requests" : "HTTP/1.0 500 Oops",
                                           "application/json");
            break;
        case 4: {  // cut short somewhere
            response = fuzz::http_response(input, fuzz::Framing::chunked, rng, chunk_style);
            response.resize(rng.below(response.size() + 1));
            break;
        }
        default: response = fuzz::http_response(input, fuzz::Framing::chunked, rng, chunk_style); break;
        }
    }
    const std::vector<std::size_t> cuts = fuzz::random_cuts(rng, response.size(), static_cast<int>(rng.below(4)));
    const fuzz::RunResult blocking = fuzz::run_stream(config, response, cuts, false);
    const fuzz::RunResult polled = fuzz::run_stream(config, response, cuts, true);
    fuzz::same_run(blocking, polled, "next_event() vs poll()");
    return 0;
}
