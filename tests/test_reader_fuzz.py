"""Hostile images: byte mutations and truncations of a real image must give findings or one
CorruptImageError from the reader, never another exception type, a hang or a huge allocation.

CIMFS_TEST_EXAMPLES raises the example count for longer runs (CI runs the default)."""
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimfs_cffi import CorruptImage, open_image, verify
from cimfs_cffi.reader import OFFSET_MASK, FileInfo
from conftest import examples
from images import build_rich_image

READ_CAP = 1 << 20


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = build_rich_image(str(tmp_path_factory.mktemp("fuzz-src")))
    directory = os.path.dirname(path)
    return directory, sorted(os.listdir(directory)), structures(path)


def structures(path):
    """(file name, start, length) of the metadata a mutation should hit most: the filesystem
    object, the file table directory, the file tables, and every directory and stream table."""
    spans = []
    with open_image(path) as img:
        def add(offset, length):
            spans.append((os.path.basename(img.regions[offset >> 48].path), offset & OFFSET_MASK, length))
        add(img.filesystem_offset, 24)
        add(img.table_directory_offset, 16 * img.table_count)
        for offset, count, size, _ in img.tables:
            add(offset, count * size)
        for _, rec in img.iter_tree():
            if rec.is_dir and rec.stream_length:
                add(rec.stream_offset, rec.stream_length)
            if rec.stream_table_offset:
                add(rec.stream_table_offset, 64)
            for off in (rec.sd_offset, rec.reparse_offset, rec.ea_offset):
                if off:
                    add(off, 24)
    return spans


def read_everything(path):
    """Walk, stat and read (capped) every file, stream, SD, EA and reparse buffer."""
    with open_image(path) as img:
        for p, rec in img.iter_tree():
            info = FileInfo(img, rec, p)
            (info.nlink, info.security_descriptor, info.ea, info.reparse_data, info.attributes)
            if not rec.is_dir:
                with img.stream_reader(p, rec.default_stream) as f:
                    f.seek(max(0, rec.stream_length - READ_CAP // 2))
                    f.read(READ_CAP)
            for name, s in img.streams_of(rec).items():
                with img.stream_reader(name, s) as f:
                    f.read(READ_CAP)
        list(img.walk())


mutation = st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255))


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 6), mutations=st.lists(mutation, min_size=1, max_size=8),
       truncate=st.one_of(st.none(), st.floats(0, 1)), aimed=st.integers(-1, 1000))
def test_mutated_images_never_escape_as_other_errors(pristine, which, mutations, truncate, aimed):
    src, names, spans = pristine
    with tempfile.TemporaryDirectory(prefix="cimfs-fuzz-") as work:
        for n in names:
            shutil.copy(os.path.join(src, n), work)
        files = ["rich.cim"] + [n for n in names if n.startswith("region_")] + \
            [n for n in names if n.startswith("objectid_")]
        start, span = 0, None
        if aimed >= 0:  # aim at one metadata structure
            name, start, span = spans[aimed % len(spans)]
            target = os.path.join(work, name)
        else:
            target = os.path.join(work, files[which % len(files)])
        data = bytearray(open(target, "rb").read())
        span = len(data) - start if span is None else span
        for where, value in mutations:
            if span:
                data[start + int(where * span)] = value
        if truncate is not None:
            del data[int(truncate * len(data)):]
        open(target, "wb").write(bytes(data))
        image = os.path.join(work, "rich.cim")
        findings = verify(image)
        assert all(f.severity in ("error", "warning") for f in findings)
        try:
            read_everything(image)
        except CorruptImage:
            pass
