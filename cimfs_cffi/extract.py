"""``cimfs extract``: an image's tree onto a POSIX filesystem, never outside the destination.

* Hard links become hard links; symlink reparse points become symlinks when
  their target, resolved inside the image (following the image's own
  symlinks), stays inside the destination; junctions and absolute or escaping
  targets are not followed: the file is kept empty with its reparse buffer in
  an xattr.
* What POSIX cannot hold is kept in ``user.cimfs.*`` xattrs where the
  filesystem allows (``attributes`` for HIDDEN/SYSTEM/ARCHIVE/SPARSE,
  ``sd`` for a non-default security descriptor, ``ea``, ``reparse``,
  ``stream.<name>`` per alternate stream) and reported otherwise.
* READONLY files get mode 0444, others 0644; directories 0755.  Times are
  set from the image (creation time has no POSIX home).
* The destination must be empty or absent.  Names are checked (no ``/``,
  NUL, ``.`` or ``..``), files are created with ``O_EXCL|O_NOFOLLOW``, and
  nothing is ever written through a symlink.
"""
import os
import posixpath
import shutil
from typing import Dict, List, Optional, Set, Tuple

from .metadata import IO_REPARSE_TAG_SYMLINK, parse_reparse
from .errors import PathNotFound
from .reader import (ATTR_ARCHIVE, ATTR_HIDDEN, ATTR_READONLY, ATTR_SPARSE, ATTR_SYSTEM, NULL_DACL_SD,
                     UNIX_EPOCH_FILETIME, CimImage, FileInfo, open_image)

__all__ = ["extract", "safe_link_target"]

XATTR_PREFIX = "user.cimfs."
_KEPT_ATTRS = ATTR_HIDDEN | ATTR_SYSTEM | ATTR_ARCHIVE | ATTR_SPARSE
_MAX_SYMLINK_HOPS = 40
_CHUNK = 1 << 20


