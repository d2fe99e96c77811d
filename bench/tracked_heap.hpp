// The heap of a benchmark program, tracked: every operator new and every allocation of the library
// through LLM_STREAM_REALLOC, with the bytes live now, their peak and the number of allocations.
// Include it before llm_stream.hpp in the program's one file (it replaces operator new and defines the
// hook macros). Single-threaded programs only: the counters are plain variables.
#ifndef LLM_STREAM_BENCH_TRACKED_HEAP_HPP
#define LLM_STREAM_BENCH_TRACKED_HEAP_HPP

#include <cstddef>
#include <cstdlib>
#include <new>

namespace {

// Each block carries its size in front, so a free knows how much stops being live.
constexpr std::size_t kHeader = alignof(std::max_align_t);
std::size_t live_bytes = 0;
std::size_t peak_bytes = 0;
std::size_t allocations = 0;

void* tracked_realloc(void* p, std::size_t size) {
    char* block = p ? static_cast<char*>(p) - kHeader : nullptr;
    const std::size_t old_size = block ? *reinterpret_cast<std::size_t*>(block) : 0;
    char* grown = static_cast<char*>(std::realloc(block, kHeader + size));
    if (grown == nullptr) return nullptr;
    *reinterpret_cast<std::size_t*>(grown) = size;
    live_bytes = live_bytes - old_size + size;
    if (live_bytes > peak_bytes) peak_bytes = live_bytes;
    ++allocations;
    return grown + kHeader;
}

void tracked_free(void* p) {
    if (p == nullptr) return;
    char* block = static_cast<char*>(p) - kHeader;
    live_bytes -= *reinterpret_cast<std::size_t*>(block);
    std::free(block);
}

}  // namespace

void* operator new(std::size_t size) {
    if (void* p = tracked_realloc(nullptr, size ? size : 1)) return p;
    std::abort();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { tracked_free(p); }
void operator delete[](void* p) noexcept { tracked_free(p); }
void operator delete(void* p, std::size_t) noexcept { tracked_free(p); }
void operator delete[](void* p, std::size_t) noexcept { tracked_free(p); }

#define LLM_STREAM_REALLOC(ptr, size) tracked_realloc(ptr, size)
#define LLM_STREAM_FREE(ptr) tracked_free(ptr)

#endif
