"""cffi API-mode build of cimfs_cffi._cimfs.

One cdef (cimfs_cffi/_cimfs_cdef.h) describes the API for both backends.
The module always compiles the bundled portable writer (libcimfs/); on
Windows it also routes calls to cimfs.dll, which it loads at run time
(libcimfs/cim_backend.c), so nothing links against cimfs.lib.

Extra compiler flags (for example the sanitizer build in .ci/run) come from
the usual CFLAGS / LDFLAGS environment variables.
"""
import os
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
LIBCIMFS = "libcimfs"  # relative: setuptools wants relative source paths

ffibuilder = FFI()

with open(os.path.join(HERE, "cimfs_cffi", "_cimfs_cdef.h")) as f:
    cdef = f.read()
wchar = "wchar_t" if sys.platform == "win32" else "char16_t"
ffibuilder.cdef("typedef %s WCHAR;\n%s" % (wchar, cdef))

sources = sorted(os.path.join(LIBCIMFS, name)
                 for name in os.listdir(os.path.join(HERE, LIBCIMFS)) if name.endswith(".c"))

if sys.platform == "win32":
    libraries = ["bcrypt"]
    extra_compile_args = []
else:
    libraries = ["pthread"]  # the writer's helper thread (in libc on new glibc, a library on old)
    extra_compile_args = ["-std=c99", "-fvisibility=hidden", "-pthread"]

ffibuilder.set_source(
    "cimfs_cffi._cimfs",
    """
    #if !defined(_WIN32)
    #  if defined(__has_include)
    #    if __has_include(<uchar.h>)
    #      include <uchar.h>
    #      define CIMFS_HAVE_UCHAR_H 1
    #    endif
    #  endif
    #  if !defined(CIMFS_HAVE_UCHAR_H)
    #    include <stdint.h>
    typedef uint_least16_t char16_t; /* SDKs without <uchar.h>, e.g. older macOS */
    #  endif
    #endif
    #include "cimfs.h"
    #include "cim_platform.h"
    #include "cim_objid.h"
    #include "cim_pe.h"
    #include "cim_upcase.h"
    """,
    sources=sources,
    include_dirs=[LIBCIMFS],
    libraries=libraries,
    extra_compile_args=extra_compile_args,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
