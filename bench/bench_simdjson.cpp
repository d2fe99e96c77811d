// llm_stream's openai pipeline next to consumers of the same bytes built on simdjson (Debian
// `libsimdjson-dev`, this benchmark only): On-Demand, which validates only what it reads, and the DOM
// parser, which validates each message whole; and the memchr floor. Each consumer does the whole job:
// removes the HTTP chunked framing, splits the SSE lines, and extracts the content, the reasoning, the
// finish reason and the usage. A program that prints figures, not a test.
//
//   bench_simdjson [events] [repeats]      (defaults: 200000 events, 5 repeats; prints medians)

#define LLM_STREAM_IMPLEMENTATION
#include "bench_streams.hpp"

#include <simdjson.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace bench;

// What a consumer takes out of the stream; `content` is filled only when checking, else counted.
struct Extracted {
    std::string* content = nullptr;
    std::size_t content_bytes = 0;
    std::size_t reasoning_bytes = 0;
    std::string finish_reason;
    std::uint64_t prompt_tokens = 0, completion_tokens = 0, total_tokens = 0;
    bool failed = false;

    void add_content(std::string_view text) {
        content_bytes += text.size();
        if (content) content->append(text);
    }
};

// The SSE events of a chunked HTTP response, each event's data handed to `on_data(data, readable)`
// where `readable` bytes from data.data() may be read (simdjson reads up to SIMDJSON_PADDING bytes past
// its input): in place when the event is one `data:` line whole in the response, else from a copy.
template <typename OnData>
class SseOverChunked {
public:
    explicit SseOverChunked(OnData on_data) : on_data_(on_data) {}

    bool run(const std::string& response) {
        response_end_ = response.data() + response.size();
        std::size_t pos = response.find("\r\n\r\n");
        if (pos == std::string::npos) return false;
        for (pos += 4;;) {
            char* hex_end = nullptr;
            const std::size_t size = std::strtoul(response.c_str() + pos, &hex_end, 16);
            pos = static_cast<std::size_t>(hex_end - response.data());
            if (response.compare(pos, 2, "\r\n") != 0) return false;
            pos += 2;
            if (size == 0) return carry_.empty();
            if (pos + size + 2 > response.size() || response.compare(pos + size, 2, "\r\n") != 0) return false;
            chunk(std::string_view(response.data() + pos, size));
            pos += size + 2;
        }
    }

private:
    void chunk(std::string_view bytes) {
        while (!bytes.empty()) {
            const std::size_t nl = bytes.find('\n');
            if (nl == std::string_view::npos) {
                carry_.append(bytes);
                return;
            }
            if (carry_.empty()) {
                line(bytes.substr(0, nl), true);
            } else {
                carry_.append(bytes.substr(0, nl));
                line(carry_, false);
                carry_.clear();
            }
            bytes.remove_prefix(nl + 1);
        }
    }

    void line(std::string_view text, bool in_place) {
        if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
        if (text.empty()) return dispatch();
        if (text.substr(0, 5) != "data:") return;  // event:, id:, retry: and comments carry nothing here
        text.remove_prefix(text.size() > 5 && text[5] == ' ' ? 6 : 5);
        if (lines_ == 0 && in_place) {
            data_ = text;
        } else {
            if (lines_ == 0) copy_.clear();
            else if (data_.data() != copy_.data()) copy_.assign(data_);  // the first line was in place
            if (lines_ > 0) copy_ += '\n';
            copy_.append(text);
            data_ = copy_;
        }
        ++lines_;
    }

    void dispatch() {
        if (lines_ == 0) return;
        if (data_ != "[DONE]") {
            const std::size_t readable = static_cast<std::size_t>(response_end_ - data_.data());
            if (data_.data() == copy_.data() || readable < data_.size() + simdjson::SIMDJSON_PADDING) {
                if (data_.data() != copy_.data()) copy_.assign(data_);  // too near the end of the response
                copy_.reserve(copy_.size() + simdjson::SIMDJSON_PADDING);
                on_data_(std::string_view(copy_), copy_.capacity());
            } else {
                on_data_(data_, readable);
            }
        }
        lines_ = 0;
    }

