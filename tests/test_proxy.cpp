#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"
#include <doctest/doctest.h>
#include "support/ensure.hpp"
#include "support/scoped_env.hpp"
#include "support/split_check.hpp"  // after doctest: it uses its macros

/* HTTP proxies (issue 11, item 1): the proxy URL and its credentials, the NO_PROXY table, which
   environment variable wins, the CONNECT exchange fed at every split, and, over loopback with the test
   server playing the proxy (tests/support/loopback_server.hpp: in this process, or under wine the native
   llm_test_server --control), the absolute-form request, a refused tunnel that is not retried, and the
   no_proxy bypass. Real proxies (tinyproxy, squid) are in tests/proxy/proxy_e2e.sh. */

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/loopback_server.hpp"

using llm_stream::Config;
using llm_stream::Error;
using llm_stream::ErrorCode;
using llm_stream::detail::ProxyTunnel;
using llm_stream::detail::ProxyUrl;

namespace {

bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

std::string basic(std::string_view user_colon_password) {
    std::string out = "Basic ";
    llm_stream::detail::base64_append(out, user_colon_password);
    return out;
}

// Every proxy variable removed for one test, whatever the environment of the run has.
struct CleanProxyEnv {
    ScopedEnv vars[9] = {{"https_proxy", std::nullopt}, {"HTTPS_PROXY", std::nullopt}, {"http_proxy", std::nullopt},
                         {"HTTP_PROXY", std::nullopt},  {"all_proxy", std::nullopt},   {"ALL_PROXY", std::nullopt},
                         {"no_proxy", std::nullopt},    {"NO_PROXY", std::nullopt},    {"LLM_BASE_URL", std::nullopt}};
};

const char* const kNoDotenv = "/nonexistent/llm_stream/.env";

}  // namespace

TEST_CASE("proxy URLs: scheme optional, port 1080 by default, credentials percent-decoded into Basic") {
    struct Case {
        const char* url;
        const char* host;
        std::uint16_t port;
        const char* address;
        const char* credentials;  // user:password as decoded, or nullptr for none
    };
    const Case cases[] = {
        {"http://proxy.corp:3128", "proxy.corp", 3128, "proxy.corp:3128", nullptr},
        {"HTTP://Proxy.Corp:3128/", "Proxy.Corp", 3128, "Proxy.Corp:3128", nullptr},
        {"proxy.corp:8080", "proxy.corp", 8080, "proxy.corp:8080", nullptr},
        {"http://proxy.corp", "proxy.corp", 1080, "proxy.corp:1080", nullptr},
        {"proxy.corp", "proxy.corp", 1080, "proxy.corp:1080", nullptr},
        {"http://proxy.corp:80", "proxy.corp", 80, "proxy.corp:80", nullptr},
        {"http://[::1]:3128", "::1", 3128, "[::1]:3128", nullptr},
        {"http://[::1]", "::1", 1080, "[::1]:1080", nullptr},
        {"  http://10.0.0.7:3128  ", "10.0.0.7", 3128, "10.0.0.7:3128", nullptr},
        {"http://alice:s3cret@proxy.corp:3128", "proxy.corp", 3128, "proxy.corp:3128", "alice:s3cret"},
        {"http://al%69ce:p%40ss%3Aw%2Fd@proxy.corp:3128", "proxy.corp", 3128, "proxy.corp:3128", "alice:p@ss:w/d"},
        {"http://user@name:pa@ss@proxy.corp:3128", "proxy.corp", 3128, "proxy.corp:3128", "user@name:pa@ss"},
        {"http://alice@proxy.corp:3128", "proxy.corp", 3128, "proxy.corp:3128", "alice:"},
        {"http://:only-password@proxy.corp:3128", "proxy.corp", 3128, "proxy.corp:3128", ":only-password"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.url);
        ProxyUrl p;
        const Error e = llm_stream::detail::parse_proxy_url(c.url, p);
        CHECK_MESSAGE(!e, e.message);
        CHECK(p.host == c.host);
        CHECK(p.port == c.port);
        CHECK(p.address == c.address);
        CHECK(p.authorization == (c.credentials ? basic(c.credentials) : std::string()));
    }
}

