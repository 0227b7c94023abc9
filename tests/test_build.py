"""cimfs build: directory and tar sources, Windows layer metadata, whiteouts, tar hard-link
semantics, errors that leave nothing behind, and the export -> build round trip."""
import base64
import io
import os
import resource
import stat
import subprocess
import sys
import tarfile

import pytest

from cimfs_cffi import FileMetadata, Image, open_image, verify
from cimfs_cffi import BuildError, build
from cimfs_cffi.builder import Progress
from cimfs_cffi.cli import main
from cimfs_cffi.export import export
from images import CUSTOM_SD, build_rich_image, tree


def make_tar(path, entries, mode="w", fmt=tarfile.PAX_FORMAT):
    """entries: (name, kind, data_or_linkname, pax) with kind in file/dir/link/sym."""
    with tarfile.open(path, mode, format=fmt) as tar:
        for name, kind, payload, pax in entries:
            t = tarfile.TarInfo(name)
            t.mtime, t.mode = 1_600_000_000, 0o644
            t.pax_headers = dict(pax or {})
            if kind == "dir":
                t.type, t.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(t)
            elif kind == "file":
                t.size = len(payload)
                tar.addfile(t, io.BytesIO(payload))
            else:
                t.type, t.linkname = (tarfile.LNKTYPE if kind == "link" else tarfile.SYMTYPE), payload
                tar.addfile(t)
    return str(path)


def ids(path, *names):
    with open_image(path) as img:
        return [img.stat(n).file_id for n in names]


# ---- directory sources -----------------------------------------------------------------------------------
def test_directory_source_keeps_tree_links_symlinks_and_times(tmp_path):
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "a" / "x").write_bytes(b"x" * 5000)
    os.link(src / "a" / "x", src / "a" / "b" / "y")
    os.link(src / "a" / "x", src / "z")
    os.symlink("../x", src / "a" / "b" / "s")
    (src / ".hidden").write_bytes(b"h")
    (src / "ro").write_bytes(b"r")
    os.chmod(src / "ro", 0o444)
    os.mkfifo(src / "fifo")
    os.utime(src / "a" / "x", ns=(1_500_000_000_123_456_700, 1_600_000_000_987_654_300))
    out = tmp_path / "img"
    out.mkdir()
    s = build(str(src), str(out / "d.cim"))
    image = str(out / "d.cim")
    assert (s.files, s.links, s.symlinks, s.directories) == (3, 2, 1, 3)
    assert any("fifo" in w and "skipped" in w for w in s.warnings)
    x, y, z = ids(image, "a/x", "a/b/y", "z")
    assert x == y == z                                         # one record for the link group
    with open_image(image) as img:
        st = img.stat("a/x")
        assert st.nlink == 3 and img.read_bytes("a/b/y") == b"x" * 5000
        assert st.last_write_time == 116444736000000000 + 1_600_000_000_987_654_300 // 100
        assert st.last_access_time == 116444736000000000 + 1_500_000_000_123_456_700 // 100
        assert img.stat("a/b/s").is_symlink and img.stat(".hidden").attributes & 0x2
        assert img.stat("ro").attributes & 0x1 and img.stat("empty").is_dir and not img.exists("fifo")
    assert verify(image) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs a file system that takes any bytes in a name")
def test_hard_links_hold_across_renamed_and_undecodable_names(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "plain").write_bytes(b"data")
    os.link(src / "plain", os.path.join(os.fsencode(src), b"bad\xff"))  # not UTF-8: renamed
    os.link(src / "plain", src / "Plain")                               # one name with "plain" on Windows
    (src / "other").write_bytes(b"data")                                # same bytes, another file
    out = tmp_path / "out"
    s = build(str(src), str(out / "x.cim"), on_collision="rename", on_invalid="rename")
    assert (s.files, s.links) == (2, 2) and len(s.names) == 2
    with open_image(str(out / "x.cim")) as img:
        names = sorted(img.listdir())
        assert names == ["Plain", "bad_", "other", "plain~2"]  # listed in byte order: "plain" comes second
        group = {img.stat(n).file_id for n in names if n != "other"}
        assert len(group) == 1 and img.stat("Plain").nlink == 3 and img.stat("other").nlink == 1
        assert all(img.read_bytes(n) == b"data" for n in names)


