"""``cimfs build``: a directory, a (layer) tar or an MSIX/APPX package into a CIM image.

Data flows one way: each source yields entries, :class:`_Builder` turns
them into :class:`~cimfs_cffi.Image` calls, streaming file data through in
1 MiB chunks, and hard links go to the bulk link API in batches.  The image
is written under a temporary name and renamed over ``IMAGE`` only when it is
complete, so a failed build leaves no ``.cim`` behind and never damages an
image that was already there.

Conventions (README "cimfs build"):

* Directory sources: READONLY when no write bit is set, HIDDEN for names
  starting with ``.``, creation time from ``st_birthtime`` where the OS has
  it (else the modification time); Windows' real attributes where present.
  Symlinks become symlink reparse points; hard links are found by
  (device, inode).  FIFOs, sockets and devices are skipped with a warning.
* Tar sources: PAX ``MSWINDOWS.*``/``LIBARCHIVE.creationtime`` records
  (:mod:`.layertar`) are honoured in every tar; without ``fileattr`` the
  mode and name give READONLY/HIDDEN as above.  ``.wh.NAME`` whiteouts
  delete NAME (from the parent image or earlier entries; a missing NAME is
  fine).  Hard links follow tar semantics: a link binds to its target as the
  archive stands at the link entry, even if the target is replaced later; a
  link to a target that only comes later is made at the end.
* Packages (.msix/.appx): unpacked as msixmgr does for app attach (:mod:`.msix`).
"""
import concurrent.futures
import dataclasses
import datetime
import io
import lzma
import os
import stat as _stat
import struct
import sys
import tarfile
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from . import errors
from . import layertar as lt
from . import msix
from . import publish
from . import tarstream
from .errors import BuildError, CimError, PathNotFound
from .names import InvalidName, NameCollision, NamePolicy, invalid_reason
from ._cimfs import ffi, lib
from .image import FORMAT_VERSIONS, Image
from .metadata import (DIRECTORY, HIDDEN, RAW_FILETIME_MIN, READONLY, REPARSE_POINT, SPARSE_FILE, FileMetadata,
                       ea_buffer, mount_point_reparse, stat_attributes, stat_times, symlink_reparse)
from .paths import image_path, upcase
from .reader import CimImage, open_image

__all__ = ["build", "build_packages", "BuildSummary", "BuildError", "NameCollision", "InvalidName"]

COPY_CHUNK = 1 << 20
MAX_HOLE_FILL = 64 << 20       # zeros a partly sparse tar member may cost (more: refused)
MAX_PART_RATIO, MAX_PART_PLAIN = 200, 256 << 20  # a package part that inflates beyond both: refused
# What a damaged or unreadable archive raises while it is read (bz2 and gzip raise OSError).
# CimError is an OSError too, but it comes from the writer (a full disk is not a damaged tar).
# ValueError and OverflowError: tarfile's answer to PAX numbers it cannot hold (a 5,000-digit size).
_DECODE_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError, OverflowError)


def _decode_errors() -> tuple:
    try:
        import zstandard
    except ImportError:
        return _DECODE_ERRORS
    return _DECODE_ERRORS + (zstandard.ZstdError,)
HIVES = ("SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT")


@dataclass
class BuildSummary:
    image: str = ""
    files: int = 0
    directories: int = 0
    links: int = 0
    symlinks: int = 0
    streams: int = 0
    deleted: int = 0
    bytes: int = 0
    seconds: float = 0.0
    package: str = ""                       # a package source's full name
    names: List[str] = field(default_factory=list)  # names renamed, skipped, merged or replaced
    warnings: List[str] = field(default_factory=list)
    _dedup_saved: Optional[int] = field(default=None, repr=False)

    @property
    def dedup_saved(self) -> int:
        """Bytes of file data that deduplication did not store (read from the image on first use)."""
        if self._dedup_saved is None:
            with open_image(self.image) as img:
                self._dedup_saved = img.summary()["dedup_saved_bytes"]
        return self._dedup_saved

    def line(self) -> str:
        names = ", %d names renamed, skipped, merged or replaced" % len(self.names) if self.names else ""
        return ("built %s: %d files, %d directories, %d hard links, %d symlinks, %d bytes (dedup saved %d)%s in %.2f s"
                % (self.image, self.files, self.directories, self.links, self.symlinks, self.bytes,
                   self.dedup_saved, names, self.seconds))


