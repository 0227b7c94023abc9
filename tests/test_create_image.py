"""CimCreateImage / CimCreateImage2 / CimCommitImage / CimCloseImage (docs/api.md §3)."""
import os
import subprocess
import sys
import textwrap

import pytest

import cimfs_cffi
from conftest import (E_INVALIDARG, HR_FILE_EXISTS, HR_FILE_NOT_FOUND, HR_NOT_SUPPORTED, HR_PATH_NOT_FOUND,
                      HR_SHARING_VIOLATION, S_OK, Writer, ffi, lib, u)


def names(d):
    return sorted(os.listdir(d))


def test_commit_writes_image_regions_and_objectid_files(workdir):
    w = Writer(workdir)
    assert w.hr == S_OK
    img = w.finish()
    files = names(workdir)
    guid = img.region_sets[-1][0]
    assert files == sorted(["image.cim"] + ["region_%s_%d" % (guid, i) for i in range(3)]
                           + ["objectid_%s_%d" % (guid, i) for i in range(3)])


def test_both_names_null_is_invalidarg(workdir):
    h = ffi.new("CIMFS_IMAGE_HANDLE *")
    assert u(lib.CimCreateImage(str(workdir), ffi.NULL, ffi.NULL, h)) == E_INVALIDARG


@pytest.mark.parametrize("which", ["dir", "handle"])
def test_null_arguments_are_invalidarg(workdir, which):
    h = ffi.new("CIMFS_IMAGE_HANDLE *")
    d = ffi.NULL if which == "dir" else str(workdir)
    out = ffi.NULL if which == "handle" else h
    assert u(lib.CimCreateImage(d, ffi.NULL, "x.cim", out)) == E_INVALIDARG


def test_missing_directory_is_path_not_found(workdir):
    assert Writer(workdir / "nope").hr == HR_PATH_NOT_FOUND


def test_directory_that_is_a_file_is_path_not_found(workdir):
    (workdir / "f").write_bytes(b"x")
    assert Writer(workdir / "f").hr == HR_PATH_NOT_FOUND


def test_missing_existing_image_is_file_not_found(workdir):
    assert Writer(workdir, "new.cim", existing="missing.cim").hr == HR_FILE_NOT_FOUND


def test_new_name_that_exists_is_file_exists(workdir):
    Writer(workdir, "a.cim").finish()
    assert Writer(workdir, "a.cim").hr == HR_FILE_EXISTS
    Writer(workdir, "b.cim").finish()
    assert Writer(workdir, "b.cim", existing="a.cim").hr == HR_FILE_EXISTS


@pytest.mark.parametrize("name", ["", "a\\b.cim", "a/b.cim", "a:b", "..", ".cimfs-tmp.x"])
def test_bad_image_name_is_invalidarg(workdir, name):
    assert Writer(workdir, name).hr == E_INVALIDARG


def test_one_image_handle_per_directory(workdir):
    first = Writer(workdir, "a.cim")
    assert first.hr == S_OK
    assert Writer(workdir, "b.cim").hr == HR_SHARING_VIOLATION
    other = workdir / "other"
    other.mkdir()
    second = Writer(other, "b.cim")  # another directory is independent
    assert second.hr == S_OK
    second.close()
    first.close()
    third = Writer(workdir, "b.cim")
    assert third.hr == S_OK
    third.close()


