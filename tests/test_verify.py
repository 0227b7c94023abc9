"""The verifier (docs/format.md §15): one hand-made corruption per check, each must be
reported as a finding naming the object; damage never escapes as another exception."""
import hashlib
import os
import shutil
import struct

import pytest

from cimfs_cffi import Image, open_image, verify
from cimfs_cffi.reader import OFFSET_MASK
from cimreader import as_version_1, rewrite_object_ids
from images import build_rich_image, build_wide_image, object_location, patch, record_location


def sha512_24(obj):
    """Microsoft's object ID: small objects inline, zero-padded; others SHA-512 cut to 24 bytes."""
    return obj.ljust(24, b"\0") if len(obj) <= 24 else hashlib.sha512(obj).digest()[:24]


def sha256_24(obj):
    """The object ID earlier versions of our writer wrote."""
    return hashlib.sha256(obj).digest()[:24]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return os.path.dirname(build_rich_image(str(tmp_path_factory.mktemp("pristine"))))


@pytest.fixture
def image(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "img")
    return str(tmp_path / "img" / "rich.cim")


def messages(path, severity=None):
    return [str(f) for f in verify(path) if severity is None or f.severity == severity]


def assert_finding(path, severity, text):
    found = messages(path)
    assert any(f.startswith(severity) and text in f for f in found), found


def locate(path, what):
    """The open image (left open for its region list) and the record of ``what``."""
    img = open_image(path)
    return img, img.stat(what)._rec


def test_a_clean_image_has_no_findings(image):
    assert verify(image) == []


def test_image_header_type_and_reserved_fields(image):
    patch(image, 12, b"\x01")
    patch(image, 0x44, b"\x07")
    assert_finding(image, "error", "common header type 1")
    assert_finding(image, "error", "reserved header fields are not zero")


@pytest.mark.parametrize("byte_0d", [0, 1, 2])
def test_reserved_header_values_of_microsofts_writer_are_accepted(image, byte_0d):
    patch(image, 0x0D, bytes([byte_0d]))
    patch(image, 0x18, struct.pack("<Q", 7))
    patch(image, 0x40, struct.pack("<I", 7))
    assert verify(image) == []


def test_unknown_values_in_reserved_header_fields_are_warnings(image):
    patch(image, 0x0D, b"\x05")
    patch(image, 0x40, struct.pack("<I", 9))
    assert_finding(image, "warning", "reserved header field at 0x0D holds 5 (meaning unknown")
    assert_finding(image, "warning", "reserved header field at 0x40 holds 9")
    assert messages(image, "error") == []


def test_region_header_index_and_type(image):
    with open_image(image) as img:
        first, second = img.regions[0].path, img.regions[1].path
    patch(first, 32, struct.pack("<H", 5))
    patch(second, 34, b"\x09")
    assert_finding(image, "error", "header Index 5 but the file is region 0")
    assert_finding(image, "error", "region type 9")


@pytest.mark.parametrize("writer", ["microsoft", "earlier cimfs_cffi"])
def test_region_header_index_0_or_the_region_number_is_accepted(image, writer):
    with open_image(image) as img:
        regions = [(r.path, r.local_index) for r in img.regions]
    for path, n in regions:
        patch(path, 32, struct.pack("<H", 0 if writer == "microsoft" else n))
    assert verify(image) == []


def test_flipped_file_data_is_found_through_the_object_id_digests(image):
    img, rec = locate(image, "Files/big.bin")
    where, at = object_location(img, rec.stream_offset)
    patch(where, at + 1000, b"\xEE")
    assert_finding(image, "error", "no longer match their digest")
    assert open_image(image).read_bytes("Files/big.bin")[1000] == 0xEE  # structure is intact


@pytest.mark.parametrize("digest_of", [sha512_24, sha256_24], ids=["sha512/24", "sha256/24 (earlier writer)"])
def test_object_ids_of_either_known_digest_verify_clean(image, digest_of):
    rewrite_object_ids(image, digest_of)
    assert verify(image) == []


