"""Images written to hurt, extracted and read: nothing is written outside DEST, each escaping
entry is refused with one line (the rest is extracted, the exit status says so), and cycles or
deep trees end in bounded work."""
import glob
import os
import subprocess
import sys

import pytest

from cimfs_cffi import Image, open_image, symlink_reparse, verify
from cimfs_cffi.extract import extract
from cimfs_cffi.metadata import FileMetadata

pytestmark = pytest.mark.skipif(os.name == "nt", reason="extract is POSIX")


def image_with(tmp_path, build):
    with Image.create(tmp_path, "h.cim") as img:
        build(img)
        img.commit()
    return tmp_path / "h.cim"


def rename_in_place(image, old, new):
    """Change a name inside its directory table (its u16 count and UTF-16 units; no longer than
    before): what a hostile writer can do and our API cannot."""
    assert len(new) <= len(old)
    region = glob.glob(os.path.join(os.path.dirname(image), "region_*_0"))[0]
    data = bytearray(open(region, "rb").read())
    at = data.find(len(old).to_bytes(2, "little") + old.encode("utf-16-le"))
    assert at > 0
    data[at:at + 2] = len(new).to_bytes(2, "little")
    data[at + 2:at + 2 + 2 * len(new)] = new.encode("utf-16-le")
    open(region, "wb").write(bytes(data))


def cimfs(*args, cwd):
    return subprocess.run([sys.executable, "-m", "cimfs_cffi", *args], cwd=str(cwd), capture_output=True, text=True)


def symlink(img, path, target):
    img.add_file(path, b"", FileMetadata(reparse_data=symlink_reparse(target)))


@pytest.mark.parametrize("target", ["../../../etc/passwd", "/etc/passwd", "C:\\Windows\\System32",
                                    "\\\\?\\C:\\Windows", "\\\\server\\share", "a/../../..", "..\\..\\x"])
def test_escaping_symlinks_are_refused_and_the_rest_is_extracted(tmp_path, target):
    image = image_with(tmp_path, lambda img: (img.add_directory("d"), symlink(img, "d/evil", target),
                                              img.add_file("d/fine", b"ok")))
    proc = cimfs("extract", str(image), "dest", cwd=tmp_path)
    assert proc.returncode == 1 and "1 entries refused" in proc.stderr and "d\\evil" in proc.stderr
    assert not os.path.islink(tmp_path / "dest" / "d" / "evil")
    assert (tmp_path / "dest" / "d" / "fine").read_bytes() == b"ok"


def test_a_chain_of_harmless_looking_links_that_escapes(tmp_path):
    def build(img):
        img.add_directory("d")
        symlink(img, "d/up", "..")          # inside: d/up -> the root
        symlink(img, "d/out", "up/..")      # lexically inside d, really the root's parent
        symlink(img, "ok", "d/up")
    image = image_with(tmp_path, build)
    counts, report = extract(image, tmp_path / "dest")
    assert counts["refused"] == 1 and "d\\out" in report[0]
    assert os.path.islink(tmp_path / "dest" / "d" / "up") and os.path.islink(tmp_path / "dest" / "ok")
    assert not os.path.islink(tmp_path / "dest" / "d" / "out")


def test_allow_escaping_links_makes_them_as_asked(tmp_path):
    image = image_with(tmp_path, lambda img: symlink(img, "evil", "../outside"))
    proc = cimfs("extract", "--allow-escaping-links", str(image), "dest", cwd=tmp_path)
    assert proc.returncode == 0 and os.readlink(tmp_path / "dest" / "evil") == "../outside"


@pytest.mark.parametrize("hostile", ["a\\b", "a/b", "..", "a\0b"])
def test_names_that_hold_a_separator_are_refused_with_their_tree(tmp_path, hostile):
    def build(img):
        img.add_directory("dXYZ")
        img.add_file("dXYZ/inside", b"1")
        img.add_file("keep", b"2")
    image = image_with(tmp_path, build)
    rename_in_place(image, "dXYZ", hostile)
    counts, report = extract(image, tmp_path / "dest")
    assert counts["refused"] == 1 and "refused" in report[0]
    assert os.listdir(tmp_path / "dest") == ["keep"]  # nothing of the hostile directory, anywhere
    assert [f for f in verify(image) if "invalid name" in f.message]


def test_other_reparse_points_are_kept_as_plain_files_not_refused(tmp_path):
    wci = (0x80000018).to_bytes(4, "little") + (4).to_bytes(2, "little") + bytes(2) + b"data"
    image = image_with(tmp_path, lambda img: img.add_file("placeholder", b"", FileMetadata(reparse_data=wci)))
    counts, report = extract(image, tmp_path / "dest")
    assert counts["refused"] == 0 and "kept as a plain file" in report[0]
    assert os.path.isfile(tmp_path / "dest" / "placeholder")


def test_a_directory_table_that_loops_is_reported_not_followed(tmp_path):
    image = image_with(tmp_path, lambda img: (img.add_directory("aaaa"), img.add_directory("aaaa/bbbb")))
    with open_image(image) as img:
        a, b = img.stat("aaaa").file_id, img.stat("aaaa\\bbbb").file_id
    # Point bbbb's table entry in aaaa at aaaa itself: a directory that contains itself.
    region = glob.glob(os.path.join(str(tmp_path), "region_*_0"))[0]
    data = bytearray(open(region, "rb").read())
    table = data.find("bbbb".encode("utf-16-le")) - 2 - 4 - 4  # name count, name offset, FileID
    assert int.from_bytes(data[table:table + 4], "little") == b
    data[table:table + 4] = a.to_bytes(4, "little")
    open(region, "wb").write(bytes(data))
    for args in (["ls", "-R", str(image)], ["extract", str(image), "dest"], ["export", str(image), "x.tar"]):
        proc = cimfs(*args, cwd=tmp_path)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "second name" in proc.stderr, args
    assert any("second name" in f.message or "cycle" in f.message for f in verify(image))


def test_a_2000_deep_image_lists_verifies_exports_and_extracts(tmp_path):
    depth = 2000
    def build(img):
        path = ""
        for _ in range(depth):
            path = path + "/d" if path else "d"
            img.add_directory(path)
        img.add_file(path + "/f", b"deep")
    image = image_with(tmp_path, build)
    assert verify(image) == []
    assert cimfs("ls", "-R", str(image), cwd=tmp_path).returncode == 0
    assert cimfs("export", "-q", str(image), "deep.tar", cwd=tmp_path).returncode == 0
    counts, _ = extract(image, tmp_path / "dest")
    assert counts["directories"] == depth + 1 and counts["files"] == 1
    # Remove the chain from the bottom up (pytest's own cleanup recurses, once per level).
    path = str(tmp_path / "dest" / "/".join(["d"] * depth))
    os.unlink(os.path.join(path, "f"))
    while path != str(tmp_path / "dest"):
        os.rmdir(path)
        path = os.path.dirname(path)
