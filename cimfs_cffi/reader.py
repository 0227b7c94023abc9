"""Read classic CIM images: pure Python over ``mmap``, independent of the C writer.

Everything is parsed with ``struct`` from the byte layouts of
``docs/format.md``, so the reader doubles as a cross-check of our writer and
reads images written by Windows' ``cimfs.dll`` as well: every classic format
version Microsoft has shipped (1.0 with 88-byte file records, as msixmgr
wrote in 2020, 2.0 and 3.0), forked images with parent region sets, hard
links, alternate data streams, sparse streams, PE-image streams, security
descriptors, EAs and reparse data.

Opening an image maps its region files and reads the headers, the upcase
table and the file table directory; file records and directory tables are
read when asked for.  A lookup binary-searches each directory's table with
the image's own upcase table, so it is case-insensitive like Windows and
does not scan directories.

Every offset, count and length read from an image is checked against the
size of the file it points into before it is used, so a damaged or hostile
image raises one :class:`~cimfs_cffi.errors.CorruptImageError`, never
another exception type or an unbounded allocation.
"""
import bisect
import io
import mmap
import os
import struct
import sys
from array import array
from collections import Counter
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

from .errors import HR_FILE_CORRUPT, HR_PATH_NOT_FOUND, CorruptImage, PathNotFound

__all__ = ["open_image", "CimImage", "FileInfo", "CorruptImageError"]

CorruptImageError = CorruptImage

MAGIC = b"cimfile0"
FT_IMAGE, FT_REGION, FT_OBJECTID = 0, 1, 2
IMAGE_HEADER_SIZE, REGION_HEADER_SIZE, OBJECTID_HEADER_SIZE, REGION_SET_SIZE = 72, 40, 48, 24
FILESYSTEM_SIZE, TABLE_ENTRY_SIZE, STREAM_SIZE, RECORD_SIZE, RECORD_SIZE_V1 = 24, 16, 16, 96, 88
PE_IMAGE_SIZE, PE_MAPPING_SIZE, OBJECTID_ENTRY_SIZE = 24, 8, 40
UPCASE_SIZE = 0x10000 * 2
FILES_PER_TABLE = 1024
MAX_REGIONS = 0x10000
OFFSET_MASK = (1 << 48) - 1
STREAM_DATA, STREAM_LINK_TABLE, STREAM_PE_IMAGE = 0, 1, 2
SPARSE_BIT = 1 << 56
SUPPORTED_MAJORS = (1, 2, 3)

FLAG_READONLY, FLAG_HIDDEN, FLAG_SYSTEM, FLAG_ARCHIVE, FLAG_SPARSE = 0x1, 0x2, 0x4, 0x8, 0x10
ATTR_READONLY, ATTR_HIDDEN, ATTR_SYSTEM, ATTR_DIRECTORY, ATTR_ARCHIVE = 0x1, 0x2, 0x4, 0x10, 0x20
ATTR_SPARSE, ATTR_REPARSE_POINT = 0x200, 0x400
IO_REPARSE_TAG_SYMLINK = 0xA000000C
IO_REPARSE_TAG_MOUNT_POINT = 0xA0000003
UNIX_EPOCH_FILETIME = 116444736000000000
NULL_DACL_SD = bytes([1, 0, 4, 0x80]) + bytes(16)  # the writers' default descriptor (docs/format.md §12)

_FLAG_TO_ATTR = ((FLAG_READONLY, ATTR_READONLY), (FLAG_HIDDEN, ATTR_HIDDEN), (FLAG_SYSTEM, ATTR_SYSTEM),
                 (FLAG_ARCHIVE, ATTR_ARCHIVE), (FLAG_SPARSE, ATTR_SPARSE))
_RECORD = struct.Struct("<HHIQQQQQQQQQQIHH")
_LINK_HEADER = struct.Struct("<II")
_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")
_SUMMARY_FIELDS = struct.Struct("<40xQQ24xQ")  # DefaultStream offset, LengthAndType; StreamTableOffset


class RecordLayout(NamedTuple):
    """What a File record holds in one format version (docs/format.md §9, §10)."""

    size: int          # bytes of a record; shorter table entries are zero-extended, longer ones cut
    flags: int         # the FileFlags bits the version defines
    sparse_bit: int    # the LengthAndType bit marking a sparse stream, 0 where there is none


