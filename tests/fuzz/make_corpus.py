"""Write the seed corpora of the libFuzzer harnesses (tests/fuzz/corpus/*) from real images.

    python tests/fuzz/make_corpus.py        # needs the package installed

load/: small images made by our writer (each format version, a fork's parent with streams, a
hard link and an EA), in fuzz_load.c's container format.  pe/: the headers of small PE files
(PE32 and PE32+, with trailing data, with a gap between sections).  The corpus is committed;
run this again only when the formats change.
"""
import os
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from cimfs_cffi import Image, ea_buffer, FileMetadata  # noqa: E402
from cimfs_cffi.reader import read_image_header  # noqa: E402
from test_pe_images import make_pe  # noqa: E402


def container(cim_path):
    directory = os.path.dirname(cim_path)
    guid = read_image_header(cim_path)[1][-1][0]
    parts = [open(cim_path, "rb").read()]
    for kind in ("region", "objectid"):
        for n in range(3):
            parts.append(open(os.path.join(directory, "%s_%s_%d" % (kind, guid, n)), "rb").read())
    return b"".join(struct.pack("<I", len(p)) + p for p in parts)


def main():
    out = os.path.join(HERE, "corpus")
    os.makedirs(os.path.join(out, "load"), exist_ok=True)
    os.makedirs(os.path.join(out, "pe"), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for version in ("1.0", "2.0"):
            with Image.create(tmp, "v%s.cim" % version, format_version=version) as img:
                img.add_directory("d")
                img.add_file("d/small", b"hello", FileMetadata(ea=ea_buffer({"user.k": b"v"})))
                img.add_file("d/big", bytes(range(256)) * 20)
                img.add_file("tool.exe", make_pe(overlay=b"sig"))
                img.add_alternate_stream("d/small", "s", b"stream")
                img.create_hard_link("d/link", "d/small")
                img.commit()
            with open(os.path.join(out, "load", "v%s" % version), "wb") as f:
                f.write(container(os.path.join(tmp, "v%s.cim" % version)))
    samples = {"pe32plus": make_pe(), "pe32_overlay": make_pe(magic=0x10B, overlay=b"x" * 100),
               "gap": make_pe(sections=((0x100, 0x200), (0x100, 0x200)), raw=((0x400, 0x200), (0x800, 0x200)))}
    for name, data in samples.items():
        with open(os.path.join(out, "pe", name), "wb") as f:
            f.write(data[:8192])


if __name__ == "__main__":
    main()
