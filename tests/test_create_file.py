"""CimCreateFile: paths, overwrite rules and metadata (docs/api.md §4.1 and §7)."""
import struct

import pytest

from conftest import (DIR, E_INVALIDARG, HR_PATH_NOT_FOUND, HR_SHARING_VIOLATION, REPARSE, S_OK, ffi, lib,
                      metadata, u)

NULL_DACL = bytes([1, 0, 4, 0x80]) + bytes(16)


def symlink_reparse(target, relative=True):
    """IO_REPARSE_TAG_SYMLINK buffer (tag, length, reserved, then the symlink payload)."""
    name = target.encode("utf-16-le")
    payload = struct.pack("<HHHHI", 0, len(name), len(name), len(name), 1 if relative else 0) + name + name
    return struct.pack("<IHH", 0xA000000C, len(payload), 0) + payload


def ea_chain(pairs):
    out = b""
    for i, (name, value) in enumerate(pairs):
        entry = struct.pack("<IBBH", 0, 0, len(name), len(value)) + name + b"\0" + value
        if i < len(pairs) - 1:
            entry += b"\0" * ((-len(entry)) % 4)
            entry = struct.pack("<I", len(entry)) + entry[4:]
        out += entry
    return out


def test_parents_must_exist(writer):  # docs/api.md §7.1
    assert writer.create("a\\b") == HR_PATH_NOT_FOUND
    writer.add("file", b"x")
    assert writer.create("file\\b") == HR_PATH_NOT_FOUND  # a file is not a parent
    writer.mkdir("a")
    assert writer.create("a\\b") == S_OK


def test_recreating_an_existing_directory_keeps_its_children(writer):  # docs/api.md §7.2
    writer.mkdir("d", times=(1, 1, 1, 1))
    writer.add("d\\child", b"data")
    writer.mkdir("D", times=(5, 6, 7, 8), attributes=0x2)
    img = writer.finish()
    d = img.lookup("d")
    assert [n for n, _ in img.listdir(d)] == ["child"]
    assert img.record(d).times == (5, 6, 7, 8)
    assert img.node(d).attributes == DIR | 0x2
    assert [n for n, _ in img.listdir(img.root_id)] == ["D"]  # the new spelling


def test_overwriting_with_a_different_type_replaces_the_entry(writer):  # docs/api.md §7.3
    writer.mkdir("d")
    writer.mkdir("d\\sub")
    writer.add("d\\sub\\f", b"x")
    writer.add("d", b"now a file")
    writer.add("f", b"file")
    writer.mkdir("f")
    img = writer.finish()
    assert img.read(img.lookup("d")) == b"now a file"
    assert img.record(img.lookup("f")).is_dir
    assert set(img.walk()) == {"", "d", "f"}


def test_overwriting_one_name_of_a_linked_file_only_affects_that_name(writer):  # docs/api.md §7.4
    writer.add("a", b"old")
    assert writer.link("b", "a") == S_OK
    writer.add("b", b"new content")
    img = writer.finish()
    assert img.read(img.lookup("a")) == b"old"
    assert img.read(img.lookup("b")) == b"new content"
    assert img.lookup("a") != img.lookup("b")


def test_trailing_backslash_is_invalidarg(writer):  # docs/api.md §7.8
    writer.mkdir("d")
    assert writer.create("d\\", DIR) == E_INVALIDARG
    assert writer.create("d\\f\\") == E_INVALIDARG


def test_leading_backslash_is_accepted(writer):  # docs/api.md §7.9
    assert writer.create("\\top") == S_OK
    writer.close_stream()
    assert writer.create("\\\\top2") == E_INVALIDARG  # exactly one is stripped
    img = writer.finish()
    assert "top" in img.walk()


@pytest.mark.parametrize("path", ["a\\\\b", ".", "..", "d\\.", "d\\..\\x", "a/b", "/", "\\\\", "a\\.\\b"])
def test_empty_dot_and_slash_components_are_invalidarg(writer, path):  # docs/api.md §7.10
    writer.mkdir("d")
    writer.mkdir("a")
    assert writer.create(path) == E_INVALIDARG


