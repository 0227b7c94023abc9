"""The upcase table is Windows' (the one Microsoft's CimFS writer writes), byte for byte, and
names fold through it everywhere: in the C writer, in the image, and in Python (paths.upcase).

Microsoft-made images are read from ../shared/samples/ (reference data owned by others; never
copied here); tests that need them skip when they are absent."""
import glob
import io
import os
import sys
import tarfile

import pytest

from cimfs_cffi import Image, ffi, lib, open_image, verify
from cimfs_cffi import build
from cimfs_cffi.paths import upcase

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import gen_upcase  # noqa: E402
from samples import SAMPLES  # noqa: E402

MS_IMAGES = sorted(glob.glob(os.path.join(SAMPLES, "*", "*.cim")))
HEADER = os.path.join(os.path.dirname(__file__), "..", "libcimfs", "cim_upcase_ranges.h")

needs_samples = pytest.mark.skipif(not MS_IMAGES, reason="no Microsoft-made images in %s" % SAMPLES)
ms_images = pytest.mark.parametrize(
    "sample", MS_IMAGES or [None], ids=[os.path.basename(p) for p in MS_IMAGES] or ["absent"])

# Names that Windows' table keeps apart (str.upper() would fold each pair).
KEPT_APART = [
    ("\u0131", "I"),            # ı dotless i
    ("\u03c2", "\u03a3"),       # ς final sigma / Σ
    ("\u03c2", "\u03c3"),       # ς / σ
    ("\u00b5", "\u039c"),       # µ micro sign / Μ
    ("\u017f", "S"),            # ſ long s
    ("\u00df", "\u1e9e"),       # ß / ẞ (ß has no single uppercase)
    ("\u01c5", "\u01c4"),       # ǅ titlecase digraph / Ǆ
    ("\u01c5", "\u01c6"),       # ǅ / ǆ
    ("\u10d0", "\u1c90"),       # Georgian an / Mtavruli an (Unicode 11)
    ("\u10ff", "\u1cbf"),
    ("\uab70", "\u13a0"),       # Cherokee lowercase (Unicode 8)
    ("\ua794", "\ua7c4"),       # U+A7xx added after Unicode 5.1
    ("\ua7b5", "\ua7b4"),
]
# Names that Windows' table folds: one name.
FOLDED = [
    ("a", "A"),
    ("\u00e9", "\u00c9"),       # é / É
    ("\u03c9", "\u03a9"),       # ω / Ω
    ("\u01c6", "\u01c4"),       # ǆ / Ǆ
    ("\u2d00", "\u10a0"),       # Georgian Nuskhuri / Asomtavruli (Unicode 4.1)
    ("\ua723", "\ua722"),       # Latin Extended-D (Unicode 5.1)
]


def pair_id(pair):
    return "%04X-%04X" % (ord(pair[0][0]), ord(pair[1][0]))


def our_table():
    return ffi.unpack(lib.CimfsUpcaseTable(), 0x10000)


def ms_table(sample):
    if sample is None:
        pytest.skip("no Microsoft-made images in %s" % SAMPLES)
    return gen_upcase.image_upcase_table(sample)


def image_with(tmp_path, names_and_data):
    with Image.create(tmp_path, "u.cim") as im:
        for name, data in names_and_data:
            im.add_file(name, data)
        im.commit()
    return str(tmp_path / "u.cim")


# ---- the table -----------------------------------------------------------------------------------------
@needs_samples
@ms_images
def test_table_equals_microsofts_on_all_65536_units(sample):
    ours, theirs = our_table(), ms_table(sample)
    assert [cp for cp in range(0x10000) if ours[cp] != theirs[cp]] == []


def test_table_has_973_non_identity_entries():
    assert sum(1 for cp, up in enumerate(our_table()) if up != cp) == 973


def test_table_is_the_one_to_one_case_pairs_of_unicode_5_1():
    assert our_table() == gen_upcase.table()


def test_committed_header_is_what_the_generator_writes():
    with open(HEADER, encoding="ascii", newline="") as f:
        assert f.read() == gen_upcase.header_text(gen_upcase.table())


def test_description_says_which_table():
    text = ffi.string(lib.CimfsUpcaseDescription()).decode()
    assert "Windows" in text and "Unicode 5.1.0" in text and "973" in text


def test_single_unit_hook_agrees_with_the_table():
    table = our_table()
    assert all(lib.CimfsTestUpcase(cp) == table[cp] for cp in range(0, 0x10000, 7))


