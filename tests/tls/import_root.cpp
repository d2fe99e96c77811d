// Trusts the CAs of a PEM file in the current user's ROOT store: the Windows side of
// tests/tls/wine_schannel.sh, run in a throwaway wine prefix (real Windows would ask in a dialog first).
//
//   import_root.exe CA.pem
//
// The PEM is read as the library's SChannel backend reads a CA file. Exit status 0 when at least one
// certificate went in.
#define LLM_STREAM_INTERNALS
#include "llm_stream.hpp"

#include <cstdio>

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: import_root CA.pem\n");
        return 2;
    }
    HCERTSTORE root = CertOpenSystemStoreW(0, L"ROOT");
    const int added = root ? llm_stream::detail::add_pem_certificates(root, llm_stream::detail::read_system_file(argv[1])) : -1;
    if (root) CertCloseStore(root, 0);
    if (added <= 0) {
        std::fprintf(stderr, "import_root: no certificate of %s went into the ROOT store\n", argv[1]);
        return 1;
    }
    std::printf("import_root: %d certificate(s) of %s trusted\n", added, argv[1]);
    return 0;
}
