// Counts every heap allocation of a test binary: the library's own buffers through the
// LLM_STREAM_REALLOC hook, everything else through a replaced global operator new. Include it before
// llm_stream.hpp, in the one file of the binary (it defines operator new and the hook macros).
#ifndef LLM_STREAM_TEST_COUNTING_ALLOCATOR_HPP
#define LLM_STREAM_TEST_COUNTING_ALLOCATOR_HPP

#include <atomic>
#include <cstdlib>
#include <new>

#if defined(__GNUC__) && !defined(__clang__)
// GCC cannot see that the replaced operator new below allocates with malloc.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace {
std::atomic<long> heap_allocations{0};     // by every thread
thread_local long thread_allocations = 0;  // by this thread (servers in the same process have their own)

void count_allocation() noexcept {
    ++thread_allocations;
    heap_allocations.fetch_add(1, std::memory_order_relaxed);
}

void* counted_realloc(void* p, std::size_t size) {
    count_allocation();
    return std::realloc(p, size);
}
}  // namespace

void* operator new(std::size_t size) {
    count_allocation();
    if (void* p = std::malloc(size ? size : 1)) return p;
    std::abort();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

#define LLM_STREAM_REALLOC(ptr, size) counted_realloc(ptr, size)
#define LLM_STREAM_FREE(ptr) std::free(ptr)

#endif
