"""Windows proves it: images from the portable writer mounted by Windows' own CimFS driver, and
images from Windows' cimfs.dll read by our reader, each compared with its source.

Runs on Windows with CimFS (Windows Server 2022 20348.2031+ or build 26100+) as an administrator;
the GitHub Actions job .github/workflows/windows.yml runs it on windows-latest.

1. Makes sources: a directory (sizes around every threshold, a hard link, names Windows keeps
   apart such as "ı" and "I", a real PE file: this Python's own python.exe), a tar of it that
   adds an alternate stream (``f1.bin:Zone.Identifier:$DATA``), and an MSIX package holding it.
2. For each source and each format version (1.0, 2.0, 3.0): `cimfs build --backend portable`,
   mount with CimMountImage through the system backend, compare the mounted volume with the
   source (tools/compare_tree.py: names, kinds, sizes, bytes, streams, hard links), dismount.
3. The other way: `cimfs build --backend system` (cimfs.dll) from the directory, then compare the
   image, read with cimfs_cffi's reader, with the source; `cimfs verify` must find no error.

Prints one line per check and exits 1 if any failed.
"""
import io
import os
import shutil
import sys
import tarfile
import tempfile
import uuid
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_tree  # noqa: E402

from cimfs_cffi import ffi, lib, select_backend, verify  # noqa: E402
from cimfs_cffi import build  # noqa: E402

MANIFEST = """<?xml version="1.0" encoding="utf-8"?>
<Package xmlns="http://schemas.microsoft.com/appx/manifest/foundation/windows10">
  <Identity Name="CimfsCffi.Check" Publisher="CN=cimfs_cffi" Version="1.0.0.0" ProcessorArchitecture="x64"/>
</Package>
"""


def make_sources(work: str):
    tree = os.path.join(work, "tree")
    os.makedirs(os.path.join(tree, "sub", "deeper"))
    for size in (0, 1, 24, 25, 1024, 1025, 4095, 4096, 4097, 300000):
        with open(os.path.join(tree, "f%d.bin" % size), "wb") as f:
            f.write(os.urandom(size))
    for name in ("\u0131", "I", "\u03c2", "\u03c3", "Mixed Case.txt"):
        with open(os.path.join(tree, "sub", name), "w", encoding="utf-8") as f:
            f.write(name)
    shutil.copy(sys.executable, os.path.join(tree, "sub", "deeper", "python.exe"))  # a real PE image
    os.link(os.path.join(tree, "f1025.bin"), os.path.join(tree, "sub", "linked.bin"))
    tar = os.path.join(work, "tree.tar")
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(os.listdir(tree)):
            tf.add(os.path.join(tree, name), name)
        zone = b"[ZoneTransfer]\r\nZoneId=3\r\n"
        info = tarfile.TarInfo("f1.bin:Zone.Identifier:$DATA")
        info.size = len(zone)
        tf.addfile(info, io.BytesIO(zone))
    package = os.path.join(work, "check.msix")
    with zipfile.ZipFile(package, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("AppxManifest.xml", MANIFEST)
        for top, _, files in os.walk(tree):
            for name in files:
                full = os.path.join(top, name)
                zf.write(full, os.path.relpath(full, tree).replace(os.sep, "/"))
    return [("directory", tree, None), ("tar", tar, None), ("package", package, "msix")]


def mount(directory: str, name: str) -> tuple:
    guid = ffi.new("GUID *")
    u = uuid.uuid4()
    guid.Data1, guid.Data2, guid.Data3 = u.fields[0], u.fields[1], u.fields[2]
    for i, b in enumerate(u.bytes[8:]):
        guid.Data4[i] = b
    hr = lib.CimMountImage(directory, name, 0, guid)
    if hr < 0:
        raise OSError("CimMountImage(%s) failed: 0x%08X" % (name, hr & 0xFFFFFFFF))
    return guid, "\\\\?\\Volume{%s}\\" % u


def check(label: str, differences) -> bool:
    print("%-60s %s" % (label, "ok" if not differences else "%d differences" % len(differences)))
    for line in differences[:20]:
        print("    " + line)
    return not differences


def main() -> int:
    ok = True
    work = tempfile.mkdtemp(prefix="cimfs-windows-")
    try:
        sources = make_sources(work)
        for kind, source, root in sources:
            expected = compare_tree.load(source, root)
            for version in ("1.0", "2.0", "3.0"):
                out = os.path.join(work, "portable-%s-%s" % (kind, version))
                build(source, os.path.join(out, "image.cim"), backend="portable", format_version=version,
                      root_directory=root)
                guid, volume = mount(out, "image.cim")
                try:
                    ok &= check("portable %s, format %s, mounted by Windows" % (kind, version),
                                compare_tree.compare(expected, compare_tree.from_directory(volume)))
                finally:
                    lib.CimDismountImage(guid)
        select_backend("system")
        out = os.path.join(work, "system")
        build(sources[0][1], os.path.join(out, "image.cim"), backend="system")
        ok &= check("cimfs.dll image of the directory, read by our reader",
                    compare_tree.compare(compare_tree.load(sources[0][1]),
                                         compare_tree.from_image(os.path.join(out, "image.cim"))))
        errors = [f for f in verify(os.path.join(out, "image.cim")) if f.severity == "error"]
        ok &= check("cimfs.dll image verifies", ["%s: %s" % (f.object, f.message) for f in errors])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
