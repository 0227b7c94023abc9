"""File metadata for CimCreateFile, and builders for reparse and EA buffers."""
import datetime as _dt
import os
import stat as _stat
import struct
from dataclasses import dataclass
from typing import List, Mapping, Optional, Tuple, Union

from .errors import E_INVALIDARG, InvalidArgument

__all__ = ["FileMetadata", "to_filetime", "symlink_reparse", "mount_point_reparse", "ea_buffer",
           "READONLY", "HIDDEN", "SYSTEM", "DIRECTORY", "ARCHIVE", "NORMAL", "SPARSE_FILE", "REPARSE_POINT"]

READONLY, HIDDEN, SYSTEM, DIRECTORY, ARCHIVE, NORMAL = 0x1, 0x2, 0x4, 0x10, 0x20, 0x80
SPARSE_FILE, REPARSE_POINT = 0x200, 0x400
IO_REPARSE_TAG_SYMLINK = 0xA000000C
IO_REPARSE_TAG_MOUNT_POINT = 0xA0000003

UNIX_EPOCH_FILETIME = 116444736000000000  # 1970-01-01 in 100 ns ticks since 1601-01-01
RAW_FILETIME_MIN = 1 << 40                 # ints from here on are FILETIME ticks (see to_filetime)
MAX_BLOB = 0xFFFF

TimeLike = Union[None, int, float, _dt.datetime]


_CYCLE_TICKS = 146097 * 86400 * 10**7  # the Gregorian calendar repeats every 400 years, to the day


