"""Directory sources: a walk of the host tree into a :class:`~.builder.Builder`.

Conventions (README "cimfs build"): READONLY when no write bit is set, HIDDEN
for names starting with ``.``, creation time from ``st_birthtime`` where the
OS has it (else the modification time); Windows' real attributes where
present.  Symlinks become symlink reparse points; hard links are found by
(device, inode).  FIFOs, sockets and devices are skipped with a warning.

Regular files are the hot path: they are handed to C in batches
(``CimfsAddHostFiles``), which opens, reads, hashes and writes them without
the interpreter, on a helper thread while the walk goes on.
"""
import io
import os
import stat as _stat
import struct
import threading
from typing import Dict, List, Optional, Tuple

from . import errors
from ._cimfs import ffi, lib
from .builder import Builder, nothing
from .errors import BuildError
from .metadata import FileMetadata, stat_attributes, stat_times, symlink_reparse
from .names import invalid_reason
from .paths import image_path, upcase

__all__ = ["add_directory"]

# CIMFS_FILE_METADATA with no SD/EA/reparse pointers, packed in Python (cffi field sets are slower).
_HOST_METADATA = struct.Struct("<I4xqqqqq%dx" % (ffi.sizeof("CIMFS_FILE_METADATA") - 48))
assert [ffi.offsetof("CIMFS_FILE_METADATA", f) for f in ("FileSize", "CreationTime", "LastAccessTime")] == [8, 16, 40]
HOST_BATCH = 256   # files per CimfsAddHostFiles call


class _HostFiles:
    """Regular files of a directory source, the hot path of a build.

    Files are queued and handed to C in batches (CimfsAddHostFiles: open,
    read, create, write and close without the interpreter), on a helper
    thread, so the walk and stat of the next batch run on the other core.
    The writer allows one open stream at a time, so every other change to
    the image first waits for the batch in flight (:meth:`wait`)."""

    def __init__(self, b: Builder):
        self.b = b
        self.pending: List[Tuple[str, str, os.stat_result, str]] = []
        self.thread: Optional[threading.Thread] = None
        self.done = threading.Event()  # set when the batch in flight has returned
        self.batch: List = []
        self.result: List = []

    def add(self, path: str, host: str, st: os.stat_result, name: str) -> None:
        """Queue a file.  A directory walk creates parents first and never names a path twice,
        so the parent and replacement bookkeeping of :class:`Builder` is not needed here."""
        b = self.b
        self.pending.append((path, host, st, name))
        s = b.summary
        s.files += 1
        s.bytes += st.st_size
        b.progress.update(s)
        if len(self.pending) >= HOST_BATCH:
            self.submit()

    def submit(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        for p, _, _, _ in batch:
            image_path(p)  # the same checks, and errors, as every other Image method
        try:
            paths = "".join([p + "\0" + h + "\0" for p, h, _, _ in batch]).encode("utf-16-le")
        except UnicodeEncodeError:
            bad = next(h for _, h, _, _ in batch if not _encodable(h))
            raise BuildError("%r: the host path is not valid Unicode (undecodable bytes)" % bad, path=bad) from None
        meta = bytearray(_HOST_METADATA.size * len(batch))
        reproducible, limit = self.b.reproducible, self.b.time_limit
        for i, (_, _, st, name) in enumerate(batch):
            times: Tuple[int, ...] = stat_times(st, reproducible)
            if limit is not None:
                times = tuple(min(t, limit) for t in times)
            _HOST_METADATA.pack_into(meta, i * _HOST_METADATA.size, stat_attributes(st, name), st.st_size, *times)
        self.wait()
        image = self.b.image
        args = (image._live(), ffi.from_buffer("WCHAR[]", paths), len(paths) // 2, len(batch),
                ffi.from_buffer("CIMFS_FILE_METADATA[]", meta), ffi.new("UINT32 *"))
        self.batch, self.result = batch, []
        keep = (paths, meta)  # alive until the call returns

        def run() -> None:
            try:
                self.result = [lib.CimfsAddHostFiles(*args), args[-1][0], keep]
            finally:
                self.done.set()

        if not self.b.helper_threads:  # --threads 1: the batch runs here and now
            run()
            self._raise_failure()
            return
        self.done.clear()
        self.thread = threading.Thread(target=run, name="cimfs-host-files", daemon=True)
        self.thread.start()

    def wait(self) -> None:
        """Let the batch in flight finish; raise its failure, naming the file."""
        if self.thread is None or self.thread.ident is None:  # never started (interrupted first)
            self.thread = None
            return
        # An Event, not Thread.join: a join interrupted by Ctrl-C can later return while the
        # thread still runs (and the image must not be closed under a batch in flight).
        while not self.done.wait(0.1):
            pass
        self.thread = None
        self._raise_failure()

    def _raise_failure(self) -> None:
        hr, index, _ = self.result
        if hr < 0:
            path, host, _, _ = self.batch[index]
            reason = errors.error_for(hr).reason
            if hr & 0xFFFFFFFF == errors.HR_HANDLE_EOF:
                reason = "its size changed while the build read it"
            raise BuildError("cannot add %s as %s: %s" % (host, path, reason), path=host) from None

    def finish(self) -> None:
        self.submit()
        self.wait()


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-16-le")
        return True
    except UnicodeEncodeError:
        return False


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
    first_of_inode: Dict[Tuple[int, int], str] = {}
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
        # Windows, or names Windows cannot hold.  Other listings cost a set and a regex per name.
        troubled = (prefix in merged or len({upcase(e.name) for e in entries}) != len(entries)
                    or any(invalid_reason(e.name) is not None for e in entries))
        placed_dirs = set()
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                raise BuildError("cannot stat %s: %s" % (entry.path, e.strerror), path=entry.path) from None
            mode = st.st_mode
            name = entry.name
            if troubled:
                source = prefix + "\\" + name if prefix else name
                placed = b.names.place(prefix, name, _stat.S_ISDIR(mode), source)
                if placed is None:
                    continue
                name = placed
            path = prefix + "\\" + name if prefix else name
            if troubled and _stat.S_ISDIR(mode):
                if path in placed_dirs:
                    merged.add(path)
                placed_dirs.add(path)
            if _stat.S_ISREG(mode):
                if st.st_nlink > 1:
                    inode = (st.st_dev, st.st_ino)
                    first = first_of_inode.get(inode)
                    if first is not None:
                        b.ready.append((path, first))  # the target was queued before: it exists
                        continue
                    first_of_inode[inode] = path
                if _encodable(entry.path):
                    host_files.add(path, entry.path, st, name)
                else:  # a host path with undecodable bytes (its image name was repaired): Python opens it
                    with open(entry.path, "rb") as f:
                        b.file(path, FileMetadata.from_stat(st, name=name, reproducible=b.reproducible), f, st.st_size, placed=True)
            elif _stat.S_ISDIR(mode):
                b.directory(path, FileMetadata.from_stat(st, name=name, reproducible=b.reproducible), placed=True)
                subdirs.append((path, entry.path))
            elif _stat.S_ISLNK(mode):
                md = FileMetadata.from_stat(st, name=name, reproducible=b.reproducible)
                md.reparse_data = symlink_reparse(os.readlink(entry.path))
                b.file(path, md, io.BytesIO(), 0, placed=True)
            else:
                b.summary.warnings.append("%s: not a file, directory or symlink; skipped" % entry.path)
        todo.extend(reversed(subdirs))
