/* llm-relay's HTTP: a request read from the bytes received (sans-I/O, bounded), the responses it
   writes, and text as Server-Sent Events. Included by llm-relay.cpp after llm_stream.hpp. */
#ifndef LLM_STREAM_EXAMPLES_RELAY_HTTP_HPP
#define LLM_STREAM_EXAMPLES_RELAY_HTTP_HPP

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace relay {

constexpr std::size_t kMaxHeadBytes = 16 * 1024;  // request line and headers: more is 431
constexpr std::size_t kMaxBodyBytes = 64 * 1024;  // a prompt in a JSON body: more is 413

struct HttpRequest {
    std::string method, path, query;  // the target split at '?', both still URL-encoded
    std::string authorization;
    std::size_t head_bytes = 0;       // the request line and headers, the blank line included
    std::size_t content_length = 0;
};

/* Why a request cannot be served: the status to answer and a message naming the culprit. */
struct Refusal {
    int status = 0;
    std::string message;
};

enum class ReadStatus { incomplete, complete, refused };

inline bool equals_ignore_case(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

inline std::string_view trimmed(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    return text;
}

/* "METHOD TARGET HTTP/1.x" */
inline bool read_request_line(std::string_view line, HttpRequest& out) {
    const std::size_t first = line.find(' ');
    const std::size_t second = first == std::string_view::npos ? first : line.find(' ', first + 1);
    if (second == std::string_view::npos || first == 0) return false;
    const std::string_view version = line.substr(second + 1);
    if (version != "HTTP/1.1" && version != "HTTP/1.0") return false;
    const std::string_view target = line.substr(first + 1, second - first - 1);
    if (target.empty() || target[0] != '/') return false;
    const std::size_t question = target.find('?');
    out.method = std::string(line.substr(0, first));
    out.path = std::string(target.substr(0, question));
    out.query = question == std::string_view::npos ? "" : std::string(target.substr(question + 1));
    return true;
}

/* One header line; only the headers the relay acts on are kept. */
inline bool read_header(std::string_view line, HttpRequest& out, Refusal& refusal) {
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
        refusal = {400, "malformed header line"};
        return false;
    }
    const std::string_view name = line.substr(0, colon), value = trimmed(line.substr(colon + 1));
    if (equals_ignore_case(name, "authorization")) out.authorization = std::string(value);
    if (equals_ignore_case(name, "transfer-encoding")) {
        refusal = {411, "send the request body with Content-Length, not Transfer-Encoding"};
        return false;
    }
    if (!equals_ignore_case(name, "content-length")) return true;
    if (value.empty() || value.find_first_not_of("0123456789") != std::string_view::npos) {
        refusal = {400, "Content-Length is not a number"};
        return false;
    }
    std::size_t length = 0;  // saturates just above the limit: any longer number is too large too
    for (char c : value) length = std::min(length * 10 + static_cast<std::size_t>(c - '0'), kMaxBodyBytes + 1);
    if (length > kMaxBodyBytes) {
        refusal = {413, "the request body is larger than " + std::to_string(kMaxBodyBytes) + " bytes"};
        return false;
    }
    out.content_length = length;
    return true;
}

/* The request in `received` once its head and body are all there; refused with the status to answer
   as soon as the bytes show it cannot be served (too large, malformed). */
inline ReadStatus read_request(std::string_view received, HttpRequest& out, Refusal& refusal) {
    const std::size_t end = received.find("\r\n\r\n");
    if (end == std::string_view::npos || end + 4 > kMaxHeadBytes) {
        if (received.size() < kMaxHeadBytes) return ReadStatus::incomplete;
        refusal = {431, "the request head is larger than " + std::to_string(kMaxHeadBytes) + " bytes"};
        return ReadStatus::refused;
    }
    out = HttpRequest{};
    out.head_bytes = end + 4;
    std::string_view head = received.substr(0, end);
    const std::size_t line_end = head.find("\r\n");
    if (!read_request_line(head.substr(0, line_end), out)) {
        refusal = {400, "malformed request line"};
        return ReadStatus::refused;
    }
    for (std::size_t at = line_end; at != std::string_view::npos;) {
        const std::size_t next = head.find("\r\n", at + 2);
        if (!read_header(head.substr(at + 2, next == std::string_view::npos ? next : next - at - 2), out, refusal))
            return ReadStatus::refused;
        at = next;
    }
    return received.size() - out.head_bytes >= out.content_length ? ReadStatus::complete : ReadStatus::incomplete;
}

inline int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A query string's percent-encoding ('+' is a space, as in forms and FastAPI); nullopt on a bad '%'. */
inline std::optional<std::string> url_decoded(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out += text[i] == '+' ? ' ' : text[i];
            continue;
        }
        const int high = i + 2 < text.size() ? hex_digit(text[i + 1]) : -1;
        const int low = high < 0 ? -1 : hex_digit(text[i + 2]);
        if (low < 0) return std::nullopt;
        out += static_cast<char>(high * 16 + low);
        i += 2;
    }
    return out;
}