# 1.0 records end before ParentFileId and BaseRegionIndex (so both read as 0) and have no sparse
# flag: 2.0 added FileFlagSparse and the stream bit.
LAYOUT_V1 = RecordLayout(RECORD_SIZE_V1, FLAG_READONLY | FLAG_HIDDEN | FLAG_SYSTEM | FLAG_ARCHIVE, 0)
LAYOUT_V2 = RecordLayout(RECORD_SIZE, LAYOUT_V1.flags | FLAG_SPARSE, SPARSE_BIT)


def record_layout(major: int) -> RecordLayout:
    return LAYOUT_V1 if major == 1 else LAYOUT_V2


def corrupt(message: str, path: Optional[str] = None) -> CorruptImage:
    return CorruptImage(HR_FILE_CORRUPT, message, path=path)


def guid_text(raw: bytes) -> str:
    """A region-set GUID as it appears in file names (go-winio's lowercase form)."""
    d1, d2, d3 = struct.unpack_from("<IHH", raw)
    return "%08x-%04x-%04x-%s-%s" % (d1, d2, d3, raw[8:10].hex(), raw[10:16].hex())


def filetime_to_posix(ticks: int) -> float:
    return (ticks - UNIX_EPOCH_FILETIME) / 1e7


class Region:
    """One mapped region file (or objectid file) of an image."""

    type: int   # the region type byte (offset 0x22), set by CimImage._open once the header is checked

    def __init__(self, path: str, set_guid: str, local_index: int):
        self.path = path
        self.set_guid = set_guid
        self.local_index = local_index
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                self.data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        except FileNotFoundError:
            raise corrupt("region file is missing", path) from None
        except (OSError, ValueError) as e:
            raise corrupt("cannot map region file: %s" % e, path) from None
        self.size = size

    @property
    def objectid_path(self) -> str:
        """The path of this region's objectid file (beside it, spelled as the region file is)."""
        return os.path.join(os.path.dirname(self.path), "objectid" + os.path.basename(self.path)[len("region"):])

    def close(self) -> None:
        if isinstance(self.data, mmap.mmap):
            self.data.close()


def _find_file(directory: str, name: str, listing: Dict[str, str]) -> str:
    """``directory/name``, matched case-insensitively as on Windows (GUID case is unknown)."""
    exact = os.path.join(directory, name)
    if os.path.exists(exact):
        return exact
    if not listing:
        listing.update((n.lower(), n) for n in os.listdir(directory))
    return os.path.join(directory, listing.get(name.lower(), name))


class Stream(NamedTuple):
    """A Stream (docs/format.md §10), decoded: where its bytes are, how many, how stored."""

    offset: int     # RegionOffset of the data, link table or PeImage object
    length: int
    type: int       # STREAM_DATA, STREAM_LINK_TABLE or STREAM_PE_IMAGE
    sparse: bool

    @classmethod
    def decode(cls, offset: int, length_and_type: int, sparse_bit: int = SPARSE_BIT) -> "Stream":
        return cls(offset, length_and_type & OFFSET_MASK, (length_and_type >> 48) & 0xFF,
                   bool(length_and_type & sparse_bit))


