"""docs/1-dictionary.md version 2 through dictionary_io: raster masks round trip bit for bit, bad rows are refused
naming image and concept, version-1 files stay readable."""
import h5py
import numpy as np
import pytest

from hndd_client import dictionary_io, masks as raster
from hndd_client.dictionary_io import (DictionaryError, DictionaryHeader, DictionaryWriter, read_dictionary,
                                       read_masks, write_dictionary)
from hndd_client.landmarks import ellipse_mask

CONCEPTS = ["left_eye", "high_cheekbones", "AU12"]


def header(mask_size):
    return DictionaryHeader(["gender"], ["female", "male"], [0, 0], ["eye", "cheek", "mouth"], CONCEPTS, [0, 1, 2],
                            [0, 1, 2], mask_size)


def random_rows(count, size, seed=0):
    """Labels of every kind and masks of any shape (holes, several runs a row, touching the edges)."""
    rng = np.random.default_rng(seed)
    global_label = rng.integers(-1, 2, (count, 1)).astype(np.int32)
    local_label = rng.integers(-1, 2, (count, len(CONCEPTS))).astype(np.int8)
    masks = rng.random((count, len(CONCEPTS), size, size)) < 0.4
    masks &= (local_label == 1)[:, :, None, None]
    return global_label, local_label, masks


def sources(count):
    return [f"set/{n:04d}/original.png" for n in range(count)]


