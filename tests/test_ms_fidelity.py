"""Our writer against Microsoft's bytes (docs/format.md §17).

Pinball.cim and putty.cim were written by Microsoft's writer (msixmgr, Windows 10
20H2).  These tests replay each through our writer - the same files, in Microsoft's
FileID order, with Microsoft's metadata, SDs and EAs, through the plain API - and
compare what the two writers stored: file by file, object by object, and finally
byte by byte.  The samples are reference data kept outside the repository; the tests
skip without them.
"""
import hashlib
import os
import shutil
import struct

import pytest

from cimfs_cffi import Image, open_image, verify
import cimreader
from conftest import S_OK, Writer, lib
from samples import PINBALL, PUTTY, SAMPLES, need_samples


pytestmark = need_samples


def objectid_entries(cim_path):
    """{region index: [(length, digest, offset)]} of the image's own region set."""
    with open(cim_path, "rb") as f:
        header = f.read(72)
    guid = open_image(cim_path).region_sets[-1][0]
    found = {}
    for n in range(struct.unpack_from("<H", header, 0x30)[0]):
        raw = open(os.path.join(os.path.dirname(cim_path), "objectid_%s_%d" % (guid, n)), "rb").read()
        table, count = struct.unpack_from("<II", raw, 40)
        found[n] = [struct.unpack_from("<Q24sQ", raw, table + 40 * k) for k in range(count)]
    return found


def object_ids_at(cim_path):
    """{(region index, byte offset): (length, digest)} of every indexed object."""
    return {(n, off): (length, digest)
            for n, entries in objectid_entries(cim_path).items() for length, digest, off in entries}


def data_offset(img, rec):
    """RegionOffset of a file's stored bytes: its stream's, or for a PE-image stream its
    PeImage descriptor's DataOffset."""
    off = rec.default_stream.offset
    if rec.stream_type == 2:
        off = struct.unpack_from("<Q", img.regions[off >> 48].data, off & (2**48 - 1))[0]
    return off


def replay(src, directory, major):
    """A Microsoft image rebuilt by our writer: its files in Microsoft's FileID order, with
    Microsoft's metadata, written through CimCreateFile/CimWriteStream as msixmgr does."""
    records = sorted(((path, rec) for path, rec in src.iter_tree() if path), key=lambda item: item[1].id)
    w = Writer(directory, "replay.cim")
    assert w.hr == S_OK
    assert lib.CimfsSetFormatVersion(w.h, major, 0) == S_OK
    for path, rec in records:
        info = src.stat(path)
        kw = dict(times=rec.times, sd=info.security_descriptor, ea=info.ea)
        if rec.is_dir:
            w.mkdir(path, attributes=info.attributes & ~0x10, **kw)
        else:
            w.add(path, src.read_bytes(path), attributes=info.attributes, **kw)
    assert w.commit() == S_OK
    w.close()
    return os.path.join(str(directory), "replay.cim")


@pytest.fixture(scope="module")
def pinball():
    with open_image(PINBALL) as img:
        yield img


@pytest.fixture(scope="module")
def replayed(pinball, tmp_path_factory):
    path = replay(pinball, tmp_path_factory.mktemp("replay"), 1)
    with open_image(path) as img:
        yield img


def test_replay_reads_back_as_the_sample_and_verifies_clean(pinball, replayed):
    for path, rec in pinball.iter_tree():
        if not rec.is_dir:
            assert replayed.read_bytes(path) == pinball.read_bytes(path), path
    assert [f for f in verify(replayed.path) if f.severity == "error"] == []


def test_file_ids_follow_creation_order_as_microsofts_do(pinball, replayed):
    ours = {path: rec.id for path, rec in replayed.iter_tree()}
    assert ours == {path: rec.id for path, rec in pinball.iter_tree()}


def test_records_match_microsofts_field_by_field(pinball, replayed):
    """Format 1.0 records: flags, EA length, times, stream length and type, offsets."""
    assert {table[2] for table in cimreader.Image(replayed.path).tables} == {88}  # (offset, count, entry size, ...)
    for path, theirs in pinball.iter_tree():
        ours = replayed.stat(path)._rec
        fields = ("flags", "ea_length", "reparse_tag", "times", "length_and_type", "stream_offset", "sd_offset",
                  "ea_offset", "reparse_offset", "stream_table_offset")
        assert [getattr(ours, f) for f in fields] == [getattr(theirs, f) for f in fields], path


