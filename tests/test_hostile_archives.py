"""Archives written to hurt: each builds, or fails with one line, in work proportional to its
real bytes (no zeros materialised for holes, no quadratic link chains, no recursion depth)."""
import io
import subprocess
import sys
import tarfile
import zipfile

import pytest

import cimfs_cffi.from_package as from_package
from cimfs_cffi import open_image
from cimfs_cffi import BuildError, InvalidName, build
from test_msix import MANIFEST

TIB = 1 << 40


def tar_with(path, members):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name, data=b"", **attrs):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    return info, data


def one_line_error(tmp_path, source):
    proc = subprocess.run([sys.executable, "-m", "cimfs_cffi", "build", "-q", str(source), "out/x.cim"],
                          cwd=str(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("cimfs: error:"), \
        proc.stderr[-500:]
    return proc.stderr


def test_a_long_chain_of_forward_hard_links(tmp_path):
    n = 10000  # link i names link i+1, which comes later; only the last entry is a file
    members = [member("l%05d" % i, type=tarfile.LNKTYPE, linkname="l%05d" % (i + 1)) for i in range(n)]
    members.append(member("l%05d" % n, b"x"))
    build(tar_with(tmp_path / "chain.tar", members), tmp_path / "o" / "x.cim")
    with open_image(tmp_path / "o" / "x.cim") as img:
        assert img.stat("l00000").nlink == n + 1 and img.read_bytes("l00000") == b"x"


@pytest.mark.parametrize("record", ["mtime", "atime", "ctime", "LIBARCHIVE.creationtime"])
def test_pax_times_with_5000_digits(tmp_path, record):
    info, data = member("f", b"x")
    info.pax_headers = {record: "9" * 5000}
    err = one_line_error(tmp_path, tar_with(tmp_path / "big.tar", [(info, data)]))
    assert "'f'" in err


def test_a_pax_size_with_5000_digits(tmp_path):
    """Python's tarfile reads a size it cannot hold as 0 (and the data that follows as the next
    headers): the build ends either way, with an image or one line, never a traceback."""
    info, data = member("f", b"x")
    info.pax_headers = {"size": "9" * 5000}
    proc = subprocess.run([sys.executable, "-m", "cimfs_cffi", "build", "-q", str(tar_with(tmp_path / "b.tar",
                                                                                           [(info, data)])),
                           "out/x.cim"], cwd=str(tmp_path), capture_output=True, text=True)
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") <= 1


def test_a_100000_deep_path(tmp_path):
    deep = tar_with(tmp_path / "deep.tar", [member("/".join(["d"] * 100000) + "/f", b"x"), member("ok", b"y")])
    with pytest.raises(InvalidName, match="longer than 32767"):
        build(deep, tmp_path / "o" / "x.cim")
    one_line_error(tmp_path, deep)
    build(deep, tmp_path / "s" / "x.cim", on_invalid="skip")
    with open_image(tmp_path / "s" / "x.cim") as img:
        assert img.listdir() == ["ok"]


def sparse_member(name, size, data_map):
    """A GNU sparse 1.0 member: `data_map` is [(offset, bytes)]; the rest is hole."""
    body = ("%d\n" % len(data_map) + "".join("%d\n%d\n" % (o, len(b)) for o, b in data_map)).encode()
    body = body.ljust(-(-len(body) // 512) * 512, b"\0") + b"".join(b for _, b in data_map)
    info = tarfile.TarInfo("GNUSparseFile.0/" + name)
    info.size = len(body)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
                        "GNU.sparse.realsize": str(size)}
    return info, body


def test_a_1_tib_sparse_member_costs_nothing(tmp_path):
    tar = tar_with(tmp_path / "s.tar", [sparse_member("huge", TIB, [(TIB, b"")])])
    build(tar, tmp_path / "o" / "x.cim")
    with open_image(tmp_path / "o" / "x.cim") as img:
        st = img.stat("huge")
        assert st.sparse and st.size == TIB
        assert sum(r.size for r in img.regions) < 1 << 20


def test_a_1_tib_sparse_member_with_data_is_refused_not_zero_filled(tmp_path):
    tar = tar_with(tmp_path / "s.tar", [sparse_member("huge", TIB, [(TIB - 1, b"!")])])
    with pytest.raises(BuildError, match="holes as zeros"):
        build(tar, tmp_path / "o" / "x.cim")
    one_line_error(tmp_path, tar)


def test_a_small_hole_is_zero_filled(tmp_path):
    tar = tar_with(tmp_path / "s.tar", [sparse_member("f", 10000, [(0, b"head"), (9996, b"tail")])])
    build(tar, tmp_path / "o" / "x.cim")
    with open_image(tmp_path / "o" / "x.cim") as img:
        assert img.read_bytes("f") == b"head" + bytes(9992) + b"tail"


def test_a_zip_bomb_inside_a_package(tmp_path, monkeypatch):
    monkeypatch.setattr(from_package, "MAX_PART_PLAIN", 1 << 20)  # the same rule at a test's scale
    pkg = tmp_path / "bomb.msix"
    with zipfile.ZipFile(pkg, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("AppxManifest.xml", MANIFEST % "")
        zf.writestr("zeros.bin", bytes(4 << 20))  # 4 MiB of zeros in about 4 KiB
    with pytest.raises(BuildError, match="zip bomb"):
        build(pkg, tmp_path / "o" / "x.cim")


def test_many_empty_entries(tmp_path):
    """Entries with no bytes still cost bookkeeping; it grows with their number, nothing more.
    (Measured on 1,000,000: README "Untrusted input".)"""
    members = []
    for d in range(50):
        info = tarfile.TarInfo("d%02d" % d)
        info.type = tarfile.DIRTYPE
        members.append((info, None))
        members += [member("d%02d/f%04d" % (d, f)) for f in range(200)]
    build(tar_with(tmp_path / "many.tar", members), tmp_path / "o" / "x.cim")
    with open_image(tmp_path / "o" / "x.cim") as img:
        assert img.summary()["files"] == 10000
