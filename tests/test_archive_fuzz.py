"""The tar/PAX and zip front ends fed mutated archives (hypothesis): a build either makes an
image that verifies or stops with a CimError (one line from the command), never another
exception.  CIMFS_TEST_EXAMPLES raises the number of examples for a longer run."""
import io
import tarfile
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimfs_cffi import verify
from cimfs_cffi import build
from cimfs_cffi.errors import CimError
from conftest import examples
from test_msix import MANIFEST


def seed_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        d = tarfile.TarInfo("Files")
        d.type = tarfile.DIRTYPE
        d.pax_headers = {"MSWINDOWS.fileattr": "16", "LIBARCHIVE.creationtime": "1700000000.5"}
        tf.addfile(d)
        for name, data in (("Files/a.txt", b"alpha" * 50), ("Files/b.bin", bytes(range(256)) * 9),
                           ("Files/a.txt:s:$DATA", b"stream")):
            f = tarfile.TarInfo(name)
            f.size = len(data)
            f.pax_headers = {"MSWINDOWS.fileattr": "32", "mtime": "1700000001.25"}
            tf.addfile(f, io.BytesIO(data))
        link = tarfile.TarInfo("Files/link")
        link.type, link.linkname = tarfile.LNKTYPE, "Files/a.txt"
        tf.addfile(link)
        sym = tarfile.TarInfo("Files/sym")
        sym.type, sym.linkname = tarfile.SYMTYPE, "a.txt"
        tf.addfile(sym)
        wh = tarfile.TarInfo("Files/.wh.gone")
        tf.addfile(wh)
    return out.getvalue()


def seed_package() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("AppxManifest.xml", MANIFEST % "")
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("app/tool.dat", b"data" * 300)
        zf.writestr("app/Assets/logo.png", b"\x89PNG" + bytes(100))
    return out.getvalue()


TAR, PACKAGE = seed_tar(), seed_package()


def test_an_encrypted_manifest_is_one_error(tmp_path):
    """Found by the package fuzzer: a manifest flagged encrypted made zipfile raise RuntimeError."""
    data = bytearray(PACKAGE)
    data[data.find(b"PK\x03\x04") + 6] |= 1  # the first part's local header: encrypted
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 1  # and its central directory entry
    builds_or_fails_cleanly(tmp_path, bytes(data), ".msix")
EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8)


def mutate(data: bytes, edits, cut: int) -> bytes:
    out = bytearray(data)
    for at, value in edits:
        out[at % len(out)] = value
    return bytes(out[:len(out) - cut % 64]) if cut % 5 == 0 else bytes(out)


def builds_or_fails_cleanly(work, data, suffix):
    source = work / ("in" + suffix)
    source.write_bytes(data)
    try:
        build(source, work / "out" / "x.cim", on_collision="rename", on_invalid="rename")
    except CimError:
        return
    assert [f for f in verify(work / "out" / "x.cim") if f.severity == "error"] == []


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(EDITS, st.integers(0, 1 << 16))
def test_mutated_tars_build_or_fail_cleanly(tmp_path_factory, edits, cut):
    builds_or_fails_cleanly(tmp_path_factory.mktemp("tar"), mutate(TAR, edits, cut), ".tar")


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(EDITS, st.integers(0, 1 << 16))
def test_mutated_packages_build_or_fail_cleanly(tmp_path_factory, edits, cut):
    builds_or_fails_cleanly(tmp_path_factory.mktemp("pkg"), mutate(PACKAGE, edits, cut), ".msix")


def test_a_part_without_a_name_is_one_error(tmp_path):
    """Found by the package fuzzer: zipfile's is_dir() raised IndexError on an empty name."""
    data = bytearray(PACKAGE)
    central = data.find(b"PK\x01\x02")
    name_length = int.from_bytes(data[central + 28:central + 30], "little")
    data[central + 28:central + 30] = (0).to_bytes(2, "little")  # the first part's central name: empty
    data[central + 46:central + 46 + name_length] = b""
    builds_or_fails_cleanly(tmp_path, bytes(data), ".msix")
