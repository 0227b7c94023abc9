"""Compare two trees: names, kinds, sizes, bytes, alternate streams and which names share a file.

Each side is a directory (a source tree, an extracted image, or on Windows a mounted image such
as ``\\\\?\\Volume{GUID}\\``), a ``.cim`` image (read with cimfs_cffi's reader), a tar, or an
``.msix``/``.appx`` package (laid out as ``cimfs build`` lays it out, under ``--root-directory``).
Names match case-insensitively through Windows' upcase table, as inside an image.

    python tools/compare_tree.py EXPECTED ACTUAL [--root-directory NAME]

Prints one line per difference and exits 1 if there is any.  The Windows check
(tools/windows_mount_check.py) uses it to compare what Windows' CimFS driver mounts with the
source an image was built from; the test suite runs it everywhere else.
"""
import argparse
import hashlib
import os
import stat
import sys
import tarfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from cimfs_cffi import open_image
from cimfs_cffi.msix import Package, looks_like_package
from cimfs_cffi.paths import upcase


@dataclass
class Entry:
    name: str                     # the path as spelled, "\\"-separated
    kind: str                     # "dir", "file" or "symlink"
    size: int = 0
    digest: str = ""
    streams: Dict[str, str] = field(default_factory=dict)
    file: object = None           # identity of the underlying file: names with equal ones are hard links


def _sha256(chunks) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def _read_chunks(f, size=1 << 20):
    while True:
        b = f.read(size)
        if not b:
            return
        yield b


def _windows_streams(path: str) -> Dict[str, str]:
    """Alternate data streams of a file on Windows (FindFirstStreamW), by name, hashed."""
    import ctypes
    from ctypes import wintypes

    class WIN32_FIND_STREAM_DATA(ctypes.Structure):
        _fields_ = [("StreamSize", ctypes.c_longlong), ("cStreamName", ctypes.c_wchar * 296)]

    k32 = ctypes.WinDLL("kernel32", use_last_error=True)
    k32.FindFirstStreamW.restype = wintypes.HANDLE
    data = WIN32_FIND_STREAM_DATA()
    handle = k32.FindFirstStreamW(path, 0, ctypes.byref(data), 0)
    if handle in (None, wintypes.HANDLE(-1).value):
        return {}
    streams = {}
    try:
        while True:
            name = data.cStreamName  # ":name:$DATA"; "::$DATA" is the file itself
            if name != "::$DATA":
                short = name[1:].rsplit(":", 1)[0]
                with open(path + ":" + short, "rb") as f:
                    streams[short] = _sha256(_read_chunks(f))
            if not k32.FindNextStreamW(handle, ctypes.byref(data)):
                break
    finally:
        k32.FindClose(handle)
    return streams


def from_directory(root: str) -> Dict[str, Entry]:
    entries = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(top, name)
            rel = os.path.relpath(full, root).replace(os.sep, "\\")
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                entries[upcase(rel)] = Entry(rel, "symlink")
            elif stat.S_ISDIR(st.st_mode):
                entries[upcase(rel)] = Entry(rel, "dir")
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    digest = _sha256(_read_chunks(f))
                streams = _windows_streams(full) if os.name == "nt" else {}
                entries[upcase(rel)] = Entry(rel, "file", st.st_size, digest, streams,
                                             (st.st_dev, st.st_ino) if st.st_nlink > 1 else rel)
    return entries


def from_image(path: str) -> Dict[str, Entry]:
    entries = {}
    with open_image(path) as img:
        for rel, rec in img.iter_tree():
            if not rel:
                continue
            info = img.stat(rel)
            if info.is_dir:
                entries[upcase(rel)] = Entry(rel, "dir")
            elif info.is_symlink:
                entries[upcase(rel)] = Entry(rel, "symlink")
            else:
                with img.open(rel) as f:
                    digest = _sha256(_read_chunks(f))
                streams = {}
                for name in img.streams(rel):
                    with img.open(rel, stream=name) as f:
                        streams[name] = _sha256(_read_chunks(f))
                entries[upcase(rel)] = Entry(rel, "file", info.size, digest, streams, rec.id)
    return entries


