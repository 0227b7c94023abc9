"""Image.create_hard_links: bulk hard links (issue 3)."""
import pathlib
import threading

import pytest

from cimfs_cffi import AccessDenied, Image, InvalidArgument, PathNotFound, SharingViolation
from cimfs_cffi import image as image_module
from cimreader import Image as Reader


@pytest.fixture
def image(tmp_path):
    with Image.create(tmp_path, "links.cim") as im:
        for d in range(3):
            im.add_directory("d%d" % d)
            for f in range(3):
                im.add_file("d%d/f%d" % (d, f), b"%d%d" % (d, f))
        yield im


def committed(image):
    image.commit()
    r = Reader(image.path)
    r.check()
    return r


@pytest.mark.parametrize("kind", ["list", "tuple", "generator", "pathlike", "lists-as-pairs"])
def test_any_iterable_of_pairs(image, kind):
    raw = [("d1/l%d" % i, "d0/f%d" % i) for i in range(3)]
    pairs = {
        "list": raw,
        "tuple": tuple(raw),
        "generator": (p for p in raw),
        "pathlike": [(pathlib.PurePosixPath(a), pathlib.PurePosixPath(b)) for a, b in raw],
        "lists-as-pairs": [list(p) for p in raw],
    }[kind]
    assert image.create_hard_links(pairs) == 3
    r = committed(image)
    for i in range(3):
        assert r.lookup("d1\\l%d" % i) == r.lookup("d0\\f%d" % i)


def test_batches_larger_than_one_call(image, monkeypatch):
    monkeypatch.setattr(image_module, "LINK_BATCH", 7)
    pairs = [("d2/m%03d" % i, "d%d/f%d" % (i % 3, i % 3)) for i in range(50)]
    assert image.create_hard_links(pairs) == 50
    r = committed(image)
    assert r.lookup("d2\\m049") == r.lookup("d1\\f1")


def test_first_failure_raises_with_index_and_earlier_links_remain(image):
    pairs = [("d1/a", "d0/f0"), ("d1/b", "d0/f1"), ("d1/c", "d0/nope"), ("d1/d", "d0/f2")]
    with pytest.raises(PathNotFound) as e:
        image.create_hard_links(pairs)
    assert (e.value.index, e.value.path, e.value.existing_path) == (2, "d1\\c", "d0\\nope")
    assert "pair 2" in str(e.value)
    r = committed(image)
    assert {"d1\\a", "d1\\b"} <= set(r.walk()) and "d1\\d" not in r.walk()


def test_failure_index_counts_across_batches(image, monkeypatch):
    monkeypatch.setattr(image_module, "LINK_BATCH", 4)
    pairs = [("d2/x%d" % i, "d0/f0") for i in range(9)] + [("d2/bad", "d0")]
    with pytest.raises(AccessDenied) as e:
        image.create_hard_links(pairs)
    assert e.value.index == 9


@pytest.mark.parametrize("bad,reason", [
    (("d1/a\0b", "d0/f0"), "NUL"),
    (("d1/x", "d0/f0\ud800"), "unpaired surrogate"),
    (("d1//x", "d0/f0"), "empty component"),
    (("d1/x:s", "d0/f0"), "invalid character"),
    (("d1/x", "d0/f0/"), "ends with a separator"),
])
def test_invalid_paths_raise_invalid_argument_with_index(image, bad, reason):
    pairs = [("d1/ok", "d0/f0"), bad]
    with pytest.raises(InvalidArgument, match=reason) as e:
        image.create_hard_links(pairs)
    assert e.value.index == 1 and e.value.path == bad[0] and e.value.existing_path == bad[1]


@pytest.mark.parametrize("bad", [("a", "b", "c"), ("a",), "ab", 5, (b"a", b"b"), ("a", None)])
def test_malformed_pairs_raise_invalid_argument_with_index(image, bad):
    with pytest.raises(InvalidArgument) as e:
        image.create_hard_links([("d1/ok", "d0/f0"), bad])
    assert e.value.index == 1


