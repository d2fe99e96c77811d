// Which AEAD decrypts TLS records faster with this machine's mbedTLS: the order of the built-in
// backend's cipher suites rests on it (llm_stream.hpp, mbedtls_suites_fastest_first; README, Performance).
//
//   g++ -std=c++17 -O2 bench/bench_aead.cpp -o bench_aead -lmbedcrypto && ./bench_aead
//
// 16 KiB records (TLS's largest) with a 13-byte header as associated data, as in TLS 1.2, decrypted
// and authenticated by AES-128-GCM (mbedTLS uses AES-NI and PCLMULQDQ when the CPU has them),
// AES-256-GCM and ChaCha20-Poly1305; 7 interleaved rounds, medians in MB/s.
#include <mbedtls/chachapoly.h>
#include <mbedtls/gcm.h>
#include <mbedtls/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

namespace {

constexpr std::size_t kRecord = 16384;
constexpr int kRecords = 1000;
constexpr int kRounds = 7;

using Seal = int (*)(void* context, unsigned char* record, unsigned char* tag);

struct Aead {
    const char* name;
    void* context;
    Seal seal;  // encrypts a record in place (the tag is then what decryption checks)
    Seal open;  // decrypts and authenticates it; 0 when the tag matches
    std::vector<double> mb_per_s;
};

const unsigned char kNonce[12] = {1, 2, 3};
const unsigned char kHeader[13] = {23, 3, 3};

int gcm_seal(void* c, unsigned char* r, unsigned char* tag) {
    return mbedtls_gcm_crypt_and_tag(static_cast<mbedtls_gcm_context*>(c), MBEDTLS_GCM_ENCRYPT, kRecord, kNonce, 12,
                                     kHeader, 13, r, r, 16, tag);
}
int gcm_open(void* c, unsigned char* r, unsigned char* tag) {
    return mbedtls_gcm_auth_decrypt(static_cast<mbedtls_gcm_context*>(c), kRecord, kNonce, 12, kHeader, 13, tag, 16, r, r);
}
int chacha_seal(void* c, unsigned char* r, unsigned char* tag) {
    return mbedtls_chachapoly_encrypt_and_tag(static_cast<mbedtls_chachapoly_context*>(c), kRecord, kNonce, kHeader, 13,
                                              r, r, tag);
}
int chacha_open(void* c, unsigned char* r, unsigned char* tag) {
    return mbedtls_chachapoly_auth_decrypt(static_cast<mbedtls_chachapoly_context*>(c), kRecord, kNonce, kHeader, 13, tag,
                                           r, r);
}

// MB/s of decrypting `kRecords` copies of one sealed record, or 0 when one fails to authenticate.
double measure(Aead& aead, std::vector<unsigned char>& sealed, const unsigned char* tag) {
    std::vector<unsigned char> record(kRecord);
    unsigned char expected[16];
    std::copy(tag, tag + 16, expected);
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kRecords; ++i) {
        std::copy(sealed.begin(), sealed.end(), record.begin());
        if (aead.open(aead.context, record.data(), expected) != 0) return 0;
    }
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    return static_cast<double>(kRecord) * kRecords / 1e6 / took.count();
}

}  // namespace

int main() {
    const unsigned char key[32] = {7};
    mbedtls_gcm_context gcm128, gcm256;
    mbedtls_chachapoly_context chacha;
    mbedtls_gcm_init(&gcm128);
    mbedtls_gcm_init(&gcm256);
    mbedtls_chachapoly_init(&chacha);
    if (mbedtls_gcm_setkey(&gcm128, MBEDTLS_CIPHER_ID_AES, key, 128) != 0 ||
        mbedtls_gcm_setkey(&gcm256, MBEDTLS_CIPHER_ID_AES, key, 256) != 0 || mbedtls_chachapoly_setkey(&chacha, key) != 0) {
        std::fprintf(stderr, "cannot set the keys\n");
        return 1;
    }
    Aead aeads[] = {{"AES-128-GCM", &gcm128, gcm_seal, gcm_open, {}},
                    {"AES-256-GCM", &gcm256, gcm_seal, gcm_open, {}},
                    {"ChaCha20-Poly1305", &chacha, chacha_seal, chacha_open, {}}};
    std::vector<unsigned char> plain(kRecord);
    for (std::size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<unsigned char>("data: {\"x\":1}\n\n"[i % 16]);
    for (int round = 0; round < kRounds; ++round) {
        for (Aead& aead : aeads) {
            std::vector<unsigned char> sealed = plain;
            unsigned char tag[16];
            if (aead.seal(aead.context, sealed.data(), tag) != 0) return 1;
            aead.mb_per_s.push_back(measure(aead, sealed, tag));
        }
    }
    std::printf("mbedTLS %s, 16 KiB records, medians of %d interleaved rounds:\n", MBEDTLS_VERSION_STRING, kRounds);
    for (Aead& aead : aeads) {
        std::sort(aead.mb_per_s.begin(), aead.mb_per_s.end());
        std::printf("  %-18s %7.0f MB/s\n", aead.name, aead.mb_per_s[kRounds / 2]);
    }
    mbedtls_gcm_free(&gcm128);
    mbedtls_gcm_free(&gcm256);
    mbedtls_chachapoly_free(&chacha);
    return 0;
}