TEST_CASE("proxy URLs that cannot be used: invalid_config saying why, never with the credentials") {
    struct Case {
        const char* url;
        const char* says;
    };
    const Case cases[] = {
        {"socks5://proxy.corp:1080", "socks5:// proxies are not supported, only http:// ones"},
        {"socks5h://u:secretpw@proxy.corp:1080", "socks5h:// proxies are not supported"},
        {"https://proxy.corp:443", "https:// proxies are not supported"},
        {"http://proxy.corp:3128/some/path", "without a path"},
        {"http://proxy.corp:3128?x=1", "without a path"},
        {"http://proxy.corp:99999", "invalid port in the proxy URL"},
        {"http://proxy.corp:", "invalid port in the proxy URL"},
        {"http://:3128", "the proxy URL has no host"},
        {"http://pro xy:3128", "invalid host name in the proxy URL"},
        {"http://u:secretpw%4@proxy.corp:3128", "malformed %-escape"},
        {"http://u:secretpw%zz@proxy.corp:3128", "malformed %-escape"},
        {"http://[::1:3128", "unterminated IPv6 address in the proxy URL"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.url);
        ProxyUrl p;
        const Error e = llm_stream::detail::parse_proxy_url(c.url, p);
        CHECK(e.code == ErrorCode::invalid_config);
        CHECK_MESSAGE(contains(e.message, c.says), e.message);
        CHECK_FALSE(contains(e.message, "secretpw"));
    }
}

TEST_CASE("no_proxy: domains and subdomains, addresses and CIDR blocks, ports, *, case-insensitive; loopback direct unless <-loopback>") {
    struct Case {
        const char* no_proxy;
        const char* host;
        std::uint16_t port;
        bool direct;
    };
    const Case cases[] = {
        {"", "example.com", 443, false},
        {"*", "example.com", 443, true},
        {"other.org, *", "example.com", 443, true},
        {"example.com", "example.com", 443, true},
        {"example.com", "api.example.com", 443, true},
        {".example.com", "example.com", 443, true},
        {".example.com", "a.b.example.com", 443, true},
        {"example.com.", "api.example.com.", 443, true},
        {"EXAMPLE.com", "Api.Example.COM", 443, true},
        {"example.com", "notexample.com", 443, false},
        {"example.com", "example.com.evil.net", 443, false},
        {"api.example.com", "example.com", 443, false},
        {"a.org,  example.com ,b.org", "example.com", 443, true},
        {",,example.com,,", "example.com", 443, true},
        {"example.com:8443", "example.com", 8443, true},
        {"example.com:8443", "example.com", 443, false},
        {"localhost", "localhost", 11434, true},
        {"<-loopback>,localhost", "127.0.0.1", 11434, false},  // a name never matches an address (as curl)
        {"", "127.0.0.1", 11434, true},            // loopback goes direct (as Go)...
        {"", "127.9.8.7", 11434, true},
        {"", "::1", 11434, true},
        {"", "localhost", 11434, true},
        {"", "ollama.localhost", 11434, true},
        {"", "localhost.example.com", 443, false},
        {"example.com", "127.0.0.1", 11434, true},
        {"<-loopback>", "127.0.0.1", 11434, false},  // ...unless named (as Chrome's bypass list)
        {"<-loopback>", "::1", 11434, false},
        {"<-loopback>", "localhost", 11434, false},
        {"<-loopback>, localhost", "localhost", 11434, true},
        {"127.0.0.1", "127.0.0.1", 8080, true},
        {"<-loopback>,127.0.0.1", "127.0.0.2", 8080, false},
        {"127.0.0.0/8", "127.9.8.7", 8080, true},
        {"10.0.0.0/8", "11.0.0.1", 80, false},
        {"192.168.0.0/16", "192.168.44.1", 80, true},
        {"192.168.0.0/33", "192.168.44.1", 80, false},
        {"0.0.0.0/0", "8.8.8.8", 80, true},
        {"127.0.0.1:8080", "127.0.0.1", 8080, true},
        {"<-loopback>,127.0.0.1:8080", "127.0.0.1", 8081, false},
        {"::1", "::1", 443, true},
        {"[::1]", "::1", 443, true},
        {"[::1]:8443", "::1", 8443, true},
        {"<-loopback>,[::1]:8443", "::1", 443, false},
        {"fd00::/8", "fd12:3456::1", 443, true},
        {"fd00::/8", "fe80::1", 443, false},
        {"FD00::/8", "fd12::1", 443, true},
        {"<-loopback>,127.0.0.1", "::1", 443, false},
        {"example.com", "10.0.0.1", 443, false},
    };
    for (const Case& c : cases) {
        CAPTURE(c.no_proxy);
        CAPTURE(c.host);
        CAPTURE(c.port);
        CHECK(llm_stream::detail::bypasses_proxy(c.no_proxy, c.host, c.port) == c.direct);
    }
}

