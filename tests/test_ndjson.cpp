// detail::LineSplitter, the NDJSON framing (Ollama's native API, application/x-ndjson): lines handed
// out whole however the input is cut, in place when they lie in one input, LF or CRLF, blank lines
// skipped, the last newline optional, the line limit exact; and the Decoder choosing it.
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>
#include "support/ensure.hpp"
#include "support/split_check.hpp"  // after doctest: it uses its macros

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using llm_stream::detail::LineSplitter;

namespace {

struct Outcome {
    std::vector<std::string> lines;
    std::string last;  // the line finish() hands out at the end
    std::string error;
    std::vector<std::string> anomalies;
    std::string describe() const {
        std::string out;
        for (const std::string& line : lines) out += "[" + line + "]";
        return out + " last[" + last + "] error[" + error + "]";
    }
};

/* Feeds `text` cut at `cuts`, each piece in its own heap copy (reads past it are caught). */
Outcome split_lines(std::string_view text, const std::vector<std::size_t>& cuts, std::size_t limit = 1000) {
    LineSplitter splitter;
    splitter.reset(limit);
    Outcome out;
    std::size_t from = 0;
    std::vector<std::size_t> ends = cuts;
    ends.push_back(text.size());
    for (std::size_t end : ends) {
        const std::unique_ptr<char[]> piece(new char[end - from + 1]);
        text.copy(piece.get(), end - from, from);
        std::string_view input(piece.get(), end - from);
        while (!input.empty() || from == end) {
            const LineSplitter::Step s = splitter.feed(input);
            if (s.consumed > input.size()) out.anomalies.push_back("consumed more than given");
            input.remove_prefix(s.consumed);
            if (s.status == LineSplitter::Status::error) {
                out.error = splitter.error().message;
                return out;
            }
            if (s.status == LineSplitter::Status::line) out.lines.emplace_back(splitter.line());
            else break;
        }
        from = end;
    }
    const LineSplitter::Step s = splitter.finish();
    if (s.status == LineSplitter::Status::line) out.last = std::string(splitter.line());
    if (s.status == LineSplitter::Status::error) out.error = splitter.error().message;
    if (splitter.finish().status == LineSplitter::Status::line) out.anomalies.push_back("the last line twice");
    return out;
}

Outcome check_lines(std::string_view text, std::size_t limit = 1000) {
    return check_every_split(
        text.size(), [&](const std::vector<std::size_t>& cuts) { return split_lines(text, cuts, limit); }, 400, 50);
}

}  // namespace

TEST_CASE("LineSplitter: lines whole at every split, LF and CRLF, blank lines skipped") {
    const Outcome o = check_lines("{\"a\":1}\n{\"b\":\"二\"}\r\n\n  \r\n{\"c\":3}\n");
    ENSURE(o.lines.size() == 3);
    CHECK(o.lines[0] == "{\"a\":1}");
    CHECK(o.lines[1] == "{\"b\":\"二\"}");
    CHECK(o.lines[2] == "{\"c\":3}");
    CHECK(o.last.empty());
    CHECK(o.error.empty());
}

TEST_CASE("LineSplitter: the last line's newline is optional") {
    const Outcome o = check_lines("{\"a\":1}\n{\"done\":true}");
    ENSURE(o.lines.size() == 1);
    CHECK(o.last == "{\"done\":true}");
    CHECK(check_lines("{\"a\":1}\n   ").last.empty());  // blank: no last line
}

TEST_CASE("LineSplitter: a line within one input is handed out in place") {
    const std::string text = "{\"a\":1}\n{\"b\":2}\n";
    LineSplitter splitter;
    splitter.reset(100);
    const LineSplitter::Step s = splitter.feed(text);
    CHECK(s.status == LineSplitter::Status::line);
    CHECK(s.consumed == 8);
    CHECK(splitter.line().data() == text.data());
}

TEST_CASE("LineSplitter: the line limit is exact, and an error stays") {
    const std::string line(10, 'x');
    CHECK(check_lines(line + "\n" + line + "\r\n", 10).error.empty());
    CHECK(check_lines(line + "x\n", 10).error == "NDJSON line exceeds the limit");
    CHECK(check_lines(line + "x", 10).error == "NDJSON line exceeds the limit");
    LineSplitter splitter;
    splitter.reset(4);
    CHECK(splitter.feed("12345\n").status == LineSplitter::Status::error);
    CHECK(splitter.feed("1\n").status == LineSplitter::Status::error);
    CHECK(splitter.error().code == llm_stream::ErrorCode::limit_exceeded);
}
