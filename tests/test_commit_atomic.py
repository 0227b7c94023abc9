"""A failed or interrupted commit leaves no broken image and never damages a
committed one (SQLite-style fault injection through the I/O seam)."""
import hashlib
import os

import pytest

from conftest import HR_DISK_FULL, S_OK, Writer, lib, u

OPS = {
    "create": lib.CIM_FAULT_CREATE,
    "write": lib.CIM_FAULT_WRITE,
    "short-write": lib.CIM_FAULT_SHORT_WRITE,
    "sync": lib.CIM_FAULT_SYNC,
    "rename": lib.CIM_FAULT_RENAME,
    "truncate": lib.CIM_FAULT_TRUNCATE,
}
DISK_FULL = -(0x100000000 - HR_DISK_FULL)


def tree_state(d):
    """Names and contents of every file in a directory."""
    return {n: hashlib.sha256((d / n).read_bytes()).hexdigest() for n in sorted(os.listdir(d))}


def build_base(d):
    w = Writer(d, "layer.cim")
    w.mkdir("Files")
    w.add("Files\\a", b"A" * 6000)
    w.add("Files\\b", b"b")
    assert w.link("Files\\c", "Files\\a") == S_OK
    w.finish()


def stage_update(d):
    """Extend layer.cim in place, so a broken commit could damage the committed image."""
    w = Writer(d, None, existing="layer.cim")
    w.name = "layer.cim"
    w.add("Files\\new", os.urandom(9000))
    w.mkdir("Files\\dir")
    assert w.delete("Files\\b") == S_OK
    return w


def count_ops(d, op):
    """How many times one commit performs an operation."""
    w = stage_update(d)
    lib.CimfsTestInjectFault(0, 0, 0, 0)  # counters only
    assert w.commit() == S_OK
    n = lib.CimfsTestFaultCount(op)
    w.close()
    return n


@pytest.mark.parametrize("crash", [False, True], ids=["error", "crash"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_failed_commit_keeps_the_committed_image(tmp_path, op, crash):
    """Fail the n-th operation of a commit, for every n: the old image survives intact."""
    probe = tmp_path / "probe"
    probe.mkdir()
    build_base(probe)
    total = count_ops(probe, OPS[op])
    assert total > 0
    for n in range(total):
        d = tmp_path / ("run%d" % n)
        d.mkdir()
        build_base(d)
        before = tree_state(d)
        w = stage_update(d)
        lib.CimfsTestInjectFault(OPS[op], n, DISK_FULL, int(crash))
        hr = w.commit()
        w.close()
        lib.CimfsTestClearFault()
        after = tree_state(d)
        if hr == S_OK:
            # Only a crash after the final rename may "succeed": then the new image is complete.
            assert crash and n == total - 1 or after["layer.cim"] != before["layer.cim"]
            from cimreader import Image
            Image(str(d / "layer.cim")).check()
            continue
        assert hr == HR_DISK_FULL
        # The committed image and its regions are byte-for-byte unchanged.
        for name, digest in before.items():
            assert after.get(name) == digest, (op, n, name)
        if not crash:
            assert after == before, "a failed commit left files behind: %s" % (set(after) - set(before))
        # The image still reads back with its original content.
        from cimreader import Image
        img = Image(str(d / "layer.cim"))
        img.check()
        assert img.read(img.lookup("Files\\b")) == b"b"
        # The next writer starts clean: crash leftovers under temporary names are removed.
        Writer(d, "other.cim").close()
        leftovers = set(os.listdir(d)) - set(before)
        assert not any(x.startswith(".cimfs-tmp.") for x in leftovers)


def test_disk_full_while_streaming_fails_the_write_and_the_commit(workdir):
    """On the caller's thread (threads 1, or a stream too large to queue) the write itself fails."""
    w = Writer(workdir)
    assert u(lib.CimfsSetWriterThreads(w.h, 1)) == S_OK
    assert w.create("big", size=4 << 20) == S_OK
    lib.CimfsTestInjectFault(lib.CIM_FAULT_WRITE, 0, DISK_FULL, 0)
    results = {u(lib.CimWriteStream(w.stream, b"x" * (1 << 20), 1 << 20)) for _ in range(4)}
    lib.CimfsTestClearFault()
    assert HR_DISK_FULL in results
    w.close_stream()
    assert w.commit() == HR_DISK_FULL
    w.close()
    assert os.listdir(workdir) == []


def test_disk_full_on_the_writer_thread_while_streaming_fails_the_commit(workdir):
    """A stream too large to queue goes through the writer thread's buffers: a failed write there
    is returned by a later write or by the commit, which then leaves nothing."""
    w = Writer(workdir)
    size = 40 << 20
    assert w.create("big", size=size) == S_OK
    lib.CimfsTestInjectFault(lib.CIM_FAULT_WRITE, 2, DISK_FULL, 0)  # the third region write
    results = [u(lib.CimWriteStream(w.stream, b"x" * (4 << 20), 4 << 20)) for _ in range(size >> 22)]
    lib.CimfsTestClearFault()
    assert set(results) <= {S_OK, HR_DISK_FULL}
    w.close_stream()
    assert w.commit() == HR_DISK_FULL
    w.close()
    assert os.listdir(workdir) == []


@pytest.mark.parametrize("size", [100, 4 << 20])
def test_disk_full_when_a_queued_stream_is_placed_fails_the_commit(workdir, size):
    """A stream hashed on a helper thread reaches its region later: the failure of that write
    fails the commit (and leaves nothing), whichever call placed it."""
    w = Writer(workdir)
    assert w.create("a", size=size) == S_OK
    assert w.write(b"x" * size) == S_OK
    w.close_stream()
    lib.CimfsTestInjectFault(lib.CIM_FAULT_WRITE, 0, DISK_FULL, 0)
    w.add("b", b"y" * size)
    w.add("c", b"z" * size)
    assert w.commit() == HR_DISK_FULL
    lib.CimfsTestClearFault()
    w.close()
    assert os.listdir(workdir) == []


def test_closing_without_commit_keeps_an_existing_image(workdir):
    build_base(workdir)
    before = tree_state(workdir)
    w = stage_update(workdir)
    w.close()
    assert tree_state(workdir) == before