TEST_CASE("from_env: the proxy variable of the base URL's scheme, lower case first, then all_proxy") {
    struct Case {
        const char* base_url;
        std::vector<std::pair<const char*, const char*>> set;
        const char* proxy;  // Config::proxy expected
        bool case_sensitive_names = false;  // tells http_proxy from HTTP_PROXY: POSIX only (see below)
    };
    const Case cases[] = {
        {"https://api.example.com/v1", {{"https_proxy", "http://lower:1"}, {"HTTPS_PROXY", "http://upper:2"}}, "http://lower:1", true},
        {"https://api.example.com/v1", {{"HTTPS_PROXY", "http://upper:2"}}, "http://upper:2"},
        {"https://api.example.com/v1", {{"https_proxy", "  "}, {"HTTPS_PROXY", "http://upper:2"}}, "http://upper:2", true},
        {"https://api.example.com/v1", {{"http_proxy", "http://plain:3"}}, ""},
        {"https://api.example.com/v1", {{"all_proxy", "http://all:4"}, {"ALL_PROXY", "http://ALL:5"}}, "http://all:4", true},
        {"https://api.example.com/v1", {{"ALL_PROXY", "http://ALL:5"}}, "http://ALL:5"},
        {"https://api.example.com/v1", {{"https_proxy", "http://lower:1"}, {"all_proxy", "http://all:4"}}, "http://lower:1"},
        {"http://api.example.com/v1", {{"http_proxy", "http://plain:3"}, {"all_proxy", "http://all:4"}}, "http://plain:3"},
        // HTTP_PROXY may come from a CGI request's Proxy: header: never read (as curl)
        {"http://api.example.com/v1", {{"HTTP_PROXY", "http://attacker:6"}}, "", true},
        {"http://api.example.com/v1", {{"HTTP_PROXY", "http://attacker:6"}, {"ALL_PROXY", "http://ALL:5"}}, "http://ALL:5", true},
        {"http://api.example.com/v1", {{"https_proxy", "http://lower:1"}}, ""},
        {"HTTPS://api.example.com/v1", {{"https_proxy", "http://lower:1"}}, "http://lower:1"},
    };
    for (const Case& c : cases) {
#ifdef _WIN32  // Windows' environment names are case-insensitive: http_proxy and HTTP_PROXY are one variable
        if (c.case_sensitive_names) continue;
#endif
        CAPTURE(c.base_url);
        CAPTURE(c.proxy);
        CleanProxyEnv clean;
        ScopedEnv base("LLM_BASE_URL", std::string(c.base_url));
        std::vector<std::unique_ptr<ScopedEnv>> set;
        for (const auto& v : c.set) set.push_back(std::make_unique<ScopedEnv>(v.first, std::string(v.second)));
        Config config;
        const Error e = Config::from_env(config, kNoDotenv);
        CHECK_MESSAGE(!e, e.message);
        CHECK(config.proxy == c.proxy);
    }
}

