// libFuzzer target: the whole pipeline (HTTP reader -> SSE parser -> JSON delta extractor) on
// arbitrary bytes, through the public Decoder and through a Stream (Client::replay).
//
// Input starting with "HTTP/" is the whole response; anything else is a body, wrapped (chosen by
// the input's PRNG) in a 200 text/event-stream response (chunked at random sizes, Content-Length
// or close-delimited), a 200 application/json reply, or a non-2xx error. The Decoder gets the
// response in pieces cut at PRNG-chosen points, each in its own heap buffer. Every run must end (no
// hang, bounded calls), never crash or leak, keep the Decoder's feed() contract, deliver only valid
// UTF-8, and a Stream must keep its stats (of choice 0) consistent with what it delivered and answer
// the same through poll() as through next_event() and as the Decoder; the Decoder's events fed to a
// ReplyAssembler make a reply that agrees with them (fuzz_stream.hpp, check_assembled).
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
    const fuzz::RunResult decoded = fuzz::run_decoder(config.limits, response, cuts);
    const fuzz::RunResult blocking = fuzz::run_stream(config, response, false);
    const fuzz::RunResult polled = fuzz::run_stream(config, response, true);
    fuzz::same_run(blocking, polled, "next_event() vs poll()");
    // A Stream that received nothing reports a connection error where the Decoder sees bad HTTP.
    fuzz::same_run(decoded, blocking, "Decoder vs Stream", !response.empty());
    return 0;
}
