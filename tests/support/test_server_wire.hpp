// The text form of a TestServer's script and records, spoken between RemoteTestServer (the tests built for
// another system, e.g. Windows under wine) and llm_test_server --control (the native server they script).
// Portable C++17, no sockets; shares no code with llm_stream.hpp.
//
// A message is a list of fields, each "<name> <size>\n", then exactly <size> bytes, then "\n": any bytes
// fit (a body of any size is one field) and nothing needs escaping. Numbers are in decimal.

#ifndef LLM_TEST_SERVER_WIRE_HPP
#define LLM_TEST_SERVER_WIRE_HPP

#include <charconv>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "test_server.hpp"

namespace llm_test {
namespace wire {

class Writer {
public:
    Writer& field(std::string_view name, std::string_view value) {
        text_.append(name.data(), name.size());
        text_ += ' ' + std::to_string(value.size()) + '\n';
        text_.append(value.data(), value.size());
        text_ += '\n';
        return *this;
    }
    template <class Number>
    Writer& number(std::string_view name, Number value) {
        if constexpr (std::is_signed_v<Number>) return field(name, std::to_string(static_cast<long long>(value)));
        else return field(name, std::to_string(static_cast<unsigned long long>(value)));
    }
    const std::string& text() const { return text_; }

private:
    std::string text_;
};

class Reader {
public:
    explicit Reader(std::string_view text) : rest_(text) {}

    // Steps to the next field: false at the end of the text, or when it is malformed (then failed()).
    bool next() {
        if (rest_.empty() || failed_) return false;
        const std::size_t space = rest_.find(' ');
        const std::size_t eol = rest_.find('\n');
        std::size_t size = 0;
        failed_ = space == 0 || space == std::string_view::npos || eol == std::string_view::npos || eol < space ||
                  !to_number(rest_.substr(space + 1, eol - space - 1), size) || rest_.size() - eol - 1 <= size ||
                  rest_[eol + 1 + size] != '\n';
        if (failed_) return false;
        name_ = rest_.substr(0, space);
        value_ = rest_.substr(eol + 1, size);
        rest_.remove_prefix(eol + 2 + size);
        return true;
    }
    std::string_view name() const { return name_; }
    std::string_view value() const { return value_; }
    bool failed() const { return failed_; }
    // The field's value into `out` (a number or bool); a bad value makes the reader failed().
    template <class Number>
    void read(Number& out) {
        failed_ = failed_ || !to_number(value_, out);
    }

