"""A tar's bytes, decompressed on a helper thread and handed over in large blocks.

A layer build does three things per byte: decompress it, hash it, write it.
Writing happens in C on the building thread (with the GIL released) and
hashing on the writer's helper threads (docs/api.md §9.5); decompression
happens here, on a reader thread, into a fixed pool of blocks, so all three
overlap and memory stays at ``BLOCK * (BLOCKS + 1)`` whatever the archive
holds.

:class:`TarStream` is the forward-only file object ``tarfile`` reads its
headers from (mode ``"r:"``), and member data is taken straight from the
blocks (:meth:`TarStream.views`): one ``CimWriteStream`` per block, no copy,
no Python call per small chunk.  Tar's own stream mode (``"r|"``) copies
every byte twice through 10 KiB reads; that cost more than decompressing.

gzip is read with the fastest library installed: python-zlib-ng, then
python-isal, then the standard library (README "Speed").  zstd needs the
``zstandard`` package; bzip2 and xz use the standard library.
"""
import bz2
import io
import lzma
import queue
import tarfile
import threading
from typing import Iterator, List, Optional, Tuple

BLOCK = 4 << 20   # bytes per read-ahead block
BLOCKS = 6        # blocks in the pool: the reader runs at most this far ahead

GZIP_MAGIC, BZIP2_MAGIC, XZ_MAGIC, ZSTD_MAGIC = b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd"
# (module, label), fastest first; each module's open(fileobj, "rb") reads gzip with multiple members.
GZIP_MODULES: List[Tuple[str, str]] = [("zlib_ng.gzip_ng", "zlib-ng"), ("isal.igzip", "isal"), ("gzip", "zlib")]


class NeedsPackage(Exception):
    """The archive's compression needs a package that is not installed."""


def gzip_module():
    """The fastest gzip reader installed: (module, label)."""
    for name, label in GZIP_MODULES:
        try:
            return __import__(name, fromlist=["open"]), label
        except ImportError:
            continue
    raise NeedsPackage("gzip")  # unreachable with the standard library present


def decompressed(raw: io.BufferedReader) -> Tuple[object, str]:
    """A file object of ``raw``'s tar bytes, by magic number, and the codec's label."""
    head = raw.peek(6)[:6]
    if head.startswith(GZIP_MAGIC):
        module, label = gzip_module()
        return module.open(raw, "rb"), "gzip via %s" % label
    if head.startswith(ZSTD_MAGIC):
        try:
            import zstandard
        except ImportError:
            raise NeedsPackage("zstandard") from None
        return zstandard.ZstdDecompressor().stream_reader(raw, read_size=1 << 20), "zstd"
    if head.startswith(BZIP2_MAGIC):
        return bz2.BZ2File(raw), "bzip2"
    if head.startswith(XZ_MAGIC):
        return lzma.LZMAFile(raw), "xz"
    return raw, "plain"


