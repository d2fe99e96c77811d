/* llm_stream_openssl.hpp — an OpenSSL (1.1.1 or 3.x) backend for llm_stream's TLS hook.

   USAGE (in any file that includes llm_stream.hpp; link OpenSSL: -lssl -lcrypto, Debian libssl-dev)

       #include "llm_stream.hpp"
       #include "llm_stream_openssl.hpp"

       llm_stream::Config config = llm_stream::Config::from_env();
       if (llm_stream::Error e = llm_stream::openssl::make_backend(config.tls, config.tls.backend))
           std::fprintf(stderr, "%s\n", e.message.c_str());
       llm_stream::Client client(config);

   What it does, as the built-in backends: the chain is verified against ca_file, ca_dir (every PEM file
   in it, hashed names or not), ca_pem, else SSL_CERT_FILE / SSL_CERT_DIR, else OpenSSL's default trust
   store; a host name is sent as SNI and must be named by the certificate (subjectAltName DNS entries;
   no partial wildcards), an IP address must be one of its subjectAltName IP entries and is never sent as
   SNI; verify=false turns all of it off. Sockets stay non-blocking (want-read / want-write go back to the
   caller), a closed peer never raises SIGPIPE, and sessions are resumed for new connections to the same
   origin (per backend, the last 32 origins). OpenSSL picks the cipher suites and groups: AES-GCM first
   where the CPU has AES instructions, X25519 first, TLS 1.3 when the server has it.
*/
#ifndef LLM_STREAM_OPENSSL_HPP
#define LLM_STREAM_OPENSSL_HPP

#include "llm_stream.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#if defined(_WIN32)
#include <winsock2.h>
#else
#include <sys/socket.h>
#endif