def _deep_tree(root, dirs=12, files=300):
    for d in range(dirs):
        sub = root / ("d%02d" % d) / "inner"
        sub.mkdir(parents=True)
        for i in range(files // dirs):
            (sub / ("f%03d" % i)).write_bytes(b"%d-%d" % (d, i) * (1 + i))
        os.symlink("inner", root / ("d%02d" % d) / "link")
    return root


@pytest.mark.parametrize("threads", [1, 2])
def test_a_failure_on_the_directory_pipeline_stops_the_build_and_leaves_nothing(tmp_path, monkeypatch, threads):
    """A directory change made on the adder thread that fails: the build stops with that error,
    nothing more is made, and nothing is left."""
    import cimfs_cffi.builder as B
    src = _deep_tree(tmp_path / "src")
    made = []
    real = B.Builder.directory

    def directory(self, path, md, placed=False):
        made.append(path)
        if path == "d05\\inner":
            raise BuildError("no room for %s" % path, path=path)
        real(self, path, md, placed=placed)

    monkeypatch.setattr(B.Builder, "directory", directory)
    with pytest.raises(BuildError, match="no room for d05"):
        build(str(src), str(tmp_path / "out" / "x.cim"), threads=threads)
    assert made[-1] == "d05\\inner"  # nothing after it
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("threads", [1, 2])
def test_a_full_disk_during_a_directory_build_leaves_nothing(tmp_path, threads):
    from cimfs_cffi import DiskFull, lib
    src = _deep_tree(tmp_path / "src")
    lib.CimfsTestInjectFault(lib.CIM_FAULT_WRITE, 3, 0x80070070 - (1 << 32), 0)  # HRESULT as a signed int
    try:
        with pytest.raises((DiskFull, BuildError)) as e:
            build(str(src), str(tmp_path / "out" / "x.cim"), threads=threads)
    finally:
        lib.CimfsTestClearFault()
    assert "disk" in str(e.value).lower() or isinstance(e.value, DiskFull)
    assert os.listdir(tmp_path / "out") == []
    build(str(src), str(tmp_path / "out" / "x.cim"), threads=threads)  # and the next build works
    assert verify(str(tmp_path / "out" / "x.cim")) == []


# ---- tar sources -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, suffix", [("w", ".tar"), ("w:gz", ".tar.gz"), ("w:bz2", ".tar.bz2"),
                                          ("w:xz", ".tar.xz"), ("zstd", ".tar.zst")])
def test_tar_compressions(tmp_path, mode, suffix):
    entries = [("dir", "dir", None, None), ("dir/f", "file", b"data" * 1000, None)]
    if mode == "zstd":
        import zstandard
        plain = make_tar(tmp_path / "plain.tar", entries)
        src = str(tmp_path / ("layer" + suffix))
        with open(plain, "rb") as f, open(src, "wb") as out:
            out.write(zstandard.ZstdCompressor().compress(f.read()))
    else:
        src = make_tar(tmp_path / ("layer" + suffix), entries, mode)
    build(src, str(tmp_path / "t.cim"))
    assert open_image(str(tmp_path / "t.cim")).read_bytes("dir/f") == b"data" * 1000