def format_filetime(ticks: int) -> str:
    """A FILETIME as ``YYYY-MM-DD HH:MM`` (UTC).  Every value the format holds prints: years past
    9999 (FILETIME reaches 60056) in ISO 8601's expanded form, ``+YYYYY-MM-DD HH:MM``."""
    cycles = 0
    while ticks >= 20 * _CYCLE_TICKS:  # past 9601: move back whole 400-year cycles
        ticks -= _CYCLE_TICKS
        cycles += 1
    when = _dt.datetime(1601, 1, 1) + _dt.timedelta(microseconds=ticks // 10)
    year = when.year + 400 * cycles
    return "%s%04d-%s" % ("+" if year > 9999 else "", year, when.strftime("%m-%d %H:%M"))


def to_filetime(value: TimeLike) -> int:
    """A Windows FILETIME (100 ns ticks since 1601-01-01 UTC) from:

    * ``None``: 0 ("no time");
    * a ``datetime`` (naive ones are taken as UTC);
    * an ``int`` >= 2**40: already FILETIME ticks (2**40 ticks is 30 hours
      after 1601, so no real FILETIME is smaller and no POSIX time larger);
    * any other ``int`` or ``float``: POSIX seconds.
    """
    if value is None:
        return 0
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        delta = value - _dt.datetime(1601, 1, 1, tzinfo=_dt.timezone.utc)
        ticks = (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(E_INVALIDARG, "a time is a datetime, POSIX seconds or FILETIME ticks, not %r" % (value,))
    elif isinstance(value, int) and value >= RAW_FILETIME_MIN:
        ticks = value
    elif isinstance(value, int):
        ticks = value * 10_000_000 + UNIX_EPOCH_FILETIME
    else:
        ticks = round(value * 10_000_000) + UNIX_EPOCH_FILETIME
    if not 0 <= ticks < 1 << 63:
        raise InvalidArgument(E_INVALIDARG, "time %r is outside the FILETIME range (1601-01-01 onwards)" % (value,))
    return ticks


@dataclass
class FileMetadata:
    """What CimCreateFile records for a file or directory.

    ``attributes`` are Win32 FILE_ATTRIBUTE_* bits (the image keeps READONLY,
    HIDDEN, SYSTEM, ARCHIVE and SPARSE_FILE; DIRECTORY and REPARSE_POINT are
    set by the call and by ``reparse_data``).  ``size`` is the primary
    stream's size; leave it None to take it from the data.  Times accept what
    :func:`to_filetime` accepts.  ``security_descriptor`` is a self-relative
    SD (None: the NULL-DACL default), ``reparse_data`` a whole
    REPARSE_DATA_BUFFER (see :func:`symlink_reparse`), ``ea`` a
    FILE_FULL_EA_INFORMATION chain (see :func:`ea_buffer`).
    """

    attributes: int = 0
    size: Optional[int] = None
    creation_time: TimeLike = None
    last_write_time: TimeLike = None
    change_time: TimeLike = None
    last_access_time: TimeLike = None
    security_descriptor: Optional[bytes] = None
    reparse_data: Optional[bytes] = None
    ea: Optional[bytes] = None

    @classmethod
    def from_stat(cls, st: os.stat_result, *, name: Optional[str] = None, reproducible: bool = False) -> "FileMetadata":
        """Metadata from ``os.stat``/``os.lstat``.

        Windows' ``st_file_attributes`` are used when present.  Elsewhere:
        DIRECTORY for directories, READONLY when no write bit is set, HIDDEN
        when ``name`` starts with a dot.  Creation time is ``st_birthtime``
        where the OS has it, else the modification time; change time is the
        modification time, as in Microsoft's images (``st_ctime`` cannot be
        set, so taking it would make every rebuild differ).  Size is set for
        regular files only.  ``reproducible``: every time is the modification time.
        """
        creation, write, change, access = stat_times(st, reproducible)
        return cls(attributes=stat_attributes(st, name), size=st.st_size if _stat.S_ISREG(st.st_mode) else 0,
                   creation_time=creation, last_write_time=write, change_time=change, last_access_time=access)

    def c_struct(self, ffi, *, directory: bool, size: int, path: Optional[str] = None) -> Tuple[object, List]:
        """The CIMFS_FILE_METADATA for this metadata, and the buffers it points into."""
        attrs = self.attributes
        if not isinstance(attrs, int) or isinstance(attrs, bool) or not 0 <= attrs <= 0xFFFFFFFF:
            raise InvalidArgument(E_INVALIDARG, "attributes must be a 32-bit unsigned int", path=path)
        if directory:
            attrs |= DIRECTORY
        elif attrs & DIRECTORY:
            raise InvalidArgument(E_INVALIDARG, "DIRECTORY attribute given for a file", path=path)
        attrs = (attrs | REPARSE_POINT) if self.reparse_data else (attrs & ~REPARSE_POINT)
        md = ffi.new("CIMFS_FILE_METADATA *")
        md.Attributes = attrs
        md.FileSize = size
        try:
            md.CreationTime.QuadPart = to_filetime(self.creation_time)
            md.LastWriteTime.QuadPart = to_filetime(self.last_write_time)
            md.ChangeTime.QuadPart = to_filetime(self.change_time)
            md.LastAccessTime.QuadPart = to_filetime(self.last_access_time)
        except InvalidArgument as e:
            raise InvalidArgument(E_INVALIDARG, e.reason, path=path) from None
        keep = []
        for blob, what, buf_field, size_field in (
                (self.security_descriptor, "security descriptor", "SecurityDescriptorBuffer", "SecurityDescriptorSize"),
                (self.reparse_data, "reparse data", "ReparseDataBuffer", "ReparseDataSize"),
                (self.ea, "EA buffer", "EaBuffer", "EaBufferSize")):
            if blob is None or len(blob) == 0:
                continue
            blob = bytes(blob)
            if len(blob) > MAX_BLOB:
                raise InvalidArgument(E_INVALIDARG, "%s of %d bytes is over 65535" % (what, len(blob)), path=path)
            buf = ffi.new("char[]", blob)
            keep.append(buf)
            setattr(md, buf_field, buf)
            setattr(md, size_field, len(blob))
        return md, keep


def stat_attributes(st: os.stat_result, name: Optional[str] = None) -> int:
    """FILE_ATTRIBUTE_* bits of a stat result (rules in :meth:`FileMetadata.from_stat`)."""
    attrs = getattr(st, "st_file_attributes", None)
    if attrs is None:
        attrs = DIRECTORY if _stat.S_ISDIR(st.st_mode) else 0
        if not st.st_mode & 0o222:
            attrs |= READONLY
        if name and name[0] == "." and name not in (".", ".."):
            attrs |= HIDDEN
    return attrs & ~REPARSE_POINT  # reparse data, if any, is the caller's to give


def stat_times(st: os.stat_result, reproducible: bool = False) -> Tuple[int, int, int, int]:
    """(creation, last write, change, last access) FILETIMEs of a stat result; change = last write.
    ``reproducible``: all four are the last write time (a copy of the tree has new creation
    times, and reading it moves access times)."""
    if reproducible:
        mtime = UNIX_EPOCH_FILETIME + st.st_mtime_ns // 100
        return mtime, mtime, mtime, mtime
    birth = getattr(st, "st_birthtime_ns", None)
    birthtime = getattr(st, "st_birthtime", None)  # not on Linux (typeshed omits it there)
    if birth is None and birthtime is not None:
        birth = int(birthtime * 1e9)
    mtime = UNIX_EPOCH_FILETIME + st.st_mtime_ns // 100
    return (UNIX_EPOCH_FILETIME + birth // 100 if birth is not None else mtime, mtime, mtime,
            UNIX_EPOCH_FILETIME + st.st_atime_ns // 100)


def _reparse(tag: int, payload: bytes) -> bytes:
    if len(payload) + 8 > MAX_BLOB:
        raise InvalidArgument(E_INVALIDARG, "reparse target too long")
    return struct.pack("<IHH", tag, len(payload), 0) + payload


def symlink_reparse(target: str, *, relative: Optional[bool] = None) -> bytes:
    """An IO_REPARSE_TAG_SYMLINK buffer for ``target`` ('/' becomes '\\').

    ``relative`` defaults to: not starting with a drive, a UNC prefix or '\\'.
    Absolute targets get the NT form (``\\??\\C:\\x``) as substitute name and
    the target as print name, as Windows' CreateSymbolicLink writes them.
    """
    t = os.fspath(target).replace("/", "\\")
    if not t:
        raise InvalidArgument(E_INVALIDARG, "empty symlink target")
    if relative is None:
        relative = not (t.startswith("\\") or (len(t) >= 2 and t[1] == ":"))
    substitute = t if relative or t.startswith("\\??\\") else "\\??\\" + (("UNC" + t[1:]) if t.startswith("\\\\") else t)
    sub, prn = substitute.encode("utf-16-le"), t.encode("utf-16-le")
    header = struct.pack("<HHHHI", 0, len(sub), len(sub), len(prn), 1 if relative else 0)
    return _reparse(IO_REPARSE_TAG_SYMLINK, header + sub + prn)


def mount_point_reparse(target: str) -> bytes:
    """An IO_REPARSE_TAG_MOUNT_POINT (junction) buffer for an absolute ``target``."""
    t = os.fspath(target).replace("/", "\\")
    if not (len(t) >= 2 and t[1] == ":") and not t.startswith("\\??\\"):
        raise InvalidArgument(E_INVALIDARG, "a junction target is an absolute path with a drive: %r" % target)
    substitute = t if t.startswith("\\??\\") else "\\??\\" + t
    sub, prn = substitute.encode("utf-16-le"), t.encode("utf-16-le")
    # Both names are NUL-terminated in mount point buffers.
    header = struct.pack("<HHHH", 0, len(sub), len(sub) + 2, len(prn))
    return _reparse(IO_REPARSE_TAG_MOUNT_POINT, header + sub + b"\0\0" + prn + b"\0\0")


def ea_buffer(eas: Union[Mapping[str, bytes], Mapping[bytes, bytes], Mapping[Union[str, bytes], bytes]], *,
              need_ea: bool = False) -> bytes:
    """A FILE_FULL_EA_INFORMATION chain from {name: value}, in the mapping's order.

    Names are ASCII (at most 254 bytes, no NUL); values at most 65535 bytes;
    the whole buffer at most 65535 bytes.  ``need_ea`` sets FILE_NEED_EA (0x80).
    """
    entries = []
    for name, value in eas.items():
        n = name.encode("ascii") if isinstance(name, str) else bytes(name)
        v = bytes(value)
        if not 0 < len(n) <= 254 or b"\0" in n:
            raise InvalidArgument(E_INVALIDARG, "EA name %r: 1..254 ASCII bytes without NUL" % (name,))
        if len(v) > 0xFFFF:
            raise InvalidArgument(E_INVALIDARG, "EA %r: value over 65535 bytes" % (name,))
        entries.append((n, v))
    out = b""
    for i, (n, v) in enumerate(entries):
        body = struct.pack("<BBH", 0x80 if need_ea else 0, len(n), len(v)) + n + b"\0" + v
        if i < len(entries) - 1:
            length = 4 + len(body)
            length += (-length) % 4
            out += struct.pack("<I", length) + body + b"\0" * (length - 4 - len(body))
        else:
            out += struct.pack("<I", 0) + body
    if len(out) > MAX_BLOB:
        raise InvalidArgument(E_INVALIDARG, "EA buffer of %d bytes is over 65535" % len(out))
    return out


@dataclass(frozen=True)
class ReparseLink:
    """A symlink or junction reparse buffer, parsed (see :func:`parse_reparse`)."""

    tag: int
    substitute_name: str
    print_name: str
    relative: bool          # symlinks only: SYMLINK_FLAG_RELATIVE
    is_mount_point: bool

    @property
    def target(self) -> str:
        """The target as a user would type it: the print name, else the substitute name."""
        return self.print_name or self.substitute_name


def parse_reparse(buf: bytes) -> Optional[ReparseLink]:
    """The link in a symlink or mount-point REPARSE_DATA_BUFFER; None for other tags or a
    buffer whose names do not fit (the caller keeps such data raw)."""
    if len(buf) < 16:
        return None
    tag, length = struct.unpack_from("<IH", buf)
    if tag not in (IO_REPARSE_TAG_SYMLINK, IO_REPARSE_TAG_MOUNT_POINT):
        return None
    sub_off, sub_len, prn_off, prn_len = struct.unpack_from("<HHHH", buf, 8)
    flags, names_at = (struct.unpack_from("<I", buf, 16)[0], 20) if tag == IO_REPARSE_TAG_SYMLINK else (0, 16)
    end = min(len(buf), 8 + length)

    def name(off, n):
        if names_at + off + n > end or n % 2:
            raise ValueError
        return buf[names_at + off:names_at + off + n].decode("utf-16-le")

    try:
        return ReparseLink(tag, name(sub_off, sub_len), name(prn_off, prn_len), bool(flags & 1),
                           tag == IO_REPARSE_TAG_MOUNT_POINT)
    except (ValueError, UnicodeDecodeError):
        return None


def parse_ea_buffer(buf: bytes) -> List[Tuple[bytes, bytes, int]]:
    """(name, value, flags) of each entry of a FILE_FULL_EA_INFORMATION chain.

    Raises InvalidArgument naming the first malformed entry: one running past
    the buffer, an empty or unterminated name, or a next-entry offset that
    overlaps the entry or is not 4-aligned.
    """
    out, at = [], 0
    while True:
        if at + 8 > len(buf):
            raise InvalidArgument(E_INVALIDARG, "EA chain entry at %d runs past the buffer" % at)
        next_offset, flags, name_len, value_len = struct.unpack_from("<IBBH", buf, at)
        name_at = at + 8
        end = name_at + name_len + 1 + value_len
        if name_len == 0 or end > len(buf) or buf[name_at + name_len] != 0:
            raise InvalidArgument(E_INVALIDARG, "EA chain entry at %d: name/value lengths do not fit (or the name "
                                                "is not NUL-terminated)" % at)
        out.append((buf[name_at:name_at + name_len], buf[name_at + name_len + 1:end], flags))
        if next_offset == 0:
            return out
        if next_offset < end - at or next_offset % 4:
            raise InvalidArgument(E_INVALIDARG, "EA chain entry at %d: next-entry offset %d overlaps the entry or "
                                                "is unaligned" % (at, next_offset))
        at += next_offset
