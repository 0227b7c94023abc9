"""Write a small CIM image with hard links, then list it.

    python examples/hardlinks_demo.py [OUTPUT_DIR]

The listing is read back with the independent format reader in tests/
(the reader issue makes it part of the package).
"""
import os
import sys
import tempfile

from cimfs_cffi import FileMetadata, Image, symlink_reparse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import cimreader  # noqa: E402


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="cimfs-demo-")
    os.makedirs(out, exist_ok=True)
    name = "demo.cim"
    stamp = FileMetadata(last_write_time=1_700_000_000)  # POSIX seconds, or a datetime
    with Image.create(out, name) as image:
        image.add_directory("Files")
        image.add_directory("Files/Windows")
        image.add_file("Files/Windows/notepad.exe", b"MZ" + b"\x90" * 4094, stamp)
        image.add_file("Files/Windows/readme.txt", b"hello from a CIM\n", stamp)
        image.add_file("Files/copy-of-readme.txt", b"hello from a CIM\n")  # same bytes: stored once
        image.add_file("Files/readme-link", b"", FileMetadata(reparse_data=symlink_reparse("Windows/readme.txt")))
        image.add_directory("Hives")
        image.create_hard_links([
            ("Hives/notepad_link.exe", "Files/Windows/notepad.exe"),
            ("Hives/second_link.exe", "Hives/NOTEPAD_LINK.EXE"),  # a link to a link, any case
        ])
        image.commit()

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