namespace llm_stream {
namespace openssl {
namespace detail {

inline Error tls_error(std::string message) {
    Error e;
    e.code = ErrorCode::tls;
    e.message = std::move(message);
    return e;
}

/* `what` and OpenSSL's oldest queued error (the queue is then emptied), as ErrorCode::tls, or
   out_of_memory when an allocation failed. */
inline Error queued_failure(const std::string& what) {
    const unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0) return tls_error(what + "no further detail from OpenSSL");
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    Error e = tls_error(what + text);
    if (ERR_GET_REASON(code) == ERR_R_MALLOC_FAILURE) e.code = ErrorCode::out_of_memory;
    return e;
}

/* Why verification refused the peer, in the built-in backends' words where they have them. */
inline std::string verify_refusal(long result, const std::string& host) {
    switch (result) {
    case X509_V_ERR_HOSTNAME_MISMATCH: return "the certificate does not match the host name " + host;
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return "the certificate does not match the IP address " + host + " (not among its subjectAltName IP addresses)";
    case X509_V_ERR_CERT_HAS_EXPIRED: return "the certificate has expired";
    case X509_V_ERR_CERT_NOT_YET_VALID: return "the certificate is not yet valid (its validity starts in the future)";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        return std::string("the certificate is not signed by a trusted CA (") + X509_verify_cert_error_string(result) + ")";
    default: return X509_verify_cert_error_string(result);
    }
}

/* Where a session may be resumed: the host it was verified for and the peer's address and port
   (through a CONNECT tunnel, the proxy's). */
inline std::string resumption_key(socket_handle socket, const std::string& host) {
    sockaddr_storage peer{};
#if defined(_WIN32)
    int length = static_cast<int>(sizeof peer);
#else
    socklen_t length = sizeof peer;
#endif
    std::string key = host;
    if (getpeername(socket, reinterpret_cast<sockaddr*>(&peer), &length) == 0)
        key.append(reinterpret_cast<const char*>(&peer), static_cast<std::size_t>(length));
    return key;
}

/* Sessions to resume, one per resumption key, the most recent few; shared by the threads of a client. */
class SessionCache {
public:
    SessionCache() = default;
    SessionCache(const SessionCache&) = delete;
    SessionCache& operator=(const SessionCache&) = delete;
    ~SessionCache() {
        for (auto& entry : entries_) SSL_SESSION_free(entry.second);
    }
    /* Sets the session kept for `key`, if any, on `ssl`. */
    void offer(const std::string& key, SSL* ssl) {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto& entry : entries_)
            if (entry.first == key && SSL_set_session(ssl, entry.second) != 1) ERR_clear_error();
    }
    /* Takes `session` (a reference to it) as the one to offer for `key`. */
    void keep(const std::string& key, SSL_SESSION* session) {
        std::lock_guard<std::mutex> lock(mutex_);
        auto same = std::find_if(entries_.begin(), entries_.end(), [&](const auto& e) { return e.first == key; });
        if (same == entries_.end() && entries_.size() >= capacity) same = entries_.begin();  // the oldest goes
        if (same != entries_.end()) {
            SSL_SESSION_free(same->second);
            entries_.erase(same);
        }
        entries_.emplace_back(key, session);
    }

private:
    static constexpr std::size_t capacity = 32;
    std::mutex mutex_;
    std::vector<std::pair<std::string, SSL_SESSION*>> entries_;  // oldest first
};

/* A socket BIO of our own: send() without SIGPIPE, and the socket's error kept for messages. */
struct SocketIo {
    socket_handle socket;
    int error = 0;  // errno (WSAGetLastError) of the last failed call, 0 when it would only block
};

inline int last_error() {
#if defined(_WIN32)
    return WSAGetLastError();
#else
    return errno;
#endif
}

inline bool would_block(int error) {
#if defined(_WIN32)
    return error == WSAEWOULDBLOCK;
#else
    return error == EAGAIN || error == EWOULDBLOCK || error == EINTR;
#endif
}

/* After a send (`writing`) or recv that returned n: the BIO's retry flags and the socket's error. */
inline int socket_result(BIO* bio, long n, bool writing) {
    auto* io = static_cast<SocketIo*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    io->error = 0;
    if (n >= 0) return static_cast<int>(n);
    const int error = last_error();
    if (!would_block(error)) io->error = error;
    else if (writing) BIO_set_retry_write(bio);
    else BIO_set_retry_read(bio);
    return -1;
}

inline int bio_write(BIO* bio, const char* data, int size) {
    const auto* io = static_cast<SocketIo*>(BIO_get_data(bio));
#if defined(MSG_NOSIGNAL)
    const long n = ::send(io->socket, data, static_cast<std::size_t>(size), MSG_NOSIGNAL);
#elif defined(_WIN32)
    const long n = ::send(io->socket, data, size, 0);
#else
    const long n = ::send(io->socket, data, static_cast<std::size_t>(size), 0);  // SO_NOSIGPIPE is set
#endif
    return socket_result(bio, n, true);
}

inline int bio_read(BIO* bio, char* buffer, int capacity) {
    const auto* io = static_cast<SocketIo*>(BIO_get_data(bio));
#if defined(_WIN32)
    const long n = ::recv(io->socket, buffer, capacity, 0);
#else
    const long n = ::recv(io->socket, buffer, static_cast<std::size_t>(capacity), 0);
#endif
    return socket_result(bio, n, false);
}

inline long bio_control(BIO*, int command, long, void*) { return command == BIO_CTRL_FLUSH ? 1 : 0; }

inline BIO_METHOD* socket_method() {
    static BIO_METHOD* const method = [] {
        BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "llm_stream socket");
        if (m && (BIO_meth_set_write(m, bio_write) != 1 || BIO_meth_set_read(m, bio_read) != 1 ||
                  BIO_meth_set_ctrl(m, bio_control) != 1)) {
            BIO_meth_free(m);
            m = nullptr;
        }
        return m;
    }();
    return method;
}

class Backend;

class Session final : public TlsSession {
public:
    Session(std::shared_ptr<Backend> backend, SSL* ssl, socket_handle socket, std::string host)
        : backend_(std::move(backend)), ssl_(ssl), io_{socket, 0}, host_(std::move(host)) {}
    ~Session() override {
        if (SSL_is_init_finished(ssl_)) SSL_shutdown(ssl_);  // best effort, never waits
        SSL_free(ssl_);
        ERR_clear_error();
    }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    SocketIo* io() noexcept { return &io_; }

