// Builds the seed corpora for the fuzz targets from recorded SSE bodies (scripts/fuzz.sh runs it).
//   make_seeds OUT_DIR FILE.sse...
// writes OUT_DIR/{sse,split_differential}/ (the bodies), OUT_DIR/json/ (each `data:` line's
// payload), OUT_DIR/http/ and OUT_DIR/pipeline/ (the bodies inside HTTP responses: chunked at
// several sizes, Content-Length, close-delimited, after a 100 Continue; pipeline also gets the
// bare bodies), OUT_DIR/anthropic/ (each anthropic-*.sse as "NAME\tDATA" lines). File names are
// content hashes, so duplicates collapse.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "../tests/support/chunked.hpp"
#include "../tests/support/random_cuts.hpp"

namespace {

std::string read_file(const char* path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

bool write_seed(const std::string& dir, const std::string& bytes) {
    std::uint64_t h = 14695981039346656037ull;
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 1099511628211ull;
    }
    char name[32];
    std::snprintf(name, sizeof name, "/%016llx", static_cast<unsigned long long>(h));
    std::ofstream out(dir + name, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return static_cast<bool>(out);
}

std::string chunked_by(std::string_view body, std::size_t chunk) { return chunked(body, even_cuts(chunk, body.size())); }

const char sse_head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n";

std::vector<std::string> http_wrappings(std::string_view body) {
    std::vector<std::string> out;
    for (std::size_t chunk : {std::size_t(7), std::size_t(64), std::size_t(1000)})
        out.push_back(std::string(sse_head) + "Transfer-Encoding: chunked\r\n\r\n" + chunked_by(body, chunk));
    out.push_back(std::string(sse_head) + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                  std::string(body));
    out.push_back(std::string(sse_head) + "Connection: close\r\n\r\n" + std::string(body));
    out.push_back("HTTP/1.1 100 Continue\r\n\r\n" + std::string(sse_head) + "Transfer-Encoding: chunked\r\n\r\n" +
                  chunked_by(body, 128));
    return out;
}

/* An Anthropic stream as the anthropic target reads it: one "NAME\tDATA" line per SSE event. */
std::string anthropic_seed(std::string_view body) {
    std::string out, name;
    while (!body.empty()) {
        const std::size_t eol = body.find('\n');
        const std::string_view line = body.substr(0, eol);
        body.remove_prefix(eol == std::string_view::npos ? body.size() : eol + 1);
        if (line.substr(0, 7) == "event: ") name = std::string(line.substr(7));
        if (line.substr(0, 6) != "data: ") continue;
        out += name + '\t' + std::string(line.substr(6)) + '\n';
        name.clear();
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: make_seeds OUT_DIR FILE.sse...\n");
        return 2;
    }
    const std::string root = argv[1];
    int written = 0, failed = 0;
    auto put = [&](const char* target, const std::string& bytes) {
        if (write_seed(root + "/" + target, bytes)) ++written;
        else ++failed;
    };
    // Error replies, for the http and pipeline targets.
    const std::string error_body = "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"code\":\"rate_limit\"}}";
    const std::string error_reply = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 2\r\n"
                                    "Content-Length: " + std::to_string(error_body.size()) + "\r\n\r\n" + error_body;
    put("http", error_reply);
    put("pipeline", error_reply);
    put("json", error_body);
    for (int i = 2; i < argc; ++i) {
        const std::string body = read_file(argv[i]);
        put("sse", body);
        put("split_differential", body);
        put("pipeline", body);
        for (const std::string& response : http_wrappings(body)) {
            put("http", response);
            put("pipeline", response);
        }
        // Each data line's payload, for the JSON target.
        std::string_view rest = body;
        while (!rest.empty()) {
            const std::size_t eol = rest.find_first_of("\r\n");
            std::string_view line = rest.substr(0, eol);
            rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 1);
            if (line.substr(0, 5) != "data:") continue;
            line.remove_prefix(5);
            if (!line.empty() && line[0] == ' ') line.remove_prefix(1);
            if (line.empty() || line == "[DONE]") continue;
            put("json", std::string(line));
        }
        if (std::string_view(argv[i]).find("anthropic-") != std::string_view::npos) put("anthropic", anthropic_seed(body));
    }
    std::printf("seeds: %d written%s\n", written, failed ? " (some could not be written)" : "");
    return failed ? 1 : 0;
}
