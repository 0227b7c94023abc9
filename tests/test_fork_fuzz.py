"""Fuzzing the fork loader: byte mutations of a real image never crash it.

A mutated parent either loads (and the fork commits) or gives
HR(FILE_CORRUPT); under the sanitizer build (.ci/run) any out-of-bounds
access or undefined behaviour would abort the run.
"""
import atexit
import os
import shutil
import tempfile

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import HR_FILE_CORRUPT, S_OK, Writer, examples
from test_create_file import ea_chain, symlink_reparse

_TEMPLATE = None
UPCASE_WINDOW = (0, 0)


def template():
    """A small but feature-complete image, built once."""
    global _TEMPLATE
    if _TEMPLATE is None:
        d = tempfile.mkdtemp(prefix="cimfs-fuzz-")
        atexit.register(shutil.rmtree, d, True)  # shared by every example; gone with the test process
        w = Writer(d, "base.cim")
        w.mkdir("d")
        w.add("d\\f", b"data" * 10)
        w.add("d\\big", b"B" * 5000)
        w.add("ea", b"x", ea=ea_chain([(b"A", b"1"), (b"B", b"22")]))
        w.add("sym", b"", attributes=0x400, reparse=symlink_reparse("d\\f"))
        assert w.ads("d\\f:s", b"stream") == S_OK
        assert w.link("l", "d\\f") == S_OK
        img = w.finish()
        global UPCASE_WINDOW
        start = img.upcase_offset & 0xFFFFFFFFFFFF
        UPCASE_WINDOW = (start, start + 0x20000)
        _TEMPLATE = d
    return _TEMPLATE


def region_files(d):
    return sorted(n for n in os.listdir(d) if n.startswith(("region_", "objectid_")) or n.endswith(".cim"))


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_parent_loads_or_is_file_corrupt(data):
    src = template()
    files = region_files(src)
    with tempfile.TemporaryDirectory() as d:
        for n in files:
            shutil.copy(os.path.join(src, n), d)
        target = data.draw(st.sampled_from([n for n in files if not n.endswith("_1")]))
        path = os.path.join(d, target)
        skip = UPCASE_WINDOW
        raw = bytearray(open(path, "rb").read())
        if data.draw(st.booleans()):
            raw = raw[:data.draw(st.integers(0, len(raw)))]  # truncation
        for _ in range(data.draw(st.integers(1, 8))):
            if not raw:
                break
            # Aim at the structured parts: skip the 128 KiB upcase table, which
            # the loader does not parse.
            start, end = skip if target.startswith("region_") and target.endswith("_0") else (0, 0)
            pos = data.draw(st.integers(0, max(0, len(raw) - 1 - (end - start))))
            if pos >= start:
                pos += end - start
            if pos < len(raw):
                raw[pos] = data.draw(st.integers(0, 255))
        open(path, "wb").write(bytes(raw))
        w = Writer(d, "child.cim", existing="base.cim")
        assert w.hr in (S_OK, HR_FILE_CORRUPT), hex(w.hr)
        event("loaded" if w.hr == S_OK else "file corrupt")
        if w.hr == S_OK:
            w.add("new", b"n")
            w.link("l2", "new")
            assert w.commit() == S_OK
        w.close()