    TlsResult handshake() override {
        const int rc = SSL_connect(ssl_);
        if (rc == 1) return {TlsStatus::ok, 0};
        const long verified = SSL_get_verify_result(ssl_);
        const bool verifying = (SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) != 0;
        if (verifying && verified != X509_V_OK && SSL_get_error(ssl_, rc) == SSL_ERROR_SSL) {
            ERR_clear_error();
            error_ = tls_error("certificate verification failed: " + verify_refusal(verified, host_));
            return {TlsStatus::failed, 0};
        }
        return outcome(rc, "TLS handshake failed: ");
    }
    TlsResult read(char* buffer, std::size_t capacity) override {
        std::size_t bytes = 0;
        const int rc = SSL_read_ex(ssl_, buffer, capacity, &bytes);
        return rc == 1 ? TlsResult{TlsStatus::ok, bytes} : outcome(rc, "TLS read failed: ");
    }
    TlsResult write(const char* data, std::size_t size) override {
        std::size_t bytes = 0;
        const int rc = SSL_write_ex(ssl_, data, size, &bytes);
        return rc == 1 ? TlsResult{TlsStatus::ok, bytes} : outcome(rc, "TLS write failed: ");
    }
    const Error& error() const override { return error_; }

private:
    TlsResult outcome(int rc, const char* what) {
        switch (SSL_get_error(ssl_, rc)) {
        case SSL_ERROR_WANT_READ: return {TlsStatus::want_read, 0};
        case SSL_ERROR_WANT_WRITE: return {TlsStatus::want_write, 0};
        case SSL_ERROR_ZERO_RETURN: return {TlsStatus::closed, 0};
        case SSL_ERROR_SYSCALL:
            if (io_.error == 0 && ERR_peek_error() == 0) return {TlsStatus::closed, 0};  // EOF without close_notify
            if (io_.error != 0) {
                ERR_clear_error();
                error_ = tls_error(what + std::system_category().message(io_.error));
                return {TlsStatus::failed, 0};
            }
            break;
        default: break;
        }
        error_ = queued_failure(what);
        return {TlsStatus::failed, 0};
    }

    std::shared_ptr<Backend> backend_;  // its SSL_CTX outlives the session
    SSL* ssl_;
    SocketIo io_;
    std::string host_;
    Error error_;
};

class Backend final : public TlsBackend, public std::enable_shared_from_this<Backend> {
public:
    Backend() = default;
    Backend(const Backend&) = delete;
    Backend& operator=(const Backend&) = delete;
    ~Backend() override { SSL_CTX_free(context_); }

    std::string name() const override { return std::string("openssl (") + OpenSSL_version(OPENSSL_VERSION) + ")"; }

    [[nodiscard]] Error init(const TlsOptions& options) {
        context_ = SSL_CTX_new(TLS_client_method());
        if (!context_ || !socket_method()) return queued_failure("TLS initialisation failed: ");
        SSL_CTX_set_min_proto_version(context_, TLS1_2_VERSION);
        SSL_CTX_set_mode(context_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#if defined(SSL_OP_IGNORE_UNEXPECTED_EOF)
        SSL_CTX_set_options(context_, SSL_OP_IGNORE_UNEXPECTED_EOF);  // an EOF is `closed`, as with the others
#endif
        // Sessions are kept here, per origin: OpenSSL's client cache has no notion of one.
        SSL_CTX_set_session_cache_mode(context_, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(context_, &Backend::new_session);
        SSL_CTX_set_app_data(context_, this);
        SSL_CTX_set_verify(context_, options.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
        return options.verify ? load_trusted(options) : Error{};
    }

    [[nodiscard]] Error start(socket_handle socket, const std::string& host, std::unique_ptr<TlsSession>& session) override {
        SSL* ssl = SSL_new(context_);
        BIO* bio = ssl ? BIO_new(socket_method()) : nullptr;
        if (!bio) {
            SSL_free(ssl);
            return queued_failure("TLS setup failed: ");
        }
        const bool is_ip = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) == 1;
        ERR_clear_error();  // a host name is no IP address: not an error
        auto created = std::make_unique<Session>(shared_from_this(), ssl, socket, host);
        BIO_set_data(bio, created->io());
        BIO_set_init(bio, 1);
        SSL_set_bio(ssl, bio, bio);
        SSL_set_connect_state(ssl);
        SSL_set_ex_data(ssl, key_index(), new std::string(resumption_key(socket, host)));
        // SNI and the name to verify: host names only (RFC 6066); an IP address was set above.
        // (SSL_set_tlsext_host_name, without its C cast)
        char* name = const_cast<char*>(host.c_str());
        if (!is_ip && (SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, name) != 1 ||
                       SSL_set1_host(ssl, host.c_str()) != 1))
            return queued_failure("TLS setup failed for the host name " + host + ": ");
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        sessions_.offer(*static_cast<std::string*>(SSL_get_ex_data(ssl, key_index())), ssl);
        session = std::move(created);
        return {};
    }

private:
    /* The slot of an SSL that holds its resumption key (a std::string, freed with the SSL). */
    static int key_index() {
        static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, &Backend::free_key);
        return index;
    }
    static void free_key(void*, void* key, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<std::string*>(key); }
    /* OpenSSL's word that a session can be resumed (after the TLS 1.2 handshake, or as a TLS 1.3 ticket
       arrives); 1: the reference is ours. */
    static int new_session(SSL* ssl, SSL_SESSION* session) {
        auto* backend = static_cast<Backend*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
        const auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, key_index()));
        if (!backend || !key || !SSL_SESSION_is_resumable(session)) return 0;
        backend->sessions_.keep(*key, session);
        return 1;
    }

    [[nodiscard]] Error load_trusted(const TlsOptions& options);

    SSL_CTX* context_ = nullptr;
    SessionCache sessions_;
};

