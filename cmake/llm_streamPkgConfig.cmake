# pkg-config files for the installed header, as Meson generates them:
#   llm_stream.pc          the include directory, and the system libraries the header needs on this
#                          platform (llm_stream's own link interface: ws2_32 on Windows, none on POSIX)
#   llm_stream-mbedtls.pc  the header's mbedTLS backend for https:// (LLM_STREAM_MBEDTLS and the mbedTLS
#                          libraries found at configure time), like find_package(... COMPONENTS mbedtls);
#                          installed only when this build found mbedTLS
#   llm_stream_c.pc        the C ABI shared library (llm_stream_c.h, -lllm_stream_c), when it is built
# The prefix is found from the file's own place (${pcfiledir}), so `cmake --install --prefix` may move it.
set(_llm_stream_pc_dir "${CMAKE_INSTALL_LIBDIR}/pkgconfig")

# ${pcfiledir}, then the way up from <prefix>/<libdir>/pkgconfig to the prefix.
function(llm_stream_pc_prefix out)
  if(IS_ABSOLUTE "${_llm_stream_pc_dir}")
    set(${out} "${CMAKE_INSTALL_PREFIX}" PARENT_SCOPE)
    return()
  endif()
  file(RELATIVE_PATH up "/root/${_llm_stream_pc_dir}" "/root")
  string(REGEX REPLACE "/$" "" up "${up}")
  set(${out} "\${pcfiledir}/${up}" PARENT_SCOPE)
endfunction()

# " -I<dir>" and " -L<dir> -l<name>" for llm_stream::mbedtls, leaving out the compiler's own directories.
function(llm_stream_pc_mbedtls_flags cflags_out libs_out)
  get_target_property(include_dirs llm_stream::mbedtls INTERFACE_INCLUDE_DIRECTORIES)
  get_target_property(libraries llm_stream::mbedtls INTERFACE_LINK_LIBRARIES)
  set(cflags "")
  foreach(dir IN LISTS include_dirs)
    if(NOT dir IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
      string(APPEND cflags " -I${dir}")
    endif()
  endforeach()
  set(libs "")
  set(seen_dirs ${CMAKE_CXX_IMPLICIT_LINK_DIRECTORIES})
  foreach(library IN LISTS libraries)
    get_filename_component(dir "${library}" DIRECTORY)
    get_filename_component(name "${library}" NAME_WE)
    string(REGEX REPLACE "^lib" "" name "${name}")
    if(NOT dir IN_LIST seen_dirs)
      list(APPEND seen_dirs "${dir}")
      string(APPEND libs " -L${dir}")
    endif()
    string(APPEND libs " -l${name}")
  endforeach()
  set(${cflags_out} "${cflags}" PARENT_SCOPE)
  set(${libs_out} "${libs}" PARENT_SCOPE)
endfunction()

# An install directory as the .pc file spells it: absolute as given, else under ${prefix}.
function(llm_stream_pc_path out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "\${prefix}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

llm_stream_pc_prefix(_llm_stream_pc_prefix)
llm_stream_pc_path(_llm_stream_pc_includedir "${CMAKE_INSTALL_INCLUDEDIR}")
llm_stream_pc_path(_llm_stream_pc_libdir "${CMAKE_INSTALL_LIBDIR}")

# The Libs line is llm_stream's link interface as evaluated for this platform (none: an empty line).
set(_llm_stream_pc_system_libs
  "$<FILTER:$<TARGET_GENEX_EVAL:llm_stream,$<TARGET_PROPERTY:llm_stream,INTERFACE_LINK_LIBRARIES>>,INCLUDE,.>")
set(_llm_stream_pc_libs "$<$<BOOL:${_llm_stream_pc_system_libs}>:Libs: -l$<JOIN:${_llm_stream_pc_system_libs}, -l>>")
configure_file(cmake/llm_stream.pc.in "${PROJECT_BINARY_DIR}/llm_stream.pc.in" @ONLY)
file(GENERATE OUTPUT "${PROJECT_BINARY_DIR}/llm_stream.pc" INPUT "${PROJECT_BINARY_DIR}/llm_stream.pc.in")
install(FILES "${PROJECT_BINARY_DIR}/llm_stream.pc" DESTINATION "${_llm_stream_pc_dir}")

if(TARGET llm_stream::mbedtls)
  llm_stream_pc_mbedtls_flags(_llm_stream_pc_mbedtls_cflags _llm_stream_pc_mbedtls_libs)
  configure_file(cmake/llm_stream-mbedtls.pc.in "${PROJECT_BINARY_DIR}/llm_stream-mbedtls.pc" @ONLY)
  install(FILES "${PROJECT_BINARY_DIR}/llm_stream-mbedtls.pc" DESTINATION "${_llm_stream_pc_dir}")
endif()

if(TARGET llm_stream_c)
  configure_file(cmake/llm_stream_c.pc.in "${PROJECT_BINARY_DIR}/llm_stream_c.pc" @ONLY)
  install(FILES "${PROJECT_BINARY_DIR}/llm_stream_c.pc" DESTINATION "${_llm_stream_pc_dir}")
endif()