def test_windows_layer_pax_records(tmp_path):
    rawsd = base64.b64encode(CUSTOM_SD).decode()
    src = make_tar(tmp_path / "l.tar", [
        ("Files", "dir", None, {"MSWINDOWS.fileattr": "16"}),
        ("Files/a.exe", "file", b"MZ", {"MSWINDOWS.fileattr": "35", "MSWINDOWS.rawsd": rawsd,
                                        "LIBARCHIVE.creationtime": "1234567890.1234567",
                                        "mtime": "1600000000.5", "atime": "1600000001", "ctime": "1600000002",
                                        "MSWINDOWS.xattr.user.a": "MQ==", "MSWINDOWS.xattr.B": "Mg=="}),
        ("Files/a.exe:Zone.Identifier:$DATA", "file", b"[ZoneTransfer]", None),
        ("Files/j", "sym", "C:/Windows", {"MSWINDOWS.mountpoint": "1", "MSWINDOWS.fileattr": "1040"}),
        ("Files/s", "sym", "a.exe", {"MSWINDOWS.fileattr": "32"}),
    ])
    build(src, str(tmp_path / "l.cim"), layer=True)
    with open_image(str(tmp_path / "l.cim")) as img:
        st = img.stat("Files/a.exe")
        assert st.attributes == 0x23 and st.security_descriptor == CUSTOM_SD
        assert st.creation_time == 116444736000000000 + 12345678901234567
        assert st.last_write_time == 116444736000000000 + 16000000005000000
        assert (st.last_access_time, st.change_time) == (116444736000000000 + 16000000010000000,
                                                         116444736000000000 + 16000000020000000)
        from cimfs_cffi import ea_buffer
        assert st.ea == ea_buffer({"user.a": b"1", "B": b"2"})
        assert img.read_bytes("Files/a.exe:Zone.Identifier") == b"[ZoneTransfer]"
        j = img.stat("Files/j")
        assert j.is_dir and j.reparse_tag == 0xA0000003 and j.attributes & 0x400
        assert img.stat("Files/s").is_symlink and not img.stat("Files/s").is_dir


def test_legacy_sddl_is_reported_as_unsupported(tmp_path):
    src = make_tar(tmp_path / "l.tar", [("Files", "dir", None, {"MSWINDOWS.sd": "O:BAG:SYD:(A;;FA;;;WD)"})])
    with pytest.raises(BuildError, match="legacy SDDL"):
        build(src, str(tmp_path / "l.cim"))
    assert os.listdir(tmp_path) == ["l.tar"]


def test_parent_directories_the_source_omits_are_created(tmp_path):
    src = make_tar(tmp_path / "l.tar", [("Files/deep/er/f", "file", b"1", None)])
    build(src, str(tmp_path / "l.cim"))
    with open_image(str(tmp_path / "l.cim")) as img:
        assert img.stat("Files/deep/er").is_dir and img.stat("Files/deep").last_write_time == 0


def test_hard_links_follow_tar_semantics(tmp_path):
    src = make_tar(tmp_path / "l.tar", [
        ("early", "link", "late", None),          # target comes later in the archive
        ("chain2", "link", "chain1", None),       # a chain through a link that also comes later
        ("chain1", "link", "late", None),
        ("late", "file", b"late", None),
        ("old", "file", b"old", None),
        ("keeps-old", "link", "old", None),       # target replaced afterwards: the link keeps the old file
        ("old", "file", b"new", None),
        ("dir/a", "file", b"a", None),
        ("dir/b", "link", "dir/a", None),
    ])
    s = build(src, str(tmp_path / "l.cim"))
    image = str(tmp_path / "l.cim")
    assert s.links == 5
    late, early, c1, c2 = ids(image, "late", "early", "chain1", "chain2")
    assert late == early == c1 == c2
    with open_image(image) as img:
        assert img.read_bytes("keeps-old") == b"old" and img.read_bytes("old") == b"new"
        assert img.stat("late").nlink == 4 and img.stat("dir/b").file_id == img.stat("dir/a").file_id
    assert verify(image) == []


def test_a_link_to_a_missing_target_names_both_paths(tmp_path, capsys):
    src = make_tar(tmp_path / "l.tar", [("f", "file", b"1", None), ("l", "link", "nowhere/x", None)])
    with pytest.raises(BuildError) as e:
        build(src, str(tmp_path / "l.cim"))
    assert (e.value.path, e.value.existing_path) == ("l", "nowhere\\x") and "l -> nowhere\\x" in str(e.value)
    assert sorted(os.listdir(tmp_path)) == ["l.tar"]
    assert main(["build", "-q", "--ignore-missing-links", src, str(tmp_path / "l.cim")]) == 0
    assert "hard link l -> nowhere\\x skipped" in capsys.readouterr().err
    assert open_image(str(tmp_path / "l.cim")).listdir() == ["f"]


