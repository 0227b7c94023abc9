"""``cimfs export``: an image as a Windows-layer style PAX tar (vocabulary in :mod:`.layertar`).

Entries come parents first.  The first name of a file carries its data and
metadata; its other names are hard-link entries.  Alternate streams follow
their file as ``path:stream:$DATA`` entries.  The root's metadata is a
``./`` entry when it differs from the writer's default, so building the tar
again gives an image the reader sees as identical.
"""
import io
import os
import tarfile
import sys
import tempfile
from typing import Dict, Optional, cast

from . import layertar as lt
from .metadata import DIRECTORY, ea_buffer, mount_point_reparse, parse_ea_buffer, parse_reparse, symlink_reparse
from .reader import NULL_DACL_SD, CimImage, FileInfo, corrupt, open_image

__all__ = ["export"]

_COMPRESSION = {".gz": "gz", ".tgz": "gz", ".bz2": "bz2", ".xz": "xz"}


def _pax(t: tarfile.TarInfo) -> Dict[str, str]:
    """``t.pax_headers``, which tarfile keeps as a dict (typeshed says a read-only Mapping)."""
    return cast(Dict[str, str], t.pax_headers)


def _pax_metadata(info: FileInfo, is_root: bool = False) -> Optional[Dict[str, str]]:
    """The PAX records of a file's metadata (None for a root that has only defaults)."""
    rec = info._rec
    sd = info.security_descriptor
    if is_root and not any(rec.times) and info.attributes == DIRECTORY and sd in (None, NULL_DACL_SD) \
            and not rec.ea_offset and not rec.reparse_offset:
        return None
    pax = {lt.FILEATTR: str(info.attributes),
           "mtime": lt.pax_time(rec.times[1]), "atime": lt.pax_time(rec.times[3]),
           "ctime": lt.pax_time(rec.times[2]), lt.CREATIONTIME: lt.pax_time(rec.times[0])}
    if sd is not None:
        pax[lt.RAWSD] = lt.b64(sd)
    ea = info.ea
    if ea:
        try:
            entries = parse_ea_buffer(ea)
            names_ok = all(0 < len(n) <= 254 and n.isascii() for n, _, _ in entries)
        except ValueError:
            entries, names_ok = [], False
        if names_ok:
            for name, value, _flags in entries:
                pax[lt.XATTR_PREFIX + name.decode("ascii")] = lt.b64(value)
        if not names_ok or ea_buffer({n: v for n, v, _ in entries}) != ea:
            pax[lt.RAW_EA] = lt.b64(ea)
    return pax


def _link_entry(info: FileInfo, tar_info: tarfile.TarInfo) -> None:
    """Make a reparse point a symlink entry where the buffer is a link we rebuild exactly."""
    data = info.reparse_data
    if data is None:
        return
    link = parse_reparse(data)
    if link is not None and info.size == 0:
        try:
            rebuilt = mount_point_reparse(link.target) if link.is_mount_point else \
                symlink_reparse(link.target, relative=link.relative)
        except ValueError:
            rebuilt = None
        tar_info.type = tarfile.SYMTYPE
        tar_info.linkname = link.target.replace("\\", "/")
        tar_info.mode = 0o777
        if link.is_mount_point:
            _pax(tar_info)[lt.MOUNTPOINT] = "1"
        if rebuilt == data:
            return
    _pax(tar_info)[lt.RAW_REPARSE] = lt.b64(data)


def _ustar_mtime(info: FileInfo) -> int:
    """The ustar header's mtime (whole seconds in its range); the PAX record has the exact time."""
    return max(0, min(int(info.st_mtime), 8 ** 11 - 1))


def _entry(name: str, info: FileInfo, pax: Dict[str, str]) -> tarfile.TarInfo:
    t = tarfile.TarInfo(name)
    t.mtime = _ustar_mtime(info)
    t.mode = 0o755 if info.is_dir else (0o444 if info.attributes & 1 else 0o644)
    t.pax_headers = pax
    return t


