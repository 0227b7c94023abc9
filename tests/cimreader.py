"""The tests' view of an image: the package's reader (:mod:`cimfs_cffi.reader`),
addressed by file ID, plus :meth:`Image.check`, which fails on any finding of
the verifier.  It reads every format version the reader does (1.0, 2.0, 3.0).

The reader and verifier are pure Python written from docs/format.md and share
no code with the C writer, so tests that read images back through them check
the writer's output, not the writer's own idea of it.

:func:`as_version_1` and :func:`rewrite_object_ids` turn an image of ours into
what another writer would have written, so the reader's and verifier's
handling of other writers is tested without copying their images.
"""
import os
import struct
from dataclasses import dataclass, field

from cimfs_cffi.reader import CimImage, CorruptImageError, FileInfo, guid_text  # noqa: F401 (re-exported)
from cimfs_cffi.verify import verify

CorruptImage = CorruptImageError


@dataclass
class Node:
    """One file in a walked image (what the tests compare)."""
    id: int
    is_dir: bool
    attributes: int
    times: tuple
    data: bytes = b""
    streams: dict = field(default_factory=dict)
    sd: bytes = None
    ea: bytes = None
    reparse: bytes = None
    sparse: bool = False


class Image(CimImage):
    @property
    def raw_header(self):
        return self.header

    @property
    def fs_offset(self):
        return self.filesystem_offset

    @property
    def dir(self):
        return self.directory

    def obj(self, offset, length):
        data, at = self.span(offset, length, "object")
        return bytes(data[at:at + length])

    def counted(self, offset, size):
        return self._counted(offset, size, "object")

    def listdir(self, fid):
        table = self.directory_table(self.record(fid), str(fid))
        return list(zip(table.names(), table.ids())) if table else []

    def lookup(self, path):
        return self._resolve(path)[0].id

    def _read_stream(self, name, stream):
        with self.stream_reader(name, stream) as f:
            return f.read()

    def read(self, fid):
        r = self.record(fid)
        if r.is_dir:
            raise IsADirectoryError(fid)
        return self._read_stream(str(fid), r.default_stream)

    def streams(self, fid):
        return {name: self._read_stream(name, s) for name, s in self.streams_of(self.record(fid)).items()}

    def node(self, fid):
        r = self.record(fid)
        info = FileInfo(self, r, "")
        n = Node(fid, r.is_dir, r.attributes, r.times, sparse=r.sparse)
        if not r.is_dir:
            n.data = self.read(fid)
        n.streams = self.streams(fid)
        n.sd, n.ea, n.reparse = info.security_descriptor, info.ea, info.reparse_data
        return n

    def walk(self):
        """{path: file id} for every name in the image ('' is the root)."""
        return {path: rec.id for path, rec in self.iter_tree()}

    def check(self):
        """Raise on any finding of the package's verifier, errors and warnings alike, except the
        warning about names whose code-unit order differs (a property of the names, not the writer)."""
        findings = [f for f in verify(self.path) if "code-unit order" not in f.message]
        if findings:
            raise AssertionError("verifier findings:\n" + "\n".join(map(str, findings[:20])))


def snapshot(image_path):
    img = Image(image_path)
    return img, {path: img.node(fid) for path, fid in img.walk().items()}


def _set_major(path, major):
    with open(path, "r+b") as f:
        f.seek(16)
        f.write(struct.pack("<I", major))


def _patch(path, at, data):
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(data)


def objectid_path(region):
    """The object-ID file that goes with a region file."""
    return os.path.join(os.path.dirname(region.path), "objectid_" + os.path.basename(region.path)[len("region_"):])


def _location(img, region_offset):
    """(file, byte offset) of a RegionOffset."""
    return img.regions[region_offset >> 48].path, region_offset & ((1 << 48) - 1)


def as_version_1(image_path):
    """Rewrite an image in place as format 1.0: version 1 in every header and 88-byte file
    records (each record cut before ParentFileId), each table rewritten where it was."""
    with CimImage(image_path) as img:
        files = [img.path] + [r.path for r in img.regions] + [objectid_path(r) for r in img.regions]
        tables = [(_location(img, offset), count, size) for offset, count, size, _ in img.tables]
        directory, at = _location(img, img.table_directory_offset)
    for path in files:
        _set_major(path, 1)
    for i, ((path, start), count, size) in enumerate(tables):
        with open(path, "rb") as f:
            f.seek(start)
            old = f.read(count * size)
        _patch(path, start, b"".join(old[k * size:k * size + 88] for k in range(count)).ljust(len(old), b"\0"))
        _patch(directory, at + 16 * i + 10, struct.pack("<H", 88))


def rewrite_object_ids(image_path, digest_of):
    """Give every object-ID entry of an image the digest ``digest_of(object bytes)`` and sort
    each file's entries by (length, digest) again, as a writer using that digest would."""
    with CimImage(image_path) as img:
        regions = [(objectid_path(r), bytes(r.data)) for r in img.regions]
    for path, region in regions:
        with open(path, "rb") as f:
            raw = bytearray(f.read())
        table, count = struct.unpack_from("<II", raw, 40)
        entries = []
        for k in range(count):
            length, _, offset = struct.unpack_from("<Q24sQ", raw, table + 40 * k)
            entries.append((length, digest_of(region[offset:offset + length]), offset))
        for k, entry in enumerate(sorted(entries)):
            struct.pack_into("<Q24sQ", raw, table + 40 * k, *entry)
        _patch(path, 0, bytes(raw))