def test_root_takes_only_directory_metadata(writer):  # docs/api.md §7.10
    assert writer.create("", 0) == E_INVALIDARG
    assert writer.create("\\", 0) == E_INVALIDARG
    assert writer.create("", DIR, times=(9, 9, 9, 9)) == S_OK
    writer.close_stream()
    img = writer.finish()
    assert img.record(img.root_id).times == (9, 9, 9, 9)


def test_names_compare_case_insensitively(writer):  # docs/api.md §7.11
    writer.add("Readme.TXT", b"1")
    writer.add("README.txt", b"2")  # the same name: replaced, new spelling kept
    writer.mkdir("\u00e9t\u00e9")
    writer.add("\u00c9T\u00c9\\x", b"3")  # É matches é through the upcase table
    writer.add("\u1f80", b"4")
    writer.add("\u1f88", b"5")  # simple uppercase of U+1F80 (not reachable with str.upper)
    img = writer.finish()
    assert sorted(n for n, _ in img.listdir(img.root_id)) == sorted(["README.txt", "\u00e9t\u00e9", "\u1f88"])
    assert img.read(img.lookup("readme.txt")) == b"2"
    assert img.read(img.lookup("\u00e9t\u00e9\\X")) == b"3"


def test_directory_stream_handles_reject_writes_and_must_be_closed(writer):  # docs/api.md §7.12
    assert writer.create("d", DIR) == S_OK
    assert writer.write(b"x") == E_INVALIDARG
    assert writer.create("other") == HR_SHARING_VIOLATION
    writer.close_stream()
    assert writer.create("other") == S_OK


def test_null_metadata_and_null_stream_pointer_are_invalidarg(writer):
    s = ffi.new("CIMFS_STREAM_HANDLE *")
    assert u(lib.CimCreateFile(writer.h, "f", ffi.NULL, s)) == E_INVALIDARG
    md, _ = metadata()
    assert u(lib.CimCreateFile(writer.h, "f", md, ffi.NULL)) == E_INVALIDARG
    assert u(lib.CimCreateFile(writer.h, ffi.NULL, md, s)) == E_INVALIDARG


@pytest.mark.parametrize("kw", [
    dict(size=-1),
    dict(size=1 << 48),
    dict(times=(-1, 0, 0, 0)),
    dict(sd=b"\x02\x00\x04\x80" + bytes(16)),           # revision 2
    dict(sd=b"\x01\x00\x04\x00" + bytes(16)),           # not self-relative
    dict(sd=b"\x01\x00\x04\x80" + bytes(4)),            # too short
    dict(sd=b"\x01\x00\x04\x80" + struct.pack("<I", 99) + bytes(12)),  # owner outside
    dict(sd=NULL_DACL + bytes(65536)),                  # over 65535 bytes
    dict(reparse=symlink_reparse("t")),                 # data without the attribute
    dict(attributes=REPARSE),                           # attribute without data
    dict(attributes=REPARSE, reparse=symlink_reparse("t")[:-1]),  # length mismatch
    dict(attributes=REPARSE, reparse=b"\0" * 8),        # tag 0
    dict(ea=b"\0" * 7),                                 # shorter than an entry header
    dict(ea=struct.pack("<IBBH", 0, 0, 3, 1) + b"abc" + b"x" + b"v"),  # name not NUL-terminated
    dict(ea=struct.pack("<IBBH", 0, 0, 0, 1) + b"\0v"),  # empty name
    dict(ea=struct.pack("<IBBH", 8, 0, 1, 0) + b"a\0"),  # next entry inside this one
    dict(ea=struct.pack("<IBBH", 0, 0, 1, 9) + b"a\0v"),  # value past the buffer
])
def test_malformed_metadata_is_invalidarg(writer, kw):
    attributes = kw.pop("attributes", 0)
    assert writer.create("f", attributes, **kw) == E_INVALIDARG


