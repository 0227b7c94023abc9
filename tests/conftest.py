"""Shared fixtures: a thin test driver over the raw `lib` that returns HRESULTs."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import cimfs_cffi  # noqa: E402
from cimfs_cffi import ffi, lib  # noqa: E402

import cimreader  # noqa: E402

S_OK = 0
E_INVALIDARG = 0x80070057
E_POINTER = 0x80004003
E_ACCESSDENIED = 0x80070005
HR_FILE_NOT_FOUND = 0x80070002
HR_PATH_NOT_FOUND = 0x80070003
HR_SHARING_VIOLATION = 0x80070020
HR_HANDLE_EOF = 0x80070026
HR_NOT_SUPPORTED = 0x80070032
HR_FILE_EXISTS = 0x80070050
HR_DISK_FULL = 0x80070070
HR_FILE_CORRUPT = 0x80070570

DIR = 0x10
REPARSE = 0x400
SPARSE = 0x200


def examples(default):
    """Hypothesis example count: `default`, or CIMFS_TEST_EXAMPLES for longer runs."""
    return int(os.environ.get("CIMFS_TEST_EXAMPLES", default))


def u(hr):
    """HRESULT as the unsigned value the docs print."""
    return hr & 0xFFFFFFFF


def metadata(attributes=0, size=0, times=(0, 0, 0, 0), sd=None, reparse=None, ea=None):
    """A CIMFS_FILE_METADATA and the buffers it points into (keep both alive)."""
    md = ffi.new("CIMFS_FILE_METADATA *")
    md.Attributes = attributes
    md.FileSize = size
    md.CreationTime.QuadPart, md.LastWriteTime.QuadPart, md.ChangeTime.QuadPart, md.LastAccessTime.QuadPart = times
    keep = []
    for blob, buf_field, size_field in ((sd, "SecurityDescriptorBuffer", "SecurityDescriptorSize"),
                                        (reparse, "ReparseDataBuffer", "ReparseDataSize"),
                                        (ea, "EaBuffer", "EaBufferSize")):
        if blob is not None:
            buf = ffi.new("char[]", blob)
            keep.append(buf)
            setattr(md, buf_field, buf)
            setattr(md, size_field, len(blob))
    return md, keep


class Writer:
    """One image handle.  Methods return unsigned HRESULTs; `ok_*` assert S_OK."""

    def __init__(self, directory, name="image.cim", existing=None):
        self.directory = str(directory)
        self.name = name
        self.handle = ffi.new("CIMFS_IMAGE_HANDLE *")
        self.hr = u(lib.CimCreateImage(self.directory, existing if existing is not None else ffi.NULL,
                                       name if name is not None else ffi.NULL, self.handle))
        self.stream = None

    @property
    def h(self):
        return self.handle[0]

    def create(self, path, attributes=0, size=0, **kw):
        """CimCreateFile; leaves the stream open in self.stream on success."""
        md, _keep = metadata(attributes, size, **kw)
        s = ffi.new("CIMFS_STREAM_HANDLE *")
        hr = u(lib.CimCreateFile(self.h, path, md, s))
        if hr == S_OK:
            self.stream = s[0]
        return hr

    def write(self, data, stream=None):
        return u(lib.CimWriteStream(stream or self.stream, data, len(data)))

    def close_stream(self):
        if self.stream is not None:
            lib.CimCloseStream(self.stream)
            self.stream = None

    def mkdir(self, path, attributes=0, **kw):
        hr = self.create(path, DIR | attributes, **kw)
        assert hr == S_OK, "mkdir %r: 0x%08X" % (path, hr)
        self.close_stream()

    def add(self, path, data=b"", attributes=0, chunk=None, **kw):
        hr = self.create(path, attributes, len(data), **kw)
        assert hr == S_OK, "create %r: 0x%08X" % (path, hr)
        step = chunk or max(1, len(data))
        for i in range(0, len(data), step):
            assert self.write(data[i:i + step]) == S_OK
        self.close_stream()

    def ads(self, path, data=b"", size=None):
        s = ffi.new("CIMFS_STREAM_HANDLE *")
        hr = u(lib.CimCreateAlternateStream(self.h, path, len(data) if size is None else size, s))
        if hr != S_OK:
            return hr
        if data:
            assert u(lib.CimWriteStream(s[0], data, len(data))) == S_OK
        lib.CimCloseStream(s[0])
        return hr

    def link(self, new, existing):
        return u(lib.CimCreateHardLink(self.h, new, existing))

    def delete(self, path):
        return u(lib.CimDeletePath(self.h, path))

    def commit(self):
        return u(lib.CimCommitImage(self.h))

    def close(self):
        self.close_stream()
        lib.CimCloseImage(self.h)

    def finish(self):
        """Commit, close, and return the image read back with the spec reader (checked)."""
        assert self.commit() == S_OK
        self.close()
        img = cimreader.Image(os.path.join(self.directory, self.name))
        img.check()
        return img


@pytest.fixture
def workdir(tmp_path):
    return tmp_path


@pytest.fixture
def writer(tmp_path):
    w = Writer(tmp_path)
    assert w.hr == S_OK
    yield w
    w.close()


@pytest.fixture(autouse=True, scope="session")
def portable_backend():
    """The suite specifies the portable writer, also on Windows hosts with cimfs.dll."""
    cimfs_cffi.select_backend("portable")
    yield
    cimfs_cffi.select_backend("auto")


@pytest.fixture(autouse=True)
def no_faults():
    lib.CimfsTestClearFault()
    yield
    lib.CimfsTestClearFault()
