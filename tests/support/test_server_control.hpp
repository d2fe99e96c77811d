// llm_test::ServerControl: TestServers created and scripted over HTTP, the native side of RemoteTestServer
// (llm_test_server --control answers with it). Every control request is a POST whose body and answer are
// wire messages (test_server_wire.hpp):
//
//   /new                      ipv6, idle_timeout_ms: starts a server; answer: id, port
//   /<id>/start               starts it again after a stop; answer: port
//   /<id>/stop                /<id>/delete (stops and forgets it)
//   /<id>/push                /<id>/set_default: the body is a Response
//   /<id>/clear_queue         /<id>/clear_records
//   /<id>/requests            answer: the requests (wire::write_requests)
//   /<id>/counts              answer: request_count, connection_count, open_connection_count, responses_completed
//
// Anything else, and a failure, gets a 400 whose text/plain body says why.

#ifndef LLM_TEST_SERVER_CONTROL_HPP
#define LLM_TEST_SERVER_CONTROL_HPP

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "test_server.hpp"
#include "test_server_wire.hpp"

namespace llm_test {

class ServerControl {
public:
    // Thread-safe: the control server calls it from each connection's thread.
    Response handle(const Request& request) {
        if (request.method != "POST") return failure("control requests are POST, not " + request.method);
        std::lock_guard<std::mutex> lock(mu_);
        if (request.target == "/new") return create(request.body);
        const std::size_t slash = request.target.find('/', 1);
        std::size_t id = 0;
        if (request.target.empty() || slash == std::string::npos ||
            !wire::Reader::to_number(std::string_view(request.target).substr(1, slash - 1), id))
            return failure("unknown control target " + request.target);
        const auto it = servers_.find(id);
        if (it == servers_.end()) return failure("no test server " + std::to_string(id));
        return apply(id, *it->second, request.target.substr(slash + 1), request.body);
    }

private:
    static Response answer(std::string text) { return Response::status(200, std::move(text)).closing(); }
    static Response failure(std::string why) { return Response::status(400, "llm_test_server: " + why).closing(); }
    static Response port_of(const TestServer& server) {
        return answer(wire::Writer().number("port", server.port()).text());
    }

    Response create(const std::string& body) {
        TestServer::Options options;
        wire::Reader in(body);
        while (in.next()) {
            if (in.name() == "ipv6") in.read(options.ipv6);
            else if (in.name() == "idle_timeout_ms") in.read(options.idle_timeout_ms);
            else return failure("unknown option " + std::string(in.name()));
        }
        if (in.failed()) return failure("malformed options");
        auto server = std::make_unique<TestServer>(options);
        if (!server->start()) return failure(server->error());
        const std::size_t id = ++last_id_;
        const std::string port = wire::Writer().number("port", server->port()).text();
        servers_[id] = std::move(server);
        return answer(wire::Writer().number("id", id).text() + port);
    }

    Response apply(std::size_t id, TestServer& server, const std::string& verb, const std::string& body) {
        if (verb == "start") return server.start() ? port_of(server) : failure(server.error());
        if (verb == "push" || verb == "set_default") return script(server, verb, body);
        if (verb == "requests") return answer(wire::write_requests(server.requests()));
        if (verb == "counts") return counts(server);
        if (verb == "stop") server.stop();
        else if (verb == "delete") servers_.erase(id);
        else if (verb == "clear_queue") server.clear_queue();
        else if (verb == "clear_records") server.clear_records();
        else return failure("unknown control request " + verb);
        return answer({});
    }

    static Response script(TestServer& server, const std::string& verb, const std::string& body) {
        Response r;
        if (!wire::read_response(body, r)) return failure("malformed response to " + verb);
        if (verb == "push") server.push(std::move(r));
        else server.set_default(std::move(r));
        return answer({});
    }

    static Response counts(const TestServer& server) {
        wire::Writer w;
        w.number("request_count", server.request_count()).number("connection_count", server.connection_count());
        w.number("open_connection_count", server.open_connection_count());
        return answer(w.number("responses_completed", server.responses_completed()).text());
    }

    std::mutex mu_;
    std::map<std::size_t, std::unique_ptr<TestServer>> servers_;
    std::size_t last_id_ = 0;
};

}  // namespace llm_test

#endif  // LLM_TEST_SERVER_CONTROL_HPP
