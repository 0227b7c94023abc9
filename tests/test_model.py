"""Randomized model test: random create/write/link/delete/stream sequences go
to the C writer and to a small pure-Python model of the namespace.  Every
HRESULT must agree, and after commit the image (read back independently)
must equal the model, including which names share one file."""
import itertools
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimfs_cffi.paths import upcase
from conftest import E_ACCESSDENIED, HR_PATH_NOT_FOUND, S_OK, Writer, examples

# Few names, with case variants, so that operations collide often; dotless ı is not a variant
# of I in Windows' upcase table (str.upper() would fold it).
NAMES = ["a", "A", "b", "c\u00e9", "C\u00c9", "\u0131", "I"]
STREAMS = ["s", "S", "t"]


def fold(name):
    return upcase(name)


class Model:
    """Directories are dicts folded-name -> (spelling, node); nodes are shared objects."""

    ids = itertools.count(1)

    def __init__(self):
        self.root = self.node(True)

    def node(self, is_dir, data=b""):
        return {"id": next(self.ids), "dir": is_dir, "children": {}, "data": data, "streams": {}}

    def walk_parent(self, path):
        d = self.root
        for comp in path[:-1]:
            hit = d["children"].get(fold(comp))
            if hit is None or not hit[1]["dir"]:
                return None
            d = hit[1]
        return d

    def create(self, path, is_dir, data):
        parent = self.walk_parent(path)
        if parent is None:
            return HR_PATH_NOT_FOUND
        key = fold(path[-1])
        hit = parent["children"].get(key)
        if hit is not None and hit[1]["dir"] and is_dir:
            parent["children"][key] = (path[-1], hit[1])
            return S_OK
        parent["children"][key] = (path[-1], self.node(is_dir, data))
        return S_OK

    def link(self, new, target):
        tparent = self.walk_parent(target)
        if tparent is None:
            return HR_PATH_NOT_FOUND
        t = tparent["children"].get(fold(target[-1]))
        if t is None:
            return HR_PATH_NOT_FOUND
        if t[1]["dir"]:
            return E_ACCESSDENIED
        nparent = self.walk_parent(new)
        if nparent is None:
            return HR_PATH_NOT_FOUND
        cur = nparent["children"].get(fold(new[-1]))
        if cur is not None and cur[1]["dir"]:
            return E_ACCESSDENIED
        nparent["children"][fold(new[-1])] = (new[-1], t[1])
        return S_OK

    def delete(self, path):
        parent = self.walk_parent(path)
        if parent is None or fold(path[-1]) not in parent["children"]:
            return HR_PATH_NOT_FOUND
        del parent["children"][fold(path[-1])]
        return S_OK

    def ads(self, path, name, data):
        parent = self.walk_parent(path)
        if parent is None or fold(path[-1]) not in parent["children"]:
            return HR_PATH_NOT_FOUND
        streams = parent["children"][fold(path[-1])][1]["streams"]
        streams[fold(name)] = (name, data)
        return S_OK

    def flatten(self):
        """{path: node} with '\\'-joined spellings."""
        out = {"": self.root}
        todo = [("", self.root)]
        while todo:
            prefix, d = todo.pop()
            for spelling, n in d["children"].values():
                p = prefix + "\\" + spelling if prefix else spelling
                out[p] = n
                if n["dir"]:
                    todo.append((p, n))
        return out


paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3)
datas = st.one_of(st.just(b""), st.binary(max_size=64), st.sampled_from([b"same" * 1000, b"\0" * 5000]))
ops = st.one_of(
    st.tuples(st.just("mkdir"), paths),
    st.tuples(st.just("file"), paths, datas),
    st.tuples(st.just("link"), paths, paths),
    st.tuples(st.just("delete"), paths),
    st.tuples(st.just("ads"), paths, st.sampled_from(STREAMS), datas),
)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, max_size=40))
def test_writer_matches_model(sequence):
    model = Model()
    with tempfile.TemporaryDirectory() as d:
        w = Writer(d)
        assert w.hr == S_OK
        for op in sequence:
            kind, path = op[0], op[1]
            p = "\\".join(path)
            if kind == "mkdir":
                expected = model.create(path, True, b"")
                got = w.create(p, 0x10)
                w.close_stream()
            elif kind == "file":
                expected = model.create(path, False, op[2])
                got = w.create(p, 0, len(op[2]))
                if got == S_OK and op[2]:
                    assert w.write(op[2]) == S_OK
                w.close_stream()
            elif kind == "link":
                expected = model.link(path, op[2])
                got = w.link(p, "\\".join(op[2]))
            elif kind == "delete":
                expected = model.delete(path)
                got = w.delete(p)
            else:
                expected = model.ads(path, op[2], op[3])
                got = w.ads(p + ":" + op[2], op[3])
            assert got == expected, (op, hex(got), hex(expected))
        img = w.finish()
        want = model.flatten()
        got_paths = img.walk()
        assert set(got_paths) == set(want)
        # Which names share a file: same model node <=> same file ID.
        by_model = {}
        for path, n in want.items():
            by_model.setdefault(n["id"], set()).add(got_paths[path])
        assert all(len(ids) == 1 for ids in by_model.values())
        assert len(set(got_paths.values())) == len(by_model)
        offsets = {}
        for path, n in want.items():
            fid = got_paths[path]
            assert img.record(fid).is_dir == n["dir"]
            if not n["dir"]:
                assert img.read(fid) == n["data"]
                if n["data"]:
                    offsets.setdefault(n["data"], set()).add(img.record(fid).stream_offset)
            assert img.streams(fid) == {s: data for s, data in n["streams"].values()}
        # Identical data is stored once.
        assert all(len(o) == 1 for o in offsets.values())
