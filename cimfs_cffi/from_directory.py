"""Directory sources: a walk of the host tree into a :class:`~.builder.Builder`.

Conventions (README "cimfs build"): READONLY when no write bit is set, HIDDEN
for names starting with ``.``, creation time from the birth time where the
OS keeps one (else the modification time); Windows' real attributes where
present.  Symlinks become symlink reparse points; hard links are found by
(device, inode).  FIFOs, sockets and devices are skipped with a warning.

Regular files are the hot path: the walk only lists them (a listing says
which names are regular files) and hands them to C in batches, in two
phases (docs/api.md §9.4) on two helper threads: ``CimfsHostBatchRead``
opens each file, takes its metadata from the handle, spots hard links and
reads it; ``CimfsHostBatchAdd`` puts the batch before it into the image
(hashed and written by the writer's own threads).  The walk goes on
meanwhile.  At most four read batches exist at a time, each holding up to 16 MiB
of small files' data and at most 16 open files.
"""
import functools
import io
import os
import queue
import stat as _stat
import sys
import threading
from typing import Callable, List, Optional, Tuple

from . import errors
from ._cimfs import ffi, lib
from .builder import Builder, nothing
from .errors import BuildError
from .metadata import FileMetadata, symlink_reparse
from .names import troubled_listing
from .paths import image_path

__all__ = ["add_directory"]

HOST_BATCH = 256   # files per CimfsAddHostTreeFiles call


def batch_buffers(files: List[Tuple[str, str]]) -> Tuple[bytes, bytes]:
    """(image path, host path) pairs as CimfsAddHostTreeFiles takes them, each path NUL-terminated:
    the image paths in UTF-16; the host paths as the bytes the OS gave (undecodable ones included)
    on POSIX, in UTF-16 (unpaired surrogates included) on Windows."""
    images = "".join([p + "\0" for p, _ in files]).encode("utf-16-le")
    hosts = "".join([h + "\0" for _, h in files])
    if sys.platform == "win32":
        return images, hosts.encode("utf-16-le", "surrogatepass")
    return images, hosts.encode(sys.getfilesystemencoding(), "surrogateescape")  # os.fsencode's rule