    OnData on_data_;
    const char* response_end_ = nullptr;
    std::string carry_, copy_;
    std::string_view data_;
    std::size_t lines_ = 0;
};

// One chat.completion.chunk read with On-Demand: the members in the order they come, the rest skipped.
void read_choice_ondemand(simdjson::ondemand::object choice, Extracted& out) {
    for (auto field : choice) {
        simdjson::ondemand::raw_json_string key;
        if (field.key().get(key)) return void(out.failed = true);
        if (key == "delta") {
            simdjson::ondemand::object delta;
            if (field.value().get_object().get(delta)) return void(out.failed = true);
            for (auto member : delta) {
                simdjson::ondemand::raw_json_string name;
                std::string_view text;
                if (member.key().get(name)) return void(out.failed = true);
                if (name != "content" && name != "reasoning_content") continue;
                if (member.value().is_null()) continue;
                if (member.value().get_string().get(text)) return void(out.failed = true);
                if (name == "content") out.add_content(text);
                else out.reasoning_bytes += text.size();
            }
        } else if (key == "finish_reason" && !field.value().is_null()) {
            std::string_view reason;
            if (field.value().get_string().get(reason)) return void(out.failed = true);
            out.finish_reason = reason;
        }
    }
}

void read_usage_ondemand(simdjson::ondemand::object usage, Extracted& out) {
    if (usage["prompt_tokens"].get_uint64().get(out.prompt_tokens) ||
        usage["completion_tokens"].get_uint64().get(out.completion_tokens) ||
        usage["total_tokens"].get_uint64().get(out.total_tokens))
        out.failed = true;
}

void read_chunk_ondemand(simdjson::ondemand::parser& parser, std::string_view data, std::size_t readable, Extracted& out) {
    simdjson::ondemand::document doc;
    simdjson::ondemand::object message;
    if (parser.iterate(simdjson::padded_string_view(data.data(), data.size(), readable)).get(doc) ||
        doc.get_object().get(message))
        return void(out.failed = true);
    for (auto field : message) {
        simdjson::ondemand::raw_json_string key;
        if (field.key().get(key)) return void(out.failed = true);
        if (key == "choices") {
            simdjson::ondemand::array choices;
            if (field.value().get_array().get(choices)) return void(out.failed = true);
            for (auto choice : choices) {
                simdjson::ondemand::object object;
                if (choice.get_object().get(object)) return void(out.failed = true);
                read_choice_ondemand(object, out);
            }
        } else if (key == "usage" && !field.value().is_null()) {
            simdjson::ondemand::object usage;
            if (field.value().get_object().get(usage)) return void(out.failed = true);
            read_usage_ondemand(usage, out);
        }
    }
}

// The same with the DOM parser, which builds and so validates each message whole before it is read.
void read_chunk_dom(simdjson::dom::parser& parser, std::string_view data, Extracted& out) {
    simdjson::dom::element message;
    if (parser.parse(data.data(), data.size(), false).get(message)) return void(out.failed = true);
    simdjson::dom::array choices;
    if (message["choices"].get(choices) == simdjson::SUCCESS)
        for (simdjson::dom::element choice : choices) {
            std::string_view text;
            if (choice["delta"]["content"].get(text) == simdjson::SUCCESS) out.add_content(text);
            if (choice["delta"]["reasoning_content"].get(text) == simdjson::SUCCESS) out.reasoning_bytes += text.size();
            if (choice["finish_reason"].get(text) == simdjson::SUCCESS) out.finish_reason = text;
        }
    simdjson::dom::object usage;
    if (message["usage"].get(usage) == simdjson::SUCCESS &&
        (usage["prompt_tokens"].get(out.prompt_tokens) || usage["completion_tokens"].get(out.completion_tokens) ||
         usage["total_tokens"].get(out.total_tokens)))
        out.failed = true;
}