TEST_CASE("from_env: no_proxy before NO_PROXY; a malformed proxy URL names its variable") {
    CleanProxyEnv clean;
    ScopedEnv base("LLM_BASE_URL", std::string("https://api.example.com/v1"));
#ifndef _WIN32  // one variable on Windows
    {
        ScopedEnv lower("no_proxy", std::string("a.example"));
        ScopedEnv upper("NO_PROXY", std::string("b.example"));
        Config config;
        CHECK_FALSE(Config::from_env(config, kNoDotenv));
        CHECK(config.no_proxy == "a.example");
    }
#endif
    {
        ScopedEnv upper("NO_PROXY", std::string("b.example"));
        Config config;
        CHECK_FALSE(Config::from_env(config, kNoDotenv));
        CHECK(config.no_proxy == "b.example");
    }
    {
        ScopedEnv bad("HTTPS_PROXY", std::string("socks5://u:secretpw@proxy.corp:1080"));
        Config config;
        const Error e = Config::from_env(config, kNoDotenv);
        CHECK(e.code == ErrorCode::invalid_config);
#ifdef _WIN32  // the variable is found under the first spelling asked for
        CHECK(e.message == "https_proxy: socks5:// proxies are not supported, only http:// ones");
#else
        CHECK(e.message == "HTTPS_PROXY: socks5:// proxies are not supported, only http:// ones");
#endif
        // The Client form keeps it: every stream fails with it rather than going direct.
        llm_stream::Client client(Config::from_env(kNoDotenv));
        llm_stream::Stream s = client.stream_chat("hi");
        CHECK_FALSE(s.next_chunk());
        CHECK(s.error().code == ErrorCode::invalid_config);
    }
    {
        ScopedEnv bad("all_proxy", std::string("http://proxy.corp:0"));
        Config config;
        const Error e = Config::from_env(config, kNoDotenv);
        CHECK(e.code == ErrorCode::invalid_config);
        CHECK(e.message == "all_proxy: invalid port in the proxy URL");
    }
}

namespace {

struct TunnelOutcome {
    std::string result;                  // "open", "need_more" or "failed <code>: <message>"
    std::vector<std::string> anomalies;  // broken call contracts
    std::string describe() const { return result; }
};

/* Feeds `reply` to a CONNECT exchange cut at `cuts`, then the end of input when it wants more. */
TunnelOutcome run_tunnel(const std::string& reply, const std::vector<std::size_t>& cuts, bool with_credentials,
                         std::size_t max_head = 64 * 1024) {
    ProxyUrl proxy;
    const Error parsed = llm_stream::detail::parse_proxy_url(
        with_credentials ? "http://alice:secretpw@127.0.0.1:3128" : "http://127.0.0.1:3128", proxy);
    llm_stream::detail::Url origin;
    const Error origin_parsed = llm_stream::detail::parse_url("https://api.example.com/v1", origin);
    TunnelOutcome out;
    if (parsed || origin_parsed) out.anomalies.push_back("bad test setup");
    ProxyTunnel tunnel(proxy, origin, max_head);
    ProxyTunnel::Status status = ProxyTunnel::Status::need_more;
    std::size_t from = 0;
    std::vector<std::size_t> ends = cuts;
    ends.push_back(reply.size());
    for (std::size_t to : ends) {
        const ProxyTunnel::Status before = status;
        status = tunnel.feed(std::string_view(reply).substr(from, to - from));
        if (before != ProxyTunnel::Status::need_more && status != before) out.anomalies.push_back("status changed after the end");
        from = to;
    }
    if (status == ProxyTunnel::Status::need_more) status = tunnel.finish();
    if (status == ProxyTunnel::Status::open) out.result = "open";
    else if (status == ProxyTunnel::Status::failed)
        out.result = std::string("failed ") + llm_stream::to_string(tunnel.error().code) + ": " + tunnel.error().message;
    if (contains(out.result, "secretpw") || contains(out.result, "YWxpY2U6")) out.anomalies.push_back("credentials in the message");
    return out;
}

std::string tunnel_result(const std::string& reply, bool with_credentials = false, std::size_t max_head = 64 * 1024) {
    const TunnelOutcome o = check_every_split(
        reply.size(), [&](const std::vector<std::size_t>& cuts) { return run_tunnel(reply, cuts, with_credentials, max_head); },
        400, 200);
    return o.result;
}

}  // namespace

