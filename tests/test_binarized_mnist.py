"""Larochelle's binarised MNIST: its fixed splits, MNIST's labels in MNIST's order, and refusals.

Larochelle's files cannot be downloaded here, so these tests write files of the same
format from MNIST (shared/data), binarised once, in MNIST's order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaebench import binarized_mnist
from vaebench.binarized_mnist import FOLDER, file_name, load_binarized_mnist
from vaebench.data import DatasetSpec, prepare, torchvision_loader
from vaebench.errors import UsageError


def write_amat(path, images: torch.Tensor) -> None:
    """Larochelle's format: a line per image, its 784 pixels as 0 or 1 separated by spaces."""
    bits = images.to(torch.uint8).numpy()
    text = np.full((len(bits), 2 * bits.shape[1]), ord(" "), dtype=np.uint8)
    text[:, 0::2] = bits + ord("0")
    text[:, -1] = ord("\n")
    path.write_bytes(text.tobytes())


@pytest.fixture
def larochelle_like(shared_data, tmp_path):
    """A data dir with MNIST and binarised-MNIST files made from it in MNIST's order; (dir, the binary splits)."""
    (tmp_path / "MNIST").symlink_to(shared_data / "MNIST")
    mnist = torchvision_loader("MNIST")(shared_data)
    generator = torch.Generator().manual_seed(7)
    splits = {"train": mnist.train_x[:50_000], "valid": mnist.train_x[50_000:], "test": mnist.test_x}
    binary = {split: torch.bernoulli(x, generator=generator) for split, x in splits.items()}
    (tmp_path / FOLDER).mkdir()
    for split, images in binary.items():
        write_amat(tmp_path / FOLDER / file_name(split), images)
    return tmp_path, binary, mnist


def test_the_files_splits_are_kept_and_labelled_with_mnists_labels(larochelle_like):
    data_dir, binary, mnist = larochelle_like
    raw = load_binarized_mnist(data_dir)
    assert torch.equal(raw.train_x, binary["train"]) and torch.equal(raw.val_x, binary["valid"]) and torch.equal(raw.test_x, binary["test"])
    assert torch.equal(raw.train_y, mnist.train_y[:50_000]) and torch.equal(raw.val_y, mnist.train_y[50_000:])
    assert torch.equal(raw.test_y, mnist.test_y)
    spec = DatasetSpec("binarized-mnist", "test", load_binarized_mnist)
    data = prepare(spec, data_dir, "static", torch.device("cpu"))
    # the files' own 50k / 10k / 10k, their pixels as they are (a static draw of a 0/1 image is itself)
    assert (len(data.train), len(data.val), len(data.test)) == (50_000, 10_000, 10_000)
    assert torch.equal(data.val.x, binary["valid"]) and torch.equal(data.test.x, binary["test"]) and torch.equal(data.train.x, binary["train"])
    assert len(prepare(spec, data_dir, "static", torch.device("cpu"), val_images=10_000).val) == 10_000
    with pytest.raises(UsageError, match="fixed validation split of 10,000 images; drop --val-images 5000"):
        prepare(spec, data_dir, "static", torch.device("cpu"), val_images=5_000)


def test_files_in_another_order_are_refused_not_mislabelled(larochelle_like):
    data_dir, binary, _ = larochelle_like
    write_amat(data_dir / FOLDER / file_name("valid"), binary["valid"].roll(1, dims=0))
    with pytest.raises(UsageError, match="binarized_mnist_valid.amat is not in MNIST's order"):
        load_binarized_mnist(data_dir)


def test_a_truncated_file_is_named(larochelle_like):
    data_dir, binary, _ = larochelle_like
    write_amat(data_dir / FOLDER / file_name("test"), binary["test"][:9_000])
    with pytest.raises(UsageError, match=r"binarized_mnist_test.amat holds 7,056,000 binary pixels, not 10,000 images of 784"):
        load_binarized_mnist(data_dir)


def test_missing_files_without_network_are_one_line_naming_the_folder(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    import torchvision.datasets.utils

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", refuse)
    with pytest.raises(UsageError) as info:
        binarized_mnist.find_or_download(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "network is unreachable" in message and f"DIR/{FOLDER}" in message and binarized_mnist.URL in message
