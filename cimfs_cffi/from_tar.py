"""Tar sources (plain, gzip, bzip2, xz, zstd; Windows container layers) into a
:class:`~.builder.Builder`.

PAX ``MSWINDOWS.*``/``LIBARCHIVE.creationtime`` records (:mod:`.layertar`)
are honoured in every tar; without ``fileattr`` the mode and name give
READONLY/HIDDEN as for directories.  ``.wh.NAME`` whiteouts delete NAME (from
the parent image or earlier entries; a missing NAME is fine).  Hard links
follow tar semantics: a link binds to its target as the archive stands at the
link entry, even if the target is replaced later; a link to a target that
only comes later is made at the end.  The bytes come through
:mod:`.tarstream` (decompressed on a helper thread, handed over in blocks).
"""
import dataclasses
import datetime
import io
import lzma
import sys
import tarfile
import zlib
from typing import Iterator, List, Optional, Tuple, cast

from . import layertar as lt
from . import tarstream
from .builder import STDIN, Builder
from .errors import BuildError, CimError
from .metadata import (DIRECTORY, HIDDEN, RAW_FILETIME_MIN, READONLY, REPARSE_POINT, SPARSE_FILE, FileMetadata,
                       ea_buffer, mount_point_reparse, symlink_reparse)
from .tarheader import FastTarInfo

__all__ = ["add_tar", "MAX_HOLE_FILL", "HIVES"]

MAX_HOLE_FILL = 64 << 20       # zeros a partly sparse tar member may cost (more: refused)
HIVES = ("SYSTEM", "SOFTWARE", "SAM", "SECURITY", "DEFAULT")
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


def _open_tar(path: str, stack: List, b: Builder) -> Tuple[tarfile.TarFile, tarstream.TarStream]:
    """The tar at ``path`` (plain, gzip, bzip2, xz or zstd; ``-``: standard input) and the stream
    its data is read from."""
    raw: io.BufferedReader
    if path == STDIN:  # a pipe: read forward only, as everything here does; stdin itself stays open
        raw = io.BufferedReader(io.FileIO(sys.stdin.fileno(), "rb", closefd=False), 1 << 20)
    else:
        raw = cast(io.BufferedReader, open(path, "rb", buffering=1 << 20))  # "rb", buffered: a BufferedReader
    stack.append(raw)
    try:
        source, codec = tarstream.decompressed(raw)
    except tarstream.NeedsPackage:
        raise BuildError("%s is zstd-compressed; install the 'zstandard' package to read it" % path,
                         path=path) from None
    stream = tarstream.TarStream(source, name=path, threaded=b.helper_threads)
    b.summary.input_format = "tar (%s)" % codec
    stack.append(stream)
    try:
        # typeshed's fileobj protocol also wants write(), which the read-only TarStream lacks
        return tarfile.open(fileobj=stream, mode="r:", tarinfo=FastTarInfo), stream  # type: ignore[call-overload]
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


def add_tar(path: str, b: Builder, layer: bool) -> None:
    """Every member of the tar at ``path``; ``layer``: then what hcsshim adds to a Windows layer."""
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
        try:
            stream.drain()
        except _decode_errors() as e:
            raise BuildError("%s: damaged archive after the tar's last entry: %s" % (path, e), path=path) from None
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


def _tar_entry(tar: tarfile.TarFile, stream: tarstream.TarStream, m: tarfile.TarInfo, b: Builder) -> None:
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
        sparse_map = cast(Optional[List[Tuple[int, int]]], m.sparse)  # (offset, size) pairs; typeshed says bytes
        sparse = m.pax_headers.get(lt.SPARSE) == "1" or (sparse_map is not None and not any(n for _, n in sparse_map))
        if sparse_map is not None and not sparse:
            data = sum(n for _, n in sparse_map)
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


def _layer_hives(b: Builder) -> None:
    """What hcsshim adds when it imports a Windows layer (docs/api.md §8.3)."""
    config = "Files\\Windows\\System32\\config\\"
    if b.parent is None:
        present = [h for h in HIVES if b.exists(config + h)]
        if present:
            if not b.exists("Hives"):
                b.directory("Hives", b.implicit)
            for h in present:
                b.link("Hives\\%s_BASE" % h, config + h)
            b.flush_links()
            b.file("layout", dataclasses.replace(b.implicit, attributes=0x80), io.BytesIO(b"vhd-with-hives\n"), 15)
    else:
        for h in HIVES:
            if b.exists("Hives\\%s_DELTA" % h):
                b.summary.warnings.append("Hives\\%s_DELTA: merging a registry delta into %s_BASE needs Windows'"
                                          " offline registry library; the delta is kept as it is" % (h, h))
