"""Latent usage metrics on constructed models whose answers are known in closed form."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import Independent, Normal

from helpers import metrics_of, run_tiny
from vaebench.data import Split
from vaebench.distributions import StandardNormalPrior
from vaebench.evaluation.context import EvalContext
from vaebench.metrics.latent_usage import LatentUsage
from vaebench.models import LatentVariableModel


class LinearEncoder(LatentVariableModel):
    """q(z|x) = N(a * x[:, :used] padded with zeros, s^2): the last dimensions ignore x."""

    def __init__(self, dim=4, used=2, a=1.0, s=1.0, clusters=None):
        super().__init__("bernoulli", 2)
        self.dim, self.used, self.a, self.s, self.clusters = dim, used, a, s, clusters
        self.prior = StandardNormalPrior(dim)

    def posterior(self, x, y=None, index=None):
        mean = torch.zeros(x.shape[0], self.dim)
        mean[:, : self.used] = self.a * x[:, : self.used]
        std = torch.full_like(mean, self.s)
        std[:, self.used:] = 1.0  # unused dimensions: the posterior is the prior
        return Independent(Normal(mean, std), 1)

    def cluster(self, x, y=None):
        return None if self.clusters is None else self.clusters(x)


def context(model, x, tmp_path):
    data = type("D", (), {})()
    data.n_classes = 2
    data.split = lambda name: Split(x, torch.zeros(x.shape[0], dtype=torch.long))
    return EvalContext(model=model, data=data, run_dir=tmp_path, device=torch.device("cpu"), is_samples=1, seed=0)


def test_active_units_and_kl_per_dimension_see_the_ignored_half(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(3000, 4)
    model = LinearEncoder(dim=4, used=2, a=1.0, s=0.5)
    values = LatentUsage()(context(model, x, tmp_path))
    assert values["active_units"] == 2
    # KL(N(m, s^2) || N(0, 1)) = (s^2 + m^2 - 1)/2 - log s, averaged over x with E[m^2] = a^2 Var(x) ~ 1
    m2 = x[:, :2].pow(2).mean(0)
    expected = (0.25 + m2 - 1) / 2 - math.log(0.5)
    assert values["kl_per_dim"][:2] == pytest.approx(expected.tolist(), abs=1e-4)
    assert values["kl_per_dim"][2:] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert (tmp_path / "kl_per_dimension.png").exists()
    assert values["category_perplexity"] is None and "no discrete latent" in values["category_perplexity_na"]


def test_an_encoder_that_ignores_x_has_no_active_units(tmp_path):
    x = torch.randn(2000, 4)
    assert LatentUsage()(context(LinearEncoder(dim=4, used=0), x, tmp_path))["active_units"] == 0
    assert LatentUsage()(context(LinearEncoder(dim=4, used=2, a=1.0, s=1.0), x, tmp_path))["active_units"] == 2


def test_category_perplexity_counts_the_categories_in_use(tmp_path):
    x = torch.randn(1000, 4)
    two = LinearEncoder(clusters=lambda x: (torch.arange(x.shape[0]) % 2) * 3)  # categories 0 and 3, half each
    values = LatentUsage()(context(two, x, tmp_path))
    assert values["category_perplexity"] == pytest.approx(2.0)
    assert values["category_shares"] == [0.5, 0.0, 0.0, 0.5]
    assert (tmp_path / "category_usage.png").exists()


def test_latent_usage_reaches_the_leaderboard_for_every_builtin_kind_of_latent(tmp_path):
    run_tiny(tmp_path, ["gaussian", "gumbel-capacity", "mog-prior"], epochs=2, metrics=["latent_usage"])
    gaussian, gumbel, mog = (metrics_of(tmp_path, v) for v in ("gaussian", "gumbel-capacity", "mog-prior"))
    assert 0 <= gaussian["active_units"] <= 4 and len(gaussian["kl_per_dim"]) == 4
    assert 1 <= gumbel["category_perplexity"] <= 4 + 1e-9 and len(gumbel["kl_per_dim"]) == 4
    assert mog["kl_per_dim"] is None and "not a product of Gaussians" in mog["kl_per_dim_na"]
    board = (tmp_path / "leaderboard.csv").read_text()
    assert "active_units" in board and "mutual_info" not in board  # pinned at log N: not a column
