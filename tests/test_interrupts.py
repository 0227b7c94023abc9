"""Ctrl-C, SIGTERM and SIGKILL at any moment of a build, extract or export: exit 130/143 with one
line, no temporary file left, the previous image intact; what SIGKILL leaves, the next build or
`cimfs gc` removes."""
import os
import signal
import subprocess
import sys
import time

import pytest

from cimfs_cffi import Image, open_image, verify
from cimfs_cffi import build
from cimfs_cffi.publish import gc

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX signals")


def cimfs_command():
    """The console script (signals are handled from its first line; `python -m` imports first)."""
    script = os.path.join(os.path.dirname(sys.executable), "cimfs")
    return [script] if os.path.exists(script) else [sys.executable, "-c", "import _cimfs_launcher, sys; "
                                                                          "sys.exit(_cimfs_launcher.main())"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    block = os.urandom(1 << 16)
    for d in range(40):
        os.mkdir(root / ("d%02d" % d))
        for f in range(60):
            (root / ("d%02d" % d) / ("f%03d" % f)).write_bytes(block[(d * 60 + f) % 4096:][:20000])
    return root


def run_and_signal(args, cwd, ready, sig, delay):
    """Start the command, wait until `ready()` says it is at work, let it run `delay` more, signal."""
    p = subprocess.Popen(cimfs_command() + args, cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.monotonic() + 30
    while not ready() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    return p.returncode, err


def writing(out):
    """True once a build is writing its image (in its staging folder, or in place)."""
    def ready():
        for name in os.listdir(out):
            if name.startswith(".cimfs-tmp."):
                return True
            if name.startswith(".cimfs-build.") and any(n.startswith(".cimfs-tmp.")
                                                        for n in os.listdir(os.path.join(out, name))):
                return True
        return False
    return ready


@pytest.mark.parametrize("sig, status, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_a_signalled_build_leaves_the_previous_image_and_nothing_else(source, tmp_path, sig, status, word, delay):
    out = tmp_path / "out"
    build(source, out / "x.cim")
    before = sorted(os.listdir(out))
    rc, err = run_and_signal(["build", "-q", str(source), "out/x.cim"], tmp_path, writing(out), sig, delay)
    after = sorted(os.listdir(out))
    assert [f for f in verify(out / "x.cim") if f.severity == "error"] == []
    if rc in (0, -sig):  # it finished first (the signal met the interpreter's exit): a new image
        assert len(after) == 7 and not [n for n in after if n.startswith(".")]
        return
    assert (rc, err) == (status, "cimfs: %s\n" % word)
    # The previous image and nothing else, or, if the signal came after the new image took its
    # name, the new image and nothing else: never a temporary, a partial image or stray regions.
    assert after == before or (len(after) == 7 and not [n for n in after if n.startswith(".")])


def test_a_signalled_extract_leaves_dest_as_it_was(source, tmp_path):
    build(source, tmp_path / "i" / "x.cim")
    dest = tmp_path / "dest"
    rc, err = run_and_signal(["extract", "-q", "i/x.cim", "dest"], tmp_path,
                             lambda: dest.exists() and len(os.listdir(dest)) > 3, signal.SIGINT, 0.0)
    if rc in (0, -signal.SIGINT):
        pytest.skip("the extract finished before the signal (machine too fast for this tree)")
    assert (rc, err) == (130, "cimfs: interrupted\n") and not dest.exists()


def test_a_signalled_export_leaves_no_tar(source, tmp_path):
    build(source, tmp_path / "i" / "x.cim")
    rc, err = run_and_signal(["export", "-q", "i/x.cim", "out.tar"], tmp_path,
                             lambda: any(n.startswith(".cimfs-export-") for n in os.listdir(tmp_path)), signal.SIGTERM,
                             0.0)
    if rc in (0, -signal.SIGTERM):
        pytest.skip("the export finished before the signal")
    assert (rc, err) == (143, "cimfs: terminated\n")
    assert [n for n in os.listdir(tmp_path) if n not in ("i",)] == []


def test_sigkill_leftovers_are_removed_by_the_next_build(source, tmp_path):
    out = tmp_path / "out"
    build(source, out / "x.cim")
    before = sorted(os.listdir(out))
    rc, _ = run_and_signal(["build", "-q", str(source), "out/x.cim"], tmp_path, writing(out), signal.SIGKILL, 0.05)
    assert rc == -signal.SIGKILL
    left = sorted(set(os.listdir(out)) - set(before))
    assert left and all(n.startswith((".cimfs-tmp.", ".cimfs-build.", ".cimfs-lock.")) for n in left)
    summary = build(source, out / "y.cim")  # the next build in the directory removes them at once
    new = set(os.listdir(out)) - set(before)
    assert "y.cim" in new and all(n == "y.cim" or n.startswith(("region_", "objectid_")) for n in new)
    assert len(summary.warnings) == len(left)


def stale_partial(out):
    """What a build killed between its commit and its rename leaves: an image under its
    temporary name, with region files that only it uses."""
    build(out.parent / "src-small", out / "tmp-build.cim")
    os.rename(out / "tmp-build.cim", out / ".x.cim.0123456789ab.partial")


def test_gc_and_the_next_build_remove_a_killed_builds_image(tmp_path):
    (tmp_path / "src-small").mkdir()
    (tmp_path / "src-small" / "f").write_bytes(b"x" * 5000)
    out = tmp_path / "out"
    build(tmp_path / "src-small", out / "keep.cim")
    kept = sorted(os.listdir(out))
    stale_partial(out)
    removed = gc(out)
    assert ".x.cim.0123456789ab.partial" in removed and len(removed) == 1 + 6
    assert sorted(os.listdir(out)) == kept
    assert [f for f in verify(out / "keep.cim") if f.severity == "error"] == []
    stale_partial(out)
    summary = build(tmp_path / "src-small", out / "other.cim")
    assert any("killed" in w for w in summary.warnings)
    assert not [n for n in os.listdir(out) if n.endswith(".partial")]


def test_gc_removes_unused_region_files_and_waits_for_no_writer(tmp_path):
    (tmp_path / "src-small").mkdir()
    (tmp_path / "src-small" / "f").write_bytes(b"x")
    build(tmp_path / "src-small", tmp_path / "out" / "a.cim")
    build(tmp_path / "src-small", tmp_path / "out" / "b.cim")
    os.unlink(tmp_path / "out" / "b.cim")  # its region files are now orphans
    assert len(gc(tmp_path / "out")) == 6
    with open_image(tmp_path / "out" / "a.cim") as img:
        assert img.read_bytes("f") == b"x"
    with Image.create(tmp_path / "out", "busy.cim"):
        proc = subprocess.run(cimfs_command() + ["gc", str(tmp_path / "out")], capture_output=True, text=True,
                              cwd=str(tmp_path))
        assert proc.returncode == 1 and "cimfs: error:" in proc.stderr