TEST_CASE("the CONNECT request names the origin with its port, and the credentials when there are some") {
    llm_stream::detail::Url origin;
    ENSURE(!llm_stream::detail::parse_url("https://api.example.com/v1", origin));
    ProxyUrl plain, authenticated;
    ENSURE(!llm_stream::detail::parse_proxy_url("http://127.0.0.1:3128", plain));
    ENSURE(!llm_stream::detail::parse_proxy_url("http://alice:s%40cret@127.0.0.1:3128", authenticated));
    CHECK(ProxyTunnel(plain, origin, 1024).request() ==
          "CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n");
    CHECK(ProxyTunnel(authenticated, origin, 1024).request() ==
          "CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\nProxy-Authorization: " +
              basic("alice:s@cret") + "\r\n\r\n");
    llm_stream::detail::Url v6;
    ENSURE(!llm_stream::detail::parse_url("https://[::1]:8443/v1", v6));
    CHECK(ProxyTunnel(plain, v6, 1024).request() == "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n");
}

TEST_CASE("the proxy's reply to CONNECT, at every split") {
    SUBCASE("any 2xx opens the tunnel, headers and all") {
        CHECK(tunnel_result("HTTP/1.1 200 Connection established\r\n\r\n") == "open");
        CHECK(tunnel_result("HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n") == "open");
        CHECK(tunnel_result("HTTP/1.1 204 No Content\r\nVia: 1.1 squid\r\nX-Cache: MISS\r\n\r\n") == "open");
        CHECK(tunnel_result("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n") == "open");
    }
    SUBCASE("407: authentication wanted, or the credentials refused") {
        const std::string reply =
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n"
            "Content-Length: 5\r\n\r\ndenied";
        CHECK(tunnel_result(reply) == "failed proxy: the proxy 127.0.0.1:3128 requires authentication (407)");
        CHECK(tunnel_result(reply, true) == "failed proxy: the proxy 127.0.0.1:3128 refused the credentials (407)");
        // tinyproxy answers wrong credentials with 401
        CHECK(tunnel_result("HTTP/1.0 401 Unauthorized\r\nConnection: close\r\n\r\n", true) ==
              "failed proxy: the proxy 127.0.0.1:3128 refused the credentials (401)");
    }
    SUBCASE("another status: CONNECT refused, with the status and its reason") {
        CHECK(tunnel_result("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n") ==
              "failed proxy: the proxy 127.0.0.1:3128 refused CONNECT to api.example.com:443: HTTP 403 Forbidden");
        CHECK(tunnel_result("HTTP/1.1 503\r\n\r\n") ==
              "failed proxy: the proxy 127.0.0.1:3128 refused CONNECT to api.example.com:443: HTTP 503");
        CHECK(tunnel_result("HTTP/1.1 302 Found\r\nLocation: http://login.corp/\r\n\r\n") ==
              "failed proxy: the proxy 127.0.0.1:3128 refused CONNECT to api.example.com:443: HTTP 302 Found");
    }
    SUBCASE("a reply that is not HTTP") {
        const std::string r = tunnel_result("SSH-2.0-OpenSSH_9.2\r\n\r\n");
        CHECK(r == "failed proxy: the proxy 127.0.0.1:3128 answered CONNECT with no usable HTTP reply: it does not start with HTTP/");
        CHECK(contains(tunnel_result(std::string("\x16\x03\x01\x00\x05hello", 10)), "no usable HTTP reply"));
    }
    SUBCASE("an overlong head") {
        const std::string reply = "HTTP/1.1 200 OK\r\nX-Padding: " + std::string(300, 'x') + "\r\n\r\n";
        CHECK(tunnel_result(reply, false, 1024) == "open");
        const std::string r = tunnel_result(reply, false, 128);
        CHECK_MESSAGE(contains(r, "failed proxy: the proxy 127.0.0.1:3128 answered CONNECT with no usable HTTP reply"), r);
    }
    SUBCASE("data after an accepting head, before the client's TLS hello") {
        CHECK(run_tunnel("HTTP/1.1 200 OK\r\n\r\nextra", {}, false).result ==
              "failed proxy: the proxy 127.0.0.1:3128 sent data after accepting CONNECT, before the TLS handshake");
    }
    SUBCASE("the proxy hangs up before its reply ends: a connection failure, retried as one") {
        CHECK(tunnel_result("") == "failed connect: the proxy 127.0.0.1:3128 closed the connection before answering CONNECT");
        CHECK(tunnel_result("HTTP/1.1 200 OK\r\nVia: x\r\n") ==
              "failed connect: the proxy 127.0.0.1:3128 closed the connection before answering CONNECT");
    }
}

