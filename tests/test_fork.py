"""Forking and extending existing images (docs/format.md §7, docs/api.md §3.1, §8.5)."""
import hashlib
import os
import struct

import pytest

from conftest import HR_FILE_CORRUPT, HR_PATH_NOT_FOUND, S_OK, Writer
from cimreader import Image


def digest_tree(d):
    return {n: hashlib.sha256((d / n).read_bytes()).hexdigest() for n in sorted(os.listdir(d))}


def base_image(d):
    w = Writer(d, "base.cim")
    w.mkdir("Files")
    w.mkdir("Files\\Windows")
    w.add("Files\\Windows\\kernel", b"K" * 10000, times=(1, 2, 3, 4))
    w.add("Files\\readme", b"base readme")
    assert w.ads("Files\\readme:zone", b"z") == S_OK
    assert w.link("Files\\hive_link", "Files\\Windows\\kernel") == S_OK
    w.finish()


def test_child_sees_parent_files_and_deletes_only_hide_them_in_the_child(workdir):
    base_image(workdir)
    parent_before = digest_tree(workdir)
    w = Writer(workdir, "child.cim", existing="base.cim")
    assert w.delete("Files\\readme") == S_OK
    w.add("Files\\added", b"child data")
    child = w.finish()
    assert set(child.walk()) == {"", "Files", "Files\\Windows", "Files\\Windows\\kernel", "Files\\hive_link",
                                 "Files\\added"}
    assert child.read(child.lookup("Files\\Windows\\kernel")) == b"K" * 10000
    assert child.record(child.lookup("Files\\Windows\\kernel")).times == (1, 2, 3, 4)
    assert child.lookup("Files\\hive_link") == child.lookup("Files\\Windows\\kernel")
    # The parent is untouched and still complete.
    after = digest_tree(workdir)
    for name, digest in parent_before.items():
        assert after[name] == digest
    parent = Image(str(workdir / "base.cim"))
    parent.check()
    assert parent.read(parent.lookup("Files\\readme")) == b"base readme"
    assert parent.streams(parent.lookup("Files\\readme")) == {"zone": b"z"}
    assert "Files\\added" not in parent.walk()


def test_child_references_parent_regions_instead_of_copying(workdir):
    base_image(workdir)
    w = Writer(workdir, "child.cim", existing="base.cim")
    w.add("Files\\same", b"K" * 10000)  # identical to a parent file: deduplicated against it
    child = w.finish()
    assert len(child.region_sets) == 2
    parent_guid = Image(str(workdir / "base.cim")).region_sets[-1][0]
    assert child.region_sets[0] == (parent_guid, 3)
    kernel = child.record(child.lookup("Files\\Windows\\kernel"))
    same = child.record(child.lookup("Files\\same"))
    assert kernel.stream_offset >> 48 < 3  # data lives in a parent region
    assert same.stream_offset == kernel.stream_offset
    own_data_region = child.regions[3 + 1]
    assert len(own_data_region.data) == 4096  # no new file data was written


def test_recreating_an_inherited_directory_keeps_its_children(workdir):  # docs/api.md §7.2 in a fork
    base_image(workdir)
    w = Writer(workdir, "child.cim", existing="base.cim")
    w.mkdir("Files", times=(7, 7, 7, 7))
    w.mkdir("Files\\Windows")
    child = w.finish()
    assert child.record(child.lookup("Files")).times == (7, 7, 7, 7)
    assert "Files\\Windows\\kernel" in child.walk()


def test_overwriting_an_inherited_hard_link_name(workdir):  # docs/api.md §7.4, hcsshim Hives\*_BASE
    base_image(workdir)
    w = Writer(workdir, "child.cim", existing="base.cim")
    w.add("Files\\hive_link", b"merged hive")
    child = w.finish()
    assert child.read(child.lookup("Files\\hive_link")) == b"merged hive"
    assert child.read(child.lookup("Files\\Windows\\kernel")) == b"K" * 10000


def test_whiteout_of_a_missing_path_is_path_not_found(workdir):
    base_image(workdir)
    w = Writer(workdir, "child.cim", existing="base.cim")
    assert w.delete("Files\\nothing") == HR_PATH_NOT_FOUND
    w.close()