class Record:
    """A parsed File record (docs/format.md §9); ``raw`` is zero-extended to 96 bytes, so
    the fields a version lacks read as 0."""

    __slots__ = ("id", "flags", "ea_length", "reparse_tag", "times", "stream_offset", "stream_length",
                 "stream_type", "sparse", "sd_offset", "ea_offset", "reparse_offset", "stream_table_offset",
                 "parent_id", "base_region_index", "reserved", "length_and_type", "layout")

    def __init__(self, fid: int, raw: bytes, layout: RecordLayout = LAYOUT_V2):
        (self.flags, self.ea_length, self.reparse_tag, ct, wt, cht, at, self.stream_offset, lt, self.sd_offset,
         self.ea_offset, self.reparse_offset, self.stream_table_offset, self.parent_id, self.base_region_index,
         self.reserved) = _RECORD.unpack(raw)
        self.id = fid
        self.layout = layout
        self.times = (ct, wt, cht, at)
        self.length_and_type = lt
        self.stream_length = lt & OFFSET_MASK
        self.stream_type = (lt >> 48) & 0xFF
        self.sparse = bool(lt & layout.sparse_bit)

    @property
    def is_dir(self) -> bool:
        return self.stream_type == STREAM_LINK_TABLE

    @property
    def default_stream(self) -> Stream:
        return Stream(self.stream_offset, self.stream_length, self.stream_type, self.sparse)

    @property
    def attributes(self) -> int:
        attrs = 0
        for flag, attr in _FLAG_TO_ATTR:
            if self.flags & self.layout.flags & flag:
                attrs |= attr
        if self.is_dir:
            attrs |= ATTR_DIRECTORY
        if self.reparse_offset:
            attrs |= ATTR_REPARSE_POINT
        return attrs


class LinkTable:
    """A validated directory or stream table (docs/format.md §11), read in place.

    ``value_size`` is 4 (FileID) for directories and 16 (Stream) for
    alternate-stream tables.  The header is checked on construction; each
    name is bounds-checked when it is read.
    """

    def __init__(self, image: "CimImage", offset: int, length: int, value_size: int, what: str):
        self.data, self.base = image.span(offset, length, what)
        self.value_size = value_size
        if length < 8:
            raise corrupt("%s: link table of %d bytes (at least 8)" % (what, length))
        self.length, self.count = _LINK_HEADER.unpack_from(self.data, self.base)
        if self.length < 8 or self.length > length or 8 + self.count * (value_size + 4) > self.length:
            raise corrupt("%s: link table header (Length %d, LinkCount %d) does not fit its %d bytes"
                          % (what, self.length, self.count, length))
        self.what = what
        self._names_at = self.base + 8 + self.count * value_size

    def name(self, i: int) -> str:
        no = _U32.unpack_from(self.data, self._names_at + 4 * i)[0]
        if no + 2 > self.length:
            raise corrupt("%s: name %d offset %d outside the table" % (self.what, i, no))
        n = _U16.unpack_from(self.data, self.base + no)[0]
        if no + 2 + 2 * n > self.length:
            raise corrupt("%s: name %d runs past the table" % (self.what, i))
        start = self.base + no + 2
        return bytes(self.data[start:start + 2 * n]).decode("utf-16-le", "surrogatepass")

    def names(self) -> List[str]:
        return [self.name(i) for i in range(self.count)]

    def ids(self) -> Tuple[int, ...]:
        assert self.value_size == 4
        return struct.unpack_from("<%dI" % self.count, self.data, self.base + 8)

    def value(self, i: int) -> bytes:
        start = self.base + 8 + i * self.value_size
        return bytes(self.data[start:start + self.value_size])

    def find(self, key: Tuple[int, ...], key_of) -> int:
        """Index of the entry whose key equals ``key`` (binary search), or -1."""
        lo, hi = 0, self.count
        while lo < hi:
            mid = (lo + hi) // 2
            k = key_of(self.name(mid))
            if k == key:
                return mid
            if k < key:
                lo = mid + 1
            else:
                hi = mid
        return -1