Extracted extract_ondemand(const std::string& response, std::string* content) {
    static simdjson::ondemand::parser parser;
    Extracted out;
    out.content = content;
    auto on_data = [&](std::string_view data, std::size_t readable) { read_chunk_ondemand(parser, data, readable, out); };
    if (!SseOverChunked<decltype(on_data)>(on_data).run(response)) out.failed = true;
    return out;
}

Extracted extract_dom(const std::string& response, std::string* content) {
    static simdjson::dom::parser parser;
    Extracted out;
    out.content = content;
    auto on_data = [&](std::string_view data, std::size_t) { read_chunk_dom(parser, data, out); };
    if (!SseOverChunked<decltype(on_data)>(on_data).run(response)) out.failed = true;
    return out;
}

// A consumer is timed only once it has extracted exactly what the stream carries.
bool extracts_all(const char* name, const Extracted& got, const std::string& content, const std::string& expected) {
    const bool ok = !got.failed && content == expected && got.reasoning_bytes == 0 && got.finish_reason.empty() &&
                    got.prompt_tokens == 12 && got.completion_tokens == 200000 && got.total_tokens == 200012;
    if (!ok) std::fprintf(stderr, "%s: extracted something other than the stream carries\n", name);
    return ok;
}

}  // namespace

int main(int argc, char** argv) {
    const auto [events, repeats] = run_of(argc, argv);
    const std::vector<std::string> texts = make_texts(events);
    const std::string expected = joined(texts);
    std::size_t body_bytes = 0;
    const std::string response = make_stream(openai_wire(), texts, body_bytes);

    std::string ours, ondemand, dom;
    decode_content(response, llm_stream::Api::openai, &ours);
    if (ours != expected) return std::fprintf(stderr, "llm_stream: decoded content differs\n"), 1;
    if (!extracts_all("simdjson On-Demand", extract_ondemand(response, &ondemand), ondemand, expected) ||
        !extracts_all("simdjson DOM", extract_dom(response, &dom), dom, expected))
        return 1;

    auto checked = [&](Extracted got) {
        if (got.failed || got.content_bytes != expected.size()) std::exit(1);
        return got.content_bytes;
    };
    std::vector<Candidate> candidates;
    candidates.push_back({"memchr('\\n') floor", &response, [&] { return memchr_lines(response); }, false, {}});
    candidates.push_back({"llm_stream Decoder (validating)", &response, [&] {
        const std::size_t bytes = decode_content(response, llm_stream::Api::openai, nullptr);
        if (bytes != expected.size()) std::exit(1);
        return bytes;
    }, true, {}});
    candidates.push_back({"simdjson On-Demand", &response, [&] { return checked(extract_ondemand(response, nullptr)); },
                          false, {}});
    candidates.push_back({"simdjson DOM (validating)", &response, [&] { return checked(extract_dom(response, nullptr)); },
                          false, {}});
    std::size_t sink = 0;
    time_interleaved(candidates, repeats, sink);

    std::printf("%zu OpenAI chat.completion.chunk events (%zu content bytes), HTTP chunked, one chunk per message; "
                "simdjson %d.%d.%d (%s); median of %d interleaved runs\n", events, expected.size(),
                simdjson::SIMDJSON_VERSION_MAJOR, simdjson::SIMDJSON_VERSION_MINOR, simdjson::SIMDJSON_VERSION_REVISION,
                simdjson::get_active_implementation()->name().c_str(), repeats);
    print_results(candidates, events);
    const double ours_s = median(candidates[1].seconds);
    std::printf("llm_stream per event: %.2fx the time of simdjson On-Demand, %.2fx that of simdjson DOM, %.2fx the memchr floor\n",
                ours_s / median(candidates[2].seconds), ours_s / median(candidates[3].seconds),
                ours_s / median(candidates[0].seconds));
    return sink == 0;
}