def test_one_image_handle_per_directory_across_processes(workdir):
    """The directory lock is real: another process holding it makes us fail."""
    script = textwrap.dedent("""
        import sys
        from cimfs_cffi import ffi, lib
        h = ffi.new("CIMFS_IMAGE_HANDLE *")
        assert lib.CimCreateImage(sys.argv[1], ffi.NULL, "held.cim", h) == 0
        print("locked", flush=True)
        sys.stdin.readline()
        lib.CimCloseImage(h[0])
    """)
    p = subprocess.Popen([sys.executable, "-c", script, str(workdir)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=str(workdir))
    try:
        assert p.stdout.readline().strip() == "locked"
        assert Writer(workdir, "mine.cim").hr == HR_SHARING_VIOLATION
    finally:
        p.stdin.write("\n")
        p.stdin.close()
        p.wait(timeout=30)
    w = Writer(workdir, "mine.cim")
    assert w.hr == S_OK
    w.close()


@pytest.mark.parametrize("flags,expected", [
    (0, S_OK), (0x1, S_OK), (0x10, S_OK), (0x11, S_OK),
    (0x2, HR_NOT_SUPPORTED), (0x4, HR_NOT_SUPPORTED), (0x8, HR_NOT_SUPPORTED), (0x40, HR_NOT_SUPPORTED),
    (0x20, E_INVALIDARG), (0x100, E_INVALIDARG),
])
def test_create_image2_flags(workdir, flags, expected):
    h = ffi.new("CIMFS_IMAGE_HANDLE *")
    assert u(lib.CimCreateImage2(str(workdir), flags, ffi.NULL, "f.cim", h)) == expected
    if expected == S_OK:
        lib.CimCloseImage(h[0])
    else:
        assert h[0] == ffi.NULL


def test_close_without_commit_leaves_nothing_behind(workdir):
    before = names(workdir)
    w = Writer(workdir)
    w.mkdir("d")
    w.add("d\\f", b"x" * 10000)
    w.close()
    assert names(workdir) == before


def test_stale_temporary_files_are_removed_by_the_next_writer(workdir):
    (workdir / ".cimfs-tmp.region_dead_0").write_bytes(b"left by a crash")
    (workdir / "unrelated").write_bytes(b"keep me")
    w = Writer(workdir)
    w.close()
    assert names(workdir) == ["unrelated"]


def test_commit_twice_and_operations_after_commit_are_invalidarg(workdir):
    w = Writer(workdir)
    assert w.commit() == S_OK
    assert w.commit() == E_INVALIDARG
    assert w.create("f") == E_INVALIDARG
    assert w.link("a", "b") == E_INVALIDARG
    assert w.delete("a") == E_INVALIDARG
    w.close()


def test_extend_in_place_replaces_the_image(workdir):
    a = Writer(workdir, "a.cim")
    a.add("old", b"old data")
    a.finish()
    w = Writer(workdir, None, existing="a.cim")  # newImageName NULL: extend a.cim
    assert w.hr == S_OK
    w.name = "a.cim"
    w.add("new", b"new data")
    img = w.finish()
    assert img.read(img.lookup("old")) == b"old data"
    assert img.read(img.lookup("new")) == b"new data"
    assert len(img.region_sets) == 2  # the old set is now a parent


def test_unsupported_functions_return_not_supported(workdir):
    w = Writer(workdir)
    guid = ffi.new("GUID *")
    paths = ffi.new("CIMFS_IMAGE_PATH[1]")
    u64 = ffi.new("UINT64 *")
    u32 = ffi.new("UINT32 *")
    buf = ffi.new("BYTE[32]")
    calls = [
        lambda: lib.CimMountImage(str(workdir), "image.cim", 0, guid),
        lambda: lib.CimDismountImage(guid),
        lambda: lib.CimMergeMountImage(1, paths, 0, guid),
        lambda: lib.CimTombstoneFile(w.h, "x"),
        lambda: lib.CimCreateMergeLink(w.h, "x", "y"),
        lambda: lib.CimAddFsToMergedImage(w.h, "x"),
        lambda: lib.CimAddFsToMergedImage2(w.h, "x", 0),
        lambda: lib.CimSealImage("x", u64, u64, buf),
        lambda: lib.CimGetVerificationInformation("x", u32, u64, u64, u64, buf, ffi.NULL),
        lambda: lib.CimMountVerifiedImage("x", "y", 0, guid, 32, buf),
        lambda: lib.CimMergeMountVerifiedImage(1, paths, 0, guid, 32, buf),
    ]
    for call in calls:
        assert u(call()) == HR_NOT_SUPPORTED
    w.close()


def test_backend_selection():
    try:
        if cimfs_cffi.system_backend_available():
            cimfs_cffi.select_backend("system")
            assert cimfs_cffi.active_backend() == "system"
        else:
            with pytest.raises(OSError):
                cimfs_cffi.select_backend("system")
            assert u(lib.CimfsSelectBackend(lib.CIMFS_BACKEND_SYSTEM)) == HR_NOT_SUPPORTED
            cimfs_cffi.select_backend("auto")
            assert cimfs_cffi.active_backend() == "portable"  # auto without cimfs.dll
        with pytest.raises(ValueError):
            cimfs_cffi.select_backend("fast")
        assert u(lib.CimfsSelectBackend(7)) == E_INVALIDARG
    finally:
        cimfs_cffi.select_backend("portable")
    assert cimfs_cffi.active_backend() == "portable"