@pytest.mark.parametrize("size", [1, 7, 8, 13, 112])
def test_masks_round_trip_bit_for_bit_with_zero_padding(tmp_path, size):
    global_label, local_label, masks = random_rows(12, size, seed=size)
    path = tmp_path / "d.h5"
    write_dictionary(path, header(size), global_label, local_label, None, masks, sources(12))
    with h5py.File(path, "r") as file:
        assert file.attrs["version"] == 2
        stored = file["images/masks"][()]
        assert stored.shape == (12, 3, size, (size + 7) // 8) and stored.dtype == np.uint8
        np.testing.assert_array_equal(stored, np.packbits(masks, axis=-1))  # docs/1-dictionary.md: numpy packbits, big bit order
        if size % 8:
            assert not (stored[..., -1] & ((1 << (8 - size % 8)) - 1)).any()
    dictionary = read_dictionary(path, with_masks=True)
    assert dictionary.version == 2 and dictionary.has_masks and dictionary.sources == sources(12)
    np.testing.assert_array_equal(dictionary.local_label, local_label)
    np.testing.assert_array_equal(raster.unpack(dictionary.masks, size), masks)
    np.testing.assert_array_equal(read_masks(path, 3, 9), masks[3:9])
    assert dictionary.mask(5, 1).shape == (size, size)
    np.testing.assert_array_equal(dictionary.mask(5, 1), masks[5, 1])


def test_bit_order_is_the_spec_one():
    mask = np.zeros((1, 1, 10, 10), dtype=bool)
    mask[0, 0, 2, 0] = mask[0, 0, 2, 9] = True  # row 2: columns 0 and 9
    packed = raster.pack(mask)
    assert packed[0, 0, 2].tolist() == [0b10000000, 0b01000000]  # bit 7 − (j mod 8) of byte ⌊j/8⌋
    assert raster.padding_bits(10) == 0b00111111 and raster.padding_bits(16) == 0


def test_empty_present_masks_are_allowed_and_counted(tmp_path):
    size = 16
    global_label, local_label, masks = random_rows(6, size)
    local_label[2, 1] = local_label[4, 0] = 1
    masks[2, 1] = masks[4, 0] = False
    with DictionaryWriter(tmp_path / "d.h5", header(size), 6) as writer:
        writer.write(0, global_label, local_label, None, masks, sources(6))
        expected = int(((local_label == 1) & ~masks.any(axis=(2, 3))).sum())
        assert writer.empty_masks == expected >= 2
    dictionary = read_dictionary(tmp_path / "d.h5")
    assert dictionary.empty_masks == expected and dictionary.masks is None  # kept only when asked


def test_a_set_bit_where_the_concept_is_not_present_names_image_source_and_concept(tmp_path):
    size = 16
    global_label, local_label, masks = random_rows(6, size)
    local_label[4, 1] = 0
    masks[4, 1, 3, 5] = True
    names = sources(6)
    with pytest.raises(DictionaryError, match=r"/images/masks\[4, 1\] \(image 4 \(set/0004/original.png\), concept "
                                              r"'high_cheekbones'\) has bits set but local_label = 0"):
        write_dictionary(tmp_path / "d.h5", header(size), global_label, local_label, None, masks, names)
    assert not list(tmp_path.iterdir())  # nothing half-written is left


def test_padding_bits_and_wrong_shapes_are_refused(tmp_path):
    size = 13
    global_label, local_label, masks = random_rows(4, size)
    local_label[:] = 1
    packed = raster.pack(masks)
    packed[2, 0, 7, 1] |= 0b00000001  # column 15 of a 13-column grid
    with pytest.raises(DictionaryError, match=r"/images/masks\[2, 0\] \(image 2 \(set/0002/original.png\), concept "
                                              r"'left_eye'\): row 7 has padding bits set past column 12"):
        write_dictionary(tmp_path / "d.h5", header(size), global_label, local_label, None, packed, sources(4))
    with pytest.raises(DictionaryError, match=r"/images/masks has shape \(4, 3, 13, 13\), expected \(4, 3, 13, 2\)"):
        write_dictionary(tmp_path / "d.h5", header(size), global_label, local_label, None, masks.astype(np.uint8),
                         sources(4))
    with pytest.raises(DictionaryError, match="image 1 has no source"):
        write_dictionary(tmp_path / "d.h5", header(size), global_label, local_label, None, masks,
                         ["a.png", "", "c.png", "d.png"])


def test_reading_checks_masks_slice_by_slice_and_names_the_image(tmp_path):
    size = 8
    count = 2 * raster.CHECK_SLICE + 10
    global_label, local_label, masks = random_rows(count, size)
    path = tmp_path / "d.h5"
    write_dictionary(path, header(size), global_label, local_label, None, masks, sources(count))
    bad = 2 * raster.CHECK_SLICE + 3  # in the third slice
    concept = int(np.flatnonzero(local_label[bad] != 1)[0])
    with h5py.File(path, "r+") as file:
        file["images/masks"][bad, concept, 0, 0] = 1
    with pytest.raises(DictionaryError, match=rf"d.h5: /images/masks\[{bad}, {concept}\] \(image {bad} "
                                              rf"\(set/{bad:04d}/original.png\)"):
        read_dictionary(path)


def test_ellipses_are_informative_in_version_2(tmp_path):
    """With rasters a present concept may have a NaN ellipse (several ellipses), or a finite one
    (one ellipse); an ellipse where the concept is absent is still an error."""
    size = 32
    global_label, local_label, masks = random_rows(5, size)
    local_label[:, 0] = 1
    ellipse = np.full((5, 3, 5), np.nan, dtype=np.float32)
    ellipse[:, 0] = [0.5, 0.5, 0.01, 0.0, 0.01]
    masks[:, 0] = ellipse_mask(ellipse[0, 0], size)
    write_dictionary(tmp_path / "d.h5", header(size), global_label, local_label, ellipse, masks, sources(5))
    assert np.isfinite(read_dictionary(tmp_path / "d.h5").ellipse[:, 0]).all()
    absent = np.flatnonzero(local_label[:, 1] != 1)[0]
    ellipse[absent, 1] = [0.5, 0.5, 0.01, 0.0, 0.01]
    with pytest.raises(DictionaryError, match=rf"/images/ellipse\[{absent}, 1\] \(high_cheekbones\) must be NaN"):
        write_dictionary(tmp_path / "e.h5", header(size), global_label, local_label, ellipse, masks, sources(5))


def write_version_1(path, size, local_label, ellipse, extra=None):
    """A version-1 file as an older writer made it (ellipses only, /images/name)."""
    h = header(size)
    with h5py.File(path, "w") as file:
        file.attrs.update(format="hndd-dictionary", version=np.int32(1), mask_size=np.int32(size),
                          ellipse_chi2=5.991)
        string = h5py.string_dtype()
        for name, values in (("global/categories", h.categories), ("global/subgroups", h.subgroups),
                             ("local/regions", h.regions), ("local/concepts", h.concepts)):
            file.create_dataset(name, data=np.array(values, dtype=object), dtype=string)
        file["global/subgroup_category"] = np.array(h.subgroup_category, dtype=np.int32)
        file["local/concept_region"] = np.array(h.concept_region, dtype=np.int32)
        file["local/concept_type"] = np.array(h.concept_type, dtype=np.int32)
        file["images/global_label"] = np.full((len(local_label), 1), -1, dtype=np.int32)
        file["images/local_label"] = local_label
        file["images/ellipse"] = ellipse
        file.create_dataset("images/name", data=np.array(["x"] * len(local_label), dtype=object), dtype=string)
        for name, values in (extra or {}).items():
            file[name] = values


def test_version_1_files_stay_readable_and_their_masks_are_the_ellipses(tmp_path):
    size = 24
    local_label = np.array([[1, 0, -1], [1, 1, 0]], dtype=np.int8)
    ellipse = np.full((2, 3, 5), np.nan, dtype=np.float32)
    ellipse[0, 0] = [0.3, 0.4, 0.01, 0.002, 0.004]
    ellipse[1, 0] = [0.6, 0.5, 0.02, 0.0, 0.01]
    ellipse[1, 1] = [0.5, 0.7, 0.005, 0.0, 0.005]
    path = tmp_path / "v1.h5"
    write_version_1(path, size, local_label, ellipse)
    dictionary = read_dictionary(path)
    assert dictionary.version == 1 and not dictionary.has_masks and dictionary.sources is None
    expected = np.array([[ellipse_mask(e, size) for e in row] for row in ellipse])
    np.testing.assert_array_equal(read_masks(path, 0, 2), expected)
    np.testing.assert_array_equal(dictionary.mask(1, 1), expected[1, 1])
    # a version-1 file's present concepts need their ellipse
    ellipse[1, 1] = np.nan
    write_version_1(path, size, local_label, ellipse)
    with pytest.raises(DictionaryError, match=r"/images/ellipse\[1, 1\] \(high_cheekbones\) is not finite but the "
                                              r"concept is present and the file has no /images/masks"):
        read_dictionary(path)


def test_masks_need_version_2_and_unknown_versions_are_refused(tmp_path):
    size = 8
    local_label = np.zeros((2, 3), dtype=np.int8)
    ellipse = np.full((2, 3, 5), np.nan, dtype=np.float32)
    path = tmp_path / "v1.h5"
    write_version_1(path, size, local_label, ellipse, {"images/masks": np.zeros((2, 3, 8, 1), dtype=np.uint8)})
    with pytest.raises(DictionaryError, match="/images/masks is a version-2 dataset, but the file says version 1"):
        read_dictionary(path)
    with h5py.File(path, "r+") as file:
        del file["images/masks"]
        file.attrs["version"] = np.int32(3)
    with pytest.raises(DictionaryError, match=r"unsupported version 3 \(readable: 1, 2\)"):
        read_dictionary(path)
    assert dictionary_io.VERSION == 2


def test_read_masks_range_is_checked(tmp_path):
    global_label, local_label, masks = random_rows(3, 8)
    write_dictionary(tmp_path / "d.h5", header(8), global_label, local_label, None, masks, sources(3))
    with pytest.raises(DictionaryError, match=r"images 2\.\.3 are outside 0\.\.2"):
        read_masks(tmp_path / "d.h5", 2, 4)