def _valid_name(name: str) -> bool:
    """A name this system can create as one name: not empty, ".", "..", nor holding a separator
    (``/``, or ``\\``, which only a damaged or hostile image puts inside a name) or NUL."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def safe_link_target(image: CimImage, link_path: str, target: str) -> bool:
    """Whether a relative symlink at ``link_path`` (an image path) resolves inside the image root.

    Both ways must keep it inside.  Lexically: no ``..`` may climb above the root (so
    ``a/../../..`` is refused even while ``a`` does not exist: whoever creates ``a`` later would
    open the way out).  And through the image, component by component, following its symlinks
    (at most 40 hops), so ``..`` after a symlink is judged where the kernel would take it; a
    component that does not exist ends that walk safely (the kernel fails there too).
    """
    parts = [p for p in link_path.split("\\") if p][:-1]
    pending = [c for c in target.replace("\\", "/").split("/")]
    if target.startswith(("/", "\\")) or (len(target) > 1 and target[1] == ":"):
        return False
    depth = len(parts)
    for comp in pending:
        depth += -1 if comp == ".." else (0 if comp in ("", ".") else 1)
        if depth < 0:
            return False
    hops = 0
    while pending:
        comp = pending.pop(0)
        if comp in ("", "."):
            continue
        if ":" in comp:
            return False  # the reader would take it for a stream; do not guess
        if comp == "..":
            if not parts:
                return False
            parts.pop()
            continue
        try:
            info = image.stat("\\".join(parts + [comp]))
        except PathNotFound:
            return True
        data, link = info.reparse_data, None
        if data is not None:
            if info.reparse_tag != IO_REPARSE_TAG_SYMLINK:
                return False  # a junction or other reparse point: where it leads is not ours to judge
            link = parse_reparse(data)
        if link is None:
            parts.append(comp)
            continue
        hops += 1
        if hops > _MAX_SYMLINK_HOPS or not link.relative:
            return False
        pending = link.target.replace("\\", "/").split("/") + pending
    return True


class _Extractor:
    def __init__(self, image: CimImage, dest: str, allow_escaping_links: bool = False):
        self.image = image
        self.dest = dest
        self.allow_escaping_links = allow_escaping_links
        self.report: List[str] = []
        self.refused: List[str] = []  # entries not extracted as the image has them, for safety
        self.first_path: Dict[int, str] = {}
        self.dirs: List[Tuple[str, FileInfo]] = []
        self.can_xattr = hasattr(os, "setxattr")
        self.counts = {"files": 0, "directories": 0, "links": 0, "symlinks": 0, "bytes": 0}

    def host(self, path: str) -> str:
        return os.path.join(self.dest, *path.split("\\")) if path else self.dest

    def xattr(self, path: str, host: str, key: str, value: bytes, what: str) -> None:
        if not self.can_xattr:
            self.report.append("%s: %s not kept (no xattrs on this OS)" % (path or "\\", what))
            return
        try:
            os.setxattr(host, XATTR_PREFIX + key, value, follow_symlinks=False)
        except OSError as e:
            self.report.append("%s: %s not kept (xattr %s%s: %s)" % (path or "\\", what, XATTR_PREFIX, key,
                                                                    e.strerror or e))

    def run(self) -> None:
        root = self.image.record(self.image.root_id, "\\")
        self.first_path[root.id] = ""
        self.entry("", FileInfo(self.image, root, ""))
        refused_dirs: Set[str] = set()  # below these, nothing is extracted
        for prefix, entries in self.image.directory_entries(root, ""):
            base = prefix + "\\" if prefix else ""
            if prefix in refused_dirs:
                refused_dirs.update(base + name for name, rec in entries if rec.is_dir)
                continue
            for name, rec in entries:
                path = base + name
                if not _valid_name(name):  # judged per name: a path joined with "\\" would hide it
                    self.refused.append("%r: a name that cannot be one name here (a separator, NUL, '.' or '..'); "
                                        "refused%s" % (path, " with everything below it" if rec.is_dir else ""))
                    if rec.is_dir:
                        refused_dirs.add(path)
                    continue
                info = FileInfo(self.image, rec, path)
                if rec.id in self.first_path:
                    os.link(self.host(self.first_path[rec.id]), self.host(path), follow_symlinks=False)
                    self.counts["links"] += 1
                    continue
                self.first_path[rec.id] = path
                self.entry(path, info)
        for path, info in reversed(self.dirs):
            self.times(path, self.host(path), info)

    def entry(self, path: str, info: FileInfo) -> None:
        host = self.host(path)
        rec = info._rec
        reparse = info.reparse_data
        target = self.symlink_target(path, info, reparse)
        if target is not None:
            os.symlink(target, host)
            self.counts["symlinks"] += 1
        else:
            if info.is_dir:
                if path:
                    os.mkdir(host, 0o755)
                self.dirs.append((path, info))
                self.counts["directories"] += 1
            else:
                self.write_file(path, host, info)
            if reparse is not None:  # not made a symlink: keep the buffer
                self.xattr(path, host, "reparse", reparse, "reparse point (tag 0x%08x)" % rec.reparse_tag)
        if info.attributes & _KEPT_ATTRS:
            self.xattr(path, host, "attributes", str(info.attributes).encode(), "attributes 0x%x" % info.attributes)
        sd = info.security_descriptor
        if sd is not None and sd != NULL_DACL_SD:
            self.xattr(path, host, "sd", sd, "security descriptor")
        if info.ea:
            self.xattr(path, host, "ea", info.ea, "extended attributes")
        for stream, s in self.image.streams_of(rec).items():
            with self.image.stream_reader(stream, s) as f:
                self.xattr(path, host, "stream." + stream, f.read(), "alternate stream %r" % stream)
        if not info.is_dir:
            self.times(path, host, info)

    def symlink_target(self, path: str, info: FileInfo, data: Optional[bytes]) -> Optional[str]:
        """The POSIX target for a symlink reparse point (``data``) that is safe to create, else None."""
        if data is None:
            return None
        link = parse_reparse(data)
        if info.is_dir:
            table = self.image.directory_table(info._rec, path)
            empty = table is None or table.count == 0
        else:
            empty = info.size == 0
        if link is None or link.is_mount_point or not empty:
            self.report.append("%s: reparse point (tag 0x%08x) kept as a plain %s" % (
                path, info.reparse_tag, "directory" if info.is_dir else "file"))
            return None
        target = link.target.replace("\\", "/")
        if not link.relative or not safe_link_target(self.image, path, link.target):
            if self.allow_escaping_links:
                self.report.append("%s: symlink to %r leads outside the destination; made, as asked" % (path, link.target))
                return target
            self.refused.append("%s: symlink to %r leads outside the destination; refused (kept as a plain %s; "
                                "--allow-escaping-links makes it)" % (path, link.target,
                                                                      "directory" if info.is_dir else "file"))
            return None
        return posixpath.normpath(target) if target else None

    def write_file(self, path: str, host: str, info: FileInfo) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(host, flags, 0o644)
        rec = info._rec
        with os.fdopen(fd, "wb") as out:
            if rec.sparse:  # all zeros: a hole, however large the stream claims to be
                out.truncate(rec.stream_length)
            else:
                with self.image.stream_reader(path, rec.default_stream) as src:
                    shutil.copyfileobj(src, out, _CHUNK)
        if info.attributes & ATTR_READONLY:
            os.chmod(host, 0o444)
        self.counts["files"] += 1
        self.counts["bytes"] += info.size

    def times(self, path: str, host: str, info: FileInfo) -> None:
        rec = info._rec
        atime, mtime = rec.times[3], rec.times[1]
        if not mtime:
            return
        to_ns = lambda t: (t - UNIX_EPOCH_FILETIME) * 100  # noqa: E731
        try:
            os.utime(host, ns=(to_ns(atime or mtime), to_ns(mtime)), follow_symlinks=False)
        except (OSError, NotImplementedError, OverflowError) as e:
            self.report.append("%s: times not set (%s)" % (path or "\\", e))


def extract(image_path, dest, *, allow_escaping_links: bool = False) -> Tuple[Dict[str, int], List[str]]:
    """Extract the image at ``image_path`` into ``dest`` (created; must be empty if it exists).

    Returns (counts, report): counts of files, directories, links, symlinks, bytes and
    ``refused`` entries, and one line for everything that could not be kept exactly.  Refused
    are entries that would reach outside ``dest``: names holding a separator (with what is below
    them) and symlinks whose target leads out (kept as plain files, unless
    ``allow_escaping_links``); their lines come first in the report.  If it stops early (an
    error, Ctrl-C, SIGTERM), what it wrote is removed again: ``dest`` is left as it was.
    """
    dest = os.fspath(dest)
    created = not os.path.lexists(dest)
    if not created:
        if os.path.islink(dest) or not os.path.isdir(dest):
            raise FileExistsError(17, "destination exists and is not a directory", dest)
        if os.listdir(dest):
            raise FileExistsError(17, "destination directory is not empty", dest)
    else:
        os.makedirs(dest)
    try:
        with open_image(image_path) as image:
            ex = _Extractor(image, dest, allow_escaping_links)
            ex.run()
            ex.counts["refused"] = len(ex.refused)
            return ex.counts, ex.refused + ex.report
    except BaseException:
        _remove_written(dest, created)
        raise


def _remove_written(dest: str, created: bool) -> None:
    """Undo a partial extraction: ``dest`` was empty (or absent) when it began."""
    def writable(func, path, _exc):  # read-only files and directories of the image
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        func(path)

    for name in os.listdir(dest):
        p = os.path.join(dest, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, onerror=writable)
        else:
            os.unlink(p)
    if created:
        os.rmdir(dest)
