# Install rules (VIAL_INSTALL, on when vial is the top-level project):
#   lib/libvial.so.0.2.0 (SONAME libvial.so.0), lib/libvial.a
#   include/vial.h, include/vial/*.h, include/vial/config.h (generated)
#   lib/pkgconfig/vial.pc, lib/cmake/vial/ (find_package(vial) -> vial::vial)
# and CPack's Debian package metadata (cpack -G DEB in the build directory).
include(CMakePackageConfigHelpers)

set(VIAL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/vial)
set(VIAL_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

install(TARGETS ${VIAL_LIB_TARGETS} EXPORT vialTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/vial.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/vial/ ${PROJECT_BINARY_DIR}/include/vial/
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/vial FILES_MATCHING PATTERN "*.h")

# vial.pc finds its prefix relative to itself, so the installed tree (and the
# Debian package) can be moved. libvial.a's dependencies go to Libs.private
# as the link flags of their shared libraries, not as Requires.private:
# `pkg-config --static` would then ask for their own static dependencies,
# which Debian does not ship (libpq.pc names libpgcommon and libpgport).
set(VIAL_PC_LIBS_PRIVATE "")
set(VIAL_CLIENTS "")
foreach(dep ${VIAL_DEPS})
  string(REPLACE "=" ";" dep "${dep}")
  list(GET dep 0 dep_prefix)
  foreach(flag ${${dep_prefix}_LDFLAGS})
    if(NOT flag MATCHES "^-L/(usr/)?lib(/|$)") # the linker's own directories
      list(APPEND VIAL_PC_LIBS_PRIVATE ${flag})
    endif()
  endforeach()
  if(dep_prefix MATCHES "^VIAL_DEP_(PG|REDIS|HTTP|SQLITE)$")
    string(TOLOWER ${CMAKE_MATCH_1} client)
    list(APPEND VIAL_CLIENTS ${client})
  endif()
endforeach()
list(APPEND VIAL_PC_LIBS_PRIVATE -pthread -lm)
list(REMOVE_DUPLICATES VIAL_PC_LIBS_PRIVATE)
list(JOIN VIAL_PC_LIBS_PRIVATE " " VIAL_PC_LIBS_PRIVATE)
file(RELATIVE_PATH VIAL_PC_TO_PREFIX /prefix/${VIAL_PC_DIR} /prefix)
string(REGEX REPLACE "/$" "" VIAL_PC_TO_PREFIX "${VIAL_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/vial.pc.in ${PROJECT_BINARY_DIR}/vial.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/vial.pc DESTINATION ${VIAL_PC_DIR})

install(EXPORT vialTargets NAMESPACE vial:: DESTINATION ${VIAL_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/vialConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/vialConfig.cmake
                              INSTALL_DESTINATION ${VIAL_CMAKE_DIR})
# 0.x: a new minor version may break the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/vialConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/vialConfig.cmake ${PROJECT_BINARY_DIR}/vialConfigVersion.cmake
        DESTINATION ${VIAL_CMAKE_DIR})

# Debian package: `cpack -G DEB` in a build directory configured with
# -DCMAKE_INSTALL_PREFIX=/usr.
set(CPACK_PACKAGE_NAME libvial-dev)
set(CPACK_PACKAGE_VENDOR "the vial authors")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_DESCRIPTION
    "A web framework in C with Flask's programming model: routes, hooks, error handlers, sessions, websockets; async views run as coroutines on per-thread event loops, sync views on a worker pool. Shared and static library, headers, pkg-config file and CMake package.")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "the vial authors <vial@localhost>")
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# The -dev packages of what libvial links (vial.pc's Libs.private).
set(VIAL_DEB_DEPENDS libssl-dev libyajl-dev zlib1g-dev)
if(VIAL_HAVE_BROTLI)
  list(APPEND VIAL_DEB_DEPENDS libbrotli-dev)
endif()
foreach(client pg:libpq-dev redis:libhiredis-dev http:libcurl4-openssl-dev sqlite:libsqlite3-dev)
  string(REPLACE ":" ";" client "${client}")
  list(GET client 0 name)
  list(GET client 1 deb)
  if(name IN_LIST VIAL_CLIENTS)
    list(APPEND VIAL_DEB_DEPENDS ${deb})
  endif()
endforeach()
list(JOIN VIAL_DEB_DEPENDS ", " CPACK_DEBIAN_PACKAGE_DEPENDS)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
include(CPack)
