"""The cimfs command: output, exit codes, one-line errors, and what extract and export write."""
import os
import stat
import subprocess
import sys
import tarfile

import pytest

from cimfs_cffi import FileMetadata, Image, open_image, symlink_reparse
from cimfs_cffi.cli import main
from cimfs_cffi.extract import safe_link_target
from conftest import ffi, lib
from images import BIG, CUSTOM_SD, TEXT, build_rich_image, patch


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    return build_rich_image(str(tmp_path_factory.mktemp("cli")))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_counts_files_links_streams_and_dedup(rich, capsys):
    code, out, _ = run(capsys, "info", rich)
    assert code == 0
    assert "files:          8\n" in out and "directories:    5\n" in out
    assert "hard links:     2 " in out and "streams:        2 " in out
    assert "dedup saved:    %d bytes" % len(BIG) in out and "format:         version 2.0" in out


def test_ls_plain_long_and_recursive(rich, capsys):
    code, out, _ = run(capsys, "ls", rich, "files")
    assert code == 0 and out.split("\n")[:2] == ["big.bin", "ea.txt"]
    _, out, _ = run(capsys, "ls", "-l", rich, "Files")
    line = next(x for x in out.splitlines() if x.endswith(" hello.txt"))
    assert line.split()[:3] == ["--r--a-", "3", str(len(TEXT))]
    assert any(x.endswith("link -> sub\\copy.bin") for x in out.splitlines())
    _, out, _ = run(capsys, "ls", "-R", rich)
    assert "\\Files\\sub:\ncopy.bin\nhello.txt\nzero\n" in out


def test_cat_writes_bytes_of_a_file_or_stream(rich, capsysbinary):
    assert main(["cat", rich, "Files/big.bin"]) == 0
    assert capsysbinary.readouterr().out == BIG
    assert main(["cat", rich, "Files/hello.txt:Zone.Identifier"]) == 0
    assert capsysbinary.readouterr().out.startswith(b"[ZoneTransfer]")


