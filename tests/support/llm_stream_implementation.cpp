// The library's implementation, compiled once per build and linked into every test executable (and the
// fuzz targets). Test files include the header with LLM_STREAM_INTERNALS when they reach into detail::;
// a test that configures the implementation itself (the counting allocator) defines
// LLM_STREAM_IMPLEMENTATION in its own file and does not link this one.
#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"
