"""HRESULT -> exception mapping, each provoked through the real writer where
the portable writer can produce it (docs/api.md §2.7)."""
import pickle

import pytest

import cimfs_cffi
from cimfs_cffi import (AccessDenied, AlreadyExists, CimError, CorruptImage, DiskFull, FileMetadata, Image,
                        InvalidArgument, NotSupported, OutOfMemory, PathNotFound, SharingViolation, StreamFull, errors,
                        ffi, lib)


@pytest.fixture
def image(tmp_path):
    with Image.create(tmp_path, "e.cim", backend="portable") as im:
        yield im


def test_invalid_argument_from_the_c_writer_is_a_value_error(image):
    bad_sd = b"\x02\x00\x04\x80" + bytes(16)  # passes Python, rejected by C: revision 2
    with pytest.raises(InvalidArgument) as e:
        image.add_file("f", b"x", FileMetadata(security_descriptor=bad_sd))
    assert isinstance(e.value, ValueError) and isinstance(e.value, OSError)
    assert e.value.hresult == 0x80070057 and e.value.winerror == 87 and e.value.path == "f"
    assert "0x80070057" in str(e.value) and "'f'" in str(e.value)


def test_e_pointer_is_invalid_argument(image):
    stream = image.open_file("f", 3)
    with pytest.raises(InvalidArgument) as e:
        errors.check(lib.CimWriteStream(stream._handle, ffi.NULL, 3))
    assert e.value.hresult == 0x80004003 and e.value.winerror is None
    stream.close()


def test_path_not_found_is_a_file_not_found_error(image):
    with pytest.raises(FileNotFoundError) as e:
        image.add_file("missing/f", b"x")
    assert isinstance(e.value, PathNotFound) and e.value.hresult == 0x80070003 and e.value.winerror == 3
    assert e.value.path == "missing\\f"


def test_missing_parent_image_is_path_not_found(tmp_path):
    with pytest.raises(PathNotFound) as e:
        Image.create(tmp_path, "child.cim", parent="nope.cim")
    assert e.value.hresult == 0x80070002 and e.value.path.endswith("nope.cim")


def test_missing_directory_is_path_not_found(tmp_path):
    with pytest.raises(PathNotFound, match="directory does not exist"):
        Image.create(tmp_path / "nodir", "a.cim")


def test_access_denied_is_a_permission_error(image):
    image.add_directory("d")
    with pytest.raises(PermissionError) as e:
        image.create_hard_link("l", "d")
    assert isinstance(e.value, AccessDenied) and e.value.hresult == 0x80070005
    assert (e.value.path, e.value.existing_path) == ("l", "d")


def test_existing_image_name_is_a_file_exists_error(tmp_path):
    with Image.create(tmp_path, "a.cim") as im:
        im.commit()
    with pytest.raises(FileExistsError) as e:
        Image.create(tmp_path, "a.cim")
    assert isinstance(e.value, AlreadyExists) and e.value.hresult == 0x80070050


def test_open_stream_is_a_sharing_violation(image):
    stream = image.open_file("f", 1)
    with pytest.raises(SharingViolation, match="still open") as e:
        image.add_directory("d")
    assert e.value.hresult == 0x80070020
    stream.close()
    image.add_directory("d")


def test_second_writer_in_a_directory_is_a_sharing_violation(tmp_path):
    with Image.create(tmp_path, "a.cim"):
        with pytest.raises(SharingViolation, match="another image writer"):
            Image.create(tmp_path, "b.cim")


def test_writing_past_the_size_is_stream_full(image):
    with image.open_file("f", 4) as s:
        s.write(b"ab")
        with pytest.raises(StreamFull, match="2 were written") as e:
            s.write(b"cdef")
        assert isinstance(e.value, ValueError) and e.value.hresult == 0x80070026
        assert s.written == 4


def test_disk_full_at_commit(tmp_path):
    im = Image.create(tmp_path, "full.cim")
    im.add_file("f", b"x" * 10000)
    lib.CimfsTestInjectFault(lib.CIM_FAULT_WRITE, 0, -(0x100000000 - 0x80070070), 0)
    try:
        with pytest.raises(DiskFull) as e:
            im.commit()
    finally:
        lib.CimfsTestClearFault()
    assert e.value.hresult == 0x80070070 and e.value.winerror == 112
    im.close()
    assert list(tmp_path.iterdir()) == []


def test_not_supported_backend_and_functions(tmp_path):
    with pytest.raises(NotSupported) as e:
        Image.create(tmp_path, "s.cim", backend="system")
    assert isinstance(e.value, NotImplementedError) and e.value.hresult == 0x80070032
    with pytest.raises(NotSupported):
        errors.check(lib.CimMountImage(str(tmp_path), "x", 0, ffi.new("GUID *")))
    with pytest.raises(NotSupported):
        cimfs_cffi.select_backend("system")


def test_corrupt_parent_is_corrupt_image(tmp_path):
    (tmp_path / "bad.cim").write_bytes(b"cimfile0" + bytes(100))
    with pytest.raises(CorruptImage) as e:
        Image.create(tmp_path, "child.cim", parent="bad.cim")
    assert e.value.hresult == 0x80070570


@pytest.mark.parametrize("hresult,cls,builtin", [
    (0x800700B7, AlreadyExists, FileExistsError),   # mount: volume GUID in use (driver only)
    (0x8007000E, OutOfMemory, MemoryError),
    (0x8007007F, NotSupported, NotImplementedError),  # export missing from cimfs.dll (Windows)
    (0x80004001, NotSupported, NotImplementedError),
    (0x800700CE, InvalidArgument, ValueError),
])
def test_codes_the_portable_writer_cannot_produce_still_map(hresult, cls, builtin):
    err = errors.error_for(hresult - (1 << 32))
    assert type(err) is cls and isinstance(err, builtin) and isinstance(err, CimError)
    assert err.hresult == hresult


def test_unknown_hresult_is_a_plain_cim_error():
    err = errors.error_for(0x8000FFFF - (1 << 32))
    assert type(err) is CimError and err.hresult == 0x8000FFFF and "0x8000FFFF" in str(err)
    with pytest.raises(CimError):
        errors.check(-1)
    assert errors.check(0) == 0


def test_errors_pickle_round_trip():
    err = errors.error_for(0x80070003 - (1 << 32), path="a", existing_path="b", index=7)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is PathNotFound and (back.path, back.existing_path, back.index) == ("a", "b", 7)
