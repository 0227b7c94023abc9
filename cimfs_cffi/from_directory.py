"""Directory sources: a walk of the host tree into a :class:`~.builder.Builder`.

Conventions (README "cimfs build"): READONLY when no write bit is set, HIDDEN
for names starting with ``.``, creation time from the birth time where the
OS keeps one (else the modification time); Windows' real attributes where
present.  Symlinks become symlink reparse points; hard links are found by
(device, inode).  FIFOs, sockets and devices are skipped with a warning.

Regular files are the hot path: the walk only lists them (a listing says
which names are regular files) and hands them to C in batches, in two
phases (docs/api.md §9.4): ``CimfsHostBatchRead`` opens each file, takes its
metadata from the handle, spots hard links and reads it, on the walking
thread; ``CimfsHostBatchAdd`` puts the batch before into the image (hashed
and written by the writer's own threads) on a helper thread meanwhile.
"""
import io
import os
import stat as _stat
import sys
import threading
from typing import List, Optional, Tuple

from . import errors
from ._cimfs import ffi, lib
from .builder import Builder, nothing
from .errors import BuildError
from .metadata import FileMetadata, symlink_reparse
from .names import troubled_listing
from .paths import image_path

__all__ = ["add_directory"]

HOST_BATCH = 256   # files per CimfsAddHostTreeFiles call


def _host_bytes(paths: List[str]) -> bytes:
    """Host paths as CimfsAddHostTreeFiles takes them, each NUL-terminated: the bytes the OS gave
    (undecodable ones included) on POSIX, UTF-16 (unpaired surrogates included) on Windows."""
    joined = "\0".join(paths) + "\0"
    if sys.platform == "win32":
        return joined.encode("utf-16-le", "surrogatepass")
    return joined.encode(sys.getfilesystemencoding(), "surrogateescape")  # os.fsencode's rule


class _HostFiles:
    """Regular files of a directory source, the hot path of a build.

    Files are queued and handed to C in batches: the walking thread reads a
    batch (open, describe, spot links, read; no image involved) while a
    helper thread adds the batch before it to the image, so the two halves
    of the work run on two cores.  The writer allows one open stream at a
    time, so every other change to the image first waits for the batch in
    flight (:meth:`wait`)."""

    def __init__(self, b: Builder):
        self.b = b
        self.pending: List[Tuple[str, str]] = []   # (image path, host path)
        self.thread: Optional[threading.Thread] = None
        self.done = threading.Event()  # set when the batch in flight has returned
        self.batch: List[Tuple[str, str]] = []
        self.result: List = []
        self.flags = lib.CIMFS_HOST_REPRODUCIBLE if b.reproducible else 0
        if b.time_limit is not None:
            self.flags |= lib.CIMFS_HOST_LATEST_TIME
        links = ffi.new("CIMFS_HOST_LINKS **")
        errors.check(lib.CimfsHostLinksCreate(links), "cannot start a directory build")
        self.links = ffi.gc(links[0], lib.CimfsHostLinksFree)  # which host files went where, for hard links

    def add(self, path: str, host: str) -> None:
        """Queue a regular file.  A directory walk creates parents first and never names a path
        twice, so the parent and replacement bookkeeping of :class:`Builder` is not needed here."""
        self.pending.append((path, host))
        if len(self.pending) >= HOST_BATCH:
            self.submit()

    def submit(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        for p, _ in batch:
            image_path(p)  # the same checks, and errors, as every other Image method
        images = "".join([p + "\0" for p, _ in batch]).encode("utf-16-le")
        hosts = _host_bytes([h for _, h in batch])
        read = ffi.new("CIMFS_HOST_BATCH **")
        errors.check(lib.CimfsHostBatchRead(self.links, self.flags, self.b.time_limit or 0,
                                            ffi.from_buffer("WCHAR[]", images), len(images) // 2,
                                            ffi.from_buffer(hosts), len(hosts), len(batch), read),
                     "cannot read the next files of the source")
        read_batch = ffi.gc(read[0], lib.CimfsHostBatchFree)
        self.wait()  # the batch before: added (one open stream at a time)
        args = (self.b.image._live(), read_batch, ffi.new("UINT32 *"), ffi.new("CIMFS_HOST_FILES_RESULT *"))
        self.batch, self.result = batch, []

        def run() -> None:
            try:
                self.result = [lib.CimfsHostBatchAdd(*args), args[2][0], args[3]]
            finally:
                self.done.set()

        if not self.b.helper_threads:  # --threads 1: the batch runs here and now
            run()
            self._count()
            return
        self.done.clear()
        self.thread = threading.Thread(target=run, name="cimfs-host-files", daemon=True)
        self.thread.start()

    def wait(self) -> None:
        """Let the batch in flight finish; count it, or raise its failure, naming the file."""
        if self.thread is None or self.thread.ident is None:  # never started (interrupted first)
            self.thread = None
            return
        # An Event, not Thread.join: a join interrupted by Ctrl-C can later return while the
        # thread still runs (and the image must not be closed under a batch in flight).
        while not self.done.wait(0.1):
            pass
        self.thread = None
        self._count()

    def _count(self) -> None:
        hr, index, counts = self.result
        s = self.b.summary
        s.files += counts.files
        s.bytes += counts.bytes
        s.links += counts.links
        self.b.progress.update(s)
        if hr < 0:
            path, host = self.batch[index]
            reason = errors.error_for(hr).reason
            if hr & 0xFFFFFFFF == errors.HR_HANDLE_EOF:
                reason = "its size changed while the build read it"
            elif hr & 0xFFFFFFFF == errors.HR_FILE_NOT_FOUND:
                reason = "it is gone, or no longer a regular file"
            raise BuildError("cannot add %s as %s: %s" % (host, path, reason), path=host) from None

    def finish(self) -> None:
        self.submit()
        self.wait()


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
        try:
            host_files.wait()
        except BuildError:
            pass  # an error is already on its way out
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
            if _stat.S_ISDIR(mode):
                b.directory(path, FileMetadata.from_stat(st, name=name, reproducible=b.reproducible), placed=True)
                subdirs.append((path, entry.path))
            elif _stat.S_ISLNK(mode):
                md = FileMetadata.from_stat(st, name=name, reproducible=b.reproducible)
                md.reparse_data = symlink_reparse(os.readlink(entry.path))
                b.file(path, md, io.BytesIO(), 0, placed=True)
            elif _stat.S_ISREG(mode):  # it became a regular file after the listing
                host_files.add(path, entry.path)
            else:
                b.summary.warnings.append("%s: not a file, directory or symlink; skipped" % entry.path)
        todo.extend(reversed(subdirs))
