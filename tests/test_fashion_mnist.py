"""Fashion-MNIST from IDX files: the reader on tiny fixtures (and on crafted, broken files), the
class-level concepts, and the settings' message when the Debian package is missing."""

import gzip

import numpy as np
import pytest

from conceptlab.datasets import load_dataset
from conceptlab.datasets.fashion import CLASSES, FILES, class_concepts, read_idx
from conceptlab.settings import SettingsError


def _idx(path, array, dims_code=0x08):
    header = bytes([0, 0, dims_code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _fixture(root, n_train=40, n_test=20):
    rng = np.random.default_rng(0)
    for which, n in (("train", n_train), ("test", n_test)):
        images, labels = FILES[which]
        _idx(root / images, rng.integers(0, 256, size=(n, 28, 28)))
        _idx(root / labels, rng.integers(0, 10, size=n))


def test_idx_files_read_in_their_header_shape(tmp_path):
    _fixture(tmp_path)
    images = read_idx(tmp_path / FILES["train"][0])
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8
    assert read_idx(tmp_path / FILES["train"][1]).shape == (40,)


@pytest.mark.parametrize("content, message", [
    (b"\x00\x00\x0d\x01\x00\x00\x00\x02ab", "not an IDX file of unsigned bytes"),
    (b"\x00\x00\x08\x02\x00\x00", "ends inside its header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", "holds 3 bytes of data; its header announces 5"),
])
def test_a_crafted_or_truncated_idx_file_is_refused_with_its_reason(tmp_path, content, message):
    path = tmp_path / "bad-idx1-ubyte.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(content)
    with pytest.raises(ValueError, match=message):
        read_idx(path)
    (tmp_path / "broken.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="could not be read"):
        read_idx(tmp_path / "broken.gz")


def test_the_class_level_concepts_tell_every_class_apart():
    info, table = class_concepts()
    assert info.task_names == CLASSES and table.shape == (10, 10)
    assert len({tuple(row) for row in table}) == 10  # concepts-only ceiling: 100 %


def test_the_dataset_reads_a_folder_of_idx_files_and_says_how_to_install_the_package(tmp_path):
    _fixture(tmp_path)
    splits = load_dataset({"name": "fashion-mnist", "root": str(tmp_path), "train_size": 30, "test_size": 10}, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (27, 3, 10)
    assert splits.train.x.shape[1] == 784 and float(splits.train.x.max()) <= 1.0
    info, table = class_concepts()
    assert np.array_equal(splits.test.c.numpy(), table[splits.test.y.numpy()])
    with pytest.raises(SettingsError, match="apt-get install dataset-fashion-mnist"):
        load_dataset({"name": "fashion-mnist", "root": str(tmp_path / "nowhere")}, seed=0)