    template <class Number>
    static bool to_number(std::string_view text, Number& out) {
        if constexpr (std::is_same_v<Number, bool>) {
            if (text != "0" && text != "1") return false;
            out = text == "1";
            return true;
        } else {
            const std::from_chars_result r = std::from_chars(text.data(), text.data() + text.size(), out);
            return !text.empty() && r.ec == std::errc() && r.ptr == text.data() + text.size();
        }
    }

private:
    std::string_view rest_, name_, value_;
    bool failed_ = false;
};

// Every number and flag of a Response (not the strings, lists and enumerations) with its field name.
template <class R, class Visit>
void each_number(R& r, Visit&& visit) {
    visit("status_code", r.status_code);
    visit("write_delay_ms", r.write_delay_ms);
    visit("keep_alive", r.keep_alive);
    visit("refuse", r.refuse);
    visit("close_before_headers", r.close_before_headers);
    visit("reset_before_headers", r.reset_before_headers);
    visit("reset_after_body_bytes", r.reset_after_body_bytes);
    visit("stall_before_headers_ms", r.stall_before_headers_ms);
    visit("stall_after_body_bytes", r.stall_after_body_bytes);
    visit("stall_ms", r.stall_ms);
    visit("truncate_chunked", r.truncate_chunked);
    visit("raw", r.raw);
    visit("long_header_bytes", r.long_header_bytes);
    visit("extra_header_count", r.extra_header_count);
    visit("slow", r.slow);
    visit("slow_delay_ms", r.slow_delay_ms);
    visit("flood_ms", r.flood_ms);
    visit("chunk_size", r.chunking.size);
}

inline void write_headers(Writer& w, const Headers& headers) {
    for (const auto& h : headers) w.field("header_name", h.first).field("header_value", h.second);
}

inline std::string write_response(const Response& r) {
    Writer w;
    each_number(r, [&](std::string_view name, auto value) { w.number(name, value); });
    w.number("framing", static_cast<int>(r.framing)).number("chunking", static_cast<int>(r.chunking.kind));
    for (std::size_t size : r.chunking.sizes) w.number("chunk_sizes", size);
    write_headers(w, r.headers);
    return w.field("reason", r.reason).field("flood", r.flood).field("body", r.body).text();
}

// Reads a header field into `headers`; false when the field is not one.
inline bool read_header(Reader& in, Headers& headers) {
    if (in.name() == "header_name") headers.emplace_back(std::string(in.value()), std::string());
    else if (in.name() == "header_value" && !headers.empty()) headers.back().second = std::string(in.value());
    else return false;
    return true;
}

// The strings, lists and enumerations of a Response; false when the field is none of them.
inline bool read_response_text(Reader& in, Response& r) {
    int kind = 0;
    std::size_t size = 0;
    if (in.name() == "reason") r.reason = std::string(in.value());
    else if (in.name() == "flood") r.flood = std::string(in.value());
    else if (in.name() == "body") r.body = std::string(in.value());
    else if (in.name() == "framing" && Reader::to_number(in.value(), kind) && kind >= 0 && kind <= 2)
        r.framing = static_cast<Framing>(kind);
    else if (in.name() == "chunking" && Reader::to_number(in.value(), kind) && kind >= 0 && kind <= 4)
        r.chunking.kind = static_cast<Chunking::Kind>(kind);
    else if (in.name() == "chunk_sizes" && Reader::to_number(in.value(), size)) r.chunking.sizes.push_back(size);
    else return read_header(in, r.headers);
    return true;
}

// false when `text` is malformed or names a field a Response does not have.
inline bool read_response(std::string_view text, Response& r) {
    r = Response();
    Reader in(text);
    while (in.next()) {
        bool known = read_response_text(in, r);
        each_number(r, [&](std::string_view name, auto& member) {
            if (known || in.name() != name) return;
            in.read(member);
            known = true;
        });
        if (!known) return false;
    }
    return !in.failed();
}

// Each request starts with an empty "request" field.
inline std::string write_requests(const std::vector<Request>& requests) {
    Writer w;
    for (const Request& r : requests) {
        w.field("request", {}).field("method", r.method).field("target", r.target).field("version", r.version);
        write_headers(w, r.headers);
        w.field("head", r.head).field("body", r.body).number("connection_id", r.connection_id);
        w.number("index_on_connection", r.index_on_connection);
    }
    return w.text();
}

inline bool read_request_field(Reader& in, Request& r) {
    if (in.name() == "method") r.method = std::string(in.value());
    else if (in.name() == "target") r.target = std::string(in.value());
    else if (in.name() == "version") r.version = std::string(in.value());
    else if (in.name() == "head") r.head = std::string(in.value());
    else if (in.name() == "body") r.body = std::string(in.value());
    else if (in.name() == "connection_id") in.read(r.connection_id);
    else if (in.name() == "index_on_connection") in.read(r.index_on_connection);
    else return read_header(in, r.headers);
    return true;
}

inline bool read_requests(std::string_view text, std::vector<Request>& requests) {
    requests.clear();
    Reader in(text);
    while (in.next()) {
        if (in.name() == "request") requests.emplace_back();
        else if (requests.empty() || !read_request_field(in, requests.back())) return false;
    }
    return !in.failed();
}

}  // namespace wire
}  // namespace llm_test

#endif  // LLM_TEST_SERVER_WIRE_HPP
