// HTTP/1.1 chunked framing, and the whole 200 responses that tests, fuzz targets and benchmarks make up.
#ifndef LLM_STREAM_TEST_CHUNKED_HPP
#define LLM_STREAM_TEST_CHUNKED_HPP

#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "random_cuts.hpp"

struct ChunkedStyle {
    bool upper_hex = false;       // "1F" rather than "1f"
    std::string_view extension;   // after every size, e.g. ";ext=1" (ignored by readers)
    bool last_chunk = true;       // false: no "0" chunk, as when the connection drops between chunks
};

/* The last chunk and an empty trailer section: the end of a chunked body. */
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

/* "1f\r\n": the line that opens a chunk of n bytes. */
inline std::string chunk_size_line(std::size_t n, const ChunkedStyle& style = {}) {
    char digits[32];
    std::snprintf(digits, sizeof digits, style.upper_hex ? "%zX" : "%zx", n);
    return digits + std::string(style.extension) + "\r\n";
}

/* `body` as chunks that end at each of `ends` (increasing offsets inside it) and at its end, then
   the last chunk and an empty trailer section. */
inline std::string chunked(std::string_view body, const std::vector<std::size_t>& ends, const ChunkedStyle& style = {}) {
    std::string out;
    out.reserve(body.size() + 16 * (ends.size() + 2));
    std::size_t at = 0;
    for (std::size_t i = 0; i <= ends.size(); ++i) {
        const std::size_t end = i < ends.size() ? ends[i] : body.size();
        if (end <= at) continue;  // no empty chunk: it would end the body
        out += chunk_size_line(end - at, style);
        out.append(body.substr(at, end - at));
        out += "\r\n";
        at = end;
    }
    if (style.last_chunk) out += kLastChunk;
    return out;
}

/* The head of a 200 response whose event stream follows in chunks. */
inline constexpr std::string_view kChunkedSseHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

/* A 200 response carrying the event stream `body` in chunks of `chunk_size` bytes (the last one shorter). */
inline std::string chunked_sse_response(std::string_view body, std::size_t chunk_size) {
    return std::string(kChunkedSseHead) + chunked(body, even_cuts(chunk_size, body.size()));
}

/* A 200 response carrying `body` whole, its end given by Content-Length. */
inline std::string length_response(std::string_view body, std::string_view content_type = "text/event-stream") {
    return "HTTP/1.1 200 OK\r\nContent-Type: " + std::string(content_type) +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

#endif
