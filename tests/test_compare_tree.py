"""tools/compare_tree.py, the comparison the Windows job runs on mounted images, checked here on
images read with our reader, and the Windows job's own sources built and compared (all but the mount)."""
import io
import os
import shutil
import sys
import tarfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import compare_tree  # noqa: E402
import windows_mount_check  # noqa: E402

from cimfs_cffi import build  # noqa: E402


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "d" / "e").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha")
    (root / "d" / "b.bin").write_bytes(os.urandom(5000))
    os.link(root / "d" / "b.bin", root / "d" / "e" / "b-again.bin")
    (root / "d" / "e" / "\u0131").write_bytes(b"dotless")
    (root / "d" / "e" / "I").write_bytes(b"capital")
    return root


def test_a_directory_and_its_image_match(tree, tmp_path):
    build(tree, tmp_path / "o" / "x.cim")
    assert compare_tree.compare(compare_tree.load(str(tree)), compare_tree.load(str(tmp_path / "o" / "x.cim"))) == []


def test_every_kind_of_difference_is_reported(tree, tmp_path):
    build(tree, tmp_path / "o" / "x.cim")
    image = compare_tree.load(str(tmp_path / "o" / "x.cim"))
    (tree / "a.txt").write_bytes(b"ALPHA")
    (tree / "new").write_bytes(b"")
    (tree / "d" / "e" / "I").unlink()
    os.unlink(tree / "d" / "e" / "b-again.bin")
    shutil.copy(tree / "d" / "b.bin", tree / "d" / "e" / "b-again.bin")  # same bytes, no longer a link
    lines = compare_tree.compare(compare_tree.load(str(tree)), image)
    assert "a.txt: content differs (5 bytes, expected 5)" in lines
    assert "unexpected: d\\e\\I" in lines and "missing: new" in lines
    assert any(line.startswith("d\\b.bin: shares its file with") for line in lines)


def test_streams_from_a_layer_tar_are_compared(tmp_path):
    tar = tmp_path / "l.tar"
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in (("f", b"file"), ("f:s:$DATA", b"stream")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    build(tar, tmp_path / "o" / "x.cim")
    expected = compare_tree.load(str(tar))
    assert expected["F"].streams and compare_tree.compare(expected, compare_tree.load(str(tmp_path / "o" / "x.cim"))) == []
    expected["F"].streams["s"] = "0" * 64
    assert compare_tree.compare(expected, compare_tree.load(str(tmp_path / "o" / "x.cim"))) == \
        ["f: alternate streams differ (['s'], expected ['s'])"]


def test_the_windows_jobs_sources_build_and_compare_clean(tmp_path):
    """What tools/windows_mount_check.py does, minus Windows: each source, each format version,
    built by the portable writer and compared through our reader instead of the driver."""
    for kind, source, root in windows_mount_check.make_sources(str(tmp_path)):
        expected = compare_tree.load(source, root)
        for version in ("1.0", "2.0", "3.0"):
            image = tmp_path / ("%s-%s" % (kind, version)) / "image.cim"
            build(source, image, backend="portable", format_version=version, root_directory=root)
            assert compare_tree.compare(expected, compare_tree.from_image(str(image))) == [], (kind, version)


def test_command_line_exit_status(tree, tmp_path, capsys):
    build(tree, tmp_path / "o" / "x.cim")
    assert compare_tree.main([str(tree), str(tmp_path / "o" / "x.cim")]) == 0
    (tree / "a.txt").write_bytes(b"other")
    assert compare_tree.main([str(tree), str(tmp_path / "o" / "x.cim")]) == 1
    assert "a.txt: content differs" in capsys.readouterr().out