def test_chain_of_forks(workdir):
    base_image(workdir)
    names = ["base.cim"]
    for level in range(1, 5):
        w = Writer(workdir, "l%d.cim" % level, existing=names[-1])
        w.add("Files\\level%d" % level, b"%d" % level * 5000)
        if level == 3:
            assert w.delete("Files\\level1") == S_OK
        img = w.finish()
        names.append("l%d.cim" % level)
    assert len(img.region_sets) == 5
    files = set(img.walk())
    assert {"Files\\level2", "Files\\level3", "Files\\level4"} <= files and "Files\\level1" not in files
    assert img.read(img.lookup("Files\\level2")) == b"2" * 5000
    assert Image(str(workdir / "l1.cim")).read(Image(str(workdir / "l1.cim")).lookup("Files\\level1")) == b"1" * 5000


def corrupt(path, offset, data):
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["truncated-cim", "bad-magic", "missing-region", "bad-fs-offset",
                                    "huge-table-count", "truncated-metadata"])
def test_corrupt_parent_is_file_corrupt(workdir, damage):
    base_image(workdir)
    img = Image(str(workdir / "base.cim"))
    cim = workdir / "base.cim"
    meta = workdir / ("region_%s_0" % img.region_sets[-1][0])
    if damage == "truncated-cim":
        cim.write_bytes(cim.read_bytes()[:50])
    elif damage == "bad-magic":
        corrupt(cim, 0, b"cimfileX")
    elif damage == "missing-region":
        os.remove(workdir / ("region_%s_1" % img.region_sets[-1][0]))
    elif damage == "bad-fs-offset":
        corrupt(cim, 0x38, struct.pack("<Q", (7 << 48) | 40))
    elif damage == "huge-table-count":
        corrupt(meta, (img.fs_offset & 0xFFFFFFFFFFFF) + 16, struct.pack("<I", 0xFFFFFFFF))
    elif damage == "truncated-metadata":
        meta.write_bytes(meta.read_bytes()[:5000])
    w = Writer(workdir, "child.cim", existing="base.cim")
    assert w.hr == HR_FILE_CORRUPT
    assert not (workdir / "child.cim").exists()


def test_damaged_parent_objectid_entry_never_gives_new_content_wrong_bytes(workdir):
    """Objectid files are not read at mount time, so they can be stale: an
    inherited entry is trusted only after its bytes hash to its digest."""
    y, x = b"Y" * 5000, b"X" * 5000
    z = b"Z" * 6000
    w = Writer(workdir, "base.cim")
    w.add("y", y)
    w.add("z", z)
    parent = w.finish()
    guid = parent.region_sets[-1][0]
    objid = workdir / ("objectid_%s_1" % guid)
    raw = bytearray(objid.read_bytes())
    table, count = struct.unpack_from("<II", raw, 40)
    for k in range(count):
        length, digest, off = struct.unpack_from("<Q24sQ", raw, table + 40 * k)
        if digest == hashlib.sha256(y).digest()[:24]:
            raw[table + 40 * k + 8: table + 40 * k + 32] = hashlib.sha256(x).digest()[:24]  # lies: "X is here"
    good = objid.read_bytes()
    objid.write_bytes(bytes(raw))
    child = Writer(workdir, "child.cim", existing="base.cim")
    child.add("x", x)
    child.add("z2", z)  # an intact entry is still used
    assert child.commit() == S_OK
    child.close()
    objid.write_bytes(good)  # so that the reader's check looks at the child alone
    img = Image(str(workdir / "child.cim"))
    img.check()
    assert img.read(img.lookup("x")) == x
    assert img.record(img.lookup("x")).stream_offset >> 48 == 3 + 1  # stored in the child's own data region
    assert img.record(img.lookup("z2")).stream_offset == img.record(img.lookup("z")).stream_offset


def test_identical_file_tables_share_bytes_and_still_fork(workdir):
    """Records hold no FileID, so two full tables of identical records are one
    object on disk; the loader must not assume tables are disjoint."""
    w = Writer(workdir, "base.cim")
    w.mkdir("d")
    for i in range(3500):
        w.create("d\\f%04d" % i)
        w.close_stream()
    base = w.finish()
    assert base.tables[1][0] == base.tables[2][0]  # deduplicated
    child = Writer(workdir, "child.cim", existing="base.cim")
    assert child.hr == S_OK
    child.add("d\\new", b"n")
    img = child.finish()
    assert sum(1 for p in img.walk() if p.startswith("d\\")) == 3501
