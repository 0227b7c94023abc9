"""Write a small CIM image with hard links through the raw cimfs.h API, then list it.

    python examples/hardlinks_demo.py [OUTPUT_DIR]

The listing is read back with the independent format reader in tests/
(the reader issue makes it part of the package).
"""
import os
import sys
import tempfile

from cimfs_cffi import ffi, lib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import cimreader  # noqa: E402

DIRECTORY = 0x10


def check(hr, what):
    if hr < 0:
        raise OSError("%s failed: HRESULT 0x%08X" % (what, hr & 0xFFFFFFFF))


def add(image, path, data=b"", attributes=0):
    md = ffi.new("CIMFS_FILE_METADATA *")
    md.Attributes = attributes
    md.FileSize = len(data)
    md.LastWriteTime.QuadPart = 133_000_000_000_000_000  # FILETIME, late 2022
    stream = ffi.new("CIMFS_STREAM_HANDLE *")
    check(lib.CimCreateFile(image, path, md, stream), "CimCreateFile " + path)
    if data:
        check(lib.CimWriteStream(stream[0], data, len(data)), "CimWriteStream " + path)
    lib.CimCloseStream(stream[0])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="cimfs-demo-")
    os.makedirs(out, exist_ok=True)
    name = "demo.cim"
    if os.path.exists(os.path.join(out, name)):
        sys.exit("%s already holds %s; pick an empty directory" % (out, name))
    handle = ffi.new("CIMFS_IMAGE_HANDLE *")
    check(lib.CimCreateImage(out, ffi.NULL, name, handle), "CimCreateImage")
    image = handle[0]
    try:
        add(image, "Files", attributes=DIRECTORY)
        add(image, "Files\\Windows", attributes=DIRECTORY)
        add(image, "Files\\Windows\\notepad.exe", b"MZ" + b"\x90" * 4094)
        add(image, "Files\\Windows\\readme.txt", b"hello from a CIM\n")
        add(image, "Files\\copy-of-readme.txt", b"hello from a CIM\n")  # same bytes: stored once
        add(image, "Hives", attributes=DIRECTORY)
        check(lib.CimCreateHardLink(image, "Hives\\notepad_link.exe", "Files\\Windows\\notepad.exe"), "link")
        check(lib.CimCreateHardLink(image, "Hives\\second_link.exe", "Hives\\NOTEPAD_LINK.EXE"), "link to link")
        check(lib.CimCommitImage(image), "CimCommitImage")
    finally:
        lib.CimCloseImage(image)

    img = cimreader.Image(os.path.join(out, name))
    img.check()
    print("image %s (format %d.%d), files in %s:" % (name, img.major, img.minor, out))
    for f in sorted(os.listdir(out)):
        print("  %-60s %8d bytes" % (f, os.path.getsize(os.path.join(out, f))))
    paths = img.walk()
    links = {}
    for fid in paths.values():
        links[fid] = links.get(fid, 0) + 1
    print("contents:")
    for path, fid in sorted(paths.items()):
        rec = img.record(fid)
        kind = "dir " if rec.is_dir else "file"
        size = "" if rec.is_dir else "%6d bytes" % rec.stream_length
        print("  %s id=%-3d links=%d %-12s \\%s" % (kind, fid, links[fid], size, path))


if __name__ == "__main__":
    main()