def test_whiteouts_delete_parent_image_entries(tmp_path):
    base = make_tar(tmp_path / "base.tar", [("Files/a", "file", b"a", None), ("Files/d/x", "file", b"x", None),
                                            ("Files/keep", "file", b"k", None)])
    top = make_tar(tmp_path / "top.tar", [("Files/.wh.a", "file", b"", None), ("Files/.wh.d", "file", b"", None),
                                          ("Files/.wh.never-there", "file", b"", None),
                                          ("Files/new", "link", "Files/keep", None)])
    build(base, str(tmp_path / "base.cim"), layer=True)
    s = build(top, str(tmp_path / "top.cim"), parent="base.cim", layer=True)
    assert s.deleted == 2
    with open_image(str(tmp_path / "top.cim")) as img:
        assert img.listdir("Files") == ["keep", "new"]
        assert img.stat("Files/new").file_id == img.stat("Files/keep").file_id   # link to a parent file
    assert open_image(str(tmp_path / "base.cim")).listdir("Files") == ["a", "d", "keep"]
    assert verify(str(tmp_path / "top.cim")) == []


def test_a_whited_out_parent_directory_stays_gone_below_new_entries(tmp_path):
    base = make_tar(tmp_path / "base.tar", [("Files/d/old", "file", b"o", None), ("Files/d/keep", "file", b"k", None)])
    top = make_tar(tmp_path / "top.tar", [("Files/.wh.d", "file", b"", None), ("Files/d/new", "file", b"n", None),
                                          ("Files/l", "link", "Files/d/keep", None)])
    build(base, str(tmp_path / "base.cim"))
    with pytest.raises(BuildError, match="Files\\\\l -> Files\\\\d\\\\keep"):
        build(top, str(tmp_path / "top.cim"), parent="base.cim")  # the link's target went with d
    top = make_tar(tmp_path / "top.tar", [("Files/.wh.d", "file", b"", None), ("Files/d/new", "file", b"n", None)])
    build(top, str(tmp_path / "top.cim"), parent="base.cim")
    with open_image(str(tmp_path / "top.cim")) as img:
        assert img.listdir("Files/d") == ["new"] and img.stat("Files/d").last_write_time == 0


def test_base_layer_gets_hcsshim_hive_links_and_layout(tmp_path):
    config = "Files/Windows/System32/config/"
    src = make_tar(tmp_path / "base.tar", [(config + "SYSTEM", "file", b"regf-system", None),
                                           (config + "SOFTWARE", "file", b"regf-software", None)])
    build(src, str(tmp_path / "base.cim"), layer=True)
    with open_image(str(tmp_path / "base.cim")) as img:
        assert img.listdir("Hives") == ["SOFTWARE_BASE", "SYSTEM_BASE"]
        assert img.stat("Hives/SYSTEM_BASE").file_id == img.stat(config + "SYSTEM").file_id
        assert img.read_bytes("layout") == b"vhd-with-hives\n"


# ---- failures leave nothing behind -----------------------------------------------------------------------------
def test_a_truncated_tar_stops_the_build_and_keeps_the_old_image(tmp_path):
    good = make_tar(tmp_path / "good.tar", [("f", "file", b"1" * 10000, None)])
    out = tmp_path / "out"
    out.mkdir()
    build(good, str(out / "l.cim"))
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    bad = tmp_path / "bad.tar"
    bad.write_bytes(open(good, "rb").read()[:3000])
    with pytest.raises(BuildError, match="truncated|ended"):
        build(str(bad), str(out / "l.cim"))
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before


