"""Write a small CIM image with hard links, then list it.

    python examples/hardlinks_demo.py [OUTPUT_DIR]

The listing is read back with the package's reader (pure Python, independent of the C
writer) after the verifier has checked the image.
"""
import os
import sys
import tempfile

from cimfs_cffi import FileMetadata, Image, open_image, symlink_reparse, verify


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

    path = os.path.join(out, name)
    findings = verify(path)
    print("image %s: %s, files in %s:" % (name, "verified clean" if not findings else findings, out))
    for f in sorted(os.listdir(out)):
        print("  %-60s %8d bytes" % (f, os.path.getsize(os.path.join(out, f))))
    print("contents:")
    with open_image(path) as img:
        for directory, dirs, files in img.walk():
            for n in dirs + files:
                st = img.stat(directory + "\\" + n if directory else n)
                size = "" if st.is_dir else "%6d bytes" % st.size
                print("  %s id=%-3d links=%d %-12s \\%s" % ("dir " if st.is_dir else "file", st.file_id, st.nlink,
                                                         size, st.path))


if __name__ == "__main__":
    main()
