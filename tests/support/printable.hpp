// Bytes shown readably in test messages: CR, LF, backslash, control and non-ASCII bytes escaped.
#ifndef LLM_STREAM_TEST_PRINTABLE_HPP
#define LLM_STREAM_TEST_PRINTABLE_HPP

#include <string>

inline std::string escape(const std::string& s) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
        if (c == '\r') out += "\\r";
        else if (c == '\n') out += "\\n";
        else if (c == '\\') out += "\\\\";
        else if (c < 0x20 || c >= 0x7f) {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

#endif
