"""Images written by Microsoft's own writer (msixmgr on Windows 10 20H2, format 1.0): the
reader, verifier and command line on them, and the facts docs/format.md section 18 draws from
their bytes, each measured again here from the files themselves (hashlib, struct), not through
the package.

The samples are reference data owned by others: they are read from ``../shared/samples/``
beside the repository, never copied into it, and every test skips where they are absent.
"""
import glob
import hashlib
import os
import struct
import urllib.parse
import zipfile

import pytest

from cimfs_cffi import open_image, verify
from cimfs_cffi.cli import main
from cimreader import Image
from images import tree
from samples import PINBALL, PINBALL_MSIX, PUTTY, need_samples

MSIX = PINBALL_MSIX
PACKAGE_ROOT = "msix\\pinball_1.0.2.0_x64__ynj0a7qyfqv8c\\"  # where msixmgr unpacked the package
COUNTS = {PINBALL: (74, 4), PUTTY: (17, 4)}                  # files, directories

pytestmark = need_samples


@pytest.fixture(params=[PINBALL, PUTTY], ids=["pinball", "putty"])
def sample(request):
    return request.param


@pytest.fixture(scope="module")
def package():
    """{image path below PACKAGE_ROOT: bytes} of every member of the .msix (OPC names are
    percent-encoded; the image holds the decoded names)."""
    with zipfile.ZipFile(MSIX) as z:
        return {urllib.parse.unquote(i.filename).replace("/", "\\"): z.read(i) for i in z.infolist()
                if not i.is_dir()}


def image_files(path):
    """{path: bytes} of every file (not directory) of an image."""
    with open_image(path) as img:
        return {p: img.read_bytes(p) for p, rec in img.iter_tree() if not rec.is_dir}


def region_pairs(cim):
    """[(region bytes, objectid bytes)] of a sample, in region order, read straight from disk."""
    directory = os.path.dirname(cim)
    regions = sorted(glob.glob(os.path.join(directory, "region_*")), key=lambda p: int(p.rsplit("_", 1)[1]))
    pairs = []
    for path in regions:
        with open(path, "rb") as r, open(path.replace("region_", "objectid_"), "rb") as o:
            pairs.append((r.read(), o.read()))
    return pairs


def objectid_entries(objectid):
    """[(length, digest, offset)] of an objectid file, in file order."""
    table, count = struct.unpack_from("<II", objectid, 40)
    return [struct.unpack_from("<Q24sQ", objectid, table + 40 * k) for k in range(count)]


def microsoft_object_id(obj):
    return obj.ljust(24, b"\0") if len(obj) <= 24 else hashlib.sha512(obj).digest()[:24]


# ---- the reader -------------------------------------------------------------------------------------
def test_version_1_0_with_entry_size_88_is_read(sample):
    with open_image(sample) as img:
        assert (img.major, img.minor) == (1, 0)
        assert [t[2] for t in img.tables] == [88]
        assert all(rec.parent_id == 0 and rec.base_region_index == 0 for _, rec in img.iter_tree())


def test_both_samples_open_and_walk(sample):
    img = Image(sample)
    nodes = [img.node(fid) for fid in img.walk().values()]
    files = sum(not n.is_dir for n in nodes)
    assert (files, len(nodes) - files) == COUNTS[sample]
    assert sum(len(n.data) for n in nodes) == img.summary()["data_bytes"]


def test_pinball_equals_the_msix_byte_for_byte(package):
    files = {p[len(PACKAGE_ROOT):]: data for p, data in image_files(PINBALL).items() if p.startswith(PACKAGE_ROOT)}
    assert len(files) == COUNTS[PINBALL][0], "every file of the image is below " + PACKAGE_ROOT
    print("zip members absent from the image:", sorted(set(package) - set(files)))
    print("image files absent from the zip:", sorted(set(files) - set(package)))
    assert sorted(set(files) - set(package)) == []
    assert [p for p in files if files[p] != package[p]] == []


def test_pe_image_exe_files_read_back_as_the_original_bytes(package):
    original = package["pinball.exe"]
    with open_image(PINBALL) as img:
        info = img.stat(PACKAGE_ROOT + "pinball.exe")
        assert info.is_pe_image and info.size == len(original)
        assert img.read_bytes(info.path) == original
        with img.open(info.path) as f:  # a read that starts inside one mapping run and ends in another
            f.seek(0x3F0)
            assert f.read(0x1200) == original[0x3F0:0x15F0]


# ---- the verifier -----------------------------------------------------------------------------------
def test_verify_finds_no_error_in_either_sample(sample):
    assert [str(f) for f in verify(sample) if f.severity == "error"] == []