class _HostFiles:
    """The image changes of a directory source, in batches, through a pipeline.

    A batch is the directories and symlinks met since the batch before, and
    up to HOST_BATCH regular files.  Two helper threads work through the
    batches in order: the reader reads each batch's files (open, describe,
    spot hard links, read; no image involved), the adder makes its
    directories and symlinks and then adds its files (the writer takes one
    change at a time).  So the walk, the reading and the adding run at once,
    and the order of the changes, which makes the image, is the same on any
    number of cores; with ``--threads 1`` each batch is done at once, here.
    The first failure stops the batches; it is raised on the walking thread
    at its next batch or :meth:`wait`."""

    def __init__(self, b: Builder):
        self.b = b
        self.pending: List[Tuple[str, str]] = []   # (image path, host path)
        self.pending_changes: List[Callable[[], None]] = []  # directories and symlinks, in walk order
        self.flags = lib.CIMFS_HOST_REPRODUCIBLE if b.reproducible else 0
        if b.time_limit is not None:
            self.flags |= lib.CIMFS_HOST_LATEST_TIME
        links = ffi.new("CIMFS_HOST_LINKS **")
        errors.check(lib.CimfsHostLinksCreate(links), "cannot start a directory build")
        self.links = ffi.gc(links[0], lib.CimfsHostLinksFree)  # which host files went where, for hard links
        self.done = threading.Condition()
        self.outstanding = 0                        # operations sent and not yet done (or skipped)
        self.failure: Optional[BaseException] = None
        self.stopping = False                       # set by close(): what is still queued is skipped
        self.to_read: "queue.Queue" = queue.Queue(maxsize=2)  # a bound on the batches read ahead
        self.to_add: "queue.Queue" = queue.Queue(maxsize=2)
        self.adder: Optional[threading.Thread] = None

    # ---- the walking thread ----------------------------------------------------------------------
    def add(self, path: str, host: str) -> None:
        """Queue a regular file.  A directory walk creates parents first and never names a path
        twice, so the parent and replacement bookkeeping of :class:`Builder` is not needed here."""
        self.pending.append((path, host))
        if len(self.pending) >= HOST_BATCH:
            self.submit()

    def submit(self) -> None:
        batch, self.pending = self.pending, []
        changes, self.pending_changes = self.pending_changes, []
        if not batch and not changes:
            return
        for p, _ in batch:
            image_path(p)  # the same checks, and errors, as every other Image method
        self._send((changes, batch) + batch_buffers(batch))
        self.b.progress.update(self.b.summary)

    def call(self, change: Callable[[], None]) -> None:
        """An image change other than a regular file (a directory, a symlink), made before the
        files of its batch: none of them can need it made after them."""
        self.pending_changes.append(change)
        if len(self.pending_changes) >= HOST_BATCH:
            self.submit()

    def wait(self) -> None:
        """Let everything sent be done; raise the first failure.  (Called by the adder itself,
        through the Builder, it returns at once: it is the one doing the work.)"""
        if threading.current_thread() is self.adder:
            return
        self._drain()
        self._raise_failure()

    def finish(self) -> None:
        self.submit()
        self.wait()

    def close(self) -> None:
        """Skip what is queued, wait for what runs (the image must not be closed under it), stop
        the threads.  Safe after any failure or interruption."""
        self.stopping = True
        interrupted = None
        while True:
            try:
                self._drain()
                break
            except KeyboardInterrupt as e:  # a second Ctrl-C: the batch in flight still ends first
                interrupted = e
        if self.adder is not None:
            self.to_read.put(None)
            self.adder = None
        if interrupted is not None:
            raise interrupted

    def _send(self, op: tuple) -> None:
        self._raise_failure()
        if not self.b.helper_threads:  # --threads 1: here and now
            self._run(self._read(op))
            self._raise_failure()
            return
        if self.adder is None:
            threading.Thread(target=self._reader, name="cimfs-host-reader", daemon=True).start()
            self.adder = threading.Thread(target=self._adder, name="cimfs-host-adder", daemon=True)
            self.adder.start()
        with self.done:
            self.outstanding += 1
        try:
            while True:
                try:
                    self.to_read.put(op, timeout=0.1)
                    return
                except queue.Full:
                    self._raise_failure()
        except BaseException:
            with self.done:  # not sent after all
                self.outstanding -= 1
                self.done.notify_all()
            raise

    def _drain(self) -> None:
        """Until everything sent is done (or skipped)."""
        with self.done:
            while self.outstanding:
                self.done.wait(0.1)  # a timeout: Ctrl-C gets through

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    # ---- the helper threads ----------------------------------------------------------------------
    def _reader(self) -> None:
        while True:
            op = self.to_read.get()
            if op is None:
                self.to_add.put(None)
                return
            if self.failure is None and not self.stopping:
                try:
                    op = self._read(op)
                except BaseException as e:  # handed to the walking thread
                    self._fail(e)
            self.to_add.put(op)

    def _adder(self) -> None:
        while True:
            op = self.to_add.get()
            if op is None:
                return
            try:
                if self.failure is None and not self.stopping:
                    self._run(op)
            except BaseException as e:
                self._fail(e)
            finally:
                with self.done:
                    self.outstanding -= 1
                    self.done.notify_all()

    def _fail(self, e: BaseException) -> None:
        if self.failure is None:
            self.failure = e

    # ---- the two halves of an operation ----------------------------------------------------------
    def _read(self, op: tuple) -> tuple:
        changes, batch, images, hosts = op
        if not batch:
            return (changes, batch, None)
        read = ffi.new("CIMFS_HOST_BATCH **")
        errors.check(lib.CimfsHostBatchRead(self.links, self.flags, self.b.time_limit or 0,
                                            ffi.from_buffer("WCHAR[]", images), len(images) // 2,
                                            ffi.from_buffer(hosts), len(hosts), len(batch), read),
                     "cannot read the next files of the source")
        return (changes, batch, ffi.gc(read[0], lib.CimfsHostBatchFree))

    def _run(self, op: tuple) -> None:
        changes, batch, read_batch = op
        for change in changes:
            change()
        if not batch:
            return
        failed, counts = ffi.new("UINT32 *"), ffi.new("CIMFS_HOST_FILES_RESULT *")
        hr = lib.CimfsHostBatchAdd(self.b.image._live(), read_batch, failed, counts)
        s = self.b.summary
        s.files += counts.files
        s.bytes += counts.bytes
        s.links += counts.links
        if hr < 0:
            path, host = batch[failed[0]]
            reason = errors.error_for(hr).reason
            if hr & 0xFFFFFFFF == errors.HR_HANDLE_EOF:
                reason = "its size changed while the build read it"
            elif hr & 0xFFFFFFFF == errors.HR_FILE_NOT_FOUND:
                reason = "it is gone, or no longer a regular file"
            raise BuildError("cannot add %s as %s: %s" % (host, path, reason), path=host)


