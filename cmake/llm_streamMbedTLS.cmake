# Looks for mbedTLS (mbedtls/ssl.h and the mbedtls, mbedx509, mbedcrypto libraries) and, when all are
# found, defines llm_stream::mbedtls: link it next to llm_stream::llm_stream to build the header's TLS
# backend (it defines LLM_STREAM_MBEDTLS). Point CMAKE_PREFIX_PATH, or the cache variables below, at
# another installation. Used by the build tree and by find_package(llm_stream COMPONENTS mbedtls).
if(TARGET llm_stream::mbedtls)
  return()
endif()

find_path(LLM_STREAM_MBEDTLS_INCLUDE_DIR mbedtls/ssl.h)
find_library(LLM_STREAM_MBEDTLS_LIBRARY mbedtls)
find_library(LLM_STREAM_MBEDX509_LIBRARY mbedx509)
find_library(LLM_STREAM_MBEDCRYPTO_LIBRARY mbedcrypto)
mark_as_advanced(LLM_STREAM_MBEDTLS_INCLUDE_DIR LLM_STREAM_MBEDTLS_LIBRARY
                 LLM_STREAM_MBEDX509_LIBRARY LLM_STREAM_MBEDCRYPTO_LIBRARY)

if(LLM_STREAM_MBEDTLS_INCLUDE_DIR AND LLM_STREAM_MBEDTLS_LIBRARY AND LLM_STREAM_MBEDX509_LIBRARY
   AND LLM_STREAM_MBEDCRYPTO_LIBRARY)
  add_library(llm_stream::mbedtls INTERFACE IMPORTED GLOBAL)
  set_target_properties(llm_stream::mbedtls PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${LLM_STREAM_MBEDTLS_INCLUDE_DIR}"
    INTERFACE_COMPILE_DEFINITIONS LLM_STREAM_MBEDTLS
    # Static archives need this order: each library before the ones it uses.
    INTERFACE_LINK_LIBRARIES
      "${LLM_STREAM_MBEDTLS_LIBRARY};${LLM_STREAM_MBEDX509_LIBRARY};${LLM_STREAM_MBEDCRYPTO_LIBRARY}")
  message(STATUS "llm_stream: mbedTLS found: ${LLM_STREAM_MBEDTLS_LIBRARY}")
else()
  message(STATUS "llm_stream: mbedTLS not found; https:// needs it (Debian: libmbedtls-dev)")
endif()