def test_every_data_object_has_microsofts_object_id_and_region(pinball, replayed):
    """Plain files and PE-image streams (through their descriptors) alike."""
    theirs, ours = object_ids_at(pinball.path), object_ids_at(replayed.path)
    compared = 0
    for path, rec in pinball.iter_tree():
        if rec.is_dir:
            continue
        t_off, o_off = data_offset(pinball, rec), data_offset(replayed, replayed.stat(path)._rec)
        assert o_off >> 48 == t_off >> 48, path  # the same region: small-data cut-off agrees
        assert ours[(o_off >> 48, o_off & (2**48 - 1))] == theirs[(t_off >> 48, t_off & (2**48 - 1))], path
        compared += 1
    assert compared == 74


def test_metadata_objects_have_microsofts_object_ids(pinball, replayed):
    """SDs (with their u16 count), EAs, directory link tables and the upcase table are
    byte-identical objects, so their (length, digest) entries are identical too."""
    theirs, ours = object_ids_at(pinball.path), object_ids_at(replayed.path)

    def ids(table, rec_offsets):
        return {table[(off >> 48, off & (2**48 - 1))] for off in rec_offsets if off}

    for attr in ("sd_offset", "ea_offset"):
        t = ids(theirs, [r.__getattribute__(attr) for _, r in pinball.iter_tree()])
        o = ids(ours, [r.__getattribute__(attr) for _, r in replayed.iter_tree()])
        assert o == t and t, attr
    tables_t = ids(theirs, [r.default_stream.offset for _, r in pinball.iter_tree() if r.is_dir])
    tables_o = ids(ours, [r.default_stream.offset for _, r in replayed.iter_tree() if r.is_dir])
    assert tables_o == tables_t and len(tables_t) == 4
    upcase_t = theirs[(pinball.upcase_offset >> 48, pinball.upcase_offset & (2**48 - 1))]
    upcase_o = ours[(replayed.upcase_offset >> 48, replayed.upcase_offset & (2**48 - 1))]
    assert upcase_o == upcase_t


def test_object_ids_are_sorted_by_length_then_digest_as_microsofts(replayed):
    for entries in objectid_entries(replayed.path).values():
        assert [(n, d) for n, d, _ in entries] == sorted((n, d) for n, d, _ in entries)


def test_headers_equal_microsofts_but_for_guid_offsets_and_counts(pinball, replayed):
    t = open(pinball.path, "rb").read()
    o = open(replayed.path, "rb").read()
    same = list(range(0, 0x20)) + list(range(0x30, 0x38)) + list(range(0x40, 0x48))
    assert [o[i] for i in same] == [t[i] for i in same]
    for n in range(3):
        t_region = open(os.path.join(SAMPLES, "pinball", "region_%s_%d" % (pinball.region_sets[-1][0], n)),
                        "rb").read(40)
        o_region = open(os.path.join(os.path.dirname(replayed.path),
                                     "region_%s_%d" % (replayed.region_sets[-1][0], n)), "rb").read(40)
        assert o_region == t_region, n
        t_ids = open(os.path.join(SAMPLES, "pinball", "objectid_%s_%d" % (pinball.region_sets[-1][0], n)),
                     "rb").read(44)
        o_ids = open(os.path.join(os.path.dirname(replayed.path),
                                  "objectid_%s_%d" % (replayed.region_sets[-1][0], n)), "rb").read(44)
        assert o_ids == t_ids, n  # all but the entry count


def test_small_files_pack_into_the_small_region_as_microsofts(pinball, replayed):
    """Microsoft's small-data region holds its small files back to back, 8-aligned, unpadded."""
    small_t = sorted(r.default_stream.offset & (2**48 - 1) for _, r in pinball.iter_tree()
                     if not r.is_dir and r.default_stream.offset >> 48 == 2)
    small_o = sorted(r.default_stream.offset & (2**48 - 1) for _, r in replayed.iter_tree()
                     if not r.is_dir and r.default_stream.offset >> 48 == 2)
    assert small_o == small_t
    size = lambda img, n: os.path.getsize(os.path.join(os.path.dirname(img.path), "region_%s_%d"
                                                       % (img.region_sets[-1][0], n)))
    assert size(replayed, 2) == size(pinball, 2)


