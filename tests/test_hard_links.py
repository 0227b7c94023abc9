"""CimCreateHardLink (docs/api.md §4.5, §7.5-7.7)."""
import pytest

from conftest import (DIR, E_ACCESSDENIED, E_INVALIDARG, HR_PATH_NOT_FOUND, HR_SHARING_VIOLATION, S_OK, Writer, ffi,
                      lib, u)
from test_create_file import ea_chain


def test_link_and_target_are_one_file(writer):
    writer.mkdir("d")
    writer.add("d\\target", b"payload", attributes=0x1, times=(1, 2, 3, 4), ea=ea_chain([(b"K", b"v")]))
    assert writer.ads("d\\target:zone", b"stream") == S_OK
    assert writer.link("link", "d\\target") == S_OK
    img = writer.finish()
    a, b = img.lookup("link"), img.lookup("d\\target")
    assert a == b
    assert img.node(a) == img.node(b)
    assert img.streams(a) == {"zone": b"stream"}
    assert img.record(a).times == (1, 2, 3, 4)


def test_existing_file_at_the_new_name_is_replaced(writer):
    writer.add("target", b"new")
    writer.add("victim", b"old")
    assert writer.link("victim", "target") == S_OK
    img = writer.finish()
    assert img.lookup("victim") == img.lookup("target")
    assert img.read(img.lookup("victim")) == b"new"


def test_missing_target_is_path_not_found(writer):
    assert writer.link("l", "missing") == HR_PATH_NOT_FOUND
    assert writer.link("l", "nodir\\missing") == HR_PATH_NOT_FOUND


def test_missing_parent_of_new_name_is_path_not_found(writer):
    writer.add("t", b"x")
    assert writer.link("nodir\\l", "t") == HR_PATH_NOT_FOUND


def test_target_directory_is_access_denied(writer):
    writer.mkdir("d")
    assert writer.link("l", "d") == E_ACCESSDENIED


def test_new_name_that_is_a_directory_is_access_denied(writer):
    writer.mkdir("d")
    writer.add("t", b"x")
    assert writer.link("d", "t") == E_ACCESSDENIED


@pytest.mark.parametrize("new,existing", [
    ("l", "t:stream"), ("l", "t:stream:$DATA"), ("l:s", "t"), ("l\\", "t"), ("l", "t\\"), ("", "t"),
    ("l", ""), ("\\", "t"), ("a/b", "t"), ("l", ".."), ("x" * 256, "t"),
])
def test_invalid_paths_and_stream_targets_are_invalidarg(writer, new, existing):
    writer.add("t", b"x")
    assert writer.link(new, existing) == E_INVALIDARG


def test_invalid_handle_is_invalidarg():
    assert u(lib.CimCreateHardLink(ffi.NULL, "a", "b")) == E_INVALIDARG
    assert u(lib.CimCreateHardLink(ffi.cast("CIMFS_IMAGE_HANDLE", 0xdeadbeef), "a", "b")) == E_INVALIDARG


def test_null_paths_are_invalidarg(writer):
    writer.add("t", b"x")
    assert u(lib.CimCreateHardLink(writer.h, ffi.NULL, "t")) == E_INVALIDARG
    assert u(lib.CimCreateHardLink(writer.h, "l", ffi.NULL)) == E_INVALIDARG


def test_open_stream_is_sharing_violation_and_nothing_changes(writer):
    writer.add("t", b"x")
    writer.add("victim", b"keep")
    assert writer.create("open", size=1) == S_OK
    assert writer.link("victim", "t") == HR_SHARING_VIOLATION
    assert writer.link("new", "t") == HR_SHARING_VIOLATION
    writer.close_stream()
    img = writer.finish()
    assert img.read(img.lookup("victim")) == b"keep"
    assert "new" not in img.walk()


def test_deleting_one_name_leaves_the_others(writer):  # docs/api.md §7.5
    writer.add("a", b"shared")
    assert writer.link("b", "a") == S_OK
    assert writer.link("c", "b") == S_OK
    assert writer.delete("a") == S_OK
    img = writer.finish()
    assert img.lookup("b") == img.lookup("c")
    assert img.read(img.lookup("c")) == b"shared"
    assert "a" not in img.walk()


def test_deleting_a_directory_keeps_links_outside_it(writer):
    writer.mkdir("d")
    writer.add("d\\f", b"survivor")
    assert writer.link("outside", "d\\f") == S_OK
    assert writer.delete("d") == S_OK
    img = writer.finish()
    assert img.read(img.lookup("outside")) == b"survivor"
    assert set(img.walk()) == {"", "outside"}


def test_links_to_links_resolve_to_the_file(writer):  # docs/api.md §7.7
    writer.add("f", b"data")
    assert writer.link("l1", "f") == S_OK
    assert writer.link("l2", "l1") == S_OK
    assert writer.link("L3", "l2") == S_OK
    img = writer.finish()
    assert len({img.lookup(n) for n in ("f", "l1", "l2", "l3")}) == 1


def test_link_to_a_file_added_later_is_path_not_found(writer):  # docs/api.md §7.6
    assert writer.link("early", "later") == HR_PATH_NOT_FOUND
    writer.add("later", b"x")
    assert writer.link("early", "later") == S_OK


def test_relinking_the_same_file_keeps_one_name_with_the_new_spelling(writer):
    writer.add("f", b"x")
    assert writer.link("name", "f") == S_OK
    assert writer.link("NAME", "f") == S_OK
    img = writer.finish()
    assert sorted(n for n, _ in img.listdir(img.root_id)) == ["NAME", "f"]


def test_link_to_a_parent_image_file(workdir):  # docs/api.md §7.7
    base = Writer(workdir, "base.cim")
    base.mkdir("Files")
    base.add("Files\\hive", b"registry")
    base.finish()
    child = Writer(workdir, "child.cim", existing="base.cim")
    child.mkdir("Hives")
    assert child.link("Hives\\hive_BASE", "Files\\hive") == S_OK
    img = child.finish()
    assert img.lookup("Hives\\hive_BASE") == img.lookup("Files\\hive")
    assert img.read(img.lookup("Hives\\hive_base")) == b"registry"


def test_many_links_in_many_directories(writer):
    for d in range(20):
        writer.mkdir("d%d" % d)
        for f in range(20):
            writer.add("d%d\\f%d" % (d, f), b"%d-%d" % (d, f))
    for d in range(20):
        for f in range(20):
            assert writer.link("d%d\\l%d" % ((d + 1) % 20, f), "d%d\\f%d" % (d, f)) == S_OK
    img = writer.finish()
    for d in range(20):
        for f in range(20):
            assert img.lookup("d%d\\l%d" % ((d + 1) % 20, f)) == img.lookup("d%d\\f%d" % (d, f))
    assert sum(t[1] for t in img.tables) == 1 + 20 + 400
    assert img.record(img.lookup("d3\\f3")).is_dir is False and img.record(img.lookup("d3")).attributes & DIR
