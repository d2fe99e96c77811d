# What the CMake consumer projects share once llm_stream::llm_stream exists (from add_subdirectory,
# FetchContent or find_package): the program, linked the way a user's project links it.
set(_consumer_common_dir "${CMAKE_CURRENT_LIST_DIR}")

# Vendored (add_subdirectory, FetchContent), llm_stream must add no tests, examples or install rules.
function(consumer_check_vendored)
  if(TARGET llm-chat OR LLM_STREAM_BUILD_TESTS OR LLM_STREAM_BUILD_EXAMPLES OR LLM_STREAM_INSTALL)
    message(FATAL_ERROR "llm_stream built its tests, examples or install rules inside a parent project")
  endif()
endfunction()

function(consumer_add_program)
  add_executable(consumer "${_consumer_common_dir}/main.cpp" "${_consumer_common_dir}/stub_reply.cpp")
  target_link_libraries(consumer PRIVATE llm_stream::llm_stream)
  if(TARGET llm_stream::mbedtls)  # optional: https:// support
    target_link_libraries(consumer PRIVATE llm_stream::mbedtls)
  endif()
endfunction()
