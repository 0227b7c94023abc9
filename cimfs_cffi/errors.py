"""HRESULT -> exception translation.

Every error of this package is a :class:`CimError` (itself an ``OSError``)
carrying the HRESULT.  Subclasses also inherit the matching built-in, so
``except FileNotFoundError`` or ``except ValueError`` work as expected::

    CimError(OSError)
    +-- InvalidArgument(ValueError)      E_INVALIDARG, E_POINTER, HR(FILENAME_EXCED_RANGE)
    +-- PathNotFound(FileNotFoundError)  HR(FILE_NOT_FOUND), HR(PATH_NOT_FOUND)
    +-- AccessDenied(PermissionError)    E_ACCESSDENIED
    +-- AlreadyExists(FileExistsError)   HR(FILE_EXISTS), HR(ALREADY_EXISTS)
    +-- SharingViolation                 HR(SHARING_VIOLATION): a stream is open, or the directory is in use
    +-- StreamFull(ValueError)           HR(HANDLE_EOF): more bytes than the stream's declared size
    +-- DiskFull                         HR(DISK_FULL)
    +-- OutOfMemory(MemoryError)         E_OUTOFMEMORY
    +-- NotSupported(NotImplementedError) HR(NOT_SUPPORTED), HR(PROC_NOT_FOUND), E_NOTIMPL
    +-- CorruptImage                     HR(FILE_CORRUPT): an existing image cannot be read

Unknown HRESULTs raise plain :class:`CimError`.
"""
import errno as _errno
from typing import Optional

__all__ = [
    "CimError", "InvalidArgument", "PathNotFound", "AccessDenied", "AlreadyExists", "SharingViolation",
    "StreamFull", "DiskFull", "OutOfMemory", "NotSupported", "CorruptImage", "BuildError", "check", "error_for",
]

E_INVALIDARG = 0x80070057
E_POINTER = 0x80004003
E_ACCESSDENIED = 0x80070005
E_OUTOFMEMORY = 0x8007000E
E_NOTIMPL = 0x80004001
E_FAIL = 0x80004005
HR_FILE_NOT_FOUND = 0x80070002
HR_PATH_NOT_FOUND = 0x80070003
HR_SHARING_VIOLATION = 0x80070020
HR_HANDLE_EOF = 0x80070026
HR_NOT_SUPPORTED = 0x80070032
HR_FILE_EXISTS = 0x80070050
HR_DISK_FULL = 0x80070070
HR_PROC_NOT_FOUND = 0x8007007F
HR_ALREADY_EXISTS = 0x800700B7
HR_FILENAME_EXCED_RANGE = 0x800700CE
HR_FILE_CORRUPT = 0x80070570


class CimError(OSError):
    """A CimFS call failed.

    Attributes: ``hresult`` (unsigned), ``winerror`` (the Win32 code inside a
    ``HRESULT_FROM_WIN32`` value, else None), ``path``, ``existing_path`` (hard
    links), ``index`` (position of the failing pair in a bulk call, else None).
    """

    default_errno = _errno.EIO
    description = "CimFS error"

    def __init__(self, hresult: int, message: Optional[str] = None, *, path: Optional[str] = None,
                 existing_path: Optional[str] = None, index: Optional[int] = None):
        hresult &= 0xFFFFFFFF
        self.hresult = hresult
        self.winerror = hresult & 0xFFFF if (hresult & 0x1FFF0000) == 0x00070000 else None
        self.path = path
        self.existing_path = existing_path
        self.index = index
        self.reason = message or self.description
        super().__init__(self.default_errno, self.reason)
        self.filename = path
        self.filename2 = existing_path

    def __str__(self) -> str:
        text = "[HRESULT 0x%08X] %s" % (self.hresult, self.reason)
        if self.path is not None:
            text += ": " + _short(self.path)
        if self.existing_path is not None:
            text += " -> " + _short(self.existing_path)
        if self.index is not None:
            text += " (pair %d)" % self.index
        return text

    def __reduce__(self):
        return (_rebuild, (type(self), self.hresult, self.reason, self.path, self.existing_path, self.index))


def _short(path) -> str:
    """repr of a path, abbreviated in the middle when very long (the attribute keeps it whole)."""
    text = repr(path)
    return text if len(text) <= 300 else text[:150] + "..." + text[-100:]


def _rebuild(cls, hresult, reason, path, existing_path, index):
    return cls(hresult, reason, path=path, existing_path=existing_path, index=index)


class InvalidArgument(CimError, ValueError):
    default_errno = _errno.EINVAL
    description = "invalid argument"


class PathNotFound(CimError, FileNotFoundError):
    default_errno = _errno.ENOENT
    description = "path not found"


class AccessDenied(CimError, PermissionError):
    default_errno = _errno.EACCES
    description = "access denied"


class AlreadyExists(CimError, FileExistsError):
    default_errno = _errno.EEXIST
    description = "already exists"


class SharingViolation(CimError):
    default_errno = _errno.EBUSY
    description = "sharing violation: a stream is still open on this image, or another writer holds the directory"


class StreamFull(CimError, ValueError):
    default_errno = _errno.EFBIG
    description = "write past the stream's declared size (the bytes that fit were written)"


class DiskFull(CimError):
    default_errno = _errno.ENOSPC
    description = "disk full"


class OutOfMemory(CimError, MemoryError):
    default_errno = _errno.ENOMEM
    description = "out of memory"


class NotSupported(CimError, NotImplementedError):
    default_errno = _errno.EOPNOTSUPP if hasattr(_errno, "EOPNOTSUPP") else _errno.ENOSYS
    description = "not supported by this backend"


class CorruptImage(CimError):
    default_errno = _errno.EIO
    description = "the existing image is damaged or not a CIM"


_BY_HRESULT = {
    E_INVALIDARG: InvalidArgument,
    E_POINTER: InvalidArgument,
    HR_FILENAME_EXCED_RANGE: InvalidArgument,
    HR_FILE_NOT_FOUND: PathNotFound,
    HR_PATH_NOT_FOUND: PathNotFound,
    E_ACCESSDENIED: AccessDenied,
    HR_FILE_EXISTS: AlreadyExists,
    HR_ALREADY_EXISTS: AlreadyExists,
    HR_SHARING_VIOLATION: SharingViolation,
    HR_HANDLE_EOF: StreamFull,
    HR_DISK_FULL: DiskFull,
    E_OUTOFMEMORY: OutOfMemory,
    HR_NOT_SUPPORTED: NotSupported,
    HR_PROC_NOT_FOUND: NotSupported,
    E_NOTIMPL: NotSupported,
    HR_FILE_CORRUPT: CorruptImage,
}


def error_for(hresult: int, message: Optional[str] = None, **where) -> CimError:
    """The exception for an HRESULT (``where``: path, existing_path, index)."""
    cls = _BY_HRESULT.get(hresult & 0xFFFFFFFF, CimError)
    return cls(hresult, message, **where)


def check(hresult: int, message: Optional[str] = None, **where) -> int:
    """Return a success HRESULT, raise the mapped exception for a failure."""
    if hresult < 0:
        raise error_for(hresult, message, **where)
    return hresult


class BuildError(CimError):
    """A build stopped: bad source entry, unreadable file, missing link target..."""

    def __init__(self, message: str, *, path: Optional[str] = None, existing_path: Optional[str] = None):
        super().__init__(E_INVALIDARG, message, path=path, existing_path=existing_path)

    def __reduce__(self):
        return (BuildError, (self.reason,), {"path": self.path, "existing_path": self.existing_path})
