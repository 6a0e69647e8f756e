"""Datasets: fixed-seed splits, binarisation policies, torchvision loading and its errors."""

from __future__ import annotations

import shutil
import urllib.error

import pytest
import torch

from vaebench.data import DatasetSpec, load_digits, prepare, sample_pixels, torchvision_loader
from vaebench.errors import UsageError

CPU = torch.device("cpu")
DIGITS = DatasetSpec("digits", "", load_digits)


def test_digits_splits_are_fixed_and_disjoint():
    a = prepare(DIGITS, None, "none", CPU)
    b = prepare(DIGITS, None, "none", CPU)
    assert (len(a.train), len(a.val), len(a.test)) == (1294, 144, 359)
    assert a.dim == 64 and a.image_shape == (1, 8, 8) and a.n_classes == 10
    for name in ("train", "val", "test"):
        torch.testing.assert_close(getattr(a, name).x, getattr(b, name).x)
    assert a.train.x.min() >= 0 and a.train.x.max() <= 1
    # the three splits partition the dataset: together they hold every image exactly once
    everything = torch.cat([a.train.x, a.val.x, a.test.x])
    original = load_digits().train_x
    assert sorted(map(tuple, everything.tolist())) == sorted(map(tuple, original.tolist()))


def test_binarisation_policies():
    dynamic = prepare(DIGITS, None, "dynamic", CPU)
    static = prepare(DIGITS, None, "static", CPU)
    threshold = prepare(DIGITS, None, "threshold", CPU)
    grey = prepare(DIGITS, None, "none", CPU)
    for data in (dynamic, static, threshold):
        assert set(data.test.x.unique().tolist()) <= {0.0, 1.0}
    assert len(grey.test.x.unique()) > 2
    torch.testing.assert_close(threshold.test.x, (grey.test.x >= 0.5).float())
    # dynamic: the test split is binarised once with a fixed seed, training batches afresh each time
    torch.testing.assert_close(dynamic.test.x, prepare(DIGITS, None, "dynamic", CPU).test.x)
    index = torch.arange(64)
    first, second = dynamic.training_batch(index)[0], dynamic.training_batch(index)[0]
    assert set(first.unique().tolist()) <= {0.0, 1.0} and not torch.equal(first, second)
    # static: the same binary training images every time
    torch.testing.assert_close(static.training_batch(index)[0], static.training_batch(index)[0])
    # the policy is part of the description recorded with every result
    assert dynamic.describe()["binarization"] == "dynamic"


def test_unknown_binarization_is_a_usage_error():
    with pytest.raises(UsageError, match="dynamic, static, threshold, none"):
        prepare(DIGITS, None, "fuzzy", CPU)


def test_mnist_from_data_dir(shared_data):
    spec = DatasetSpec("mnist", "", torchvision_loader("MNIST"), val_fraction=1 / 12)
    data = prepare(spec, shared_data, "dynamic", CPU)
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    assert data.image_shape == (1, 28, 28)
    counts = torch.bincount(torch.cat([data.train.y, data.val.y]), minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_mnist_found_through_vaebench_data(shared_data, monkeypatch):
    monkeypatch.setenv("VAEBENCH_DATA", str(shared_data))
    raw = torchvision_loader("MNIST")(None)
    assert raw.train_x.shape == (60000, 784) and str(shared_data) in raw.source


def _no_network(monkeypatch):
    import torchvision.datasets.mnist as mnist

    def refuse(self):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(mnist.MNIST, "download", refuse)


def test_missing_data_without_network_names_data_dir(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(UsageError) as info:
        torchvision_loader("MNIST")(tmp_path)
    message = str(info.value)
    assert "--data-dir" in message and "\n" not in message and "network is unreachable" in message


def test_missing_data_dir_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        torchvision_loader("MNIST")(tmp_path / "nowhere")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_idx_files_are_a_usage_error(shared_data, tmp_path, damage):
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(shared_data / "MNIST" / "raw", raw)
    target = raw / "t10k-images-idx3-ubyte"
    target.chmod(0o644)
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:1000])
    else:
        target.write_bytes(b"\x00\x01\x02\x03" * 10)
    expected = "is truncated" if damage == "truncate" else "wrong magic number"
    with pytest.raises(UsageError, match=f"{target}.*{expected}.*delete .*t10k-images-idx3-ubyte so that it downloads again"):
        torchvision_loader("MNIST")(tmp_path)


def test_truncated_labels_name_the_labels_file(shared_data, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(shared_data / "MNIST" / "raw", raw)
    labels = raw / "train-labels-idx1-ubyte"
    labels.chmod(0o644)
    labels.write_bytes(labels.read_bytes()[:-1000])
    with pytest.raises(UsageError, match="train-labels-idx1-ubyte is truncated \\(59,008 of 60,008 bytes\\)"):
        torchvision_loader("MNIST")(tmp_path)


def test_dynamic_binarisation_draws_what_torch_bernoulli_draws():
    """u < p is Bernoulli(p): on the CPU, the very draws of torch.bernoulli from the same state."""
    p = torch.rand(64, 784)
    torch.manual_seed(3)
    expected = torch.bernoulli(p)
    torch.manual_seed(3)
    assert torch.equal(sample_pixels(p), expected)
    assert sample_pixels(torch.tensor([0.0, 1.0])).tolist() == [0.0, 1.0]  # the extremes are never flipped