class FileInfo:
    """What :meth:`CimImage.stat` returns for one file or directory.

    Times are FILETIME ticks (``creation_time`` ...); ``st_mtime`` and
    friends give POSIX seconds.  ``nlink`` is the number of names of the file
    (the format stores none; the first query counts every directory table's
    entries once per image).  The security descriptor, EA chain and reparse
    buffer are read when asked for.
    """

    __slots__ = ("_image", "_rec", "path")

    def __init__(self, image: "CimImage", rec: Record, path: str):
        self._image, self._rec, self.path = image, rec, path

    file_id = property(lambda self: self._rec.id)
    attributes = property(lambda self: self._rec.attributes)
    reparse_tag = property(lambda self: self._rec.reparse_tag)
    creation_time = property(lambda self: self._rec.times[0])
    last_write_time = property(lambda self: self._rec.times[1])
    change_time = property(lambda self: self._rec.times[2])
    last_access_time = property(lambda self: self._rec.times[3])
    st_birthtime = property(lambda self: filetime_to_posix(self._rec.times[0]))
    st_mtime = property(lambda self: filetime_to_posix(self._rec.times[1]))
    st_ctime = property(lambda self: filetime_to_posix(self._rec.times[2]))
    st_atime = property(lambda self: filetime_to_posix(self._rec.times[3]))
    is_dir = property(lambda self: self._rec.is_dir)
    is_file = property(lambda self: not self._rec.is_dir)
    sparse = property(lambda self: self._rec.sparse)
    is_pe_image = property(lambda self: self._rec.stream_type == STREAM_PE_IMAGE)

    @property
    def size(self) -> int:
        return 0 if self._rec.is_dir else self._rec.stream_length

    @property
    def is_symlink(self) -> bool:
        return bool(self._rec.reparse_offset) and self._rec.reparse_tag == IO_REPARSE_TAG_SYMLINK

    @property
    def nlink(self) -> int:
        return 1 if self._rec.is_dir else self._image._link_counts()[self._rec.id]

    @property
    def security_descriptor(self) -> Optional[bytes]:
        return self._image._counted(self._rec.sd_offset, 2, "security descriptor") if self._rec.sd_offset else None

    @property
    def ea(self) -> Optional[bytes]:
        if not self._rec.ea_offset:
            return None
        data, start = self._image.span(self._rec.ea_offset, self._rec.ea_length, "EA buffer")
        return bytes(data[start:start + self._rec.ea_length])

    @property
    def reparse_data(self) -> Optional[bytes]:
        return self._image._counted(self._rec.reparse_offset, 2, "reparse data") if self._rec.reparse_offset else None

    def __repr__(self) -> str:
        return "<FileInfo %r id=%d attributes=0x%x size=%d>" % (self.path, self.file_id, self.attributes, self.size)


class StreamReader(io.RawIOBase):
    """A seekable, read-only binary file over one stream of an image.

    ``runs`` are (logical start, logical end, region bytes, physical start),
    validated when the stream is opened; bytes outside every run read as
    zeros (sparse streams have no runs).
    """

    def __init__(self, name: str, size: int, runs: List[Tuple[int, int, Union[bytes, mmap.mmap], int]]):
        super().__init__()
        self.name = name
        self._size = size
        self._runs = runs
        self._starts = [r[0] for r in runs]
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}.get(whence)
        if base is None:
            raise ValueError("invalid whence %r" % (whence,))
        if base + offset < 0:
            raise ValueError("negative seek position %d" % (base + offset))
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        out = memoryview(buffer).cast("B")
        want = min(len(out), max(0, self._size - self._pos))
        done = 0
        while done < want:
            pos = self._pos + done
            i = bisect.bisect_right(self._starts, pos) - 1
            if i >= 0 and pos < self._runs[i][1]:
                start, end, data, phys = self._runs[i]
                n = min(want - done, end - pos)
                src = phys + (pos - start)
                out[done:done + n] = data[src:src + n]
            else:
                nxt = self._starts[i + 1] if i + 1 < len(self._starts) else self._size
                n = min(want - done, nxt - pos)
                out[done:done + n] = bytes(n)
            done += n
        self._pos += done
        return done

    def readall(self) -> bytes:
        return self.read(max(0, self._size - self._pos))