class TarStream:
    """The bytes of ``source`` (any binary file object), read ahead on a helper
    thread (or, with ``threaded=False``, on demand on the caller's).  Forward
    only: ``seek`` moves ahead, or back within the current block (``tarfile``
    steps back one byte to check a member's end)."""

    def __init__(self, source, name: Optional[str] = None, block: Optional[int] = None,
                 blocks: Optional[int] = None, threaded: bool = True):
        self.name = name
        self._source = source
        self._free: "queue.Queue" = queue.Queue()
        self._full: "queue.Queue" = queue.Queue()
        for _ in range(blocks or BLOCKS):
            self._free.put(bytearray(block or BLOCK))
        self._stop = threading.Event()
        self._done = threading.Event()
        self._buf: Optional[bytearray] = None   # the current block,
        self._view = memoryview(b"")            # its filled part,
        self._at = 0                            # and how far into it we are
        self._offset = 0                        # the stream position of _view[_at]
        self._eof = False
        self._threaded = threaded
        if threaded:
            threading.Thread(target=self._fill, name="cimfs-tar-reader", daemon=True).start()
        else:
            self._done.set()

    # ---- the reader thread ----------------------------------------------------------------------------
    def _fill(self) -> None:
        try:
            while True:
                buf = _get(self._free, self._stop)
                if buf is None or self._stop.is_set():
                    return
                n = self._read_block(buf)
                self._full.put((buf, n, None))
                if n < len(buf):
                    return
        except BaseException as e:  # handed to the building thread, raised where the bytes were wanted
            self._full.put((None, 0, e))
        finally:
            self._done.set()

    def _read_block(self, buf: bytearray) -> int:
        """Fill ``buf`` from the source (decompressors return short reads); fewer bytes only at the end."""
        readinto = _readinto(self._source)
        view, n = memoryview(buf), 0
        while n < len(buf):
            if readinto is not None:
                k = readinto(view[n:])
            else:
                chunk = self._source.read(len(buf) - n)
                k = len(chunk)
                view[n:n + k] = chunk
            if not k:
                break
            n += k
        return n

    # ---- the building thread --------------------------------------------------------------------------
    def _next_block(self) -> bool:
        """Move to the next block; False at the end of the stream."""
        if self._eof:
            return False
        if self._threaded:
            buf, n, error = _get(self._full, None)
        else:
            buf, error = self._buf or self._free.get_nowait(), None
            self._buf = None
            try:
                n = self._read_block(buf)
            except BaseException as e:
                n, error = 0, e
        if error is not None:
            self._eof = True
            raise error
        self._release()
        self._buf, self._view, self._at = buf, memoryview(buf)[:n], 0
        if n < len(buf):
            self._eof = True
        return n > 0

    def _release(self) -> None:
        if self._buf is not None:
            self._free.put(self._buf)
            self._buf, self._view = None, memoryview(b"")

    def views(self, n: int) -> Iterator[memoryview]:
        """The next ``n`` bytes as views into the blocks (each valid until the next is asked for).
        Raises tarfile.ReadError if the stream ends first."""
        while n > 0:
            if self._at == len(self._view) and not self._next_block():
                raise tarfile.ReadError("unexpected end of data")
            k = min(n, len(self._view) - self._at)
            piece = self._view[self._at:self._at + k]
            self._at += k
            self._offset += k
            n -= k
            yield piece

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            raise io.UnsupportedOperation("TarStream.read needs a size")
        out = []
        while n > 0:
            if self._at == len(self._view) and not self._next_block():
                break
            k = min(n, len(self._view) - self._at)
            out.append(bytes(self._view[self._at:self._at + k]))
            self._at += k
            self._offset += k
            n -= k
        return b"".join(out)

    def tell(self) -> int:
        return self._offset

    def drain(self) -> None:
        """Read to the end of the stream: what follows the tar's end marker is only padding, but
        a decompressor's check (gzip's CRC, a truncated frame) fails there if the archive is
        damaged, and that must not depend on where the last member ended."""
        while self._next_block():
            self._at = len(self._view)

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            pos += self._offset
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("TarStream seeks from the start or the current position only")
        back = self._offset - pos
        if 0 < back <= self._at:
            self._at -= back
            self._offset = pos
        elif back > 0:
            raise io.UnsupportedOperation("TarStream cannot seek back to %d from %d" % (pos, self._offset))
        else:
            for _ in self.views(pos - self._offset):
                pass
        return self._offset

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Stop the reader thread (it finishes the block it is reading) and close the source."""
        self._stop.set()
        while not self._done.wait(0.1):  # not Thread.join: see from_directory._HostFiles.wait
            _drain(self._full, self._free)
        _drain(self._full, self._free)
        self._release()
        self._source.close()


class MemberData:
    """A regular member's data, for :meth:`Image.add_file`: ``views`` hands
    blocks to the writer without copying; ``read`` serves everyone else."""

    def __init__(self, stream: TarStream, size: int):
        self._stream = stream
        self._left = size

    def views(self, n: int) -> Iterator[memoryview]:
        n = min(n, self._left)
        self._left -= n
        return self._stream.views(n)

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._stream.read(n)
        self._left -= len(data)
        if len(data) < n:
            raise tarfile.ReadError("unexpected end of data")
        return data


def _readinto(source):
    """The call that decompresses straight into a block.  A gzip file object's own ``readinto`` (from
    ``io.BufferedIOBase``) reads a new bytes object and copies it; its inner ``BufferedReader`` (the
    ``_buffer`` that ``gzip.GzipFile``, zlib-ng's and isal's subclasses all keep) hands large reads to
    the decompressor with the block as the destination: 5-8 % less of the reader thread's time on the
    README's gzip layer.  Anything else: its own ``readinto``, or None (then ``read``)."""
    inner = getattr(source, "_buffer", None)
    if isinstance(inner, io.BufferedReader):
        return inner.readinto
    return getattr(source, "readinto", None)


def _get(q: "queue.Queue", stop: Optional[threading.Event]):
    """q.get(), waking up to let Ctrl-C through (and to notice ``stop``)."""
    while True:
        try:
            return q.get(timeout=0.2)
        except queue.Empty:
            if stop is not None and stop.is_set():
                return None


def _drain(full: "queue.Queue", free: "queue.Queue") -> None:
    while True:
        try:
            buf, _, _ = full.get_nowait()
        except queue.Empty:
            return
        if buf is not None:
            free.put(buf)
