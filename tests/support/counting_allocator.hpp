// Counts every heap allocation of a test binary: the library's own buffers through the
// LLM_STREAM_REALLOC hook, everything else through a replaced global operator new; and measures the
// peak of live heap bytes (HeapMeasure). Include it before
// llm_stream.hpp, in the one file of the binary (it defines operator new and the hook macros).
#ifndef LLM_STREAM_TEST_COUNTING_ALLOCATOR_HPP
#define LLM_STREAM_TEST_COUNTING_ALLOCATOR_HPP

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__GNUC__) && !defined(__clang__)
// GCC cannot see that the replaced operator new below allocates with malloc.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace {
std::atomic<long> heap_allocations{0};     // by every thread
thread_local long thread_allocations = 0;  // by this thread (servers in the same process have their own)

// Live heap of the blocks a thread allocated while measuring (HeapMeasure), whichever thread frees them:
// each block carries its size, and whether it counts, in front.
thread_local bool measuring_heap = false;
std::atomic<long> measured_live_bytes{0};
std::atomic<long> measured_peak_bytes{0};
constexpr std::size_t block_header = alignof(std::max_align_t);
struct BlockHeader {
    std::size_t size;
    bool measured;
};
static_assert(sizeof(BlockHeader) <= block_header, "the header fits in front of the block");

void count_allocation() noexcept {
    ++thread_allocations;
    heap_allocations.fetch_add(1, std::memory_order_relaxed);
}

void forget_block(const BlockHeader& header) noexcept {
    if (header.measured) measured_live_bytes.fetch_sub(static_cast<long>(header.size));
}

void* counted_realloc(void* p, std::size_t size) {
    count_allocation();
    char* block = p ? static_cast<char*>(p) - block_header : nullptr;
    BlockHeader header{0, false};
    if (block) std::memcpy(&header, block, sizeof header);
    char* grown = static_cast<char*>(std::realloc(block, block_header + size));
    if (grown == nullptr) return nullptr;
    forget_block(header);
    header = {size, measuring_heap};
    std::memcpy(grown, &header, sizeof header);
    if (header.measured) {
        const long live = measured_live_bytes.fetch_add(static_cast<long>(size)) + static_cast<long>(size);
        long peak = measured_peak_bytes.load();
        while (live > peak && !measured_peak_bytes.compare_exchange_weak(peak, live)) {}
    }
    return grown + block_header;
}

void counted_free(void* p) noexcept {
    if (p == nullptr) return;
    char* block = static_cast<char*>(p) - block_header;
    BlockHeader header;
    std::memcpy(&header, block, sizeof header);
    forget_block(header);
    std::free(block);
}

/* While one lives, what this thread allocates is measured: peak_bytes() is the most that was live at
   once since it began (of those blocks, wherever freed). One at a time. */
class HeapMeasure {
public:
    HeapMeasure() {
        measured_live_bytes = 0;
        measured_peak_bytes = 0;
        measuring_heap = true;
    }
    ~HeapMeasure() { measuring_heap = false; }
    HeapMeasure(const HeapMeasure&) = delete;
    HeapMeasure& operator=(const HeapMeasure&) = delete;
    long peak_bytes() const noexcept { return measured_peak_bytes.load(); }
    long live_bytes() const noexcept { return measured_live_bytes.load(); }  // of those blocks, now
};
}  // namespace

void* operator new(std::size_t size) {
    if (void* p = counted_realloc(nullptr, size ? size : 1)) return p;
    std::abort();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }

#define LLM_STREAM_REALLOC(ptr, size) counted_realloc(ptr, size)
#define LLM_STREAM_FREE(ptr) counted_free(ptr)

#endif