class CimImage:
    """An open classic CIM image; use :func:`open_image`.

    Paths use ``\\`` or ``/``; ``""`` (or ``"/"``) is the root.  A path may
    end in ``:stream`` (or ``:stream:$DATA``) where a stream is meant.
    """

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self.directory = os.path.dirname(os.path.abspath(self.path))
        self.regions: List[Region] = []
        self._nlinks: Optional[Counter] = None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # ---- opening ---------------------------------------------------------------------------------
    def _open(self) -> None:
        raw, self.region_sets = read_image_header(self.path)
        self.header = raw
        self.header_length, self.file_type = struct.unpack_from("<IB", raw, 8)
        self.major, self.minor = struct.unpack_from("<II", raw, 16)
        self.layout = record_layout(self.major)
        total = sum(n for _, n in self.region_sets)
        if not 1 <= total <= MAX_REGIONS:
            raise corrupt("%d region files (1 to 65536 allowed)" % total, self.path)
        listing: Dict[str, str] = {}
        for guid, count in self.region_sets:
            for n in range(count):
                region = Region(_find_file(self.directory, "region_%s_%d" % (guid, n), listing), guid, n)
                self.regions.append(region)
                if region.size < REGION_HEADER_SIZE or region.data[:8] != MAGIC:
                    raise corrupt("not a region file (bad magic or shorter than 40 bytes)", region.path)
                if _U32.unpack_from(region.data, 16)[0] not in SUPPORTED_MAJORS:
                    raise corrupt("unsupported region version", region.path)
                region.type = region.data[0x22]
        self.filesystem_offset = struct.unpack_from("<Q", raw, 0x38)[0]
        data, at = self.span(self.filesystem_offset, FILESYSTEM_SIZE, "filesystem object")
        (self.upcase_offset, self.table_directory_offset, self.table_count,
         self.root_id) = struct.unpack_from("<QQII", data, at)
        data, at = self.span(self.upcase_offset, UPCASE_SIZE, "upcase table")
        self.upcase = array("H", data[at:at + UPCASE_SIZE])
        if sys.byteorder == "big":
            self.upcase.byteswap()
        data, at = self.span(self.table_directory_offset, TABLE_ENTRY_SIZE * self.table_count, "file table directory")
        self.tables = [struct.unpack_from("<QHHI", data, at + TABLE_ENTRY_SIZE * i) for i in range(self.table_count)]
        root = self.record(self.root_id, "root directory")
        if not root.is_dir:
            raise corrupt("the root (file %d) is not a directory" % self.root_id, self.path)

    def close(self) -> None:
        for r in self.regions:
            r.close()
        self.regions = []

    def __enter__(self) -> "CimImage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- raw access ------------------------------------------------------------------------------
    def span(self, offset: int, length: int, what: str):
        """(region bytes, start) of an object that must lie wholly inside its region file."""
        index, start = offset >> 48, offset & OFFSET_MASK
        if start == 0 or index >= len(self.regions):
            raise corrupt("%s: invalid region offset 0x%x" % (what, offset))
        region = self.regions[index]
        if length < 0 or start + length > region.size:
            raise corrupt("%s: %d bytes at 0x%x run past the end of %s (%d bytes)"
                          % (what, length, start, os.path.basename(region.path), region.size))
        return region.data, start

    def _counted(self, offset: int, prefix: int, what: str) -> bytes:
        data, at = self.span(offset, prefix, what)
        n = int.from_bytes(data[at:at + prefix], "little")
        data, at = self.span(offset + prefix, n, what)
        return bytes(data[at:at + n])

    @property
    def file_count(self) -> int:
        """Number of file records (files and directories; each hard-link group once)."""
        return sum(t[1] for t in self.tables)

    def record(self, fid: int, what: str = "file") -> Record:
        if fid == 0:
            raise corrupt("%s: file ID 0" % what)
        table, slot = divmod(fid - 1, FILES_PER_TABLE)
        if table >= len(self.tables) or slot >= self.tables[table][1]:
            raise corrupt("%s: file ID %d is not in any file table" % (what, fid))
        offset, count, entry_size, _ = self.tables[table]
        if entry_size == 0:
            raise corrupt("file table %d: entry size 0" % table)
        data, at = self.span(offset, count * entry_size, "file table %d" % table)
        at += slot * entry_size
        raw = bytes(data[at:at + min(entry_size, self.layout.size)])
        return Record(fid, raw.ljust(RECORD_SIZE, b"\0"), self.layout)

    # ---- names -----------------------------------------------------------------------------------
    def key(self, name: str) -> Tuple[int, ...]:
        """Comparison key of docs/format.md §11.3: BMP units through the upcase table, other code
        points as they are; unpaired surrogates sort after everything."""
        up = self.upcase
        return tuple(up[c] if c < 0xD800 or 0xDFFF < c < 0x10000 else (c if c > 0xFFFF else 0x110000 + c)
                     for c in map(ord, name))

    def directory_table(self, rec: Record, what: str) -> Optional[LinkTable]:
        if not rec.is_dir:
            raise NotADirectoryError(20, "not a directory", what)
        if rec.stream_length == 0:
            return None
        return LinkTable(self, rec.stream_offset, rec.stream_length, 4, "directory %d" % rec.id)

    def stream_table(self, rec: Record) -> Optional[LinkTable]:
        if not rec.stream_table_offset:
            return None
        what = "stream table of file %d" % rec.id
        data, at = self.span(rec.stream_table_offset, 4, what)
        n = _U32.unpack_from(data, at)[0]
        return LinkTable(self, rec.stream_table_offset + 4, n, 16, what)

    def _split(self, path) -> Tuple[List[str], Optional[str]]:
        p = os.fspath(path).replace("/", "\\")
        parts = [c for c in p.split("\\") if c]
        stream = None
        if parts and ":" in parts[-1]:
            parts[-1], stream = parts[-1].split(":", 1)
            if stream.upper().endswith(":$DATA"):
                stream = stream[:-6]
        return parts, stream

    def _resolve(self, path) -> Tuple[Record, str, Optional[str]]:
        parts, stream = self._split(path)
        rec = self.record(self.root_id, "root")
        for i, name in enumerate(parts):
            shown = "\\".join(parts[:i + 1])
            if not rec.is_dir:
                raise PathNotFound(HR_PATH_NOT_FOUND, "%r is not a directory" % "\\".join(parts[:i]), path=str(path))
            table = self.directory_table(rec, shown)
            at = table.find(self.key(name), self.key) if table else -1
            if at < 0:
                raise PathNotFound(HR_PATH_NOT_FOUND, "no such file or directory in the image", path=str(path))
            assert table is not None  # at >= 0 only when a table was searched
            rec = self.record(_U32.unpack(table.value(at))[0], shown)
        return rec, "\\".join(parts), stream

    # ---- public queries ---------------------------------------------------------------------------
    def exists(self, path) -> bool:
        try:
            rec, _, stream = self._resolve(path)
            return stream is None or stream in self.streams_of(rec)
        except PathNotFound:
            return False

    def stat(self, path) -> FileInfo:
        rec, shown, _ = self._resolve(path)
        return FileInfo(self, rec, shown)

    def listdir(self, path="") -> List[str]:
        rec, shown, _ = self._resolve(path)
        table = self.directory_table(rec, shown or "\\")
        return table.names() if table else []

    def scandir(self, path="") -> List[Tuple[str, FileInfo]]:
        """(name, FileInfo) of each entry of a directory, in the image's order."""
        rec, shown, _ = self._resolve(path)
        table = self.directory_table(rec, shown or "\\")
        if not table:
            return []
        prefix = shown + "\\" if shown else ""
        return [(name, FileInfo(self, self.record(fid, prefix + name), prefix + name))
                for name, fid in zip(table.names(), table.ids())]

    def streams_of(self, rec: Record) -> Dict[str, Stream]:
        """{name: Stream} of a record's alternate streams."""
        table = self.stream_table(rec)
        if not table:
            return {}
        out = {}
        for i, name in enumerate(table.names()):
            offset, length_and_type = struct.unpack("<QQ", table.value(i))
            s = Stream.decode(offset, length_and_type, self.layout.sparse_bit)
            if s.type != STREAM_DATA:
                raise corrupt("file %d: alternate stream %r has type %d (only data allowed)" % (rec.id, name, s.type))
            out[name] = s
        return out

    def streams(self, path) -> Dict[str, int]:
        """{name: size} of the alternate data streams of a file or directory."""
        rec, _, _ = self._resolve(path)
        return {name: s.length for name, s in self.streams_of(rec).items()}

    def open(self, path, stream: Optional[str] = None) -> StreamReader:
        """A seekable binary file over a file's data or one of its alternate streams."""
        rec, shown, named = self._resolve(path)
        stream = stream if stream is not None else named
        if stream is not None:
            found = self.streams_of(rec)
            key = self.key(stream)
            match = [n for n in found if self.key(n) == key]
            if not match:
                raise PathNotFound(HR_PATH_NOT_FOUND, "no stream %r" % stream, path=str(path))
            return self.stream_reader("%s:%s" % (shown, match[0]), found[match[0]])
        if rec.is_dir:
            raise IsADirectoryError(21, "is a directory", str(path))
        return self.stream_reader(shown, rec.default_stream)

    def stream_reader(self, name: str, stream: Stream) -> StreamReader:
        """A seekable binary file over one stream (see :meth:`streams_of`, ``Record.default_stream``)."""
        if stream.sparse or stream.length == 0:
            return StreamReader(name, stream.length, [])
        return StreamReader(name, stream.length, self.stream_runs(stream.offset, stream.length, stream.type, name))

    def stream_runs(self, offset: int, length: int, stype: int,
                    what: str) -> List[Tuple[int, int, Union[bytes, mmap.mmap], int]]:
        """The validated runs of a non-empty, non-sparse stream (docs/format.md §10)."""
        if stype == STREAM_DATA:
            data, at = self.span(offset, length, what)
            return [(0, length, data, at)]
        if stype != STREAM_PE_IMAGE:
            raise corrupt("%s: stream type %d" % (what, stype))
        data, at = self.span(offset, PE_IMAGE_SIZE, what + " (PE image header)")
        data_offset, data_length, _image_length, count, _flags = struct.unpack_from("<QQIHH", data, at)
        data_length &= (1 << 63) - 1
        data, at = self.span(offset + PE_IMAGE_SIZE, PE_MAPPING_SIZE * count, what + " (PE mappings)")
        mappings = [struct.unpack_from("<II", data, at + PE_MAPPING_SIZE * i) for i in range(count)]
        if any(a[0] >= b[0] for a, b in zip(mappings, mappings[1:])):
            raise corrupt("%s: PE mappings are not in ascending order" % what)
        if not mappings or mappings[0][0] > 0:
            mappings.insert(0, (0, 0))
        runs = []
        for i, (file_offset, delta) in enumerate(mappings):
            end = min(mappings[i + 1][0] if i + 1 < len(mappings) else data_length, length)
            if file_offset >= end:
                continue
            region, phys = self.span(data_offset + file_offset + delta, end - file_offset, what + " (PE run)")
            runs.append((file_offset, end, region, phys))
        return runs

    def read_bytes(self, path, stream: Optional[str] = None) -> bytes:
        with self.open(path, stream) as f:
            return f.read()

    # ---- traversal -------------------------------------------------------------------------------
    def directory_entries(self, rec: Record, shown: str) -> Iterator[Tuple[str, List[Tuple[str, Record]]]]:
        """(directory path, [(name, record)...]) of directory ``rec`` and each directory below
        it, parents first.  Each directory is entered once; one reached again (a directory hard
        link or a cycle, which the API cannot create) is corrupt."""
        seen = {rec.id}
        todo = [(shown, rec)]
        while todo:
            prefix, drec = todo.pop()
            table = self.directory_table(drec, prefix or "\\")
            base = prefix + "\\" if prefix else ""
            entries = []
            if table:
                for name, fid in zip(table.names(), table.ids()):
                    child = self.record(fid, base + name)
                    if child.is_dir:
                        if fid in seen:
                            raise corrupt("directory %d is reached by a second name (%s)" % (fid, base + name))
                        seen.add(fid)
                    entries.append((name, child))
            yield prefix, entries
            todo.extend(reversed([(base + n, r) for n, r in entries if r.is_dir]))

    def iter_tree(self, top="") -> Iterator[Tuple[str, Record]]:
        """(path, record) of ``top`` and everything below it, parents before children."""
        rec, shown, _ = self._resolve(top)
        yield shown, rec
        if rec.is_dir:
            for prefix, entries in self.directory_entries(rec, shown):
                base = prefix + "\\" if prefix else ""
                for name, child in entries:
                    yield base + name, child

    def walk(self, top="") -> Iterator[Tuple[str, List[str], List[str]]]:
        """Like ``os.walk``: (directory path, subdirectory names, file names), top down."""
        rec, shown, _ = self._resolve(top)
        if rec.is_dir:
            for prefix, entries in self.directory_entries(rec, shown):
                yield prefix, [n for n, r in entries if r.is_dir], [n for n, r in entries if not r.is_dir]

    def summary(self) -> Dict[str, int]:
        """Counts for ``cimfs info``: one pass over the file tables' raw records (only the stream
        fields are unpacked) and one over the directory tables' headers."""
        files = dirs = streams = logical = names = 0
        stored = {}
        with_streams = []
        dir_streams = []
        for t, (offset, count, entry_size, _) in enumerate(self.tables):
            if entry_size < RECORD_SIZE_V1:
                raise corrupt("file table %d: entry size %d" % (t, entry_size))
            data, at = self.span(offset, count * entry_size, "file table %d" % t)
            for i in range(count):
                stream_offset, lt, table_offset = _SUMMARY_FIELDS.unpack_from(data, at + i * entry_size)
                length, stype = lt & OFFSET_MASK, (lt >> 48) & 0xFF
                if stype == STREAM_LINK_TABLE:
                    dirs += 1
                    dir_streams.append((stream_offset, length))
                else:
                    files += 1
                    if length and not lt & self.layout.sparse_bit:
                        logical += length
                        stored[(stream_offset, stype)] = length
                if table_offset:
                    with_streams.append(t * FILES_PER_TABLE + i + 1)
        for fid in with_streams:
            for s in self.streams_of(self.record(fid)).values():
                streams += 1
                if s.length and not s.sparse:
                    logical += s.length
                    stored[(s.offset, STREAM_DATA)] = s.length
        for offset, length in dir_streams:
            if length:
                names += LinkTable(self, offset, length, 4, "directory").count
        kept = sum(stored.values())
        return {"files": files, "directories": dirs, "links": names - (dirs - 1) - files, "streams": streams,
                "data_bytes": logical, "stored_bytes": kept, "dedup_saved_bytes": logical - kept,
                "region_bytes": sum(r.size for r in self.regions)}

    def _link_counts(self) -> Counter:
        """Names per file ID, counted once per image over every directory table's ID array."""
        if self._nlinks is None:
            counts: Counter = Counter()
            seen = {self.root_id}
            todo = [self.record(self.root_id, "root")]
            while todo:
                table = self.directory_table(todo.pop(), "directory")
                if not table:
                    continue
                ids = table.ids()
                counts.update(ids)
                for fid in ids:
                    if fid not in seen:
                        rec = self.record(fid)
                        if rec.is_dir:
                            seen.add(fid)
                            todo.append(rec)
            self._nlinks = counts
        return self._nlinks