def from_tar(path: str) -> Dict[str, Entry]:
    entries, files = {}, {}
    with tarfile.open(path) as tf:
        for m in tf:
            rel = m.name.rstrip("/").replace("/", "\\")
            if rel in ("", "."):
                continue
            rel = rel[2:] if rel.startswith(".\\") else rel
            if ":" in rel and m.isreg():  # "path:stream:$DATA", the layer-tar spelling of a stream
                owner, stream = rel.split(":")[:2]
                entries[upcase(owner)].streams[stream] = _sha256(_read_chunks(tf.extractfile(m)))
                continue
            if m.isdir():
                entries[upcase(rel)] = Entry(rel, "dir")
            elif m.issym():
                entries[upcase(rel)] = Entry(rel, "symlink")
            elif m.islnk():
                target = files[upcase(m.linkname.replace("/", "\\").lstrip(".\\"))]
                entries[upcase(rel)] = Entry(rel, "file", target.size, target.digest, {}, target.file)
            elif m.isreg():
                f = tf.extractfile(m)
                entries[upcase(rel)] = files[upcase(rel)] = Entry(rel, "file", m.size, _sha256(_read_chunks(f)),
                                                                  {}, rel)
    for rel in list(entries):  # parents the tar leaves implicit
        parts = entries[rel].name.split("\\")
        for i in range(1, len(parts)):
            parent = "\\".join(parts[:i])
            entries.setdefault(upcase(parent), Entry(parent, "dir"))
    return entries


def from_package(path: str, root_directory: Optional[str]) -> Dict[str, Entry]:
    entries = {}
    with Package(path) as pkg:
        for rel, _md, info in pkg.entries(root_directory):
            if info is None:
                entries[upcase(rel)] = Entry(rel, "dir")
            else:
                with pkg.open(info) as f:
                    entries[upcase(rel)] = Entry(rel, "file", info.file_size, _sha256(_read_chunks(f)), {}, rel)
    return entries


def load(path: str, root_directory: Optional[str] = None) -> Dict[str, Entry]:
    if os.path.isdir(path):
        return from_directory(path)
    if looks_like_package(path):
        return from_package(path, root_directory)
    if tarfile.is_tarfile(path):
        return from_tar(path)
    return from_image(path)


def _link_groups(entries: Dict[str, Entry]) -> Dict[str, frozenset]:
    groups: Dict[object, set] = {}
    for key, e in entries.items():
        if e.kind == "file":
            groups.setdefault(e.file, set()).add(key)
    return {key: frozenset(g) for g in groups.values() for key in g}


def compare(expected: Dict[str, Entry], actual: Dict[str, Entry]) -> List[str]:
    """Every difference, one line each (empty when the trees match)."""
    out = []
    for key in sorted(set(expected) | set(actual)):
        e, a = expected.get(key), actual.get(key)
        if a is None:
            out.append("missing: %s" % e.name)
        elif e is None:
            out.append("unexpected: %s" % a.name)
        elif e.name != a.name:
            out.append("spelled %s, expected %s" % (a.name, e.name))
        elif e.kind != a.kind:
            out.append("%s: a %s, expected a %s" % (e.name, a.kind, e.kind))
        elif e.kind == "file" and (e.size, e.digest) != (a.size, a.digest):
            out.append("%s: content differs (%d bytes, expected %d)" % (e.name, a.size, e.size))
        elif e.kind == "file" and e.streams != a.streams:
            out.append("%s: alternate streams differ (%s, expected %s)" % (e.name, sorted(a.streams),
                                                                          sorted(e.streams)))
    links_e, links_a = _link_groups(expected), _link_groups(actual)
    for key in sorted(set(links_e) & set(links_a)):
        if links_e[key] != links_a[key]:
            out.append("%s: shares its file with %s, expected %s"
                       % (expected[key].name, sorted(actual[k].name for k in links_a[key]),
                          sorted(expected[k].name for k in links_e[key])))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("expected")
    ap.add_argument("actual")
    ap.add_argument("--root-directory", default=None, help="where a package side lands (as cimfs build)")
    args = ap.parse_args(argv)
    differences = compare(load(args.expected, args.root_directory), load(args.actual, args.root_directory))
    for line in differences:
        print(line)
    print("%s: %d differences" % (args.actual, len(differences)), file=sys.stderr)
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