def test_buffer_null_with_size_is_invalidarg(writer):
    md, _ = metadata()
    md.SecurityDescriptorSize = 20
    s = ffi.new("CIMFS_STREAM_HANDLE *")
    assert u(lib.CimCreateFile(writer.h, "f", md, s)) == E_INVALIDARG


def test_directory_file_size_is_ignored(writer):
    assert writer.create("d", DIR, size=4096) == S_OK  # a stat() size of a directory
    writer.close_stream()
    img = writer.finish()
    assert img.record(img.lookup("d")).is_dir


def test_attributes_round_trip(writer):  # docs/api.md §7.20
    writer.add("all", b"x", attributes=0x1 | 0x2 | 0x4 | 0x20 | 0x80 | 0x2000)
    writer.mkdir("d", attributes=0x2)
    img = writer.finish()
    assert img.node(img.lookup("all")).attributes == 0x1 | 0x2 | 0x4 | 0x20  # NORMAL etc. are not storable
    assert img.node(img.lookup("d")).attributes == DIR | 0x2


def test_times_round_trip(writer):
    writer.add("f", b"x", times=(132000000000000000, 132000000000000001, 132000000000000002, 2**62))
    img = writer.finish()
    assert img.record(img.lookup("f")).times == (132000000000000000, 132000000000000001, 132000000000000002, 2**62)


def test_empty_security_descriptor_gets_the_null_dacl(writer):  # docs/api.md §7.18
    writer.add("f", b"x")
    writer.mkdir("d")
    img = writer.finish()
    assert img.node(img.lookup("f")).sd == NULL_DACL
    assert img.node(img.lookup("d")).sd == NULL_DACL


def test_root_never_created_has_no_sd_times_or_flags(writer):
    """As in Microsoft's images (which mount): SdOffset 0, zero times and flags."""
    writer.add("f", b"x")
    img = writer.finish()
    root = img.record(img.root_id)
    assert (root.sd_offset, root.times, root.flags) == (0, (0, 0, 0, 0), 0)


def test_root_created_explicitly_keeps_its_metadata(writer):
    writer.mkdir("", attributes=0x2, times=(1, 2, 3, 4))
    img = writer.finish()
    root = img.record(img.root_id)
    assert img.node(img.root_id).sd == NULL_DACL and root.times == (1, 2, 3, 4) and root.flags == 0x2


def test_security_descriptors_are_stored_once(writer):
    sd = bytes([1, 0, 0x04, 0x80, 20, 0, 0, 0]) + bytes(12) + bytes([1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0])
    for i in range(5):
        writer.add("f%d" % i, b"x", sd=sd)
    img = writer.finish()
    offsets = {img.record(img.lookup("f%d" % i)).sd_offset for i in range(5)}
    assert len(offsets) == 1
    assert img.node(img.lookup("f3")).sd == sd


def test_reparse_data_and_attribute_round_trip(writer):  # docs/api.md §7.19
    rp = symlink_reparse("target.txt")
    writer.add("link", b"", attributes=REPARSE, reparse=rp)
    writer.mkdir("junction", attributes=REPARSE, reparse=symlink_reparse("C:\\x", relative=False))
    img = writer.finish()
    rec = img.record(img.lookup("link"))
    assert rec.reparse_tag == 0xA000000C
    assert img.node(rec.id).reparse == rp
    assert img.node(rec.id).attributes & REPARSE
    assert img.node(img.lookup("junction")).attributes == DIR | REPARSE


def test_ea_buffer_size_is_bytes_and_stored_as_given(writer):  # docs/api.md §7.17
    ea = ea_chain([(b"user.one", b"1"), (b"SECOND", b"value-two")])
    writer.add("f", b"x", ea=ea)
    img = writer.finish()
    rec = img.record(img.lookup("f"))
    assert rec.ea_length == len(ea)
    assert img.node(rec.id).ea == ea
