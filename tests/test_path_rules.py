"""The edge validator (cimfs_cffi.paths) and the C writer apply the same path
rules: the link methods rely on C's check and on Python's to explain it."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cimfs_cffi import Image, InvalidArgument, lib
from cimfs_cffi.paths import image_path
from conftest import E_INVALIDARG, examples, u

ATOMS = ["a", "B", "\u00e9", "\U0001F600", ".", "..", "\\", "/", ":", "*", "?", "<", '"', "|", "\x01", "\x1f",
         " ", "\ud800", "\udc00", "x" * 120, "y" * 255, "z" * 256]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    im = Image.create(tmp_path_factory.mktemp("rules"), "rules.cim")
    im.add_file("target", b"t")
    yield im
    im.close()


def c_accepts(image, path):
    """Whether the C writer accepts the syntax of `path` as a new link name.
    A str that is not valid Unicode (surrogate code points, even two that
    would pair up in UTF-16) never reaches C through the API."""
    try:
        path.encode("utf-16-le")
    except UnicodeEncodeError:
        return False
    return u(lib.CimCreateHardLink(image._handle, path, "target")) != E_INVALIDARG


def test_surrogate_code_points_are_rejected_by_both_link_methods(image):
    pair_as_code_points = "\ud800\udc00"  # Python rejects it; as UTF-16 units it would be valid
    with pytest.raises(InvalidArgument, match="surrogate"):
        image.create_hard_link(pair_as_code_points, "target")
    with pytest.raises(InvalidArgument, match="surrogate") as e:
        image.create_hard_links([("ok", "target"), (pair_as_code_points, "target")])
    assert e.value.index == 1


@settings(max_examples=examples(600), deadline=None)
@given(st.lists(st.sampled_from(ATOMS), min_size=0, max_size=8))
def test_python_and_c_accept_the_same_paths(image, atoms):
    raw = "".join(atoms)
    try:
        normalized = image_path(raw)
        python_ok = True
    except InvalidArgument:
        python_ok = False
        normalized = raw.replace("/", "\\")  # the edge normalization, for C's opinion
    assert python_ok == c_accepts(image, normalized), (raw, normalized)


def test_long_paths_agree(image):
    ok = "\\".join(["d" * 200] * 163)  # 32759 units
    too_long = ok + "\\abcdefgh"
    assert len(ok) <= 32767 < len(too_long)
    for p in (ok, too_long):
        try:
            image_path(p)
            python_ok = True
        except InvalidArgument:
            python_ok = False
        assert python_ok == c_accepts(image, p)
