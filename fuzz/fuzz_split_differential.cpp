// libFuzzer target: split-point independence of the whole pipeline.
//
// The input is an SSE body. It is wrapped in a chunked HTTP response and replayed through
// detail::replay_stream in one read (the baseline), then with transport split points from a PRNG
// seeded by the input (byte by byte, tiny, small, mixed and a few random cuts), with a tiny
// receive buffer, with other chunk sizes, and framed by Content-Length and by connection close.
// Every run must yield the same events (type, text, tool-call fields, usage), the same final
// error (code, HTTP status, message) and the same event counts; otherwise it prints the first
// difference and aborts.
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"

#include "fuzz_stream.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > fuzz::max_input || fuzz::skip_known(data, size)) return 0;
    fuzz::Rng rng(fuzz::hash(data, size));
    llm_stream::Config config = fuzz::fuzz_config(rng);
    // The framings' heads differ in length: a header limit would tell them apart.
    config.limits.max_header_bytes = llm_stream::Limits().max_header_bytes;
    const std::string_view body(reinterpret_cast<const char*>(data), size);

    const std::string response = fuzz::http_response(body, fuzz::Framing::chunked, rng, static_cast<int>(rng.below(4)));
    llm_stream::Config whole_read = config;
    whole_read.limits.receive_buffer_bytes = response.size() + 1;  // the baseline: one read, no split
    const fuzz::RunResult baseline = fuzz::run_stream(whole_read, response, {});

    // Transport splits of the same response.
    fuzz::same_run(baseline, fuzz::run_stream(config, response, fuzz::every_byte(response.size())), "byte by byte");
    for (int style = 0; style < 4; ++style)
        fuzz::same_run(baseline, fuzz::run_stream(config, response, fuzz::random_cuts(rng, response.size(), style)),
                       "random split points");
    llm_stream::Config tiny = config;
    tiny.limits.receive_buffer_bytes = 1 + rng.below(32);
    fuzz::same_run(baseline, fuzz::run_stream(tiny, response, {}), "tiny receive buffer");

    // Other framings of the same body.
    const std::string one_byte_chunks = fuzz::http_response(body, fuzz::Framing::chunked, rng, 0);
    fuzz::same_run(baseline, fuzz::run_stream(config, one_byte_chunks, fuzz::random_cuts(rng, one_byte_chunks.size(), 2)),
                   "tiny chunks");
    const std::string length = fuzz::http_response(body, fuzz::Framing::content_length, rng, 0);
    fuzz::same_run(baseline, fuzz::run_stream(config, length, fuzz::random_cuts(rng, length.size(), 1)), "Content-Length");
    const std::string close = fuzz::http_response(body, fuzz::Framing::close, rng, 0);
    fuzz::same_run(baseline, fuzz::run_stream(config, close, fuzz::random_cuts(rng, close.size(), 3)), "close-delimited");
    return 0;
}