/* Adds the certificates of every file in `directory` (files that hold none are passed over); false
   when it cannot be read. */
inline bool load_directory(SSL_CTX* context, const std::string& directory) {
    std::error_code error;
    std::filesystem::directory_iterator entry(directory, error), end;
    if (error) return false;
    for (; entry != end; entry.increment(error)) {
        if (error) return false;
        const std::string path = entry->path().string();
        if (entry->is_regular_file(error) && SSL_CTX_load_verify_locations(context, path.c_str(), nullptr) != 1)
            ERR_clear_error();
    }
    return true;
}

/* Adds the certificates of PEM text; false when it holds none or a block is no certificate. */
inline bool load_pem(SSL_CTX* context, const std::string& pem) {
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    int added = 0;
    bool clean = bio != nullptr;
    while (clean) {
        X509* certificate = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
        if (!certificate) break;
        clean = X509_STORE_add_cert(SSL_CTX_get_cert_store(context), certificate) == 1;
        X509_free(certificate);
        ++added;
    }
    // The loop ends at the end of the text (PEM_R_NO_START_LINE) or at a block it could not read.
    const unsigned long last = ERR_peek_last_error();
    clean = clean && (last == 0 || ERR_GET_REASON(last) == PEM_R_NO_START_LINE);
    ERR_clear_error();
    BIO_free(bio);
    return clean && added > 0;
}

inline Error Backend::load_trusted(const TlsOptions& options) {
    if (!options.ca_pem.empty() && !load_pem(context_, options.ca_pem))
        return tls_error("cannot parse the in-memory CA PEM (ca_pem)");
    auto load_file = [&](const std::string& path) {
        const bool loaded = SSL_CTX_load_verify_locations(context_, path.c_str(), nullptr) == 1;
        ERR_clear_error();
        return loaded;
    };
    auto unreadable = [](const std::string& where) { return tls_error("cannot read CA certificates from " + where); };
    if (!options.ca_file.empty() || !options.ca_dir.empty()) {
        if (!options.ca_file.empty() && !load_file(options.ca_file)) return unreadable(options.ca_file);
        if (!options.ca_dir.empty() && !load_directory(context_, options.ca_dir))
            return unreadable("the directory " + options.ca_dir);
        return {};
    }
    // As the built-in backends: the variables replace the system's trust when either is set.
    const std::string env_file = std::getenv("SSL_CERT_FILE") ? std::getenv("SSL_CERT_FILE") : "";
    const std::string env_dir = std::getenv("SSL_CERT_DIR") ? std::getenv("SSL_CERT_DIR") : "";
    if (!env_file.empty() && !load_file(env_file)) return unreadable("SSL_CERT_FILE=" + env_file);
    if (!env_dir.empty() && !load_directory(context_, env_dir)) return unreadable("SSL_CERT_DIR=" + env_dir);
    if (!env_file.empty() || !env_dir.empty()) return {};
    if (SSL_CTX_set_default_verify_paths(context_) != 1) return queued_failure("cannot load the system's CA certificates: ");
    return {};
}

}  // namespace detail

/* An OpenSSL backend configured by `options` (trusted CAs loaded once, shared by its connections);
   an error (ErrorCode::tls) when the CAs cannot be loaded. */
[[nodiscard]] inline Error make_backend(const TlsOptions& options, std::shared_ptr<TlsBackend>& backend) {
    auto made = std::make_shared<detail::Backend>();
    if (Error e = made->init(options)) return e;
    backend = std::move(made);
    return {};
}

}  // namespace openssl
}  // namespace llm_stream

#endif  // LLM_STREAM_OPENSSL_HPP
