"""MSIX/APPX packages as a build source (cimfs_cffi/msix.py): the layout msixmgr gives app-attach
images, checked on hand-made packages and against the one package Microsoft turned into an image."""
import datetime
import os
import subprocess
import sys
import zipfile

import pytest

from cimfs_cffi import open_image, verify
from cimfs_cffi import BuildError, build, build_packages
from cimfs_cffi.msix import publisher_id
from samples import PINBALL, PINBALL_MSIX, need_samples

PINBALL_CIM = PINBALL

MANIFEST = """<?xml version="1.0" encoding="utf-8"?>
<Package xmlns="http://schemas.microsoft.com/appx/manifest/foundation/windows10">
  <Identity Name="Contoso.Tool" Publisher="CN=Contoso" Version="2.1.0.0" ProcessorArchitecture="X64" %s/>
  <Properties><DisplayName>Tool</DisplayName></Properties>
</Package>
"""
WHEN = (2024, 5, 6, 7, 8, 10)


def make_package(path, parts=None, manifest=MANIFEST % ""):
    parts = parts if parts is not None else {
        "AppxManifest.xml": manifest.encode(),
        "[Content_Types].xml": b"<Types/>",
        "AppxBlockMap.xml": b"<BlockMap/>",
        "AppxSignature.p7x": b"PKCX",
        "b.txt": b"bee",
        "A.txt": b"ay",
        "Assets/logo%20small.png": b"\x89PNG" + bytes(3000),
        "Assets/Deep/x.bin": os.urandom(2000),
        "VFS/ProgramFilesX64/tool.dat": b"z" * 10,
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(zipfile.ZipInfo(name, WHEN), data)
    return path


FULL_NAME = "Contoso.Tool_2.1.0.0_x64__" + publisher_id("CN=Contoso")


def test_publisher_ids_are_windows_own():
    assert publisher_id("CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US") \
        == "8wekyb3d8bbwe"
    assert publisher_id("CN=testcert") == "ynj0a7qyfqv8c"  # Pinball's, as its image names it


def test_package_lands_under_the_root_directory_and_its_full_name(tmp_path):
    pkg = make_package(tmp_path / "tool.msix")
    summary = build(pkg, tmp_path / "out" / "tool.cim", root_directory="apps")
    assert summary.package == FULL_NAME
    with open_image(tmp_path / "out" / "tool.cim") as img:
        assert img.listdir("") == ["apps"] and img.listdir("apps") == [FULL_NAME]
        base = "apps\\" + FULL_NAME
        assert img.read_bytes(base + "\\Assets\\logo small.png") == b"\x89PNG" + bytes(3000)  # percent-decoded
        assert not img.exists(base + "\\[Content_Types].xml")  # dropped, as msixmgr drops it
        for kept in ("AppxManifest.xml", "AppxBlockMap.xml", "AppxSignature.p7x"):
            assert img.exists(base + "\\" + kept)
    assert verify(tmp_path / "out" / "tool.cim") == []


def test_without_a_root_directory_the_package_is_at_the_image_root(tmp_path):
    build(make_package(tmp_path / "tool.appx"), tmp_path / "o" / "t.cim")
    with open_image(tmp_path / "o" / "t.cim") as img:
        assert img.listdir("") == [FULL_NAME]


def test_creation_order_subdirectories_then_files_then_depth_first(tmp_path):
    build(make_package(tmp_path / "tool.msix"), tmp_path / "o" / "t.cim", root_directory="apps")
    with open_image(tmp_path / "o" / "t.cim") as img:
        by_id = [p.replace("apps\\" + FULL_NAME, "~") for p, _ in sorted(img.iter_tree(), key=lambda e: e[1].id)]
    assert by_id == ["", "apps", "~", "~\\Assets", "~\\VFS",
                     "~\\A.txt", "~\\AppxBlockMap.xml", "~\\AppxManifest.xml", "~\\AppxSignature.p7x", "~\\b.txt",
                     "~\\Assets\\Deep", "~\\Assets\\logo small.png", "~\\Assets\\Deep\\x.bin",
                     "~\\VFS\\ProgramFilesX64", "~\\VFS\\ProgramFilesX64\\tool.dat"]


def test_attributes_and_times(tmp_path):
    build(make_package(tmp_path / "tool.msix"), tmp_path / "o" / "t.cim")
    when = int((datetime.datetime(*WHEN, tzinfo=datetime.timezone.utc).timestamp()) * 10**7) + 116444736000000000
    with open_image(tmp_path / "o" / "t.cim") as img:
        f = img.stat(FULL_NAME + "\\b.txt")
        d = img.stat(FULL_NAME + "\\Assets")
        assert f.attributes == 0x20 and d.attributes == 0x10
        assert (f.creation_time, f.last_write_time, f.change_time, f.last_access_time) == (when,) * 4
        assert d.last_write_time == when
        root = img.stat("")
        assert root.security_descriptor is None and root.last_write_time == 0


@pytest.mark.parametrize("name, message", [("app.msixbundle", "bundle"), ("app.appxbundle", "bundle"),
                                           ("app.emsix", "encrypted"), ("app.eappx", "encrypted")])
def test_bundles_and_encrypted_packages_are_refused_by_name(tmp_path, name, message):
    make_package(tmp_path / name)
    with pytest.raises(BuildError, match=message):
        build(tmp_path / name, tmp_path / "o" / "x.cim")
    assert not os.path.exists(tmp_path / "o" / "x.cim")


def test_a_bundle_by_content_is_refused(tmp_path):
    make_package(tmp_path / "b.msix", {"AppxMetadata/AppxBundleManifest.xml": b"<Bundle/>", "x.msix": b"PK"})
    with pytest.raises(BuildError, match="bundle"):
        build(tmp_path / "b.msix", tmp_path / "o" / "x.cim")


@pytest.mark.parametrize("parts, message", [
    ({"readme.txt": b"hi"}, "no AppxManifest.xml"),
    ({"AppxManifest.xml": b"<Package"}, "not well-formed"),
    ({"AppxManifest.xml": b"<Package><Identity Name='a'/></Package>"}, "lacks Publisher, Version"),
    ({"AppxManifest.xml": (MANIFEST % "").encode(), "a/../../evil": b"x"}, "not a plain relative path"),
    ({"AppxManifest.xml": (MANIFEST % "").encode(), "a\\b": b"x"}, "not a plain relative path"),
])
def test_malformed_packages_get_one_clear_error(tmp_path, parts, message):
    make_package(tmp_path / "bad.msix", parts)
    with pytest.raises(BuildError, match=message):
        build(tmp_path / "bad.msix", tmp_path / "o" / "x.cim")
    assert not os.path.exists(tmp_path / "o" / "x.cim")


def test_resource_id_is_part_of_the_full_name(tmp_path):
    build(make_package(tmp_path / "r.msix", manifest=MANIFEST % 'ResourceId="en-us" '), tmp_path / "o" / "r.cim")
    with open_image(tmp_path / "o" / "r.cim") as img:
        assert img.listdir("") == ["Contoso.Tool_2.1.0.0_x64_en-us_" + publisher_id("CN=Contoso")]


def test_root_directory_needs_a_package(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(BuildError, match="packages only"):
        build(tmp_path / "d", tmp_path / "o" / "x.cim", root_directory="msix")


def test_a_folder_of_packages_builds_one_image_each_in_parallel(tmp_path):
    src = tmp_path / "pkgs"
    src.mkdir()
    make_package(src / "one.msix")
    make_package(src / "two.appx", manifest=MANIFEST.replace("Contoso.Tool", "Contoso.Two") % "")
    (src / "broken.msix").write_bytes(b"not a zip")
    (src / "notes.txt").write_text("ignored")
    proc = subprocess.run([sys.executable, "-m", "cimfs_cffi", "build", "--packages", "--jobs", "2", "-q",
                           "--root-directory", "msix", str(src), str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=str(tmp_path))
    assert proc.returncode == 1
    assert "broken.msix" in proc.stderr and "2 of 3 packages built" in proc.stderr
    for name, full in (("one", FULL_NAME), ("two", FULL_NAME.replace("Contoso.Tool", "Contoso.Two"))):
        with open_image(tmp_path / "out" / name / (name + ".cim")) as img:
            assert img.listdir("msix") == [full]
    results = build_packages(src, tmp_path / "again", jobs=1)
    assert [(os.path.basename(p), e is None) for p, _, e in results] == \
        [("broken.msix", False), ("one.msix", True), ("two.appx", True)]


@need_samples
def test_pinball_package_gives_microsofts_tree_ids_and_data_objects(tmp_path):
    """Same paths, FileIDs, attributes, sizes and bytes as Pinball.cim; every data object (PE
    layouts included) stored with Microsoft's object ID; with format 1.0, Microsoft's data and
    small-data region files byte for byte."""
    import test_ms_fidelity as fidelity
    build(PINBALL_MSIX, tmp_path / "p.cim", root_directory="msix", format_version="1.0")
    with open_image(PINBALL_CIM) as theirs, open_image(tmp_path / "p.cim") as ours:
        t, o = dict(theirs.iter_tree()), dict(ours.iter_tree())
        assert sorted(t) == sorted(o)
        ids_t, ids_o = fidelity.object_ids_at(theirs.path), fidelity.object_ids_at(ours.path)
        for path in t:
            assert (t[path].id, theirs.stat(path).attributes) == (o[path].id, ours.stat(path).attributes), path
            if t[path].is_dir:
                continue
            assert ours.read_bytes(path) == theirs.read_bytes(path), path
            assert t[path].stream_type == o[path].stream_type, path
            mine, want = fidelity.data_offset(ours, o[path]), fidelity.data_offset(theirs, t[path])
            assert ids_o[(mine >> 48, mine & (2**48 - 1))] == ids_t[(want >> 48, want & (2**48 - 1))], path
        for n in (1, 2):
            mine = open(os.path.join(str(tmp_path), "region_%s_%d" % (ours.region_sets[-1][0], n)), "rb").read()
            want = open(os.path.join(os.path.dirname(PINBALL_CIM), "region_%s_%d" % (theirs.region_sets[-1][0], n)),
                        "rb").read()
            assert mine == want, n
    assert verify(tmp_path / "p.cim") == []
