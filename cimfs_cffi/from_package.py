"""MSIX/APPX package sources into a :class:`~.builder.Builder`: the package's
files as msixmgr unpacks them for app attach (:mod:`.msix` reads the package),
with a cap on what one part may inflate to.
"""
import zipfile
import zlib
from typing import Optional

from . import msix
from .builder import Builder
from .errors import BuildError, CimError

__all__ = ["add_package", "MAX_PART_RATIO", "MAX_PART_PLAIN"]

MAX_PART_RATIO, MAX_PART_PLAIN = 200, 256 << 20  # a package part that inflates beyond both: refused

def add_package(path: str, b: Builder, root_directory: Optional[str]) -> None:
    """The files of the MSIX/APPX package at ``path``, as msixmgr unpacks them for app attach."""
    try:
        with msix.Package(path) as package:
            b.summary.package = package.identity.full_name
            b.summary.input_format = "package"
            for image_path_, md, info in package.entries(root_directory):
                if info is None:
                    b.directory(image_path_, md)
                    continue
                if info.file_size > MAX_PART_PLAIN and info.file_size > MAX_PART_RATIO * max(info.compress_size, 1):
                    raise BuildError("%s: part %r would inflate %d bytes into %d (a zip bomb?); refused"
                                     % (path, info.filename, info.compress_size, info.file_size), path=path)
                try:
                    with package.open(info) as part:
                        b.file(image_path_, md, part, info.file_size)
                except _PACKAGE_ERRORS as e:
                    if isinstance(e, CimError):
                        raise
                    raise BuildError("%s: damaged part %r: %s" % (path, info.filename, e), path=path) from None
    except msix.PackageError as e:
        raise BuildError(str(e), path=path) from None
    except _PACKAGE_ERRORS as e:
        if isinstance(e, CimError):
            raise
        raise BuildError("%s: damaged package: %s" % (path, e), path=path) from None


# What a damaged zip raises while it is read (CimError, an OSError too, is the writer's: re-raised).
# RuntimeError: zipfile's word for a part it cannot read without a password.
_PACKAGE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, OSError, RuntimeError)