@pytest.mark.parametrize("argv, message", [
    (["ls", "{img}", "Files/nope"], "no such file or directory in the image"),
    (["cat", "{img}", "Files"], "is a directory"),
    (["info", "{dir}/none.cim"], "no such image"),
    (["cat", "{img}", "Files/hello.txt:nope"], "no stream 'nope'"),
])
def test_errors_are_one_line_with_exit_status_1(rich, capsys, argv, message):
    argv = [a.format(img=rich, dir=os.path.dirname(rich)) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 1 and err.count("\n") == 1 and err.startswith("cimfs: error: ") and message in err, err


def test_a_corrupt_image_is_one_line_too(tmp_path, capsys):
    path = build_rich_image(str(tmp_path))
    patch(path, 0, b"nonsense")
    code, _, err = run(capsys, "ls", path)
    assert code == 1 and err.startswith("cimfs: error: not a CIM image") and "Traceback" not in err


def test_verify_exit_status(tmp_path, capsys):
    path = build_rich_image(str(tmp_path))
    assert run(capsys, "verify", path)[0] == 0
    with open_image(path) as img:
        rec = img.stat("Files/big.bin")._rec
        where, at = img.regions[rec.stream_offset >> 48].path, rec.stream_offset & ((1 << 48) - 1)
    patch(where, at + 5, b"\xff")
    code, out, err = run(capsys, "verify", path)
    assert code == 1 and "no longer match their digest" in out and "1 errors" in err


@pytest.mark.parametrize("command", ["info", "ls", "cat", "extract", "export", "verify", "build"])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0 and "examples:" in capsys.readouterr().out


def test_python_dash_m_runs_the_command(rich):
    here = os.path.dirname(rich)  # not the checkout, whose cimfs_cffi/ has no compiled module
    done = subprocess.run([sys.executable, "-m", "cimfs_cffi", "ls", rich], capture_output=True, text=True, cwd=here)
    assert done.returncode == 0 and done.stdout == "Files\n"
    done = subprocess.run([sys.executable, "-m", "cimfs_cffi"], capture_output=True, text=True, cwd=here)
    assert done.returncode == 2 and "usage:" in done.stderr


def test_export_writes_a_windows_layer_tar(rich, tmp_path, capsys):
    out = tmp_path / "layer.tar"
    assert run(capsys, "export", rich, str(out))[0] == 0
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        hello = members["Files/hello-again.txt"]  # the group's first name in image order carries the data
        assert hello.pax_headers["MSWINDOWS.fileattr"] == "33"
        assert tar.extractfile(hello).read() == TEXT
        for other in ("Files/hello.txt", "Files/sub/hello.txt"):
            assert members[other].islnk() and members[other].linkname == "Files/hello-again.txt"
        assert tar.extractfile(members["Files/hello-again.txt:Zone.Identifier:$DATA"]).read().startswith(b"[Zone")
        assert members["Files/link"].issym() and members["Files/link"].linkname == "sub/copy.bin"
        assert members["Files/junction"].pax_headers["MSWINDOWS.mountpoint"] == "1"
        import base64
        assert base64.b64decode(members["Files/big.bin"].pax_headers["MSWINDOWS.rawsd"]) == CUSTOM_SD
        assert members["Files/ea.txt"].pax_headers["MSWINDOWS.xattr.user.one"] == "MQ=="
        assert members["."].isdir() and "LIBARCHIVE.creationtime" in members["."].pax_headers
        names = list(members)
        assert names.index("Files") < names.index("Files/sub") < names.index("Files/sub/copy.bin")
    assert sorted(os.listdir(tmp_path)) == ["layer.tar"]


def test_export_leaves_nothing_behind_on_failure(tmp_path, capsys):
    code, _, _ = run(capsys, "export", str(tmp_path / "missing.cim"), str(tmp_path / "out.tar"))
    assert code == 1 and os.listdir(tmp_path) == []


def xattrs_work(directory):
    probe = os.path.join(directory, "probe")
    open(probe, "w").close()
    try:
        os.setxattr(probe, "user.cimfs.probe", b"1")
        return True
    except (OSError, AttributeError):
        return False
    finally:
        os.unlink(probe)


def test_extract_keeps_links_symlinks_and_windows_metadata(rich, tmp_path, capsys):
    dest = tmp_path / "out"
    code, out, err = run(capsys, "extract", rich, str(dest))
    # The escaping symlink is refused, so the status says so; the rest is extracted.
    assert code == 1 and "extracted 7 files, 5 directories, 2 hard links, 1 symlinks" in out
    assert "1 entries refused: they would reach outside" in err
    f = dest / "Files"
    assert (f / "hello.txt").read_bytes() == TEXT and (f / "big.bin").read_bytes() == BIG
    assert os.stat(f / "hello.txt").st_ino == os.stat(f / "sub" / "hello.txt").st_ino == \
        os.stat(f / "hello-again.txt").st_ino
    assert stat.S_IMODE(os.stat(f / "hello.txt").st_mode) == 0o444
    assert os.readlink(f / "link") == "sub/copy.bin" and (f / "link").read_bytes() == BIG
    assert not os.path.islink(f / "escape") and (f / "escape").read_bytes() == b""
    assert "escape: symlink to '..\\\\..\\\\..\\\\etc\\\\passwd' leads outside the destination" in err
    assert (f / "junction").is_dir() and not os.path.islink(f / "junction")
    assert os.path.getsize(f / "sparse") == 1 << 20
    with open_image(rich) as img:
        mtime = img.stat("Files/hello.txt").st_mtime
    assert os.stat(f / "hello.txt").st_mtime == pytest.approx(mtime, abs=1e-6)
    if xattrs_work(str(tmp_path)):
        assert os.getxattr(f / "hello.txt", "user.cimfs.stream.Zone.Identifier").startswith(b"[Zone")
        assert os.getxattr(f / "big.bin", "user.cimfs.sd") == CUSTOM_SD
        assert os.getxattr(f / "sub", "user.cimfs.attributes") == b"18"
        assert os.getxattr(f / "escape", "user.cimfs.reparse")[:4] == b"\x0c\x00\x00\xa0"
    else:
        assert "not kept" in err


def test_extract_refuses_a_non_empty_destination(rich, tmp_path, capsys):
    (tmp_path / "x").write_text("keep me")
    code, _, err = run(capsys, "extract", rich, str(tmp_path))
    assert code == 1 and "not empty" in err and (tmp_path / "x").read_text() == "keep me"


def test_symlink_chains_cannot_climb_out_through_another_symlink(tmp_path):
    """Lexically "d/s/../.." stays inside; through d/s -> ".." it leaves the root."""
    with Image.create(str(tmp_path), "chain.cim") as im:
        im.add_directory("d")
        im.add_file("d/s", b"", FileMetadata(reparse_data=symlink_reparse("..")))
        im.add_file("t", b"", FileMetadata(reparse_data=symlink_reparse("d/s/../..")))
        im.add_file("ok", b"", FileMetadata(reparse_data=symlink_reparse("d/s/d")))
        im.commit()
    with open_image(str(tmp_path / "chain.cim")) as img:
        assert safe_link_target(img, "d\\s", "..")
        assert not safe_link_target(img, "t", "d/s/../..")
        assert safe_link_target(img, "ok", "d/s/d")
        assert not safe_link_target(img, "x", "/etc") and not safe_link_target(img, "x", "C:\\x")
    counts, report = __import__("cimfs_cffi.extract", fromlist=["extract"]).extract(
        str(tmp_path / "chain.cim"), str(tmp_path / "out"))
    assert not os.path.islink(tmp_path / "out" / "t") and os.path.islink(tmp_path / "out" / "ok")
    assert any(line.startswith("t: symlink") for line in report)


def test_the_readme_example_script_runs(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "..", "examples", "hardlinks_demo.py")
    done = subprocess.run([sys.executable, script, str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "verified clean" in done.stdout and "links=3" in done.stdout


def test_version(capsys):
    import cimfs_cffi
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("cimfs %s (" % cimfs_cffi.__version__)


@pytest.mark.parametrize("compress", [False, True])
def test_build_reads_a_layer_from_standard_input(tmp_path, compress):
    import gzip
    import io
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        t = tarfile.TarInfo("Files/hello.txt")
        t.size = 5
        tar.addfile(t, io.BytesIO(b"hello"))
    data = gzip.compress(buf.getvalue()) if compress else buf.getvalue()
    out = subprocess.run([sys.executable, "-m", "cimfs_cffi", "build", "--layer", "-q", "-", str(tmp_path / "l.cim")],
                         input=data, capture_output=True, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    with open_image(str(tmp_path / "l.cim")) as img:
        assert img.read_bytes("Files\\hello.txt") == b"hello"
        assert img.exists("Hives") is False  # no hives in this layer: nothing added


def test_json_output_of_info_ls_verify_and_build(tmp_path, capsys):
    import json
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a").write_bytes(b"hello")
    os.link(src / "d" / "a", src / "d" / "b")
    os.symlink("a", src / "d" / "s")
    cim = str(tmp_path / "out" / "x.cim")
    code, out, _ = run(capsys, "build", "--json", str(src), cim)
    built = json.loads(out)
    assert code == 0 and built["schema"] == 1 and built["image"] == cim
    assert (built["files"], built["links"], built["symlinks"], built["bytes"]) == (1, 1, 1, 5)
    assert built["names"] == [] and built["warnings"] == []

    code, out, _ = run(capsys, "info", "--json", cim)
    info = json.loads(out)
    assert info["format"] == "2.0" and info["files"] == 2 and info["links"] == 1 and len(info["regions"]) == 3
    assert {r["type"] for r in info["regions"]} == {0, 1, 2} and info["parent_sets"] == []

    code, out, _ = run(capsys, "ls", "--json", "-R", cim)
    rows = [json.loads(line) for line in out.splitlines()]
    by_path = {r["path"]: r for r in rows}
    assert set(by_path) == {"d", "d\\a", "d\\b", "d\\s"}
    assert by_path["d"]["type"] == "directory" and by_path["d\\s"] == dict(by_path["d\\s"], type="symlink", target="a")
    assert by_path["d\\a"]["nlink"] == 2 and by_path["d\\a"]["file_id"] == by_path["d\\b"]["file_id"]
    assert by_path["d\\a"]["size"] == 5 and by_path["d\\a"]["last_write_time"] > 0
    code, out, _ = run(capsys, "ls", "--json", cim, "d/a")
    assert json.loads(out)["path"].lower() == "d\\a"

    code, out, _ = run(capsys, "verify", "--json", cim)
    assert code == 0 and json.loads(out) == {"schema": 1, "image": cim, "errors": 0, "warnings": 0, "findings": []}
    region = next(os.path.join(tmp_path, "out", n) for n in os.listdir(tmp_path / "out") if n.endswith("_2"))
    with open(region, "r+b") as f:  # the small-data region: damage "hello"
        data = f.read()
        f.seek(data.index(b"hello"))
        f.write(b"HELLO")
    code, out, _ = run(capsys, "verify", "--json", cim)
    result = json.loads(out)
    assert code == 1 and result["errors"] >= 1 and result["findings"][0]["severity"] == "error"


def test_verbose_says_how_the_source_was_read(tmp_path, capsys):
    import gzip
    import io
    import json
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        t = tarfile.TarInfo("Files/a")
        t.size = 1
        tar.addfile(t, io.BytesIO(b"a"))
    (tmp_path / "l.tar.gz").write_bytes(gzip.compress(buf.getvalue()))
    code, _, err = run(capsys, "build", "-v", "-q", str(tmp_path / "l.tar.gz"), str(tmp_path / "o" / "l.cim"))
    assert code == 0 and "read as tar (gzip via " in err and "1 decompressing" in err and "1 writing" in err
    assert ffi.string(lib.CimfsSha512Impl()).decode() in err.split("SHA-512: ")[1]
    code, out, err = run(capsys, "build", "-v", "--threads", "1", "--json", str(tmp_path / "l.tar.gz"),
                         str(tmp_path / "o" / "m.cim"))
    assert "helper threads: none" in err and json.loads(out)["input_format"].startswith("tar (gzip via ")


def test_export_to_stdout_pipes_into_build_from_stdin(rich, tmp_path):
    """cimfs export IMAGE - | cimfs build --layer - COPY: the same tree, through two pipes."""
    from images import tree
    cmd = [sys.executable, "-m", "cimfs_cffi"]
    exporter = subprocess.Popen(cmd + ["export", rich, "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=str(tmp_path))
    built = subprocess.run(cmd + ["build", "-q", "-", str(tmp_path / "copy" / "c.cim")], stdin=exporter.stdout,
                           capture_output=True, text=True, cwd=str(tmp_path))
    exporter.stdout.close()
    assert exporter.wait() == 0 and built.returncode == 0, built.stderr
    assert b"exported" in exporter.stderr.read()
    assert tree(str(tmp_path / "copy" / "c.cim")) == tree(rich)