@pytest.mark.parametrize("digest_of", [sha512_24, sha256_24], ids=["sha512/24", "sha256/24 (earlier writer)"])
def test_flipped_data_is_an_error_whichever_digest_the_set_uses(image, digest_of):
    rewrite_object_ids(image, digest_of)
    img, rec = locate(image, "Files/big.bin")
    where, at = object_location(img, rec.stream_offset)
    patch(where, at + 1000, b"\xEE")
    assert_finding(image, "error", "no longer match their digest")


def test_a_small_object_must_be_its_own_id_in_a_sha512_set(image):
    rewrite_object_ids(image, lambda obj: hashlib.sha512(obj).digest()[:24])  # no inline rule
    found = messages(image, "error")
    assert found and all("no longer match their digest" in f for f in found), found


def test_digests_of_an_unknown_scheme_are_one_warning(image):
    rewrite_object_ids(image, lambda obj: hashlib.blake2b(obj, digest_size=24).digest())
    assert [f.severity for f in verify(image)] == ["warning"]
    assert_finding(image, "warning", "no object-ID digest matches a known writer's")


def test_missing_object_id_file_is_a_warning(image):
    with open_image(image) as img:
        name = os.path.basename(img.regions[2].path).replace("region_", "objectid_")
    os.unlink(os.path.join(os.path.dirname(image), name))
    assert messages(image, "error") == []
    assert_finding(image, "warning", "object-ID file is missing")


def _name_offset(path, directory, name):
    img, rec = locate(path, directory)
    where, at = object_location(img, rec.stream_offset)
    with open(where, "rb") as f:
        f.seek(at)
        table = f.read(rec.stream_length)
    return where, at, table, at + table.index(name.encode("utf-16-le"))


def test_names_out_of_order(image):
    where, _, _, at = _name_offset(image, "Files", "big.bin")
    patch(where, at, "z".encode("utf-16-le"))
    assert_finding(image, "error", "not in strictly ascending case-insensitive order")


def test_names_equal_ignoring_case_are_duplicates(tmp_path):
    path = build_wide_image(str(tmp_path), 3)
    where, _, _, at = _name_offset(path, "d", "f000001")
    patch(where, at, "F000000".encode("utf-16-le"))
    assert_finding(path, "error", "(duplicates)")


def test_invalid_name(image):
    where, _, _, at = _name_offset(image, "Files", "big.bin")
    patch(where, at + 6, ":".encode("utf-16-le"))
    assert_finding(image, "error", "invalid name 'big:bin'")


def test_link_table_length_beyond_its_stream(image):
    where, at, table, _ = _name_offset(image, "Files", "big.bin")
    patch(where, at, struct.pack("<I", len(table) + 64))
    assert_finding(image, "error", "link table header")


def test_entry_with_an_unknown_file_id(image):
    where, at, table, _ = _name_offset(image, "Files", "big.bin")
    patch(where, at + 8, struct.pack("<I", 99999))
    assert_finding(image, "error", "file ID 99999 is not in any file table")


def test_directory_cycle(image):
    with open_image(image) as img:
        files_id = img.stat("Files").file_id
    where, at, table, _ = _name_offset(image, "Files/sub", "copy.bin")
    patch(where, at + 8, struct.pack("<I", files_id))  # Files\sub\copy.bin -> Files
    assert_finding(image, "error", "directory reached by a second name")


def _patch_record(path, what, offset, data):
    img, rec = locate(path, what)
    where, at = record_location(img, rec.id)
    patch(where, at + offset, data)
    return img, rec


def test_security_descriptor_revision(image):
    img, rec = locate(image, "Files/big.bin")
    where, at = object_location(img, rec.sd_offset)
    patch(where, at + 2, b"\x02")
    assert_finding(image, "error", "not a self-relative revision-1 descriptor")


def test_reparse_tag_differs_from_the_record(image):
    _patch_record(image, "Files/link", 4, struct.pack("<I", 0xA0000003))
    assert_finding(image, "error", "reparse buffer tag 0xa000000c differs")


def test_ea_chain_malformed(image):
    _patch_record(image, "Files/ea.txt", 2, struct.pack("<H", 9))
    assert_finding(image, "error", "EA chain")


