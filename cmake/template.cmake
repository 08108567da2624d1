# The template engine (src/template), its command-line renderer
# (tools/vial-render), its differential test against Jinja2, the guide's
# compiled C example and the fuzz target. Included from the top-level
# CMakeLists.txt after the vial library is defined.
file(GLOB VIAL_TEMPLATE_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/template/*.c)
target_sources(vial_objects PRIVATE ${VIAL_TEMPLATE_SOURCES})

# build/tools/vial-render: renders a template from a directory with a JSON
# context read from stdin (yajl's tree parser).
add_executable(vial-render ${PROJECT_SOURCE_DIR}/tools/vial-render.c)
target_link_libraries(vial-render PRIVATE vial PkgConfig::VIAL_DEP_YAJL)
target_include_directories(vial-render PRIVATE ${PROJECT_SOURCE_DIR}/src)
set_target_properties(vial-render PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tools)

# tools/bench-template: a fortunes-like page rendered N times (µs per render).
add_executable(bench-template ${PROJECT_SOURCE_DIR}/tools/bench_template.c)
target_link_libraries(bench-template PRIVATE vial)
target_include_directories(bench-template PRIVATE ${PROJECT_SOURCE_DIR}/src)
set_target_properties(bench-template PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tools)

if(VIAL_TESTS)
  # tests/unit/test_template.c is built and registered by tests/CMakeLists.txt
  # (every tests/unit/test_*.c is). The differential test needs Debian's
  # python3-jinja2; it is skipped (exit 77) when Jinja2 is missing.
  add_test(NAME template_diff
           COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/template/diff.py
                   $<TARGET_FILE:vial-render>)
  set_tests_properties(template_diff PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77)

  # The guide's C example (docs/guide/templates.md) as a program.
  add_executable(guide_templates_example ${PROJECT_SOURCE_DIR}/tests/template/guide_example.c)
  target_link_libraries(guide_templates_example PRIVATE vial)
  set_target_properties(guide_templates_example PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  add_test(NAME guide_templates_example COMMAND guide_templates_example)
  add_test(NAME guide_templates_in_sync
           COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/template/check_guide.py)
endif()

if(VIAL_FUZZ)
  # build/fuzz_template -max_total_time=60 /tmp/tmpl-scratch fuzz/corpus/template
  add_executable(fuzz_template ${PROJECT_SOURCE_DIR}/fuzz/fuzz_template.c ${VIAL_TEMPLATE_SOURCES}
                 ${PROJECT_SOURCE_DIR}/src/runtime/arena.c ${PROJECT_SOURCE_DIR}/src/runtime/codec.c)
  target_include_directories(fuzz_template PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/include)
  target_compile_definitions(fuzz_template PRIVATE _GNU_SOURCE VIAL_TMPL_MAX_DEPTH=20
                             VIAL_TMPL_MAX_STEPS=20000 "VIAL_TMPL_MAX_BUILD=(64L<<10)")
  target_compile_options(fuzz_template PRIVATE -fsanitize=fuzzer,address,undefined
                         -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1)
  target_link_options(fuzz_template PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_template PRIVATE m Threads::Threads)
  set_target_properties(fuzz_template PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})
endif()
