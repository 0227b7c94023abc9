"""The name policy (cimfs_cffi/names.py): no build loses a name without saying so."""
import io
import os
import subprocess
import sys
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimfs_cffi import open_image, verify
from cimfs_cffi import InvalidName, NameCollision, build
from cimfs_cffi.names import invalid_reason, repaired, troubled_listing
from cimfs_cffi.paths import upcase
from conftest import examples


def tree(root, files):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def tar_of(path, entries):
    """entries: (name, data) for files, (name, None) for directories, (name, "->target") for hard links."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            elif isinstance(data, str):
                info.type, info.linkname = tarfile.LNKTYPE, data[2:]
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def names_in(image):
    with open_image(image) as img:
        return sorted(p for p, _ in img.iter_tree() if p)


def nothing_written(directory):
    return not os.path.exists(directory) or os.listdir(directory) == []


def test_names_that_are_one_name_on_windows_stop_the_build(tmp_path):
    src = tree(tmp_path / "src", {"web/Index.html": b"1", "web/index.html": b"2"})
    with pytest.raises(NameCollision) as e:
        build(src, tmp_path / "out" / "x.cim")
    assert (e.value.path, e.value.existing_path) == ("web\\index.html", "web\\Index.html")
    assert "differ only in case" in str(e.value) and "--on-collision" in str(e.value)
    assert nothing_written(tmp_path / "out")


def test_the_command_says_it_in_one_line(tmp_path):
    tree(tmp_path / "src", {"Makefile": b"", "makefile": b""})
    proc = subprocess.run([sys.executable, "-m", "cimfs_cffi", "build", "src", "out/x.cim"], cwd=str(tmp_path),
                          capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("cimfs: error: Makefile and makefile: names that differ only in case")


@pytest.mark.parametrize("option, kept", [("keep-first", ["web", "web\\Index.html"]),
                                          ("keep-last", ["web", "web\\index.html"]),
                                          ("rename", ["web", "web\\Index.html", "web\\index~2.html"])])
def test_collision_options(tmp_path, option, kept):
    src = tree(tmp_path / "src", {"web/Index.html": b"first", "web/index.html": b"second"})
    summary = build(src, tmp_path / "out" / "x.cim", on_collision=option)
    assert names_in(tmp_path / "out" / "x.cim") == kept
    assert len(summary.names) == 1 and "differ only in case" in summary.names[0]
    with open_image(tmp_path / "out" / "x.cim") as img:
        assert img.read_bytes(kept[1]) == (b"second" if option == "keep-last" else b"first")
        if option == "rename":
            assert img.read_bytes("web\\index~2.html") == b"second"


def test_directories_that_differ_in_case_merge_and_their_children_are_checked(tmp_path):
    src = tree(tmp_path / "src", {"Docs/a.txt": b"a", "docs/b.txt": b"b", "docs/A.TXT": b"A"})
    with pytest.raises(NameCollision):
        build(src, tmp_path / "o1" / "x.cim")
    summary = build(src, tmp_path / "o2" / "x.cim", on_collision="keep-first")
    assert names_in(tmp_path / "o2" / "x.cim") == ["Docs", "Docs\\a.txt", "Docs\\b.txt"] and len(summary.names) == 2
    build(src, tmp_path / "o3" / "x.cim", on_collision="rename")
    assert names_in(tmp_path / "o3" / "x.cim") == ["Docs", "Docs\\a.txt", "docs~2", "docs~2\\A.TXT", "docs~2\\b.txt"]


def test_a_file_never_replaces_a_directory(tmp_path):
    src = tmp_path / "src"
    tree(src, {"Data/x": b"x", "data": b"file"})
    summary = build(src, tmp_path / "o" / "x.cim", on_collision="keep-last")
    assert names_in(tmp_path / "o" / "x.cim") == ["Data", "Data\\x"]
    assert "kept directory" in summary.names[0]


@pytest.mark.parametrize("name, rule", [
    ("Algorithm::Diff.3pm", "':' in a name"),
    ("trailing.", "ending in a dot"),
    ("trailing ", "ending in a space"),
    ("CON", "device name CON"),
    ("aux.c", "device name AUX"),
    ("nul.tar.gz", "device name NUL"),
    ("COM1", "device name COM1"),
    ("lpt9.txt", "device name LPT9"),
    ("CONIN$", "device name CONIN$"),
    ("tab\there", "character '\\t'"),
    ("a<b", "character '<'"),
    ("q?", "character '?'"),
])
def test_names_windows_cannot_hold_stop_the_build(tmp_path, name, rule):
    src = tree(tmp_path / "src", {name: b"x"})
    with pytest.raises(InvalidName) as e:
        build(src, tmp_path / "out" / "x.cim")
    assert rule in e.value.rule and e.value.path == name
    assert nothing_written(tmp_path / "out")


@pytest.mark.parametrize("name", ["CONSOLE", "com10", "auxiliary.c", "LPT", "con-fig", "a.b.c", "\u0131", "ok name"])
def test_ordinary_names_are_valid(name):
    assert invalid_reason(name) is None


def test_invalid_name_options(tmp_path):
    src = tree(tmp_path / "src", {"Algorithm::Diff.3pm": b"1", "trailing.": b"2", "aux.c": b"3", "fine": b"4"})
    build(src, tmp_path / "skip" / "x.cim", on_invalid="skip")
    assert names_in(tmp_path / "skip" / "x.cim") == ["fine"]
    build(src, tmp_path / "rename" / "x.cim", on_invalid="rename")
    assert names_in(tmp_path / "rename" / "x.cim") == ["Algorithm__Diff.3pm", "_aux.c", "fine", "trailing_"]
    with pytest.raises(InvalidName):  # ':' cannot be kept: it is the stream separator
        build(src, tmp_path / "keep" / "x.cim", on_invalid="keep")
    os.unlink(src / "Algorithm::Diff.3pm")
    build(src, tmp_path / "keep2" / "x.cim", on_invalid="keep")
    assert names_in(tmp_path / "keep2" / "x.cim") == ["aux.c", "fine", "trailing."]
    assert verify(tmp_path / "keep2" / "x.cim") == []


def test_a_repaired_name_that_collides_is_numbered(tmp_path):
    src = tree(tmp_path / "src", {"a:b": b"1", "a_b": b"2"})
    build(src, tmp_path / "o" / "x.cim", on_invalid="rename", on_collision="rename")
    assert names_in(tmp_path / "o" / "x.cim") == ["a_b", "a_b~2"]


def test_undecodable_bytes_in_a_name(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with open(os.path.join(os.fsencode(src), b"caf\xe9.txt"), "wb") as f:  # Latin-1, not UTF-8
        f.write(b"x")
    with pytest.raises(InvalidName, match="not valid Unicode"):
        build(src, tmp_path / "o" / "x.cim")
    build(src, tmp_path / "r" / "x.cim", on_invalid="rename")
    assert names_in(tmp_path / "r" / "x.cim") == ["caf_.txt"]


def test_tar_sources_follow_the_same_policy(tmp_path):
    tar = tar_of(tmp_path / "l.tar", [("Web/", None), ("Web/Index.html", b"1"), ("web/index.html", b"2"),
                                      ("web/extra.css", b"3"), ("copy.html", "->web/index.html")])
    with pytest.raises(NameCollision):
        build(tar, tmp_path / "e" / "x.cim")
    build(tar, tmp_path / "r" / "x.cim", on_collision="rename")
    with open_image(tmp_path / "r" / "x.cim") as img:
        # "web" merges into "Web" only when keeping; rename gives it a name of its own
        assert sorted(p for p, _ in img.iter_tree() if p) == ["Web", "Web\\Index.html", "copy.html", "web~2",
                                                              "web~2\\extra.css", "web~2\\index.html"]
        assert img.read_bytes("copy.html") == b"2"  # the link follows its renamed target
        assert img.stat("copy.html").nlink == 2
    summary = build(tar, tmp_path / "k" / "x.cim", on_collision="keep-first")
    # web/index.html was left out for Web/Index.html, another file: the link to it goes too, and says so
    assert names_in(tmp_path / "k" / "x.cim") == ["Web", "Web\\Index.html", "Web\\extra.css"]
    assert any(e.startswith("skipped hard link copy.html") for e in summary.names)


def test_a_whiteout_frees_a_name(tmp_path):
    tar = tar_of(tmp_path / "l.tar", [("README", b"old"), (".wh.README", b""), ("readme", b"new")])
    build(tar, tmp_path / "o" / "x.cim")
    assert names_in(tmp_path / "o" / "x.cim") == ["readme"]


def test_a_link_to_a_skipped_name_is_reported(tmp_path):
    tar = tar_of(tmp_path / "l.tar", [("a:b", b"x"), ("c", "->a:b")])
    summary = build(tar, tmp_path / "o" / "x.cim", on_invalid="skip")
    assert names_in(tmp_path / "o" / "x.cim") == []
    assert any("skipped hard link c" in e for e in summary.names)


def test_package_parts_follow_the_same_policy(tmp_path):
    from test_msix import MANIFEST, make_package
    pkg = make_package(tmp_path / "p.msix", {"AppxManifest.xml": (MANIFEST % "").encode(), "Help.txt": b"1",
                                             "help.txt": b"2"})
    with pytest.raises(NameCollision):
        build(pkg, tmp_path / "o" / "x.cim")


def test_an_over_long_path(tmp_path):
    deep = "/".join(["d" * 250] * 132) + "/f"  # 33,000 UTF-16 units
    tar = tar_of(tmp_path / "l.tar", [(deep, b"x"), ("short", b"y")])
    with pytest.raises(InvalidName, match="longer than 32767"):
        build(tar, tmp_path / "o" / "x.cim")
    summary = build(tar, tmp_path / "s" / "x.cim", on_invalid="skip")
    assert "short" in names_in(tmp_path / "s" / "x.cim") and summary.names


def test_repaired_names_are_valid():
    for name in ["a:b", "x.", "y ", "CON", "aux.c", "\udce9", "..", "a" * 300 + ".txt", "?*<>|"]:
        fixed = repaired(name)
        assert invalid_reason(fixed) is None, (name, fixed)


# Pieces of names near every rule's edge: device names with and without an extension, bad and
# good characters, trailing dots and spaces, cases that fold together, and non-ASCII text.
LISTING_PIECE = st.sampled_from(["a", "A", "b", "con", "CON", "Com1", "com10", "LPT9", "conin$", "CONOUT$", ".", " ",
                                 "x", "txt", ":", "<", "?", "*", "|", "\"", "\\", "\t", "\x7f", "\u00e9", "\u00c9",
                                 "\u0131", "I", "\udce9", "aux", "nul", "-", "~", "PRN."])


@settings(max_examples=examples(3000), deadline=None)
@given(st.lists(st.lists(LISTING_PIECE, max_size=5).map("".join), max_size=6),
       st.integers(min_value=0, max_value=300))
def test_troubled_listing_is_any_name_invalid_or_colliding(names, long_name):
    """The whole-listing check (one regex over the joined names) says exactly what checking name
    by name says."""
    if long_name > 250:
        names = names + ["n" * long_name]
    by_name = (any(invalid_reason(n) is not None for n in names)
               or len({upcase(n) for n in names}) != len(names))
    assert troubled_listing(names) == by_name, names


NAME = st.sampled_from(["a", "A", "b", "B", "\u0131", "I", "x:y", "dot.", "CON", "aux.c", "Dir", "dir", "\u00e9",
                        "\u00c9"])


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(NAME, min_size=1, max_size=3), min_size=1, max_size=8),
       st.sampled_from(["keep-first", "keep-last", "rename"]), st.sampled_from(["skip", "rename", "keep"]))
def test_no_build_loses_a_name_without_saying_so(tmp_path_factory, paths, on_collision, on_invalid):
    """Every source file is in the image under its name, or the summary names it."""
    work = tmp_path_factory.mktemp("names")
    entries, seen = [], set()
    for parts in paths:
        name = "/".join(parts)
        if name not in seen and not any(name.startswith(s + "/") or s.startswith(name + "/") for s in seen):
            seen.add(name)
            entries.append((name, name.encode()))
    tar = tar_of(work / "t.tar", entries)
    try:
        summary = build(tar, work / "o" / "x.cim", on_collision=on_collision, on_invalid=on_invalid)
    except (NameCollision, InvalidName):
        assert nothing_written(work / "o")
        return
    with open_image(work / "o" / "x.cim") as img:
        stored = {p: img.read_bytes(p) for p, rec in img.iter_tree() if p and not rec.is_dir}
    for name, data in entries:
        path = name.replace("/", "\\")
        if stored.get(path) == data:
            continue
        # Not there as it was: the summary must name it (or a directory above it).
        parts = path.split("\\")
        prefixes = ["\\".join(parts[:i]) for i in range(1, len(parts) + 1)]
        assert any(" %s" % p in e or " %s " % p in e for e in summary.names for p in prefixes), (path, summary.names)
    assert len(stored) == len({upcase(p) for p in stored})  # and no two of them are one name on Windows
