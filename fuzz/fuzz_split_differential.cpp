// libFuzzer target: split-point independence of the Decoder.
//
// The input is an SSE body. It is wrapped in a chunked HTTP response and decoded in one piece (the
// baseline), then in pieces cut at PRNG-chosen points (seeded by the input: byte by byte, tiny,
// small, mixed and a few random cuts), each piece in its own heap buffer, and framed by other chunk
// sizes, by Content-Length and by connection close. Every run must yield the same events (type,
// text, tool-call fields, usage), the same end (code, HTTP status, message), the same warnings and
// the same event counts; otherwise it prints the first difference and aborts.
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"

#include "fuzz_stream.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > fuzz::max_input || fuzz::skip_known(data, size)) return 0;
    fuzz::Rng rng(fuzz::hash(data, size));
    llm_stream::Limits limits = fuzz::fuzz_config(rng).limits;
    // The framings' heads differ in length: a header limit would tell them apart.
    limits.max_header_bytes = llm_stream::Limits().max_header_bytes;
    const std::string_view body(reinterpret_cast<const char*>(data), size);

    const std::string response = fuzz::http_response(body, fuzz::Framing::chunked, rng, static_cast<int>(rng.below(4)));
    const fuzz::RunResult baseline = fuzz::run_decoder(limits, response, {});

    // The same response in pieces.
    fuzz::same_run(baseline, fuzz::run_decoder(limits, response, fuzz::every_byte(response.size())), "byte by byte");
    for (int style = 0; style < 4; ++style)
        fuzz::same_run(baseline, fuzz::run_decoder(limits, response, fuzz::random_cuts(rng, response.size(), style)),
                       "random pieces");

    // Other framings of the same body.
    const std::string one_byte_chunks = fuzz::http_response(body, fuzz::Framing::chunked, rng, 0);
    fuzz::same_run(baseline,
                   fuzz::run_decoder(limits, one_byte_chunks, fuzz::random_cuts(rng, one_byte_chunks.size(), 2)),
                   "tiny chunks");
    const std::string length = fuzz::http_response(body, fuzz::Framing::content_length, rng, 0);
    fuzz::same_run(baseline, fuzz::run_decoder(limits, length, fuzz::random_cuts(rng, length.size(), 1)),
                   "Content-Length");
    const std::string close = fuzz::http_response(body, fuzz::Framing::close, rng, 0);
    fuzz::same_run(baseline, fuzz::run_decoder(limits, close, fuzz::random_cuts(rng, close.size(), 3)),
                   "close-delimited");
    return 0;
}
