"""cimfs_cffi: write CimFS images on any OS.

The compiled module ``cimfs_cffi._cimfs`` exposes the Windows ``cimfs.h``
API (``lib.CimCreateImage``, ``lib.CimCreateFile``, ...) with the same names,
signatures and HRESULTs.  Behind it sits either the bundled portable writer
or, on Windows, ``cimfs.dll``; the functions below tell and choose which.
"""
from ._cimfs import ffi, lib

__all__ = ["ffi", "lib", "active_backend", "select_backend", "system_backend_available", "BACKENDS"]
__version__ = "0.1.0"

BACKENDS = {"auto": lib.CIMFS_BACKEND_AUTO, "portable": lib.CIMFS_BACKEND_PORTABLE, "system": lib.CIMFS_BACKEND_SYSTEM}


def active_backend() -> str:
    """Name of the backend new images are created with: "portable" or "system"."""
    return "system" if lib.CimfsActiveBackend() == lib.CIMFS_BACKEND_SYSTEM else "portable"


def system_backend_available() -> bool:
    """True when Windows' cimfs.dll was found (never on Linux or macOS)."""
    return bool(lib.CimfsSystemBackendAvailable())


def select_backend(name: str) -> None:
    """Choose the backend for images created from now on: "auto", "portable" or "system".

    Raises ValueError for an unknown name and OSError when "system" is asked
    for on a machine without cimfs.dll.  Handles already open keep theirs.
    """
    if name not in BACKENDS:
        raise ValueError("unknown backend %r (expected one of %s)" % (name, ", ".join(sorted(BACKENDS))))
    hr = lib.CimfsSelectBackend(BACKENDS[name])
    if hr < 0:
        raise OSError("backend %r is not available here: cimfs.dll not found (HRESULT 0x%08X)" % (name, hr & 0xFFFFFFFF))
