"""Compiler flags for the project's own code (one place, as abseil does)."""

ASYNCORE_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wshadow",
    "-Woverloaded-virtual",
    "-Wnon-virtual-dtor",
]

# Tests use GoogleTest macros that trip some of the stricter warnings.
ASYNCORE_TEST_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
]
