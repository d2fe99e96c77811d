// libFuzzer target: the DNS answer reader (detail::read_dns_answer) on arbitrary bytes, and the hosts
// file and resolv.conf readers on the same bytes as text.
//
// The input is a DNS message read as the answer to the queries for llm.test (A, then AAAA), each
// written under the input's own id so that the reader goes past the id check. Invariants:
// - addresses come only with DnsReply::addresses, each a numeric address of the asked family, at most
//   one per answer record the message could hold;
// - the verdict does not depend on the id once the id matches, and a message whose id differs is
//   never believed (DnsReply::not_ours);
// - the hosts file reader gives only fields of the text; read_resolv_conf keeps at most 3 servers and
//   timeouts and attempts within glibc's bounds.
// Memory safety (compression pointers, counts and lengths that lie) is checked by ASan and UBSan.
#define LLM_STREAM_INTERNALS  // detail:: too; the implementation is linked in
#include "llm_stream.hpp"

#include "fuzz_common.hpp"

#include <string>
#include <vector>

namespace {

using llm_stream::detail::DnsReply;
using llm_stream::detail::read_dns_answer;

void check_answer(std::string_view message, std::uint16_t type) {
    std::string query;
    const std::uint16_t id = message.size() >= 2 ? llm_stream::detail::dns_u16(message, 0) : 0;
    FUZZ_CHECK(!llm_stream::detail::write_dns_query("llm.test", id, type, query));
    std::vector<std::string> addresses;
    std::string why;
    const DnsReply reply = read_dns_answer(message, query, addresses, why);
    FUZZ_CHECK(reply == DnsReply::addresses || addresses.empty());
    FUZZ_CHECK(addresses.size() <= message.size() / 11);  // a record takes at least 11 bytes
    for (const std::string& a : addresses) {
        unsigned char raw[16];
        FUZZ_CHECK(inet_pton(type == llm_stream::detail::dns_type_a ? AF_INET : AF_INET6, a.c_str(), raw) == 1);
    }
    FUZZ_CHECK(reply != DnsReply::server_failed || !why.empty());
    // Under another id the same bytes are nobody's answer.
    FUZZ_CHECK(!llm_stream::detail::write_dns_query("llm.test", static_cast<std::uint16_t>(id ^ 0x8000), type, query));
    FUZZ_CHECK(read_dns_answer(message, query, addresses, why) == DnsReply::not_ours);
}

void check_text_readers(std::string_view text) {
    std::vector<std::string> addresses;
    llm_stream::detail::hosts_file_addresses(text, "llm.test", addresses);
    for (const std::string& a : addresses) FUZZ_CHECK(!a.empty() && text.find(a) != std::string_view::npos);
    llm_stream::detail::DnsSettings settings;
    llm_stream::detail::read_resolv_conf(text, settings);
    FUZZ_CHECK(settings.servers.size() <= 3);
    FUZZ_CHECK(settings.timeout.count() >= 1000 && settings.timeout.count() <= 30000);
    FUZZ_CHECK(settings.attempts >= 1 && settings.attempts <= 5);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > fuzz::max_input) return 0;
    const std::unique_ptr<char[]> copy = fuzz::exact_copy(data, size);
    const std::string_view message(copy.get(), size);
    check_answer(message, llm_stream::detail::dns_type_a);
    check_answer(message, llm_stream::detail::dns_type_aaaa);
    check_text_readers(message);
    return 0;
}
