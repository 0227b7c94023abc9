"""The Pythonic writer: :class:`Image` and :class:`FileStream` over the raw ``lib``.

Every method validates its arguments at the edge (paths in
:mod:`cimfs_cffi.paths`, metadata in :mod:`cimfs_cffi.metadata`), calls the C
API, and turns a failing HRESULT into the matching
:mod:`cimfs_cffi.errors` exception naming the path(s).  cffi releases the GIL
during every C call, so other threads keep running while data is written or
links are made.
"""
import itertools
import os
import queue
import threading
from typing import BinaryIO, Iterable, List, Optional, Tuple, Union, cast

from . import errors
from ._cimfs import ffi, lib
from .errors import E_INVALIDARG, HR_PATH_NOT_FOUND, InvalidArgument
from .metadata import FileMetadata
from .paths import PathArg, image_name, image_path, str_path, stream_name

__all__ = ["Image", "FileStream", "BACKENDS"]

BACKENDS = {"auto": lib.CIMFS_BACKEND_AUTO, "portable": lib.CIMFS_BACKEND_PORTABLE,
            "system": lib.CIMFS_BACKEND_SYSTEM}
# The format versions the portable writer can write (docs/format.md §18); None keeps the default, 2.0.
FORMAT_VERSIONS = {"1.0": (1, 0), "2.0": (2, 0), "3.0": (3, 0)}

COPY_CHUNK = 1 << 20          # bytes per CimWriteStream call when copying
MAX_WRITE = 1 << 30           # CimWriteStream takes a UINT32 size
LINK_BATCH = 1 << 13          # pairs per call into C: packed buffers stay cache-sized (measured)

Data = Union[bytes, bytearray, memoryview, BinaryIO, "os.PathLike[str]"]

_create_hard_link = lib.CimCreateHardLink  # bound once: create_hard_link is a hot path

_LINK_REASONS = {
    errors.HR_PATH_NOT_FOUND: "the link target, or the directory of the new name, does not exist",
    errors.E_ACCESSDENIED: "the link target, or the new name, is a directory",
    errors.HR_SHARING_VIOLATION: "a stream is still open on this image",
}


class FileStream:
    """A writable primary or alternate stream of a declared size.

    Write sequentially with :meth:`write`; bytes never written read back as
    zeros.  Close it (or use ``with``) before the next operation on the image.
    """

    def __init__(self, image: "Image", handle, path: str, size: int):
        self._image = image
        self._handle = handle
        self.path = path
        self.size = size
        self.written = 0

    @property
    def closed(self) -> bool:
        return self._handle is None

    @property
    def remaining(self) -> int:
        return self.size - self.written

    def write(self, data) -> int:
        """Append bytes; returns how many.  Raises StreamFull past the declared
        size (the bytes that fit are written first), ValueError when closed."""
        if self._handle is None:
            raise ValueError("write to a closed stream (%r)" % self.path)
        view = memoryview(data).cast("B")
        total = len(view)
        with self._image._lock:
            for start in range(0, total, MAX_WRITE):
                chunk = view[start:start + MAX_WRITE]
                hr = lib.CimWriteStream(self._handle, ffi.from_buffer(chunk), len(chunk))
                if hr & 0xFFFFFFFF == errors.HR_HANDLE_EOF:
                    fitted = min(len(chunk), self.size - self.written)
                    self.written += fitted
                    raise errors.StreamFull(hr, "write of %d bytes passes the declared size %d; %d were written"
                                            % (total, self.size, start + fitted), path=self.path)
                errors.check(hr, path=self.path)
                self.written += len(chunk)
        return total

    def close(self) -> None:
        """Finish the stream (idempotent)."""
        with self._image._lock:
            if self._handle is not None:
                lib.CimCloseStream(self._handle)
                self._handle = None
                if self._image._stream is self:
                    self._image._stream = None

    def __enter__(self) -> "FileStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<FileStream %r %d/%d bytes%s>" % (self.path, self.written, self.size, " closed" if self.closed else "")


