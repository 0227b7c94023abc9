"""The tests' view of an image: the package's reader (:mod:`cimfs_cffi.reader`),
addressed by file ID, plus :meth:`Image.check`, which fails on any finding of
the verifier.

The reader and verifier are pure Python written from
shared/spec/cim-format.md and share no code with the C writer, so tests that
read images back through them check the writer's output, not the writer's
own idea of it.
"""
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