def test_a_fork_of_microsofts_image_dedups_against_its_objects(tmp_path, pinball):
    for name in os.listdir(os.path.dirname(PINBALL)):
        shutil.copy(os.path.join(os.path.dirname(PINBALL), name), tmp_path / name)
        os.chmod(tmp_path / name, 0o644)
    bmp = pinball.read_bytes("msix\\pinball_1.0.2.0_x64__ynj0a7qyfqv8c\\table.bmp")
    wav = pinball.read_bytes("msix\\pinball_1.0.2.0_x64__ynj0a7qyfqv8c\\SOUND111.WAV")
    with Image.create(tmp_path, "child.cim", parent="Pinball.cim") as img:
        img.add_file("copy.bmp", bmp)
        img.add_file("copy.wav", wav)
        img.add_file("new.bin", os.urandom(3000))
        img.commit()
    with open_image(tmp_path / "child.cim") as child:
        assert child.major == 1  # a fork keeps its parent's version
        own = len(child.region_sets) - 1  # the child's set is last; its regions come after the parent's 3
        for name, original in (("copy.bmp", "table.bmp"), ("copy.wav", "SOUND111.WAV")):
            ours = child.stat(name)._rec.default_stream.offset
            theirs = pinball.stat("msix\\pinball_1.0.2.0_x64__ynj0a7qyfqv8c\\" + original)._rec.default_stream.offset
            assert ours == theirs, name  # the parent's object, not a copy
        assert child.stat("new.bin")._rec.default_stream.offset >> 48 >= 3 * own
        assert child.read_bytes("copy.bmp") == bmp
        inherited = {p: r.id for p, r in child.iter_tree() if p.startswith("msix")}
        assert inherited == {p: r.id for p, r in pinball.iter_tree() if p.startswith("msix")}
    assert [f for f in verify(tmp_path / "child.cim") if f.severity == "error"] == []
    assert hashlib.sha256((tmp_path / "Pinball.cim").read_bytes()).digest() == \
        hashlib.sha256(open(PINBALL, "rb").read()).digest()  # the parent is untouched


def test_metadata_region_holds_objects_in_microsofts_order(pinball, replayed):
    """SDs, PE descriptors and EAs as files are added, then the upcase table, the directory
    tables (newest directory first), the file table, the table directory, the Filesystem object."""
    def sequence(img):
        return [(n, d, off) for n, d, off in sorted(objectid_entries(img.path)[0], key=lambda e: e[2])]

    assert sequence(replayed) == sequence(pinball)


@pytest.mark.parametrize("sample", [PINBALL, PUTTY], ids=["pinball", "putty"])
def test_replay_is_byte_identical_to_microsofts_image(sample, tmp_path):
    """Every region and objectid file equal to the byte; the .cim differs only in the region
    set's GUID (random) and in byte 0x0D (1 in ours and Pinball's, 2 in PuTTY's; meaning unknown)."""
    with open_image(sample) as src:
        ours = replay(src, tmp_path, 1)
        theirs_guid = src.region_sets[-1][0]
    with open_image(ours) as img:
        our_guid = img.region_sets[-1][0]
    for kind in ("region", "objectid"):
        for n in range(3):
            theirs = open(os.path.join(os.path.dirname(sample), "%s_%s_%d" % (kind, theirs_guid, n)), "rb").read()
            mine = open(os.path.join(str(tmp_path), "%s_%s_%d" % (kind, our_guid, n)), "rb").read()
            assert mine == theirs, "%s %d" % (kind, n)
    theirs, mine = open(sample, "rb").read(), open(ours, "rb").read()
    assert len(mine) == len(theirs) == 72
    assert [i for i in range(72) if mine[i] != theirs[i] and not 0x20 <= i < 0x30] in ([], [0x0D])
