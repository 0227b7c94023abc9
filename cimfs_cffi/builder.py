"""The sink every source feeds: :class:`Builder` turns entries (directories,
files, links, alternate streams, whiteouts) into :class:`~cimfs_cffi.Image`
calls, with tar's link semantics and the name policy; :class:`BuildSummary`
counts what went in, :class:`Progress` shows it on a terminal.

Sources (:mod:`.from_directory`, :mod:`.from_tar`, :mod:`.from_package`)
each walk their input and call a Builder; :func:`cimfs_cffi.build` picks the
source and publishes the image.
"""
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Set, Tuple

from .errors import BuildError, PathNotFound
from .image import Image
from .metadata import FileMetadata, to_filetime
from .names import NamePolicy
from .paths import upcase
from .reader import CimImage, open_image

__all__ = ["Builder", "BuildSummary", "Progress", "STDIN"]

STDIN = "-"  # the source name of a tar read from standard input


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
    input_format: str = ""                  # "directory", "tar (gzip, zlib-ng)", "package", ...
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


def nothing() -> None:
    pass


def _key(path: str) -> str:
    return upcase(path)  # the image's own folding, not str.upper()


class Builder:
    """Applies source entries to an image: parents, links (bulk, tar semantics), whiteouts."""

    def __init__(self, image: Image, parent: Optional[CimImage], summary: BuildSummary, progress: Progress,
                 ignore_missing_links: bool, names: NamePolicy, helper_threads: bool = True,
                 reproducible: bool = False, time_limit: Optional[int] = None):
        self.image = image
        self.reproducible = reproducible       # directory sources: times from mtime only
        self.time_limit = time_limit           # SOURCE_DATE_EPOCH as a FILETIME: later times are clamped
        # Directories no entry names (a path's parents): no times, or SOURCE_DATE_EPOCH.
        self.implicit = FileMetadata(creation_time=time_limit, last_write_time=time_limit,
                                     change_time=time_limit, last_access_time=time_limit)
        self.helper_threads = helper_threads   # sources may read on a helper thread
        self.names = names                     # source paths -> image paths (names.py)
        self.parent = parent
        self.summary = summary
        self.progress = progress
        self.ignore_missing_links = ignore_missing_links
        self.dirs = {""}                       # upcased directories known to exist
        self.ready: List[Tuple[str, str]] = []  # links whose target exists now, not yet made
        self.touched: Set[str] = set()         # upcased names those links read or write
        self.later: List[Tuple[str, str]] = []  # links (image path, source target) whose target comes later
        self.made: Set[str] = set()            # upcased paths this build created (links resolve against it)
        self.gone: Set[str] = set()            # upcased paths whited out: the parent image's are hidden below
        self.before_image_call: Callable[[], None] = nothing  # set while host files are in flight

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
                self.writer.add_directory(parent, self.implicit)
                self.made.add(_key(parent))
                self.summary.directories += 1
            self.dirs.add(_key(parent))

    def clamped(self, md: FileMetadata) -> FileMetadata:
        """``md`` with no time later than SOURCE_DATE_EPOCH (when a reproducible build has one)."""
        limit = self.time_limit
        if limit is None:
            return md

        def clamp(t):
            return t if t is None or to_filetime(t) <= limit else limit
        return dataclasses.replace(md, creation_time=clamp(md.creation_time), last_write_time=clamp(md.last_write_time),
                                   change_time=clamp(md.change_time), last_access_time=clamp(md.last_access_time))

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
    def _place(self, path: str, is_dir: bool, placed: bool) -> Optional[str]:
        """The image path of a source path (``path`` itself when already ``placed``); None: left out."""
        return path if placed else self.names.map(path, is_dir)

    def directory(self, path: str, md: FileMetadata, placed: bool = False) -> None:
        image_path = self._place(path, True, placed)
        if image_path is None:
            return
        path = image_path
        if path:
            self.ensure_parents(path)
        self.before_change(path)
        self.writer.add_directory(path, self.clamped(md))
        self.dirs.add(_key(path))
        self.made.add(_key(path))
        self.summary.directories += 1 if path else 0

    def file(self, path: str, md: FileMetadata, source, size: int, sparse: bool = False, placed: bool = False) -> None:
        image_path = self._place(path, False, placed)
        if image_path is None:
            return
        path = image_path
        self.ensure_parents(path)
        self.before_change(path)
        md = self.clamped(md)
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
        image_path = self._place(path, False, placed)
        if image_path is None:
            return
        self._link(image_path, target)

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
        mapped = self.names.lookup(path)
        if mapped is None:
            return
        path = mapped
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