class Progress:
    """A one-line progress display on a terminal, shown once a build has run for a second."""

    def __init__(self, stream=None, enabled: Optional[bool] = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.start = self.last = time.monotonic()
        self.shown = False

    def update(self, s: BuildSummary, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and (now - self.start < 1.0 or now - self.last < 0.1):
            return
        self.last = now
        rate = s.bytes / max(now - self.start, 1e-9) / 1e6
        self.stream.write("\r%d files, %d links, %.1f MB, %.1f MB/s " % (s.files, s.links, s.bytes / 1e6, rate))
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _nothing() -> None:
    pass


def _key(path: str) -> str:
    return upcase(path)  # the image's own folding, not str.upper()


class _Builder:
    """Applies source entries to an image: parents, links (bulk, tar semantics), whiteouts."""

    def __init__(self, image: Image, parent: Optional[CimImage], summary: BuildSummary, progress: Progress,
                 ignore_missing_links: bool, names: NamePolicy, helper_threads: bool = True):
        self.image = image
        self.helper_threads = helper_threads   # sources may read on a helper thread
        self.names = names                     # source paths -> image paths (names.py)
        self.parent = parent
        self.summary = summary
        self.progress = progress
        self.ignore_missing_links = ignore_missing_links
        self.dirs = {""}                       # upcased directories known to exist
        self.ready: List[Tuple[str, str]] = []  # links whose target exists now, not yet made
        self.touched = set()                   # upcased names those links read or write
        self.later: List[Tuple[str, str]] = []  # links (image path, source target) whose target comes later
        self.made = set()                      # upcased paths this build created (links resolve against it)
        self.gone = set()                      # upcased paths whited out: the parent image's are hidden below
        self.before_image_call: Callable[[], None] = _nothing  # set while host files are in flight

    @property
    def writer(self) -> Image:
        """The image, once no batch of host files is in flight (one open stream at a time)."""
        self.before_image_call()
        return self.image

    # ---- paths and parents ---------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        k = _key(path)
        if k in self.made or k in self.dirs:
            return True
        return self.in_parent(path)

    def in_parent(self, path: str) -> bool:
        """Whether the parent image has ``path`` and no whiteout of it or an ancestor hid it."""
        if self.parent is None:
            return False
        if self.gone:
            parts = _key(path).split("\\")
            if any("\\".join(parts[:i]) in self.gone for i in range(1, len(parts) + 1)):
                return False
        return self.parent.exists(path)

    def ensure_parents(self, path: str) -> None:
        missing = []
        parent = path.rpartition("\\")[0]
        while _key(parent) not in self.dirs:  # a loop, not recursion: paths can be very deep
            missing.append(parent)
            parent = parent.rpartition("\\")[0]
        for parent in reversed(missing):
            if not self.in_parent(parent):
                self.before_change(parent)
                self.writer.add_directory(parent)
                self.made.add(_key(parent))
                self.summary.directories += 1
            self.dirs.add(_key(parent))

    def before_change(self, path: str) -> None:
        """Make pending links first if they involve ``path`` (tar semantics: a link binds to
        the target as it is now, not as later entries change it)."""
        if self.ready and _key(path) in self.touched:
            self.flush_links()

    def flush_links(self) -> None:
        if self.ready:
            try:
                self.summary.links += self.writer.create_hard_links(self.ready)
            except PathNotFound as e:
                raise BuildError("hard link %s -> %s: %s" % (e.path, e.existing_path, e.reason),
                                 path=e.path, existing_path=e.existing_path) from None
            self.ready, self.touched = [], set()

    # ---- entries: source paths in, placed by the name policy ------------------------------------------
    def directory(self, path: str, md: FileMetadata, placed: bool = False) -> None:
        if not placed:
            path = self.names.map(path, True)
            if path is None:
                return
        if path:
            self.ensure_parents(path)
        self.before_change(path)
        self.writer.add_directory(path, md)
        self.dirs.add(_key(path))
        self.made.add(_key(path))
        self.summary.directories += 1 if path else 0

    def file(self, path: str, md: FileMetadata, source, size: int, sparse: bool = False, placed: bool = False) -> None:
        if not placed:
            path = self.names.map(path, False)
            if path is None:
                return
        self.ensure_parents(path)
        self.before_change(path)
        if sparse:
            self.writer.open_file(path, size, md).close()
        else:
            self.writer.add_file(path, source, dataclasses.replace(md, size=size))
        self.made.add(_key(path))
        if md.reparse_data:
            self.summary.symlinks += 1
        else:
            self.summary.files += 1
            self.summary.bytes += size
        self.progress.update(self.summary)

    def stream(self, path: str, name: str, source, size: int) -> None:
        owner = self.names.lookup(path)
        if owner is None:
            self.names.events.append("skipped stream %s:%s: its file was left out" % (path, name))
            return
        path = owner
        if not self.exists(path):
            raise BuildError("alternate stream %r of %r comes before (or without) its file" % (name, path), path=path)
        self.writer.add_alternate_stream(path, name, source, size=size)
        self.summary.streams += 1

    def link(self, path: str, target: str, placed: bool = False) -> None:
        """A hard link; ``target`` is a source path (an image path when ``placed``)."""
        if not placed:
            path = self.names.map(path, False)
            if path is None:
                return
        self._link(path, target)

    def _link(self, path: str, source_target: str) -> None:
        target = self.names.lookup(source_target)
        if target is None:
            self.names.events.append("skipped hard link %s: its target %s was left out" % (path, source_target))
            return
        self.ensure_parents(path)
        self.before_change(path)
        if self.exists(target):
            self.ready.append((path, target))
            self.touched.update((_key(path), _key(target)))
            self.made.add(_key(path))
        else:
            self.later.append((path, source_target))

    def _target_exists(self, source_target: str) -> bool:
        target = self.names.lookup(source_target)
        return target is not None and self.exists(target)

    def delete(self, path: str) -> None:
        """A whiteout: remove source ``path`` (from the parent image or earlier entries) if it is there."""
        path = self.names.lookup(path)
        if path is None:
            return
        self.names.forget(path)
        self.flush_links()
        try:
            self.writer.delete(path)
            self.summary.deleted += 1
        except PathNotFound:
            pass
        k = _key(path)
        self.made.discard(k)
        self.gone.add(k)
        if k in self.dirs:  # a directory: forget everything below it too
            below = k + "\\"
            self.dirs = {d for d in self.dirs if d != k and not d.startswith(below)}
            self.made = {m for m in self.made if not m.startswith(below)}

    def finish(self) -> None:
        """Make the remaining links: those whose target exists now, then those waiting for one of
        the links just made (a chain, however long, in time linear in its length)."""
        self.flush_links()
        waiting: Dict[str, List[Tuple[str, str]]] = {}
        ready: List[Tuple[str, str]] = []
        for new, source_target in self.later:
            if self._target_exists(source_target):
                ready.append((new, source_target))
            else:
                target = self.names.lookup(source_target)
                waiting.setdefault(_key(target) if target is not None else "", []).append((new, source_target))
        while ready:
            for new, source_target in ready:
                self._link(new, source_target)
            self.flush_links()
            made, ready = ready, []
            for new, _ in made:
                ready += waiting.pop(_key(new), [])
        pending = [pair for pairs in waiting.values() for pair in pairs]
        for new, target in pending:
            if not self.ignore_missing_links:
                raise BuildError("hard link %s -> %s: the target is not in the source%s"
                                 % (new, target, " or the parent image" if self.parent else ""),
                                 path=new, existing_path=target)
            self.summary.warnings.append("hard link %s -> %s skipped: no such target" % (new, target))


# ---- directory sources ---------------------------------------------------------------------------------
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

    def __init__(self, b: _Builder):
        self.b = b
        self.pending: List[Tuple[str, str, os.stat_result, str]] = []
        self.thread: Optional[threading.Thread] = None
        self.done = threading.Event()  # set when the batch in flight has returned
        self.batch: List = []
        self.result: List = []

    def add(self, path: str, host: str, st: os.stat_result, name: str) -> None:
        """Queue a file.  A directory walk creates parents first and never names a path twice,
        so the parent and replacement bookkeeping of :class:`_Builder` is not needed here."""
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
        for i, (_, _, st, name) in enumerate(batch):
            _HOST_METADATA.pack_into(meta, i * _HOST_METADATA.size, stat_attributes(st, name), st.st_size,
                                     *stat_times(st))
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


def _build_from_directory(root: str, b: _Builder) -> None:
    b.directory("", FileMetadata.from_stat(os.stat(root)), placed=True)
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
        b.before_image_call = _nothing


def _walk_directory(root: str, b: _Builder, host_files: _HostFiles) -> None:
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
                name = b.names.place(prefix, name, _stat.S_ISDIR(mode), source)
                if name is None:
                    continue
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
                        b.file(path, FileMetadata.from_stat(st, name=name), f, st.st_size, placed=True)
            elif _stat.S_ISDIR(mode):
                b.directory(path, FileMetadata.from_stat(st, name=name), placed=True)
                subdirs.append((path, entry.path))
            elif _stat.S_ISLNK(mode):
                md = FileMetadata.from_stat(st, name=name)
                md.reparse_data = symlink_reparse(os.readlink(entry.path))
                b.file(path, md, io.BytesIO(), 0, placed=True)
            else:
                b.summary.warnings.append("%s: not a file, directory or symlink; skipped" % entry.path)
        todo.extend(reversed(subdirs))


# ---- tar sources -------------------------------------------------------------------------------------
def _open_tar(path: str, stack: List, b: _Builder) -> Tuple[tarfile.TarFile, tarstream.TarStream]:
    """The tar at ``path`` (plain, gzip, bzip2, xz or zstd) and the stream its data is read from."""
    raw = open(path, "rb", buffering=1 << 20)
    stack.append(raw)
    try:
        source, _ = tarstream.decompressed(raw)
    except tarstream.NeedsPackage:
        raise BuildError("%s is zstd-compressed; install the 'zstandard' package to read it" % path,
                         path=path) from None
    stream = tarstream.TarStream(source, name=path, threaded=b.helper_threads)
    stack.append(stream)
    try:
        return tarfile.open(fileobj=stream, mode="r:"), stream
    except _decode_errors() as e:
        if isinstance(e, CimError):
            raise
        raise BuildError("%s is not a tar archive (plain, gzip, bzip2, xz or zstd): %s" % (path, e),
                         path=path) from None


def _member_data(tar: tarfile.TarFile, stream: tarstream.TarStream, m: tarfile.TarInfo):
    """A regular member's data as a file object (straight from the read-ahead blocks unless sparse)."""
    if m.sparse is not None:
        return tar.extractfile(m)
    stream.seek(m.offset_data)  # normally a no-op: the header was the last thing read
    return tarstream.MemberData(stream, m.size)


def _tar_path(name: str) -> str:
    """The image path of a tar member name ("" for the root)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BuildError("tar entry %r climbs out of the image with '..'" % name, path=name)
    return "\\".join(parts)


def _time_arg(ticks: int):
    """FILETIME ticks as FileMetadata takes them: 0 is "no time" (None); ticks below 2**40 (the
    first 30 hours after 1601) would read as POSIX seconds, so they go as a datetime."""
    if ticks == 0:
        return None
    if ticks >= RAW_FILETIME_MIN:
        return ticks
    return datetime.datetime(1601, 1, 1) + datetime.timedelta(microseconds=ticks // 10)


def _fileattr(m: tarfile.TarInfo) -> int:
    """MSWINDOWS.fileattr (decimal, as go-winio writes it), or 0 when absent."""
    text = m.pax_headers.get(lt.FILEATTR, "0")
    try:
        return int(text, 10) & 0xFFFFFFFF
    except ValueError:
        raise BuildError("tar entry %r: MSWINDOWS.fileattr %r is not a decimal number" % (m.name, text),
                         path=m.name) from None


def _tar_metadata(m: tarfile.TarInfo, directory: bool) -> FileMetadata:
    pax = m.pax_headers
    where = m.name

    def when(key: str, fallback):
        text = pax.get(key)
        if text is None:
            return fallback
        try:
            return _time_arg(lt.filetime_from_pax(text))
        except ValueError as e:
            raise BuildError("tar entry %r: %s: %s" % (where, key, e), path=where) from None

    try:
        fallback = _time_arg(lt.filetime_from_pax(str(int(m.mtime))))
    except (ValueError, OverflowError):
        raise BuildError("tar entry %r: its modification time is out of range" % where, path=where) from None
    mtime = when("mtime", fallback)
    md = FileMetadata(last_write_time=mtime, last_access_time=when("atime", mtime),
                      change_time=when("ctime", mtime), creation_time=when(lt.CREATIONTIME, mtime))
    if lt.FILEATTR in pax:
        md.attributes = _fileattr(m)
    else:
        name = where.rstrip("/").rsplit("/", 1)[-1]
        md.attributes = (READONLY if not m.mode & 0o222 else 0) | (HIDDEN if name.startswith(".") else 0)
    md.attributes = (md.attributes | DIRECTORY) if directory else (md.attributes & ~DIRECTORY)
    try:
        if lt.RAWSD in pax:
            md.security_descriptor = lt.from_b64(pax[lt.RAWSD], "MSWINDOWS.rawsd")
        elif lt.SDDL in pax:
            raise BuildError("tar entry %r has a legacy SDDL security descriptor (MSWINDOWS.sd), which cannot be"
                             " converted here; re-export the layer with MSWINDOWS.rawsd" % where, path=where)
        if lt.RAW_EA in pax:
            md.ea = lt.from_b64(pax[lt.RAW_EA], "CIMFS.ea")
        else:
            eas = {k[len(lt.XATTR_PREFIX):]: lt.from_b64(v, k) for k, v in pax.items() if k.startswith(lt.XATTR_PREFIX)}
            md.ea = ea_buffer(eas) if eas else None
        if lt.RAW_REPARSE in pax:
            md.reparse_data = lt.from_b64(pax[lt.RAW_REPARSE], "CIMFS.reparse")
        elif m.issym():
            md.reparse_data = mount_point_reparse(m.linkname) if pax.get(lt.MOUNTPOINT) == "1" \
                else symlink_reparse(m.linkname)
    except ValueError as e:
        if isinstance(e, BuildError):
            raise
        raise BuildError("tar entry %r: %s" % (where, getattr(e, "reason", e)), path=where) from None
    if not md.reparse_data:
        md.attributes &= ~REPARSE_POINT
    return md


def _build_from_tar(path: str, b: _Builder, layer: bool) -> None:
    stack: List = []
    try:
        tar, stream = _open_tar(path, stack, b)
        stack.append(tar)
        for m in _members(tar, path):
            try:
                _tar_entry(tar, stream, m, b)
            except _decode_errors() as e:
                if isinstance(e, CimError):
                    raise
                raise BuildError("%s: damaged or truncated tar at %r: %s" % (path, m.name, e), path=path) from None
        if layer:
            _layer_hives(b)
    finally:
        for obj in reversed(stack):
            obj.close()


def _members(tar: tarfile.TarFile, path: str) -> Iterator[tarfile.TarInfo]:
    try:
        for m in tar:
            yield m
    except _decode_errors() as e:
        if isinstance(e, CimError):
            raise
        raise BuildError("%s: damaged or truncated tar: %s" % (path, e), path=path) from None


def _tar_entry(tar: tarfile.TarFile, stream: tarstream.TarStream, m: tarfile.TarInfo, b: _Builder) -> None:
    ads = lt.split_stream_name(m.name)
    if ads is not None:
        if not m.isreg():
            raise BuildError("alternate stream entry %r is not a regular file" % m.name, path=m.name)
        b.stream(_tar_path(ads[0]), ads[1], _member_data(tar, stream, m), m.size)
        return
    path = _tar_path(m.name)
    base = path.rpartition("\\")[2]
    if base.startswith(lt.WHITEOUT_PREFIX):
        parent = path.rpartition("\\")[0]
        if base == lt.OPAQUE_WHITEOUT:
            raise BuildError("opaque whiteout %r is not supported (Windows layers do not use them)" % m.name,
                             path=m.name)
        b.delete((parent + "\\" if parent else "") + base[len(lt.WHITEOUT_PREFIX):])
        return
    if m.islnk():
        b.link(path, _tar_path(m.linkname))
        return
    if m.isdir():
        b.directory(path, _tar_metadata(m, True))
        return
    if m.issym():
        if _fileattr(m) & DIRECTORY:  # a directory symlink or junction
            b.directory(path, _tar_metadata(m, True))
            b.summary.symlinks += 1
        else:
            b.file(path, _tar_metadata(m, False), io.BytesIO(), 0)
        return
    if m.isreg():
        md = _tar_metadata(m, False)
        # Sparse: our own record, or a tar sparse member with no data at all (GNU tar, our export).
        # A member with some data is stored zero-filled: the format has no partly sparse stream.
        sparse = m.pax_headers.get(lt.SPARSE) == "1" or (m.sparse is not None and not any(n for _, n in m.sparse))
        if m.sparse is not None and not sparse:
            data = sum(n for _, n in m.sparse)
            if m.size - data > max(MAX_HOLE_FILL, 8 * data):
                raise BuildError("tar entry %r is a sparse file of %d bytes with %d bytes of data: the image "
                                 "format would store its holes as zeros, and writing that many is refused"
                                 % (m.name, m.size, data), path=m.name)
        if sparse:
            md.attributes |= SPARSE_FILE
        if not path:
            raise BuildError("tar entry %r: a regular file cannot be the root" % m.name, path=m.name)
        b.file(path, md, _member_data(tar, stream, m), m.size, sparse=sparse)
        return
    b.summary.warnings.append("%s: %s entries are not files, directories or links; skipped"
                              % (m.name, {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
                                          tarfile.FIFOTYPE: "FIFO"}.get(m.type, "type %r" % m.type)))


def _build_from_package(path: str, b: _Builder, root_directory: Optional[str]) -> None:
    try:
        with msix.Package(path) as package:
            b.summary.package = package.identity.full_name
            for image_path_, md, info in package.entries(root_directory):
                if info is None:
                    b.directory(image_path_, md)
                    continue
                if info.file_size > MAX_PART_PLAIN and info.file_size > MAX_PART_RATIO * max(info.compress_size, 1):
                    raise BuildError("%s: part %r would inflate %d bytes into %d (a zip bomb?); refused"
                                     % (path, info.filename, info.compress_size, info.file_size), path=path)
                try:
                    with package.open(info) as part:
                        b.file(image_path_, md, part, info.file_size)
                except _PACKAGE_ERRORS as e:
                    if isinstance(e, CimError):
                        raise
                    raise BuildError("%s: damaged part %r: %s" % (path, info.filename, e), path=path) from None
    except msix.PackageError as e:
        raise BuildError(str(e), path=path) from None
    except _PACKAGE_ERRORS as e:
        if isinstance(e, CimError):
            raise
        raise BuildError("%s: damaged package: %s" % (path, e), path=path) from None


# What a damaged zip raises while it is read (CimError, an OSError too, is the writer's: re-raised).
# RuntimeError: zipfile's word for a part it cannot read without a password.
_PACKAGE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, OSError, RuntimeError)


def _layer_hives(b: _Builder) -> None:
    """What hcsshim adds when it imports a Windows layer (docs/api.md §8.3)."""
    config = "Files\\Windows\\System32\\config\\"
    if b.parent is None:
        present = [h for h in HIVES if b.exists(config + h)]
        if present:
            if not b.exists("Hives"):
                b.directory("Hives", FileMetadata())
            for h in present:
                b.link("Hives\\%s_BASE" % h, config + h)
            b.flush_links()
            b.file("layout", FileMetadata(attributes=0x80), io.BytesIO(b"vhd-with-hives\n"), 15)
    else:
        for h in HIVES:
            if b.exists("Hives\\%s_DELTA" % h):
                b.summary.warnings.append("Hives\\%s_DELTA: merging a registry delta into %s_BASE needs Windows'"
                                          " offline registry library; the delta is kept as it is" % (h, h))


# ---- the image file: temporary name, atomic replace ---------------------------------------------------------
def build(source, image, *, parent: Optional[str] = None, layer: bool = False, ignore_missing_links: bool = False,
          progress: Optional[Progress] = None, format_version: Optional[str] = None,
          expand_pe: bool = True, root_directory: Optional[str] = None, backend: str = "auto",
          on_collision: str = "error", on_invalid: str = "error", threads: Optional[int] = None) -> BuildSummary:
    """Build the image file ``image`` (a path ending in the ``.cim`` name; region files go beside it)
    from ``source``: a directory, a tar file (plain, gzip, bzip2, xz; zstd with ``zstandard``), or
    an MSIX/APPX package, unpacked under ``root_directory`` (msixmgr's ``-rootDirectory``) as
    ``<root_directory>/<PackageFullName>/``.

    ``parent`` names an image in the same directory to fork from (a layer
    stack is a chain of forks).  ``layer`` adds what hcsshim adds to a Windows
    layer (hive links and ``layout`` for a base layer).  An existing ``image``
    is replaced only once the new one is complete; its region files are
    removed if no other image in the directory uses them.  ``format_version``
    is "1.0", "2.0" or "3.0" (docs/format.md §18; default 2.0, or the parent's).
    ``expand_pe`` False stores PE files as plain data instead of PE-image streams.  ``backend`` is
    that of :meth:`Image.create` ("auto": Windows' cimfs.dll where present, else the portable writer).
    ``threads`` 1 does everything on the calling thread; by default (None) the source is read
    (decompressed, or walked) on a helper thread and large writes are hashed on another, beside
    the writes (README "Speed").  The image is byte-identical whatever it is.
    ``on_collision`` and ``on_invalid`` are the name policy (:mod:`.names`): by default a source
    with two names Windows sees as one, or a name Windows cannot hold, raises
    :class:`NameCollision` or :class:`InvalidName` (with the paths) and nothing is written; what
    the other choices renamed, skipped, merged or replaced is listed in ``summary.names``.
    """
    started = time.monotonic()
    source, image = os.fspath(source), os.fspath(image)
    directory, name = os.path.split(os.path.abspath(image))
    if not os.path.exists(source):
        raise BuildError("no such source: %s" % source, path=source)
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise BuildError("threads must be at least 1, not %r" % (threads,))
    try:
        names = NamePolicy(on_collision, on_invalid)
    except ValueError as e:
        raise BuildError(str(e)) from None
    is_package = os.path.isfile(source) and msix.looks_like_package(source)
    if root_directory is not None and not is_package:
        raise BuildError("--root-directory applies to MSIX/APPX packages only", path=source)
    parent_name = os.path.basename(parent) if parent else None
    if parent and os.path.dirname(os.path.abspath(os.path.join(directory, parent))) != directory:
        raise BuildError("the parent image must be in the image's directory (%s)" % directory, path=parent)
    os.makedirs(directory, exist_ok=True)
    progress = progress or Progress(enabled=False)
    summary = BuildSummary(image=image)
    parent_reader = open_image(os.path.join(directory, parent_name)) if parent_name else None

    def fill(img: Image) -> None:
        b = _Builder(img, parent_reader, summary, progress, ignore_missing_links, names, threads != 1)
        if os.path.isdir(source):
            if layer:
                raise BuildError("--layer takes a layer tar, not a directory", path=source)
            _build_from_directory(source, b)
        elif is_package:
            if layer:
                raise BuildError("--layer takes a layer tar, not a package", path=source)
            _build_from_package(source, b, root_directory)
        else:
            _build_from_tar(source, b, layer)
        b.finish()
        summary.names = names.events
        img.commit()

    options = dict(parent=parent_name, format_version=format_version, expand_pe=expand_pe, backend=backend,
                   threads=threads)
    try:
        if publish.can_stage(directory, fork=parent_name is not None):
            summary.warnings += ["removed %s, left by a build that was killed" % n
                                 for n in publish.remove_dead_builds(directory)]
            staging = publish.Staging(directory, name, parent_name)
            try:
                with Image.create(staging.path, name, **options) as img:
                    fill(img)
                staging.publish(summary.warnings)
            finally:
                staging.close()
        else:
            publish.build_in_place(directory, name, image, options, fill, summary.warnings)
    finally:
        if parent_reader is not None:
            parent_reader.close()
        progress.done()
    summary.seconds = time.monotonic() - started
    return summary


def _build_one_package(work) -> Tuple[str, Optional[BuildSummary], Optional[str]]:
    package, image, options = work
    try:
        return package, build(package, image, **options), None
    except (CimError, OSError) as e:
        return package, None, str(e)


def build_packages(folder, out_dir, *, jobs: int = 1, **options) -> List[Tuple[str, Optional[BuildSummary],
                                                                              Optional[str]]]:
    """Every .msix/.appx directly in ``folder`` into ``out_dir/NAME/NAME.cim`` (NAME: the package
    file's name without its suffix), ``jobs`` builds at once, each in a process of its own.  Each
    image gets its own directory: the unit an admin copies to the share.  ``options`` are
    those of :func:`build`.  Returns [(package, summary or None, error or None)], in name order;
    one package failing does not stop the others."""
    folder, out_dir = os.fspath(folder), os.fspath(out_dir)
    if not os.path.isdir(folder):
        raise BuildError("not a folder of packages: %s" % folder, path=folder)
    packages = msix.package_files(folder)
    if not packages:
        raise BuildError("no .msix or .appx packages in %s" % folder, path=folder)
    names = [os.path.splitext(os.path.basename(p))[0] for p in packages]
    clash = {n for n in names if [upcase(m) for m in names].count(upcase(n)) > 1}
    if clash:
        raise BuildError("packages that would share an output folder: %s" % ", ".join(sorted(clash)), path=folder)
    work = [(p, os.path.join(out_dir, n, n + ".cim"), options) for p, n in zip(packages, names)]
    if jobs <= 1 or len(work) == 1:
        return [_build_one_package(w) for w in work]
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(jobs, len(work))) as pool:
        return list(pool.map(_build_one_package, work))


# ---- the command -----------------------------------------------------------------------------------------
def add_build_command(command) -> None:
    c = command("build", cmd_build, "Build a CIM image from a directory, a (container layer) tar or an MSIX package.",
                ["cimfs build rootfs/ images/base.cim",
                 "cimfs build --layer layer1.tar.gz images/layer1.cim",
                 "cimfs build --layer --parent layer1.cim layer2.tar images/layer2.cim",
                 "cimfs build --root-directory msix MyApp_1.0.0.0_x64.msix appattach/MyApp.cim",
                 "cimfs build --packages --jobs 4 --root-directory msix packages/ appattach/"])
    c.add_argument("source", help="a directory, a tar file (plain, .gz, .bz2, .xz; .zst with 'zstandard'), "
                                  "an .msix/.appx package, or with --packages a folder of packages")
    c.add_argument("image", help="the .cim file to write (its directory holds the region files); "
                                 "with --packages, the folder that gets one NAME/NAME.cim per package")
    c.add_argument("--parent", metavar="PARENT", help="fork from this image (in the same directory)")
    c.add_argument("--layer", action="store_true",
                   help="a Windows container layer tar: also add hcsshim's Hives links and layout file")
    c.add_argument("--ignore-missing-links", action="store_true",
                   help="warn about, instead of failing on, hard links whose target is missing")
    c.add_argument("--format-version", choices=sorted(FORMAT_VERSIONS), default=None,
                   help="on-disk format version (default 2.0, or the parent's; 1.0 for Windows 10 20H2-era hosts, "
                        "3.0 for the newest; see docs/format.md)")
    c.add_argument("--root-directory", metavar="NAME",
                   help="packages: unpack into NAME\\<PackageFullName>\\ (msixmgr's -rootDirectory; "
                        "default: <PackageFullName>\\ at the image root)")
    c.add_argument("--backend", choices=("auto", "portable", "system"), default="auto",
                   help="the writer: Windows' cimfs.dll where present (auto), or this package's portable one")
    c.add_argument("--packages", action="store_true",
                   help="SOURCE is a folder of .msix/.appx packages: one image each, under IMAGE/NAME/NAME.cim")
    c.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="with --packages: build N packages at once (default: the number of CPUs)")
    c.add_argument("--on-collision", choices=("error", "keep-first", "keep-last", "rename"), default="error",
                   help="two source names that are one name on Windows (Index.html, index.html): stop "
                        "(default), keep the first, keep the last, or rename the later one (name~2.ext)")
    c.add_argument("--on-invalid", choices=("error", "skip", "rename", "keep"), default="error",
                   help="a name Windows cannot hold (':', trailing dot or space, CON, AUX.c, ...): stop "
                        "(default), skip it, repair it ('_'), or keep what the format can hold")
    c.add_argument("--no-pe-expansion", dest="expand_pe", action="store_false",
                   help="store executables as plain data, not as PE-image streams laid out for mapping "
                        "(Windows' default, ours too)")
    c.add_argument("--threads", type=int, default=None, metavar="N",
                   help="1: do everything on one thread; default: read the source and hash on helper threads "
                        "beside the writes (the image is the same either way)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary line")


def cmd_build(args) -> int:
    if args.packages or args.jobs is not None:
        return _cmd_build_packages(args)
    progress = Progress(enabled=False) if args.quiet else Progress()
    summary = build(args.source, args.image, parent=args.parent, layer=args.layer,
                    ignore_missing_links=args.ignore_missing_links, progress=progress,
                    format_version=args.format_version, expand_pe=args.expand_pe,
                    root_directory=args.root_directory, backend=args.backend,
                    on_collision=args.on_collision, on_invalid=args.on_invalid, threads=args.threads)
    for event in summary.names:
        print("cimfs: %s" % event, file=sys.stderr)
    for w in summary.warnings:
        print("cimfs: warning: %s" % w, file=sys.stderr)
    if not args.quiet:
        print(summary.line())
    return 0


def _cmd_build_packages(args) -> int:
    if not args.packages:
        raise BuildError("--jobs applies to --packages (a folder of packages)")
    if args.parent or args.layer:
        raise BuildError("--packages takes neither --parent nor --layer")
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise BuildError("--jobs must be at least 1")
    results = build_packages(args.source, args.image, jobs=jobs, format_version=args.format_version,
                             expand_pe=args.expand_pe, root_directory=args.root_directory,
                             ignore_missing_links=args.ignore_missing_links, backend=args.backend,
                             on_collision=args.on_collision, on_invalid=args.on_invalid)
    failed = 0
    for package, summary, error in results:
        if error is not None:
            failed += 1
            print("cimfs: error: %s: %s" % (package, error), file=sys.stderr)
        elif not args.quiet:
            print(summary.line())
    if not args.quiet or failed:
        print("%d of %d packages built" % (len(results) - failed, len(results)), file=sys.stderr)
    return 1 if failed else 0