def test_defer_retries_pairs_whose_target_comes_later(image):
    # A chain listed backwards: each link's target is the next pair's new name.
    pairs = [("d2/c3", "d2/c2"), ("d2/c2", "d2/c1"), ("d2/c1", "d0/f0"), ("d2/other", "d1/f1")]
    with pytest.raises(PathNotFound):
        image.create_hard_links(pairs[:1])
    assert image.create_hard_links(pairs, on_missing="defer") == 4
    r = committed(image)
    assert len({r.lookup(p) for p in ("d2\\c3", "d2\\c2", "d2\\c1", "d0\\f0")}) == 1


def test_defer_reports_a_target_that_never_appears(image):
    pairs = [("d2/a", "d0/f0"), ("d2/never", "d0/missing"), ("d2/b", "d0/f1")]
    with pytest.raises(PathNotFound) as e:
        image.create_hard_links(pairs, on_missing="defer")
    assert e.value.index == 1 and e.value.existing_path == "d0\\missing"
    r = committed(image)
    assert {"d2\\a", "d2\\b"} <= set(r.walk())


def test_defer_does_not_hide_other_errors(image):
    with pytest.raises(AccessDenied) as e:
        image.create_hard_links([("d2/a", "d0/f0"), ("d2/b", "d1")], on_missing="defer")
    assert e.value.index == 1


def test_on_missing_must_be_known(image):
    with pytest.raises(InvalidArgument, match="on_missing"):
        image.create_hard_links([], on_missing="ignore")


def test_empty_input_links_nothing(image):
    assert image.create_hard_links([]) == 0
    assert image.create_hard_links(iter(())) == 0


def test_open_stream_is_a_sharing_violation(image):
    stream = image.open_file("open", 1)
    with pytest.raises(SharingViolation) as e:
        image.create_hard_links([("d1/a", "d0/f0")])
    assert e.value.index == 0
    stream.close()


def test_committed_image_refuses_links(image):
    image.commit()
    with pytest.raises(InvalidArgument, match="committed"):
        image.create_hard_links([("d1/a", "d0/f0")])


def test_same_semantics_as_single_links(image):
    image.add_file("d2/victim", b"old")
    assert image.create_hard_links([("d2/victim", "d0/f0"), ("D2/VICTIM", "d0/F0"), ("d2/x", "d2/victim")]) == 3
    r = committed(image)
    assert r.lookup("d2\\victim") == r.lookup("d0\\f0") == r.lookup("d2\\x")
    assert [n for n, _ in r.listdir(r.lookup("d2")) if n.lower() == "victim"] == ["VICTIM"]


def test_threads_bulk_linking_into_one_image(image):
    def work(t):
        image.create_hard_links(("d%d/t%d_%d" % (t % 3, t, i), "d%d/f%d" % ((t + 1) % 3, i % 3)) for i in range(2000))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    r = committed(image)
    assert sum(1 for p in r.walk() if "\\t" in p) == 8000


@pytest.mark.parametrize("source", ["list", "generator"])
def test_malformed_pair_in_a_later_batch_keeps_earlier_batches(image, monkeypatch, source):
    """Batches after the first are packed by a helper thread; its errors still
    carry the input index, and everything before them is linked."""
    monkeypatch.setattr(image_module, "LINK_BATCH", 5)
    pairs = [("d2/p%02d" % i, "d0/f0") for i in range(17)] + [("d2/bad", 42)] + [("d2/after", "d0/f0")]
    with pytest.raises(InvalidArgument) as e:
        image.create_hard_links(pairs if source == "list" else iter(pairs))
    assert e.value.index == 17
    r = committed(image)
    names = set(r.walk())
    assert "d2\\p14" in names and "d2\\after" not in names


def test_link_failure_stops_the_packing_thread(image, monkeypatch):
    monkeypatch.setattr(image_module, "LINK_BATCH", 3)
    before = threading.active_count()
    counter = iter(range(10 ** 9))
    pairs = (("d2/x%d" % i, "d0/f0" if i != 4 else "d0/none") for i in counter)  # never ends by itself
    with pytest.raises(PathNotFound) as e:
        image.create_hard_links(pairs)
    assert e.value.index == 4
    assert threading.active_count() == before