@needs_samples
@ms_images
def test_committed_image_upcase_bytes_equal_the_samples(tmp_path, sample):
    ms_table(sample)
    ours = image_with(tmp_path, [("f", b"x")])
    data = gen_upcase.image_upcase_bytes(ours)
    assert len(data) == 131072
    assert data == gen_upcase.image_upcase_bytes(sample)


def test_committed_image_carries_the_writers_table(tmp_path):
    with open_image(image_with(tmp_path, [("f", b"x")])) as img:
        assert list(img.upcase) == our_table()


# ---- Python-side folding ------------------------------------------------------------------------------
def test_paths_upcase_folds_every_bmp_character_through_the_table():
    table = our_table()
    chars = "".join(chr(cp) for cp in range(0x10000) if not 0xD800 <= cp <= 0xDFFF)
    expected = "".join(chr(table[cp]) for cp in range(0x10000) if not 0xD800 <= cp <= 0xDFFF)
    assert upcase(chars) == expected


def test_paths_upcase_leaves_supplementary_characters_and_expansions_alone():
    assert upcase("\U00010428\U0001E922") == "\U00010428\U0001E922"  # Deseret, Adlam small letters
    assert upcase("stra\u00dfe\\\ufb01") == "STRA\u00dfE\\\ufb01"     # ß and ﬁ stay one unit
    assert upcase("abc\\Def") == "ABC\\DEF"


@pytest.mark.parametrize("pair", KEPT_APART, ids=pair_id)
def test_paths_upcase_keeps_apart_what_windows_keeps_apart(pair):
    assert upcase(pair[0]) != upcase(pair[1])


@pytest.mark.parametrize("pair", FOLDED, ids=pair_id)
def test_paths_upcase_folds_what_windows_folds(pair):
    assert upcase(pair[0]) == upcase(pair[1])


# ---- images built through the Python API ---------------------------------------------------------------
@pytest.mark.parametrize("pair", KEPT_APART, ids=pair_id)
def test_names_windows_keeps_apart_stay_apart_in_an_image(tmp_path, pair):
    path = image_with(tmp_path, [(pair[0], b"first"), (pair[1], b"second")])
    with open_image(path) as img:
        assert sorted(img.listdir()) == sorted(pair)
        assert img.read_bytes(pair[0]) == b"first" and img.read_bytes(pair[1]) == b"second"
    assert verify(path) == []


@pytest.mark.parametrize("pair", FOLDED, ids=pair_id)
def test_names_windows_folds_are_one_name_in_an_image(tmp_path, pair):
    path = image_with(tmp_path, [(pair[0], b"first"), (pair[1], b"second")])
    with open_image(path) as img:
        assert len(img.listdir()) == 1
        assert img.read_bytes(pair[0]) == img.read_bytes(pair[1]) == b"second"  # the second write replaced


# ---- cimfs build ----------------------------------------------------------------------------------------
def build_from(tmp_path, names, **options):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        (src / name).write_bytes(b"%d" % i)
    out = str(tmp_path / "out" / "b.cim")
    build(str(src), out, **options)
    return out


@pytest.mark.parametrize("pair", KEPT_APART, ids=pair_id)
def test_build_keeps_apart_names_windows_keeps_apart(tmp_path, pair):
    out = build_from(tmp_path, pair)
    with open_image(out) as img:
        assert sorted(img.listdir()) == sorted(pair)
    assert verify(out) == []


@pytest.mark.parametrize("pair", FOLDED, ids=pair_id)
def test_build_refuses_names_windows_folds_into_one(tmp_path, pair):
    """Two source names that are one name on Windows stop the build (the name policy's default),
    and with --on-collision=keep-last the later one is what the image keeps."""
    from cimfs_cffi import NameCollision
    with pytest.raises(NameCollision):
        build_from(tmp_path, pair)
    out = build_from(tmp_path, pair, on_collision="keep-last")
    with open_image(out) as img:
        assert img.listdir() == [max(pair)]  # a directory is read in code-point order
    assert verify(out) == []


def test_build_creates_a_parent_that_only_str_upper_would_fold_into_another(tmp_path):
    """A tar with directory "I" and file "ı/f" (no entry for "ı"): the builder must create
    "ı" itself, because Windows' table does not fold ı into I."""
    tar_path = tmp_path / "t.tar"
    with tarfile.open(tar_path, "w") as tar:
        d = tarfile.TarInfo("I")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        f = tarfile.TarInfo("\u0131/f")
        f.size = 1
        tar.addfile(f, io.BytesIO(b"x"))
    out = str(tmp_path / "out" / "t.cim")
    build(str(tar_path), out)
    with open_image(out) as img:
        assert sorted(img.listdir()) == sorted(["I", "\u0131"])
        assert img.read_bytes("\u0131\\f") == b"x"
