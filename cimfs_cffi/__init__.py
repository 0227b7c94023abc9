"""cimfs_cffi: write CimFS images on any OS.

Most users want :class:`Image`::

    from cimfs_cffi import Image, FileMetadata

    with Image.create("/tmp/images", "layer.cim") as image:
        image.add_directory("Files")
        image.add_file("Files/hello.txt", b"hello")
        image.create_hard_links([("Files/again.txt", "Files/hello.txt")])
        image.commit()

The raw ``cimfs.h`` API (``lib.CimCreateImage``, ...) stays available as
``cimfs_cffi.lib``/``cimfs_cffi.ffi`` for callers that need it.
"""
from . import errors
from ._cimfs import ffi, lib
from .build_image import BuildSummary, build, build_packages
from .errors import (AccessDenied, AlreadyExists, BuildError, CimError, CorruptImage, DiskFull, InvalidArgument,
                     NotSupported, OutOfMemory, PathNotFound, SharingViolation, StreamFull)
from .names import InvalidName, NameCollision
from .image import BACKENDS, FileStream, Image
from .metadata import FileMetadata, ea_buffer, mount_point_reparse, symlink_reparse, to_filetime
from .reader import CimImage, CorruptImageError, FileInfo, open_image
from .verify import Finding, verify

__all__ = [
    "build", "build_packages", "BuildSummary", "BuildError", "NameCollision", "InvalidName",
    "Image", "FileStream", "open_image", "CimImage", "FileInfo", "CorruptImageError", "verify", "Finding", "FileMetadata", "symlink_reparse", "mount_point_reparse", "ea_buffer", "to_filetime",
    "errors", "CimError", "InvalidArgument", "PathNotFound", "AccessDenied", "AlreadyExists", "SharingViolation",
    "StreamFull", "DiskFull", "OutOfMemory", "NotSupported", "CorruptImage",
    "active_backend", "select_backend", "system_backend_available", "BACKENDS", "ffi", "lib",
]
__version__ = "0.1.0"


def active_backend() -> str:
    """Name of the backend ``lib.CimCreateImage`` uses: "portable" or "system"."""
    return "system" if lib.CimfsActiveBackend() == lib.CIMFS_BACKEND_SYSTEM else "portable"


def system_backend_available() -> bool:
    """True when Windows' cimfs.dll was found (never on Linux or macOS)."""
    return bool(lib.CimfsSystemBackendAvailable())


def select_backend(name: str) -> None:
    """Choose the backend of ``lib.CimCreateImage`` from now on: "auto",
    "portable" or "system" (``Image.create`` takes its own ``backend``).

    Raises InvalidArgument for an unknown name and NotSupported when "system"
    is asked for on a machine without cimfs.dll.  Open handles keep theirs.
    """
    if name not in BACKENDS:
        raise InvalidArgument(errors.E_INVALIDARG, "unknown backend %r (expected one of %s)"
                              % (name, ", ".join(sorted(BACKENDS))))
    errors.check(lib.CimfsSelectBackend(BACKENDS[name]), "backend %r is not available here (no cimfs.dll)" % name)