def test_default_stream_type(image):
    _patch_record(image, "Files/hello.txt", 0x28 + 14, b"\x05")
    assert_finding(image, "error", "default stream type 5")


def test_data_outside_its_region(image):
    _patch_record(image, "Files/big.bin", 0x28 + 8, struct.pack("<I", 1 << 30))
    assert_finding(image, "error", "run past the end of region_")


def test_undefined_flags_and_reserved_fields(image):
    _patch_record(image, "Files/hello.txt", 0, struct.pack("<H", 0x8001))
    assert_finding(image, "error", "undefined flag bits")


def test_parent_file_id_not_a_containing_directory(image):
    _patch_record(image, "Files/big.bin", 0x58, struct.pack("<I", 1))
    assert_finding(image, "warning", "ParentFileId 1 is not a directory that names it (a convention of"
                                     " cimfs_cffi's writer, not a format rule)")


def test_the_root_may_have_no_security_descriptor(image):
    _patch_record(image, "", 0x38, struct.pack("<Q", 0))  # as Microsoft's writer leaves it
    rewrite_object_ids(image, sha512_24)  # the file table changed
    assert verify(image) == []


def test_another_file_without_security_descriptor_is_a_convention_warning(image):
    _patch_record(image, "Files/hello.txt", 0x38, struct.pack("<Q", 0))
    rewrite_object_ids(image, sha512_24)
    assert messages(image, "error") == []
    assert_finding(image, "warning", "no security descriptor (a convention of")


def test_an_image_whose_root_was_never_created_verifies_clean(tmp_path):
    with Image.create(str(tmp_path), "implicit.cim") as im:
        im.add_directory("a")
        im.add_file("a/b.txt", b"the root was never created")
        im.commit()
    assert verify(str(tmp_path / "implicit.cim")) == []


def test_a_version_1_image_has_no_parent_ids_and_no_sparse_flag(tmp_path):
    path = build_wide_image(str(tmp_path), 3)
    as_version_1(path)
    rewrite_object_ids(path, sha512_24)
    assert verify(path) == []  # ParentFileId reads as 0 and is not checked
    _patch_record(path, "d/f000001", 0x28 + 15, b"\x01")  # the 2.0 sparse bit: undefined in 1.0
    _patch_record(path, "d/f000002", 0, struct.pack("<H", 0x10))  # FileFlagSparse: undefined in 1.0
    found = messages(path, "error")
    assert any("f000001" in f and "undefined flag bits" in f for f in found), found
    assert any("f000002" in f and "undefined flag bits" in f for f in found), found


def test_stream_table_entry_of_wrong_type(image):
    img, rec = locate(image, "Files/hello.txt")
    where, at = object_location(img, rec.stream_table_offset)
    patch(where, at + 4 + 8 + 14, b"\x01")
    assert_finding(image, "error", "has type 1 (only data allowed)")


def test_truncated_region_gives_findings_not_exceptions(image):
    with open_image(image) as img:
        meta = img.regions[0].path
    size = os.path.getsize(meta)
    with open(meta, "r+b") as f:
        f.truncate(size - 4096)
    found = messages(image, "error")
    assert found


@pytest.mark.parametrize("damage", ["magic", "missing region", "empty file"])
def test_unopenable_images_give_one_error(image, damage):
    if damage == "magic":
        patch(image, 0, b"XIMFILE0")
    elif damage == "missing region":
        os.unlink(next(os.path.join(os.path.dirname(image), n) for n in os.listdir(os.path.dirname(image))
                       if n.startswith("region_") and n.endswith("_1")))
    else:
        open(image, "wb").close()
    found = verify(image)
    assert len(found) == 1 and found[0].severity == "error", found


def test_stream_offsets_are_never_trusted_past_48_bits(image):
    img, rec = locate(image, "Files/hello.txt")
    _patch_record(image, "Files/hello.txt", 0x28, struct.pack("<Q", (rec.stream_offset & OFFSET_MASK) | 77 << 48))
    assert_finding(image, "error", "invalid region offset")
