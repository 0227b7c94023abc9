"""The Windows container layer tar vocabulary, shared by ``cimfs export`` and ``cimfs build``.

Windows layers (as written by go-winio's ``backuptar`` and read by hcsshim,
``docs/api.md`` §8) keep what POSIX tar cannot hold in
PAX records:

* ``MSWINDOWS.fileattr``: decimal FILE_ATTRIBUTE_* bits;
* ``MSWINDOWS.rawsd``: base64 self-relative security descriptor
  (``MSWINDOWS.sd``, an SDDL string, is the legacy form);
* ``MSWINDOWS.xattr.<name>``: base64 value of one extended attribute;
* ``MSWINDOWS.mountpoint``: a symlink entry is a junction;
* ``LIBARCHIVE.creationtime``: creation time in decimal seconds;
* ``mtime``/``atime``/``ctime``: the other times, in decimal seconds;
* alternate data streams are regular entries named ``<file>:<stream>:$DATA``.

Three records of our own, ``CIMFS.*``, make ``export`` then ``build`` exact
where the Windows records lose information; other tools ignore them:

* ``CIMFS.reparse``: the raw reparse buffer, when it is not a symlink or
  junction that ``symlink_reparse``/``mount_point_reparse`` rebuild byte for byte;
* ``CIMFS.ea``: the raw EA chain, when the ``MSWINDOWS.xattr.*`` records do
  not rebuild it byte for byte (EA flags, ordering, padding);
* ``CIMFS.sparse``: the stream is sparse (the entry's data are its zeros).
"""
import base64
import binascii
from decimal import Decimal, InvalidOperation
from typing import Optional

from .metadata import UNIX_EPOCH_FILETIME

FILEATTR = "MSWINDOWS.fileattr"
RAWSD = "MSWINDOWS.rawsd"
SDDL = "MSWINDOWS.sd"
XATTR_PREFIX = "MSWINDOWS.xattr."
MOUNTPOINT = "MSWINDOWS.mountpoint"
CREATIONTIME = "LIBARCHIVE.creationtime"
RAW_REPARSE = "CIMFS.reparse"
RAW_EA = "CIMFS.ea"
SPARSE = "CIMFS.sparse"
STREAM_SUFFIX = ":$DATA"
WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"


def pax_time(ticks: int) -> str:
    """A FILETIME as exact decimal POSIX seconds (7 fractional digits; 0 stays 1601-01-01)."""
    return format(Decimal(ticks - UNIX_EPOCH_FILETIME).scaleb(-7), "f")


def filetime_from_pax(text: str) -> int:
    """The FILETIME of a PAX decimal time; ValueError if it is not a number in range."""
    try:
        ticks = int((Decimal(text) * 10_000_000).to_integral_value()) + UNIX_EPOCH_FILETIME
    except (InvalidOperation, ValueError):
        raise ValueError("time %r is not a decimal number" % text) from None
    if not 0 <= ticks < 1 << 63:
        raise ValueError("time %r is before 1601 or too far ahead" % text)
    return ticks


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def from_b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("%s is not valid base64" % what) from None


def split_stream_name(name: str) -> Optional[tuple]:
    """(file path, stream name) of an ``a/b:stream:$DATA`` entry name, else None."""
    if not name.endswith(STREAM_SUFFIX):
        return None
    base = name[:-len(STREAM_SUFFIX)]
    last = base.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    path, stream = base.rsplit(":", 1)
    return path, stream