def test_replacing_an_image_removes_its_unused_region_files_only(tmp_path):
    src = make_tar(tmp_path / "l.tar", [("f", "file", b"1", None)])
    out = tmp_path / "out"
    out.mkdir()
    build(src, str(out / "a.cim"))
    build(src, str(out / "child.cim"), parent="a.cim")
    files = set(os.listdir(out))
    build(src, str(out / "a.cim"))                      # child.cim still uses a's old region set
    assert files <= set(os.listdir(out)) and verify(str(out / "child.cim")) == []
    build(src, str(out / "child.cim"))
    build(src, str(out / "child.cim"))
    assert len([n for n in os.listdir(out) if n.startswith("region_")]) == 3 * 3   # a old, a new, child


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["build", str(tmp_path / "none"), str(tmp_path / "x.cim")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cimfs: error: no such source") and err.count("\n") == 1
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    assert main(["build", str(tmp_path / "junk.tar"), str(tmp_path / "x.cim")]) == 1
    assert "is not a tar archive" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x.cim")


# ---- round trips ----------------------------------------------------------------------------------------------
def test_export_then_build_gives_an_identical_image(tmp_path):
    first = build_rich_image(str(tmp_path / "one"))
    export(first, str(tmp_path / "rich.tar"))
    os.mkdir(tmp_path / "two")
    build(str(tmp_path / "rich.tar"), str(tmp_path / "two" / "rich.cim"))
    assert tree(str(tmp_path / "two" / "rich.cim")) == tree(first)
    assert verify(str(tmp_path / "two" / "rich.cim")) == []


def test_directory_build_export_build_round_trip(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(os.urandom(9000))
    os.link(src / "d" / "f", src / "g")
    os.symlink("d/f", src / "s")
    os.mkdir(tmp_path / "a")
    os.mkdir(tmp_path / "b")
    build(str(src), str(tmp_path / "a" / "x.cim"))
    export(str(tmp_path / "a" / "x.cim"), str(tmp_path / "x.tar.gz"))
    build(str(tmp_path / "x.tar.gz"), str(tmp_path / "b" / "x.cim"))
    assert tree(str(tmp_path / "b" / "x.cim")) == tree(str(tmp_path / "a" / "x.cim"))


# ---- behaviour ----------------------------------------------------------------------------------------------
def test_progress_bar_and_summary(tmp_path, capsys):
    src = make_tar(tmp_path / "l.tar", [("f", "file", b"1234", None)])
    shown = io.StringIO()
    p = Progress(stream=shown, enabled=True)
    build(src, str(tmp_path / "l.cim"), progress=p)
    p.update(build(src, str(tmp_path / "l.cim")), force=True)
    assert "1 files, 0 links" in shown.getvalue()
    assert main(["build", src, str(tmp_path / "l.cim")]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("built ") and "1 files" in out.out and out.err == ""
    assert main(["build", "-q", src, str(tmp_path / "l.cim")]) == 0
    assert capsys.readouterr().out == ""


def test_memory_does_not_grow_with_file_size(tmp_path):
    """A 512 MiB file (a hole: reads are cheap) streams through; peak RSS grows far less."""
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "big", "wb") as f:
        f.truncate(512 << 20)
    code = ("import resource, sys; from cimfs_cffi import build; "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; build(sys.argv[1], sys.argv[2]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)")
    out = subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / "m.cim")], capture_output=True,
                         text=True, check=True, cwd=str(tmp_path))  # not the checkout: import the installed package
    assert int(out.stdout) < 64 * 1024, out.stdout      # KiB
    assert os.path.getsize(next(tmp_path / n for n in os.listdir(tmp_path) if n.startswith("region_") and n.endswith("_1"))) >= 512 << 20


def test_a_file_that_vanishes_before_it_is_read_stops_the_build(tmp_path, monkeypatch):
    import cimfs_cffi.from_directory as B
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / ("f%d" % i)).write_bytes(b"x" * i)
    real = B._HostFiles.submit

    def vanish_then_submit(self):
        if self.pending:
            os.unlink(self.pending[1][1])
        real(self)

    monkeypatch.setattr(B._HostFiles, "submit", vanish_then_submit)
    os.mkdir(tmp_path / "out")
    with pytest.raises(BuildError) as e:
        build(str(src), str(tmp_path / "out" / "x.cim"))
    assert "cannot add %s as f1" % (src / "f1") in str(e.value) and e.value.path == str(src / "f1")
    assert os.listdir(tmp_path / "out") == []