def _add_sparse(tar: tarfile.TarFile, t: tarfile.TarInfo) -> None:
    """A stream that is all hole, as a GNU sparse 1.0 member in PAX (what GNU tar writes for a
    file with no data): the name and real size in PAX records, a one-entry map as the data, no
    zeros.  tar, bsdtar and Python's tarfile read it back as a sparse file of that size."""
    sparse_map = ("1\n%d\n0\n" % t.size).encode().ljust(tarfile.BLOCKSIZE, b"\0")
    _pax(t).update({"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": t.name,
                    "GNU.sparse.realsize": str(t.size)})
    directory, _, base = t.name.rpartition("/")
    t.name = (directory + "/" if directory else "") + "GNUSparseFile.0/" + base
    t.size = len(sparse_map)
    tar.addfile(t, io.BytesIO(sparse_map))


def _write_streams(tar: tarfile.TarFile, image: CimImage, name: str, info: FileInfo) -> int:
    """The alternate streams of a file as ``name:stream:$DATA`` entries; returns how many."""
    streams = image.streams_of(info._rec)
    for stream, s in streams.items():
        t = tarfile.TarInfo("%s:%s%s" % (name, stream, lt.STREAM_SUFFIX))
        t.size, t.mtime, t.mode = s.length, _ustar_mtime(info), 0o644
        if s.sparse:
            t.pax_headers = {lt.SPARSE: "1"}
            _add_sparse(tar, t)
            continue
        with image.stream_reader(t.name, s) as f:
            tar.addfile(t, f)
    return len(streams)


def export(image_path, out_path, *, progress=None) -> Dict[str, int]:
    """Write the image at ``image_path`` as a PAX tar to ``out_path`` (``.gz``/``.bz2``/``.xz``
    compress; ``"-"``: an uncompressed tar to standard output).  A file appears only when
    complete.  Returns counts of entries written."""
    out_path = os.fspath(out_path)
    if out_path == "-":
        out = sys.stdout.buffer
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            counts = _write_tar(image_path, tar, progress)
        out.flush()
        return counts
    mode = "w:" + _COMPRESSION.get(os.path.splitext(out_path)[1].lower(), "")
    directory = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=".cimfs-export-", suffix=".tmp", dir=directory)
    try:
        # The ignore: mode is computed ("w:" to "w:xz"), and typeshed's overloads each want a literal one.
        with os.fdopen(fd, "wb") as raw, \
                tarfile.open(fileobj=raw, mode=mode, format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            counts = _write_tar(image_path, tar, progress)
        os.replace(tmp, out_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return counts


def _write_tar(image_path, tar: tarfile.TarFile, progress) -> Dict[str, int]:
    counts = {"files": 0, "directories": 0, "links": 0, "streams": 0, "bytes": 0}
    with open_image(image_path) as image:
        first_name: Dict[int, str] = {}
        for path, rec in image.iter_tree():
            info = FileInfo(image, rec, path)
            if ":" in path or "/" in path:
                raise corrupt("name %r cannot be written to a tar (':' and '/' are separators there)" % path)
            name = path.replace("\\", "/")
            if not path:
                pax = _pax_metadata(info, is_root=True)
                if pax is not None:
                    t = _entry("./", info, pax)
                    t.type = tarfile.DIRTYPE
                    tar.addfile(t)
                    _write_streams(tar, image, ".", info)
                continue
            if rec.id in first_name:
                t = tarfile.TarInfo(name)
                t.type, t.linkname = tarfile.LNKTYPE, first_name[rec.id]
                tar.addfile(t)
                counts["links"] += 1
                continue
            first_name[rec.id] = name
            t = _entry(name, info, cast(Dict[str, str], _pax_metadata(info)))  # None only for the root
            if rec.is_dir:
                t.type = tarfile.DIRTYPE
                counts["directories"] += 1
            else:
                t.size = info.size
                counts["files"] += 1
                counts["bytes"] += info.size
                if rec.sparse:
                    _pax(t)[lt.SPARSE] = "1"
            _link_entry(info, t)
            if t.type == tarfile.REGTYPE and rec.sparse:
                _add_sparse(tar, t)
            elif t.type == tarfile.REGTYPE:
                with image.stream_reader(name, rec.default_stream) as f:
                    tar.addfile(t, f)
            else:
                tar.addfile(t)
            counts["streams"] += _write_streams(tar, image, name, info)
            if progress:
                progress(counts)
    return counts