class Image:
    """A CIM image being written.  Create one with :meth:`Image.create`.

    Used as a context manager, leaving the block closes the image: without a
    :meth:`commit` everything is discarded.  Methods serialize on a per-image
    lock, so an image can be shared between threads; C calls release the GIL.
    """

    def __init__(self, handle, directory: str, name: str, backend: str):
        self._handle = handle
        self._lock = threading.RLock()
        self._stream: Optional[FileStream] = None
        self._writable = handle  # the handle while changes are allowed, else None (hot paths read this)
        self.directory = directory
        self.name = name
        self.backend = backend
        self.committed = False

    # ---- lifecycle ------------------------------------------------------------
    @classmethod
    def create(cls, directory: PathArg, name: str, *, parent: Optional[str] = None,
               backend: str = "auto", format_version: Optional[str] = None, expand_pe: bool = True,
               threads: Optional[int] = None, reproducible: bool = False) -> "Image":
        """Start a new image ``name`` in ``directory``.

        ``parent`` names an existing image in the same directory to fork (the
        new image shares its regions); if it equals ``name``, that image is
        extended in place when committed.  ``backend`` is "auto" (cimfs.dll
        where Windows has it, else the portable writer), "portable" or "system".
        ``format_version`` is "1.0", "2.0" or "3.0" (see docs/format.md §18;
        default: 2.0, or the parent's version for a fork); cimfs.dll chooses
        its own, so asking it for one raises NotSupported.  ``expand_pe``
        (default True, as Windows' writer) stores executables and DLLs as
        PE-image streams laid out for mapping; False stores them as plain data
        (``CIM_CREATE_DO_NOT_EXPAND_PE_IMAGES``).  Reading gives the same bytes.
        ``threads`` 1 keeps the portable writer on the caller's thread; by default
        closed files are hashed on a helper thread while the caller goes on, and N
        gives N - 1 helpers (``CimfsSetWriterThreads``, docs/api.md §9.5).  The
        image is byte-identical either way.  ``reproducible`` asks for
        ``CIM_CREATE_IMAGE_CONSISTENT_CIM``: identical calls give byte-identical
        files, names included (the portable writer derives the region-set GUID
        from the content; cimfs.dll keeps its own promise).

        Raises PathNotFound (no such directory, or no parent image),
        AlreadyExists (``name`` exists and is not ``parent``), SharingViolation
        (another writer holds the directory), NotSupported (no cimfs.dll for
        "system"), CorruptImage (the parent cannot be read), InvalidArgument.
        """
        if backend not in BACKENDS:
            raise InvalidArgument(E_INVALIDARG, "backend must be one of %s, not %r" % (", ".join(BACKENDS), backend))
        if format_version is not None and format_version not in FORMAT_VERSIONS:
            raise InvalidArgument(E_INVALIDARG, "format_version must be one of %s, not %r"
                                  % (", ".join(FORMAT_VERSIONS), format_version))
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise InvalidArgument(E_INVALIDARG, "threads must be an int >= 1 or None, not %r" % (threads,))
        directory = os.fspath(directory)
        if not isinstance(directory, str) or not directory:
            raise InvalidArgument(E_INVALIDARG, "directory must be a non-empty str path", path=repr(directory))
        directory = os.path.abspath(directory)
        name = image_name(name)
        if parent is not None:
            parent = os.fspath(parent)
            if os.path.dirname(parent):
                if os.path.abspath(os.path.dirname(parent)) != directory:
                    raise InvalidArgument(E_INVALIDARG, "the parent image must be in the same directory",
                                          path=parent)
                parent = os.path.basename(parent)
            parent = image_name(parent)
        out = ffi.new("CIMFS_IMAGE_HANDLE *")
        flags = 0 if expand_pe else lib.CIM_CREATE_DO_NOT_EXPAND_PE_IMAGES
        if reproducible:
            flags |= lib.CIM_CREATE_IMAGE_CONSISTENT_CIM
        try:
            hr = lib.CimfsCreateImageWithBackend(BACKENDS[backend], directory, flags,
                                                 parent if parent is not None else ffi.NULL, name, out)
            if hr < 0:
                missing_parent = hr & 0xFFFFFFFF == errors.HR_FILE_NOT_FOUND and parent
                # missing_parent is truthy only when parent is (a str, validated above)
                where = os.path.join(directory, cast(str, parent) if missing_parent else name)
                raise errors.error_for(hr, _create_reason(hr, parent), path=where)
            chosen = backend
            if backend == "auto":
                chosen = "system" if lib.CimfsSystemBackendAvailable() else "portable"
            image = cls(out[0], directory, name, chosen)
        except BaseException:
            # Ctrl-C can land after the handle exists and before anyone owns it: close it here,
            # or its temporary files and directory lock would outlive the error.
            if out[0] != ffi.NULL:
                lib.CimCloseImage(out[0])
            raise
        if threads is not None:
            errors.check(lib.CimfsSetWriterThreads(out[0], threads))
        if format_version is not None:
            hr = lib.CimfsSetFormatVersion(out[0], *FORMAT_VERSIONS[format_version])
            if hr < 0:
                image.close()
                raise errors.error_for(hr, "the %s backend cannot write format %s" % (chosen, format_version),
                                       path=os.path.join(directory, name))
        return image

    @property
    def path(self) -> str:
        """Path of the image file (``directory/name``)."""
        return os.path.join(self.directory, self.name)

    @property
    def closed(self) -> bool:
        return self._handle is None

    def commit(self) -> None:
        """Write the image atomically.  Raises SharingViolation (a stream is
        open), DiskFull or another CimError; on failure nothing under the
        image's name changed and the image must be closed."""
        with self._lock:
            h = self._live()
            errors.check(lib.CimCommitImage(h), "commit failed" if self._stream is None else
                         "commit with a stream still open (%r)" % self._stream.path, path=self.path)
            self.committed = True
            self._writable = None

    def close(self) -> None:
        """Release the image (idempotent).  Uncommitted changes are discarded;
        an open stream is closed first."""
        with self._lock:
            if self._handle is None:
                return
            if self._stream is not None:
                self._stream.close()
            lib.CimCloseImage(self._handle)
            self._handle = None
            self._writable = None

    def __enter__(self) -> "Image":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            if self._handle is not None:
                lib.CimCloseImage(self._handle)
        except Exception:  # interpreter shutdown
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("committed" if self.committed else "open")
        return "<Image %r %s, %s backend>" % (self.path, state, self.backend)

    # ---- content --------------------------------------------------------------
    def add_directory(self, path: PathArg, metadata: Optional[FileMetadata] = None) -> None:
        """Add a directory (its parent must exist).  An existing directory keeps
        its children and takes the new metadata; an existing file is replaced.
        ``""`` or ``"/"`` updates the root's metadata.
        Raises PathNotFound (parent missing), InvalidArgument, SharingViolation."""
        p = image_path(path, allow_root=True)
        md, keep = (metadata or FileMetadata()).c_struct(ffi, directory=True, size=0, path=p)
        with self._lock:
            out = ffi.new("CIMFS_STREAM_HANDLE *")
            self._check(lib.CimCreateFile(self._live(), p, md, out), p)
            lib.CimCloseStream(out[0])

    def open_file(self, path: PathArg, size: int, metadata: Optional[FileMetadata] = None) -> FileStream:
        """Add a file of ``size`` bytes and return its stream to write into.
        An existing file at ``path`` is replaced (only that name, if it has
        hard links).  Raises PathNotFound (parent missing), InvalidArgument,
        SharingViolation (another stream is open)."""
        p = image_path(path)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(E_INVALIDARG, "size must be an int >= 0, not %r" % (size,), path=p)
        md, keep = (metadata or FileMetadata()).c_struct(ffi, directory=False, size=size, path=p)
        with self._lock:
            out = ffi.new("CIMFS_STREAM_HANDLE *")
            self._check(lib.CimCreateFile(self._live(), p, md, out), p)
            self._stream = FileStream(self, out[0], p, size)
            return self._stream

    def add_file(self, path: PathArg, data: Data, metadata: Optional[FileMetadata] = None) -> int:
        """Add a file from ``bytes``, a binary file object, or an ``os.PathLike``
        to copy from (whose stat() gives the metadata unless ``metadata`` is
        given).  Data is streamed, never held whole in memory.  Returns the size.

        For a file object the size is ``metadata.size`` if set, else what is
        left from its position (seekable objects only).  A source that ends
        early raises InvalidArgument and the half-written file is removed (a
        file it replaced at that path is gone too).
        Raises what :meth:`open_file` raises, and OSError reading the source.
        """
        p = image_path(path)
        with self._lock:  # the whole copy: other threads wait instead of meeting an open stream
            return self._add_file(p, data, metadata)

    def _add_file(self, p: str, data: Data, metadata: Optional[FileMetadata]) -> int:
        if isinstance(data, (bytes, bytearray, memoryview)):
            view = memoryview(data).cast("B")
            with self.open_file(p, len(view), metadata) as stream:
                stream.write(view)
            return len(view)
        if isinstance(data, str):
            raise InvalidArgument(E_INVALIDARG, "data is bytes, a binary file or an os.PathLike; a str is "
                                  "ambiguous (wrap a source path in pathlib.Path)", path=p)
        if isinstance(data, os.PathLike):
            with open(data, "rb") as f:
                st = os.fstat(f.fileno())
                md = metadata if metadata is not None else FileMetadata.from_stat(st)
                return self._copy(p, f, md.size if md.size is not None else st.st_size, md)
        if hasattr(data, "read"):
            md = metadata or FileMetadata()
            size = md.size
            if size is None:
                if not (hasattr(data, "seekable") and data.seekable()):
                    raise InvalidArgument(E_INVALIDARG, "the size of a non-seekable source is unknown; "
                                          "pass metadata=FileMetadata(size=...)", path=p)
                here = data.tell()
                size = data.seek(0, os.SEEK_END) - here
                data.seek(here)
            return self._copy(p, data, size, md)
        raise InvalidArgument(E_INVALIDARG, "data is bytes, a binary file or an os.PathLike, not %s"
                              % type(data).__name__, path=p)

    def _copy(self, p: str, source, size: int, md: FileMetadata) -> int:
        with self.open_file(p, size, md) as stream:
            copied = _pump(source, stream, size)
        if copied < size:
            self.delete(p)
            raise InvalidArgument(E_INVALIDARG, "the source ended after %d of %d bytes; the file was not added"
                                  % (copied, size), path=p)
        return size

    def open_alternate_stream(self, path: PathArg, name: str, size: int) -> FileStream:
        """Add (or replace) the named stream ``name`` of ``size`` bytes of an
        existing file or directory and return it to write into.
        Raises PathNotFound, InvalidArgument, SharingViolation."""
        p = image_path(path)
        s = p + ":" + stream_name(name, p)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(E_INVALIDARG, "size must be an int >= 0, not %r" % (size,), path=s)
        with self._lock:
            out = ffi.new("CIMFS_STREAM_HANDLE *")
            self._check(lib.CimCreateAlternateStream(self._live(), s, size, out), s)
            self._stream = FileStream(self, out[0], s, size)
            return self._stream

    def add_alternate_stream(self, path: PathArg, name: str, data, size: Optional[int] = None) -> None:
        """Add (or replace) the named stream ``name`` of an existing file or
        directory, from bytes-like ``data`` or a binary file object of which
        ``size`` bytes are streamed (never held whole).  A file object that
        ends early raises InvalidArgument and the stream is removed.
        Raises PathNotFound, InvalidArgument, SharingViolation."""
        if hasattr(data, "read"):
            if size is None:
                raise InvalidArgument(E_INVALIDARG, "the size of a stream read from a file object is needed",
                                      path=str_path(path))
            with self._lock:
                with self.open_alternate_stream(path, name, size) as stream:
                    copied = _pump(data, stream, size)
                if copied < size:
                    self.delete(path, stream=name)
                    raise InvalidArgument(E_INVALIDARG, "the source ended after %d of %d bytes; the stream was not"
                                          " added" % (copied, size), path=stream.path)
            return
        view = memoryview(data).cast("B")
        with self._lock, self.open_alternate_stream(path, name, len(view)) as stream:
            stream.write(view)

    def delete(self, path: PathArg, *, stream: Optional[str] = None) -> None:
        """Remove a file name, a directory with everything below it, or (with
        ``stream``) an alternate stream.  In a forked image this hides the
        parent's entry.  Raises PathNotFound, InvalidArgument, SharingViolation."""
        p = image_path(path)
        if stream is not None:
            p = p + ":" + stream_name(stream, p)
        with self._lock:
            self._check(lib.CimDeletePath(self._live(), p), p)

    # ---- hard links -------------------------------------------------------------
    def create_hard_link(self, new_path: PathArg, existing_path: PathArg) -> None:
        """Make ``new_path`` another name of the file at ``existing_path`` (links
        to links resolve to the file; an existing file at ``new_path`` is
        replaced).  Raises PathNotFound (target, or the new name's directory,
        missing), AccessDenied (a directory is involved), InvalidArgument,
        SharingViolation (a stream is open)."""
        # The edge does what C cannot: types, '/' -> '\\', NUL (C would stop
        # there), surrogate code points.  The syntax rules are applied by the C writer, whose
        # rejection is explained below by the Python validator: the same
        # exception and message as validating first, at a third less cost per
        # link (see README, "Validation on the link paths").
        new = (new_path if type(new_path) is str else str_path(new_path)).replace("/", "\\")
        old = (existing_path if type(existing_path) is str else str_path(existing_path)).replace("/", "\\")
        if not (new.isascii() and old.isascii()) or "\0" in new or "\0" in old:
            # Non-ASCII paths get the full check: cffi would turn two surrogate
            # code points into a valid UTF-16 pair that Python itself rejects.
            new, old = _checked_link_pair(new, old)
        with self._lock:  # wait for another thread's add_file rather than meet its open stream
            h = self._writable
            if h is None:
                self._live()
            hr = _create_hard_link(h, new, old)
        if hr < 0:
            if hr & 0xFFFFFFFF == E_INVALIDARG:
                _checked_link_pair(new_path, existing_path)  # raises with the reason
            raise errors.error_for(hr, _LINK_REASONS.get(hr & 0xFFFFFFFF), path=new, existing_path=old)

    def create_hard_links(self, pairs: Iterable[Tuple[PathArg, PathArg]], *, on_missing: str = "error") -> int:
        """Create many hard links, ``(new_path, existing_path)`` pairs from any
        iterable, at close to C speed: pairs are packed into one buffer and
        cross into C once per batch of 8,192, with the GIL released.  Each
        pair behaves exactly like :meth:`create_hard_link`.

        On the first failing pair the mapped exception is raised with
        ``.index`` (its position in the input), ``.path`` and
        ``.existing_path``; the links before it remain.  With
        ``on_missing="defer"``, pairs whose target does not exist yet are
        retried after all the others, in input order, until no more succeed
        (for sources that list links before their targets).  Returns the
        number of pairs linked.
        """
        if on_missing not in ("error", "defer"):
            raise InvalidArgument(E_INVALIDARG, 'on_missing is "error" or "defer", not %r' % (on_missing,))
        flags = lib.CIMFS_LINKS_DEFER_MISSING if on_missing == "defer" else 0
        pending: List[Tuple[int, Tuple[str, str]]] = []  # (input index, (new, existing)) whose target was missing
        done = 0
        batches = _packed_batches(pairs)
        try:
            for base, batch, data in batches:
                batch, deferred = self._link_batch(batch, data, range(base, base + len(batch)), flags)
                pending.extend((base + k, batch[k]) for k in deferred)
                done += len(batch) - len(deferred)
        finally:
            batches.close()  # stops the packing thread if linking failed
        while pending:
            indexes = [i for i, _ in pending]
            batch, data = _pack_pairs([pair for _, pair in pending], indexes)
            batch, deferred = self._link_batch(batch, data, indexes, flags)
            if len(deferred) == len(pending):
                # No progress: the first pair still missing its target is the error.
                first, first_data = _pack_pairs(batch[:1], indexes[:1])
                self._link_batch(first, first_data, indexes[:1], 0)
                raise AssertionError("unreachable: a deferred link succeeded on its own")  # pragma: no cover
            done += len(pending) - len(deferred)
            pending = [pending[k] for k in deferred]
        return done

    def _link_batch(self, batch, data, indexes, flags):
        """Link packed pairs (see _pack_pairs) in one C call.  Returns the
        pairs and the positions whose target was missing."""
        count = len(batch)
        buf = ffi.from_buffer("WCHAR[]", data)
        deferred = ffi.new("UINT32[]", count) if flags else ffi.NULL
        ndeferred = ffi.new("UINT32 *")
        failed = ffi.new("UINT32 *")
        with self._lock:
            hr = lib.CimfsCreateHardLinks(self._live(), buf, len(data) // 2, count, flags, deferred, ndeferred, failed)
        if hr < 0:
            k = failed[0]
            new, old = batch[k]
            if hr & 0xFFFFFFFF == E_INVALIDARG:
                _raise_invalid_pair(batch[k:k + 1], indexes[k:k + 1])
            raise errors.error_for(hr, _LINK_REASONS.get(hr & 0xFFFFFFFF), path=_display(new),
                                   existing_path=_display(old), index=indexes[k])
        return batch, [deferred[k] for k in range(ndeferred[0])]

    # ---- helpers ----------------------------------------------------------------
    def _live(self):
        if self._handle is None:
            raise InvalidArgument(E_INVALIDARG, "the image is closed", path=self.path)
        if self.committed:
            raise InvalidArgument(E_INVALIDARG, "the image is committed; no more changes", path=self.path)
        return self._handle

    def _check(self, hr: int, path: str) -> None:
        if hr >= 0:
            return
        if hr & 0xFFFFFFFF == errors.HR_SHARING_VIOLATION and self._stream is not None:
            raise errors.SharingViolation(hr, "the stream of %r is still open; close it first" % self._stream.path,
                                          path=path)
        raise errors.error_for(hr, "the parent directory does not exist" if hr & 0xFFFFFFFF == HR_PATH_NOT_FOUND
                               else None, path=path)


def _source_batches(pairs):
    """Lists of at most LINK_BATCH pairs from any iterable."""
    if isinstance(pairs, (list, tuple)):  # slicing beats islice for sequences
        for i in range(0, len(pairs), LINK_BATCH):
            yield pairs[i:i + LINK_BATCH]
        return
    iterator = iter(pairs)
    while True:
        batch = list(itertools.islice(iterator, LINK_BATCH))
        if not batch:
            return
        yield batch


def _packed_batches(pairs):
    """(first index, pairs, packed buffer) for each batch of the input.

    Past one batch, a helper thread packs the next batches while the caller
    links the current one (C calls release the GIL), so packing costs no
    time on a machine with a spare core.  The queue is bounded (memory stays
    at a few batches) and an error raised while packing (a malformed pair)
    reaches the caller in input order.
    """
    if isinstance(pairs, (list, tuple)) and len(pairs) <= LINK_BATCH:
        if pairs:
            batch, data = _pack_pairs(pairs, range(len(pairs)))
            yield 0, batch, data
        return
    packed = queue.Queue(maxsize=2)
    stop = threading.Event()

    def offer(item) -> bool:
        """Queue an item unless the caller stopped listening; False if it did."""
        while not stop.is_set():
            try:
                packed.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        base = 0
        try:
            for batch in _source_batches(pairs):
                item = (base,) + _pack_pairs(batch, range(base, base + len(batch)))
                base += len(batch)
                if not offer(item):
                    return
            item = None  # the end
        except BaseException as e:  # handed to the caller, which raises it
            item = e
        offer(item)

    worker = threading.Thread(target=produce, name="cimfs-pack-links", daemon=True)
    worker.start()
    try:
        while True:
            item = packed.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def _pack_pairs(batch, indexes):
    """(pairs as (str, str) tuples, their UTF-16LE buffer "new\0old\0...").

    The common case (pairs of str) costs a few C-level passes over the whole
    batch; pairs are looked at one by one only to convert os.PathLike items
    or to explain an error.  '/' becomes '\\' here, once for the batch; the
    C side then validates every path as CimCreateHardLink does.
    """
    try:
        if set(map(len, batch)) != {2} or not _PAIR_TYPES.isdisjoint(map(type, batch)):
            raise ValueError
        joined = "\0".join(itertools.chain.from_iterable(batch))
    except (TypeError, ValueError):
        batch = [_one_pair(pair, index) for pair, index in zip(batch, indexes)]
        joined = "\0".join(itertools.chain.from_iterable(batch))
    if joined.count("\0") != 2 * len(batch) - 1:
        _raise_invalid_pair(batch, indexes)  # a path holds a NUL
    try:
        if "/" in joined:
            joined = joined.replace("/", "\\")
        data = (joined + "\0").encode("utf-16-le")
    except UnicodeEncodeError:
        _raise_invalid_pair(batch, indexes)  # an unpaired surrogate
    return batch, data


_PAIR_TYPES = frozenset((str, bytes, bytearray))  # sequences of length 2 that are not pairs


def _one_pair(pair, index):
    try:
        if isinstance(pair, (str, bytes, bytearray)):
            raise TypeError
        new, old = pair
        new = new if type(new) is str else os.fspath(new)
        old = old if type(old) is str else os.fspath(old)
    except (TypeError, ValueError):
        raise InvalidArgument(E_INVALIDARG, "pair %d is not a (new_path, existing_path) pair of str or "
                              "os.PathLike: %r" % (index, pair), index=index) from None
    if type(new) is not str or type(old) is not str:
        raise InvalidArgument(E_INVALIDARG, "pair %d: bytes paths are not supported" % index, index=index)
    return new, old


def _pump(source, stream: "FileStream", size: int) -> int:
    """Copy up to ``size`` bytes from a binary file object into ``stream`` in chunks;
    returns how many were copied (fewer when the source ends early)."""
    views = getattr(source, "views", None)
    if views is not None:  # a source that lends its own buffers (tarstream.MemberData): no copy
        copied = 0
        for view in views(size):
            stream.write(view)
            copied += len(view)
        return copied
    buf = bytearray(min(COPY_CHUNK, max(size, 1)))
    view = memoryview(buf)
    copied = 0
    while copied < size:
        want = min(len(buf), size - copied)
        if hasattr(source, "readinto"):
            n = source.readinto(view[:want])
        else:
            chunk = source.read(want)
            n = len(chunk)
            view[:n] = chunk
        if not n:
            break
        stream.write(view[:n])
        copied += n
    return copied


def _checked_link_pair(new, old, index=None):
    """image_path() of both paths of a link; an error names both (and the index)."""
    try:
        return image_path(new), image_path(old)
    except InvalidArgument as e:
        raise InvalidArgument(E_INVALIDARG, e.reason, path=new, existing_path=old, index=index) from None


def _raise_invalid_pair(batch, indexes):
    """Raise InvalidArgument for the first pair the edge validator rejects."""
    for (new, old), index in zip(batch, indexes):
        _checked_link_pair(new, old, index)
    new, old = batch[0]
    raise InvalidArgument(E_INVALIDARG, "invalid link", path=new, existing_path=old, index=indexes[0])


def _display(path: str) -> str:
    return path.replace("/", "\\")


def _create_reason(hr: int, parent: Optional[str]) -> Optional[str]:
    code = hr & 0xFFFFFFFF
    if code == errors.HR_FILE_NOT_FOUND:
        return "the parent image %r does not exist" % parent
    if code == errors.HR_PATH_NOT_FOUND:
        return "the directory does not exist"
    if code == errors.HR_FILE_EXISTS:
        return "an image of that name already exists"
    if code == errors.HR_SHARING_VIOLATION:
        return "another image writer holds this directory"
    if code == errors.HR_NOT_SUPPORTED:
        return "this backend is not available here (no cimfs.dll)"
    return None