def test_verify_warns_on_the_samples_only_about_writer_conventions(sample):
    assert [str(f) for f in verify(sample) if "not a format rule" not in f.message] == []


# ---- facts of Microsoft's writer ------------------------------------------------------------------------
def test_object_id_digests_are_sha512_24_with_objects_of_24_bytes_or_less_inline(sample):
    inline = 0
    for region, objectid in region_pairs(sample):
        for length, digest, offset in objectid_entries(objectid):
            assert digest == microsoft_object_id(region[offset:offset + length]), (length, offset)
            inline += length <= 24
    assert inline, "the inline rule was exercised"


def test_object_id_entries_are_sorted_by_length_then_digest(sample):
    for _, objectid in region_pairs(sample):
        keys = [(length, digest) for length, digest, _ in objectid_entries(objectid)]
        assert keys == sorted(set(keys))


def test_metadata_objects_have_object_ids(sample):
    """The Filesystem object, table directory, file table, upcase table, directory tables and
    SDs are indexed as well as file data."""
    with open_image(sample) as img:
        wanted = {img.filesystem_offset, img.table_directory_offset, img.upcase_offset, img.tables[0][0]}
        for _, rec in img.iter_tree():
            wanted |= {rec.stream_offset} if rec.is_dir else set()
            wanted |= {rec.sd_offset} if rec.sd_offset else set()
    indexed = {n << 48 | offset for n, (_, objectid) in enumerate(region_pairs(sample))
               for _, _, offset in objectid_entries(objectid)}
    assert sorted(wanted - indexed) == []


def test_region_header_index_is_0_and_objectid_header_index_is_n(sample):
    pairs = region_pairs(sample)
    assert [struct.unpack_from("<HB", r, 32) for r, _ in pairs] == [(0, n) for n in range(len(pairs))]
    assert [struct.unpack_from("<HB", o, 32) for _, o in pairs] == [(n, n) for n in range(len(pairs))]


def test_reserved_values_of_the_cim_header(sample):
    with open(sample, "rb") as f:
        raw = f.read()
    assert raw[0x0D] in (1, 2) and raw[0x0E:0x10] == bytes(2)
    assert struct.unpack_from("<Q", raw, 0x18)[0] == 7 and struct.unpack_from("<IH", raw, 0x40) == (7, 0)
    for region, objectid in region_pairs(sample):  # zero in the region and objectid files
        for header in (region, objectid):
            assert header[0x0D:0x10] == bytes(3) and header[0x18:0x20] == bytes(8) and header[0x23:0x28] == bytes(5)


def test_upcase_table_has_exactly_973_non_identity_entries(sample):
    with open_image(sample) as img:
        assert sum(up != c for c, up in enumerate(img.upcase)) == 973


def test_root_has_no_security_descriptor_no_times_and_no_flags(sample):
    with open_image(sample) as img:
        root = img.record(img.root_id)
        assert img.root_id == 1 and (root.sd_offset, root.times, root.flags) == (0, (0, 0, 0, 0), 0)


# ---- the command line ---------------------------------------------------------------------------------
def test_cli_info_and_ls_on_a_sample(capsys):
    assert main(["info", PUTTY]) == 0
    out = capsys.readouterr().out
    assert "format:         version 1.0" in out and "files:          17" in out
    assert main(["ls", "-lR", PUTTY]) == 0
    assert " 798608 " in next(x for x in capsys.readouterr().out.splitlines() if x.endswith(" putty.exe"))


def test_cli_cat_writes_a_pe_image_file_as_its_original_bytes(package, capsysbinary):
    assert main(["cat", PINBALL, PACKAGE_ROOT + "pinball.exe"]) == 0
    assert capsysbinary.readouterr().out == package["pinball.exe"]


def test_cli_verify_exits_0_on_both_samples(sample, capsys):
    assert main(["verify", sample]) == 0
    assert "0 errors, 0 warnings" in capsys.readouterr().err


def test_extract_writes_the_msix_files(package, tmp_path, capsys):
    assert main(["extract", "-q", PINBALL, str(tmp_path / "out")]) == 0
    root = tmp_path / "out" / "msix" / "pinball_1.0.2.0_x64__ynj0a7qyfqv8c"
    extracted = {str(p.relative_to(root)).replace(os.sep, "\\"): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert extracted == {name: data for name, data in package.items() if name in extracted}
    assert len(extracted) == COUNTS[PINBALL][0]


def test_export_then_build_gives_the_same_tree(tmp_path, capsys):
    tar, rebuilt = str(tmp_path / "pinball.tar"), str(tmp_path / "img" / "pinball.cim")
    assert main(["export", "-q", PINBALL, tar]) == 0
    assert main(["build", "-q", tar, rebuilt]) == 0
    assert tree(rebuilt) == tree(PINBALL)
