# Writes what `bulwark --version` says about its build: the commit (with -dirty for local
# changes) and the build's options. Run at every build; the file is rewritten only when its
# content changes, so an unchanged tree recompiles nothing.
execute_process(
  COMMAND git -C ${SRC} describe --always --dirty --abbrev=12 --exclude=*
  OUTPUT_VARIABLE COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE RC)
if(NOT RC EQUAL 0 OR COMMIT STREQUAL "")
  set(COMMIT "unknown")  # a source tarball without git
endif()
set(TEXT "constexpr const char* kBuildVersion = \"${VERSION}\";\n")
string(APPEND TEXT "constexpr const char* kBuildCommit = \"${COMMIT}\";\n")
string(APPEND TEXT "constexpr const char* kBuildOptions = \"${OPTIONS}\";\n")
file(WRITE ${OUT}.tmp "${TEXT}")
configure_file(${OUT}.tmp ${OUT} COPYONLY)