TEST_CASE("Config::proxy and no_proxy decide the route; a bad Config::proxy is named") {
    llm_stream::detail::Url url;
    ENSURE(!llm_stream::detail::parse_url("https://api.example.com/v1", url));
    Config config;
    std::optional<ProxyUrl> proxy;
    CHECK_FALSE(llm_stream::detail::proxy_for(config, url, proxy));
    CHECK_FALSE(proxy);
    config.proxy = "http://127.0.0.1:3128";
    CHECK_FALSE(llm_stream::detail::proxy_for(config, url, proxy));
    ENSURE(proxy.has_value());
    CHECK(proxy->address == "127.0.0.1:3128");
    CHECK(llm_stream::detail::connection_key(url, proxy) == "https://api.example.com via 127.0.0.1:3128");
    config.no_proxy = "example.com";
    CHECK_FALSE(llm_stream::detail::proxy_for(config, url, proxy));
    CHECK_FALSE(proxy);
    CHECK(llm_stream::detail::connection_key(url, proxy) == "https://api.example.com");
    config.no_proxy.clear();
    config.proxy = "socks4://127.0.0.1:1080";
    const Error e = llm_stream::detail::proxy_for(config, url, proxy);
    CHECK(e.code == ErrorCode::invalid_config);
    CHECK(e.message == "Config::proxy: socks4:// proxies are not supported, only http:// ones");
}

namespace {

/* Stands in for a TLS stack: a tunnel refused before TLS never needs one. */
class UnusedTls final : public llm_stream::TlsBackend {
public:
    std::string name() const override { return "unused"; }
    Error start(llm_stream::socket_handle, const std::string&, std::unique_ptr<llm_stream::TlsSession>&) override {
        return llm_stream::detail::make_error(ErrorCode::tls, "no TLS in this test");
    }
};

Config proxied_config(const std::string& base_url, const std::string& proxy) {
    Config config;
    config.base_url = base_url;
    config.proxy = proxy;
    config.no_proxy = "<-loopback>";  // the test's origin is on loopback, which otherwise goes direct
    config.api_key = "sk-test-key-0123456789";
    config.connect_timeout = config.read_timeout = std::chrono::milliseconds(5000);
    config.retry.initial_backoff = config.retry.max_backoff = std::chrono::milliseconds(1);
    config.log_level = llm_stream::LogLevel::off;
    config.tls.backend = std::make_shared<UnusedTls>();
    return config;
}

std::string collect(llm_stream::Stream& s) {
    std::string text;
    while (auto chunk = s.next_chunk()) text.append(*chunk);
    return text;
}

}  // namespace