def add_directory(root: str, b: Builder) -> None:
    """Every entry below ``root`` (a directory), parents first, names in sorted order."""
    b.summary.input_format = "directory"
    b.directory("", FileMetadata.from_stat(os.stat(root), reproducible=b.reproducible), placed=True)
    host_files = _HostFiles(b)
    b.before_image_call = host_files.wait
    try:
        _walk_directory(root, b, host_files)
        host_files.finish()
    finally:
        host_files.close()  # after a failure: what is queued is dropped, and that failure goes on out
        b.before_image_call = nothing


def _walk_directory(root: str, b: Builder, host_files: _HostFiles) -> None:
    merged = set()  # image directories that two source directories went into: their listings meet there
    todo = [("", root)]
    while todo:
        prefix, host = todo.pop()
        try:
            entries = sorted(os.scandir(host), key=lambda e: e.name)
        except OSError as e:
            raise BuildError("cannot list %s: %s" % (host, e.strerror), path=host) from None
        subdirs = []
        # The name policy looks at a listing only when it has trouble: names that are one name on
        # Windows, or names Windows cannot hold.  Other listings cost one regex and one set.
        troubled = prefix in merged or troubled_listing([e.name for e in entries])
        placed_dirs = set()
        for entry in entries:
            name = entry.name
            try:  # the listing's file type: no stat for regular files (C takes theirs from the handle)
                is_file = entry.is_file(follow_symlinks=False)
                is_dir = not is_file and entry.is_dir(follow_symlinks=False)
            except OSError as e:
                raise BuildError("cannot stat %s: %s" % (entry.path, e.strerror), path=entry.path) from None
            if troubled:
                source = prefix + "\\" + name if prefix else name
                placed = b.names.place(prefix, name, is_dir, source)
                if placed is None:
                    continue
                name = placed
            path = prefix + "\\" + name if prefix else name
            if is_file:
                host_files.add(path, entry.path)
                continue
            if troubled and is_dir:
                if path in placed_dirs:
                    merged.add(path)
                placed_dirs.add(path)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                raise BuildError("cannot stat %s: %s" % (entry.path, e.strerror), path=entry.path) from None
            mode = st.st_mode
            md = FileMetadata.from_stat(st, name=name, reproducible=b.reproducible)
            if _stat.S_ISDIR(mode):
                host_files.call(functools.partial(b.directory, path, md, placed=True))
                subdirs.append((path, entry.path))
            elif _stat.S_ISLNK(mode):
                md.reparse_data = symlink_reparse(os.readlink(entry.path))
                host_files.call(functools.partial(b.file, path, md, io.BytesIO(), 0, placed=True))
            elif _stat.S_ISREG(mode):  # it became a regular file after the listing
                host_files.add(path, entry.path)
            else:
                b.summary.warnings.append("%s: not a file, directory or symlink; skipped" % entry.path)
        todo.extend(reversed(subdirs))