def read_image_header(path) -> Tuple[bytes, List[Tuple[str, int]]]:
    """The header bytes of an image file and its region sets [(GUID, count)], parents first."""
    try:
        with open(path, "rb") as f:
            raw = f.read(IMAGE_HEADER_SIZE)
            if len(raw) < IMAGE_HEADER_SIZE or raw[:8] != MAGIC:
                raise corrupt("not a CIM image (bad magic or shorter than 72 bytes)", os.fspath(path))
            raw += f.read(REGION_SET_SIZE * _U16.unpack_from(raw, 0x46)[0])  # the parent region sets
    except FileNotFoundError:
        raise PathNotFound(HR_PATH_NOT_FOUND, "no such image", path=os.fspath(path)) from None
    except IsADirectoryError:
        raise corrupt("not an image file (a directory)", os.fspath(path)) from None
    major, minor = struct.unpack_from("<II", raw, 16)
    if major not in SUPPORTED_MAJORS:
        raise corrupt("unsupported format version %d.%d (1, 2 and 3 are read)" % (major, minor), os.fspath(path))
    parent_count = _U16.unpack_from(raw, 0x46)[0]
    if len(raw) < IMAGE_HEADER_SIZE + REGION_SET_SIZE * parent_count:
        raise corrupt("image header names %d parent region sets but is only %d bytes"
                      % (parent_count, len(raw)), os.fspath(path))
    sets = [raw[IMAGE_HEADER_SIZE + REGION_SET_SIZE * i:][:REGION_SET_SIZE] for i in range(parent_count)]
    sets.append(raw[0x20:0x38])
    return raw, [(guid_text(s[:16]), _U16.unpack_from(s, 16)[0]) for s in sets]


def open_image(path) -> CimImage:
    """Open a classic CIM image (the ``.cim`` file; its region files sit beside it)."""
    return CimImage(path)