TEST_CASE("an http:// origin through the proxy: absolute-form request line, Proxy-Authorization on each request") {
    TestServer proxy;
    const std::string body = llm_test::read_stream_file("deepseek-chat.sse");
    ENSURE(!body.empty());
    proxy.set_default(llm_test::Response::sse(body));
    ENSURE(proxy.start());
    llm_stream::Client client(proxied_config("http://origin.invalid:8080/v1",
                                             "http://al%69ce:p%40ss@127.0.0.1:" + std::to_string(proxy.port())));
    for (int i = 0; i < 2; ++i) {
        llm_stream::Stream s = client.stream_chat("hi");
        CHECK(collect(s) == "Hello! How can I assist you today? 😊");
        CHECK_MESSAGE(!s.error(), s.error().message);
    }
    const std::vector<llm_test::Request> requests = proxy.requests();
    ENSURE(requests.size() == 2);
    for (const llm_test::Request& r : requests) {
        CHECK(r.method == "POST");
        CHECK(r.target == "http://origin.invalid:8080/v1/chat/completions");
        CHECK(r.header("Host") == "origin.invalid:8080");
        CHECK(r.header("Proxy-Authorization") == basic("alice:p@ss"));
        CHECK(r.header("Authorization") == "Bearer sk-test-key-0123456789");
    }
    CHECK(requests[1].connection_id == requests[0].connection_id);  // pooled under (proxy, origin)
}

TEST_CASE("a tunnel the proxy refuses is ErrorCode::proxy after one attempt, without the credentials") {
    TestServer proxy;
    proxy.set_default(llm_test::Response::garbage(
        "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\n\r\n"));
    ENSURE(proxy.start());
    std::vector<std::string> logs;
    Config config = proxied_config("https://api.example.com/v1", "http://alice:secretpw@127.0.0.1:" + std::to_string(proxy.port()));
    config.log_level = llm_stream::LogLevel::debug;
    config.log = [&logs](llm_stream::LogLevel, std::string_view line) { logs.emplace_back(line); };
    llm_stream::Client client(config);
    llm_stream::Stream s = client.stream_chat("hi");
    CHECK_FALSE(s.next_chunk());
    CHECK(s.error().code == ErrorCode::proxy);
    CHECK(s.error().message == "the proxy 127.0.0.1:" + std::to_string(proxy.port()) + " refused the credentials (407)");
    CHECK(s.stats().attempts == 1);
    const std::vector<llm_test::Request> requests = proxy.requests();
    ENSURE(requests.size() == 1);
    CHECK(requests[0].method == "CONNECT");
    CHECK(requests[0].target == "api.example.com:443");
    CHECK(requests[0].header("Host") == "api.example.com:443");
    CHECK(requests[0].header("Proxy-Authorization") == basic("alice:secretpw"));
    CHECK_FALSE(requests[0].has_header("Authorization"));  // the API key never reaches the proxy
    CHECK_FALSE(logs.empty());
    for (const std::string& line : logs) {
        CHECK_FALSE(contains(line, "secretpw"));
        CHECK_FALSE(contains(line, basic("alice:secretpw")));
    }
}

TEST_CASE("an http:// origin: the proxy's 407 is ErrorCode::proxy after one attempt, its 401 the origin's status") {
    TestServer proxy;
    ENSURE(proxy.start());
    for (const char* userinfo : {"", "alice:secretpw@"}) {
        CAPTURE(userinfo);
        proxy.set_default(llm_test::Response::garbage(
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\n"
            "Content-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>"));
        const std::string address = "127.0.0.1:" + std::to_string(proxy.port());
        llm_stream::Client client(proxied_config("http://origin.invalid:8080/v1", "http://" + std::string(userinfo) + address));
        llm_stream::Stream s = client.stream_chat("hi");
        CHECK_FALSE(s.next_chunk());
        CHECK(s.error().code == ErrorCode::proxy);
        CHECK(s.error().message == "the proxy " + address +
                                       (*userinfo ? " refused the credentials (407)" : " requires authentication (407)"));
        CHECK(s.stats().attempts == 1);
    }
    // A 401 may be the origin's own (a wrong API key): it stays an HTTP status error.
    proxy.set_default(llm_test::Response::garbage(
        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 37\r\n\r\n"
        "{\"error\":{\"message\":\"Invalid key\"}}  "));
    llm_stream::Client client(proxied_config("http://origin.invalid:8080/v1", "http://127.0.0.1:" + std::to_string(proxy.port())));
    llm_stream::Stream s = client.stream_chat("hi");
    CHECK_FALSE(s.next_chunk());
    CHECK(s.error().code == ErrorCode::http_status);
    CHECK(s.error().http_status == 401);
}

