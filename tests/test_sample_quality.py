"""FID and KID: closed-form Gaussians, real images against real images, a trained model against an untrained one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import metrics_of, run_tiny
from vaebench.evaluation.features import FEATURES, FeatureSpace, feature_space

pytest.importorskip("torchmetrics", reason="FID and KID are computed by torchmetrics")

from vaebench.metrics.sample_quality import distances  # noqa: E402


class Identity(nn.Module):
    def embed(self, x):
        return x


def test_fid_of_two_gaussians_matches_the_closed_form():
    # N(m1, diag s1^2) against N(m2, diag s2^2): |m1 - m2|^2 + sum (s1 - s2)^2
    torch.manual_seed(0)
    m = torch.tensor([1.0, -0.5, 0.0])
    s1, s2 = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([1.0, 1.0, 1.5])
    a = torch.randn(20000, 3) * s1
    b = torch.randn(20000, 3) * s2 + m
    expected = float(m.pow(2).sum() + (s1 - s2).pow(2).sum())
    fid = distances(FeatureSpace(Identity(), 1.0, Path("identity")), a, b)["fid"]
    assert fid == pytest.approx(expected, rel=0.03)
    same = distances(FeatureSpace(Identity(), 1.0, Path("identity")), a, torch.randn(20000, 3) * s1)["fid"]
    assert same < 0.01


def test_test_images_against_training_images_score_far_better_than_noise(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    space = feature_space(digits, None)
    assert space.test_accuracy > 0.9 and space.net.embed(digits.test.x[:2]).shape == (2, FEATURES)
    assert (tmp_path / "vaebench/data/features").is_dir()  # cached under the user cache: digits has no data dir
    test, train = digits.test.x, digits.train.x[: len(digits.test.x)]
    noise = torch.bernoulli(torch.full_like(test, test.mean().item()))
    real = distances(space, test, train)
    fake = distances(space, test, noise)
    # 359 images a side in 128 dimensions: FID's small-sample bias is most of what is left
    assert real["fid"] < 0.2 * fake["fid"] and real["kid"] < 0.2 * fake["kid"]
    assert feature_space(digits, None).net is not space.net  # loaded from the cache, not retrained
    assert feature_space(digits, None).test_accuracy == space.test_accuracy


def test_a_trained_model_samples_better_than_a_barely_trained_one_and_the_table_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run_tiny(tmp_path / "one", ["gaussian"], epochs=1, hidden=(64,), metrics=["sample_quality"])
    run_tiny(tmp_path / "twenty", ["gaussian"], epochs=20, hidden=(64,), metrics=["sample_quality"])
    early, late = metrics_of(tmp_path / "one", "gaussian"), metrics_of(tmp_path / "twenty", "gaussian")
    assert late["fid"] < early["fid"] and late["kid"] < early["kid"]
    assert late["sample_images"] == 359 and "penultimate layer" in late["feature_extractor"]
    board = (tmp_path / "twenty/leaderboard.md").read_text()
    assert "FID" in board and "vaebench classifier v2" in board


def test_the_mnist_feature_classifier_is_accurate_and_real_images_score_near_zero(tmp_path, shared_data):
    from vaebench.data import prepare
    from vaebench.plugin_manager import load_plugins

    data = prepare(load_plugins().registry.get("dataset", "mnist"), shared_data, "dynamic", torch.device("cpu"))
    space = feature_space(data, tmp_path)  # tmp_path as the data dir: the cache goes there
    assert space.test_accuracy >= 0.988  # 99.0% at one torch thread, 98.99% at two: training rounds differently
    assert space.path.parent == tmp_path / "vaebench-features"
    test = data.test.x
    real = distances(space, test, data.train.x[: len(test)].bernoulli(generator=torch.Generator().manual_seed(0)))
    noise = distances(space, test, torch.bernoulli(torch.full_like(test, test.mean().item())))
    assert real["fid"] < 0.02 * noise["fid"]