/* The query parameter `name`, decoded: nullopt when absent; a Refusal when it is badly encoded. */
inline std::optional<std::string> query_parameter(std::string_view query, std::string_view name, Refusal& refusal) {
    for (std::size_t at = 0; at <= query.size();) {
        const std::size_t end = std::min(query.find('&', at), query.size());
        const std::string_view pair = query.substr(at, end - at);
        const std::size_t equals = std::min(pair.find('='), pair.size());
        if (url_decoded(pair.substr(0, equals)) == std::string(name)) {
            std::optional<std::string> value = url_decoded(pair.substr(std::min(equals + 1, pair.size())));
            if (!value) refusal = {400, "the query parameter " + std::string(name) + " has a bad %-escape"};
            return value;
        }
        at = end + 1;
    }
    return std::nullopt;
}

/* Constant time in the length of what was given: the comparison says nothing of where they differ. */
inline bool same_secret(std::string_view given, std::string_view expected) {
    unsigned difference = given.size() != expected.size() ? 1u : 0u;
    for (std::size_t i = 0; i < given.size(); ++i)
        difference |= static_cast<unsigned>(static_cast<unsigned char>(given[i]) ^
                                            static_cast<unsigned char>(expected[i % expected.size()]));
    return difference == 0;
}

inline bool bearer_matches(std::string_view authorization, std::string_view token) {
    constexpr std::string_view scheme = "bearer ";
    if (authorization.size() < scheme.size() || !equals_ignore_case(authorization.substr(0, scheme.size()), scheme))
        return false;
    return same_secret(trimmed(authorization.substr(scheme.size())), token);
}

inline const char* reason_phrase(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status >= 500 ? "Bad Gateway" : "Error";
    }
}

/* A whole response; the connection closes after it. `headers`: more lines, each ending in CRLF. */
inline std::string http_response(int status, std::string_view content_type, std::string_view body,
                                 std::string_view headers = {}) {
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\n";
    out += "Content-Type: ";
    out += content_type;
    out += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n";
    out += headers;
    out += "\r\n";
    out += body;
    return out;
}

/* {"error":{"message":...,"code":...}} with that status. */
inline std::string json_error_response(int status, std::string_view message, std::string_view code,
                                       std::string_view headers = {}) {
    std::string body = "{\"error\":{\"message\":";
    llm_stream::append_json_string(body, message);
    body += ",\"code\":";
    llm_stream::append_json_string(body, code);
    body += "}}";
    return http_response(status, "application/json", body, headers);
}

/* The head of a stream of events; its end is the end of the connection. */
inline std::string event_stream_head() {
    return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
           "Connection: close\r\nX-Accel-Buffering: no\r\n\r\n";
}

/* `text` as the data: lines of one event: each line break (CRLF, LF or CR, which SSE cannot carry
   inside a line) starts another data: line, and the reader joins them with LF. */
inline void append_event_data(std::string& out, std::string_view text) {
    for (;;) {
        const std::size_t line_end = text.find_first_of("\r\n");
        out += "data: ";
        out += text.substr(0, line_end);
        out += '\n';
        if (line_end == std::string_view::npos) break;
        const bool crlf = text[line_end] == '\r' && line_end + 1 < text.size() && text[line_end + 1] == '\n';
        text.remove_prefix(line_end + (crlf ? 2 : 1));
    }
}

/* One event: `event: NAME` (none for a plain message), its data lines, the blank line. */
inline void append_event(std::string& out, std::string_view name, std::string_view data) {
    if (!name.empty()) {
        out += "event: ";
        out += name;
        out += '\n';
    }
    append_event_data(out, data);
    out += '\n';
}

}  // namespace relay

#endif  // LLM_STREAM_EXAMPLES_RELAY_HTTP_HPP