TEST_CASE("poll() returns while the proxy's reply to CONNECT trickles in, one byte at a time") {
    TestServer proxy;
    llm_test::Response reply = llm_test::Response::garbage("HTTP/1.1 403 Forbidden\r\nVia: 1.1 test\r\n\r\n");
    reply.slow = true;
    reply.slow_delay_ms = 2;
    proxy.set_default(reply);
    ENSURE(proxy.start());
    llm_stream::Client client(proxied_config("https://api.example.com/v1", "127.0.0.1:" + std::to_string(proxy.port())));
    llm_stream::Stream s = client.stream_chat("hi");
    bool waited_for_the_reply = false;  // poll() came back while only the proxy's reply could be awaited
    llm_stream::PollStatus status = llm_stream::PollStatus::pending;
    for (int polls = 0; polls < 100000 && status == llm_stream::PollStatus::pending; ++polls) {
        status = s.poll();
        if (status != llm_stream::PollStatus::pending) break;
        waited_for_the_reply = waited_for_the_reply || (s.wait_info().want_read && !proxy.requests().empty());
        s.wait();
    }
    CHECK(status == llm_stream::PollStatus::failed);
    CHECK(waited_for_the_reply);
    CHECK(s.error().code == ErrorCode::proxy);
    CHECK(s.error().message == "the proxy 127.0.0.1:" + std::to_string(proxy.port()) +
                                   " refused CONNECT to api.example.com:443: HTTP 403 Forbidden");
}

TEST_CASE("a proxy that never finishes its reply to CONNECT: the connect timeout says so") {
    TestServer proxy;
    llm_test::Response reply = llm_test::Response::garbage("HTTP/1.1 200 Connection established\r\n");
    reply.stall_after_body_bytes = 9;
    reply.stall_ms = 20000;  // far beyond the timeout; stop() ends it at once
    proxy.set_default(reply);
    ENSURE(proxy.start());
    Config config = proxied_config("https://api.example.com/v1", "http://127.0.0.1:" + std::to_string(proxy.port()));
    config.connect_timeout = std::chrono::milliseconds(300);
    config.retry.max_retries = 0;
    llm_stream::Client client(config);
    llm_stream::Stream s = client.stream_chat("hi");
    CHECK_FALSE(s.next_chunk());
    CHECK(s.error().code == ErrorCode::timeout);
    CHECK(s.error().message == "the proxy's CONNECT timed out after 0.3 s");
}

TEST_CASE("no_proxy sends a listed host direct, and loopback unless <-loopback>; an unreachable proxy is a connect error naming it") {
    TestServer origin;
    origin.set_default(llm_test::Response::sse(llm_test::read_stream_file("deepseek-chat.sse")));
    ENSURE(origin.start());
    const RefusedPort closed;
    ENSURE(closed.port() != 0);
    const std::string dead_proxy = "http://127.0.0.1:" + std::to_string(closed.port());
    Config config = proxied_config("http://127.0.0.1:" + std::to_string(origin.port()) + "/v1", dead_proxy);
    for (const char* direct : {"<-loopback>, example.com, 127.0.0.0/8", "example.com", ""}) {
        CAPTURE(direct);
        config.no_proxy = direct;
        llm_stream::Client client(config);
        llm_stream::Stream s = client.stream_chat("hi");
        CHECK(collect(s) == "Hello! How can I assist you today? 😊");
        CHECK(origin.requests().back().target == "/v1/chat/completions");
    }
    config.no_proxy = "<-loopback>, example.com";
    config.retry.max_retries = 1;
    llm_stream::Client client(config);
    llm_stream::Stream s = client.stream_chat("hi");
    CHECK_FALSE(s.next_chunk());
    CHECK(s.error().code == ErrorCode::connect);
    CHECK_MESSAGE(contains(s.error().message, "cannot connect to the proxy 127.0.0.1:" + std::to_string(closed.port())),
                  s.error().message);
}
