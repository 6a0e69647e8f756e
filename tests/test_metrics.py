"""Metrics against independently known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal

from vaebench.data import Split
from vaebench.distributions import StandardNormalPrior
from vaebench.distributions.likelihoods import at_least_float32
from vaebench.evaluation.context import EvalContext
from vaebench.evaluation.importance import eval_rows, widest_row
from vaebench.metrics import NMI, importance_log_likelihood
from vaebench.metrics.elbo import neg_elbo_per_example
from vaebench.models import GaussianVAE, LatentVariableModel


class LinearGaussian(LatentVariableModel):
    """p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I): log p(x) = log N(x; b, W W^T + s^2 I) exactly.

    q(z|x) is the exact posterior with its variance inflated by ``inflate``, so
    importance sampling has real work to do. The decoder is an ``nn.Linear``, so on a
    CPU the estimate goes through the oneDNN layers importance sampling swaps in.
    """

    def __init__(self, x_dim=6, z_dim=3, scale=0.5, inflate=1.5):
        super().__init__("bernoulli", 10)
        g = torch.Generator().manual_seed(0)
        self.decoder = nn.Linear(z_dim, x_dim)
        with torch.no_grad():
            self.decoder.weight.copy_(torch.randn(x_dim, z_dim, generator=g))
            self.decoder.bias.copy_(torch.randn(x_dim, generator=g))
        self.scale, self.inflate = scale, inflate
        self.prior = StandardNormalPrior(z_dim)

    @property
    def W(self):
        return self.decoder.weight

    @property
    def b(self):
        return self.decoder.bias

    def likelihood(self, z, y=None):
        return Independent(Normal(self.decoder(z), self.scale), 1)

    def posterior(self, x, y=None, index=None):
        precision = torch.eye(self.W.shape[1]) + self.W.T @ self.W / self.scale**2
        cov = torch.linalg.inv(precision)
        mean = (x - self.b) @ self.W @ cov.T / self.scale**2
        std = torch.sqrt(torch.diagonal(cov) * self.inflate)  # mean-field, inflated
        return Independent(Normal(mean, std.expand_as(mean)), 1)

    def exact_log_px(self, x):
        cov = self.W @ self.W.T + self.scale**2 * torch.eye(self.W.shape[0])
        return MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)


@torch.no_grad()
def test_is_nll_matches_exact_likelihood_of_linear_gaussian():
    model = LinearGaussian()
    torch.manual_seed(0)
    x = model.likelihood(model.prior.sample(200)).sample()
    estimate = importance_log_likelihood(model, x, None, None, samples=5000, max_rows=200_000)
    exact = model.exact_log_px(x)
    assert (estimate - exact).abs().mean().item() < 0.05
    assert abs(estimate.mean().item() - exact.mean().item()) < 0.05


class LabelledLinearGaussian(LinearGaussian):
    """p(x|y) = N(b + offset_y, W W^T + s^2 I): the marginal over labels is an exact Gaussian mixture."""

    label_conditioned = True

    def __init__(self, classes=3):
        super().__init__()
        self.offsets = 2.0 * torch.randn(classes, self.W.shape[0], generator=torch.Generator().manual_seed(1))

    def likelihood(self, z, y=None):
        return Independent(Normal(self.decoder(z) + self.offsets[y], self.scale), 1)

    def posterior(self, x, y=None, index=None):
        return super().posterior(x - self.offsets[y])

    def exact_log_px_given(self, x, y):
        return super().exact_log_px(x - self.offsets[y])


@torch.no_grad()
def test_label_conditioned_marginal_matches_the_exact_mixture_at_equal_k():
    from vaebench.evaluation.importance import log_likelihoods, samples_per_label

    model, classes = LabelledLinearGaussian(), 3
    torch.manual_seed(0)
    y = torch.randint(0, classes, (200,))
    x = model.likelihood(model.prior.sample(200), y).sample()
    log_prior = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    result = log_likelihoods(model, Split(x, y), None, 6000, label_log_prior=log_prior, max_rows=10**6)
    per_label = torch.stack([model.exact_log_px_given(x, torch.full_like(y, c)) for c in range(classes)], dim=1)
    assert (result["log_px"] - torch.logsumexp(per_label + log_prior, dim=1)).abs().mean() < 0.05
    assert (result["log_px_given_y"] - model.exact_log_px_given(x, y)).abs().mean() < 0.05
    # K counts (y, z) pairs: 6000 stratified over 3 labels is 2000 decoded images per label and image
    assert samples_per_label(6000, classes) == 2000 and samples_per_label(2, classes) == 1


class TableDraws(torch.distributions.Distribution):
    """N(loc, scale^2) per image whose k-th draw is loc + scale * table[k]: the same draws however
    the estimator chunks its images and samples (a counter follows the draws already made)."""

    arg_constraints: dict = {}

    def __init__(self, loc, scale, table):
        super().__init__(loc.shape[:1], loc.shape[1:], validate_args=False)
        self.normal, self.table, self.drawn = Independent(Normal(loc, scale), 1), table, 0

    def sample(self, sample_shape=torch.Size()):
        k = sample_shape[0]
        eps = self.table[self.drawn: self.drawn + k, : self.normal.mean.shape[0]]  # [k, images, D]
        self.drawn += k
        return self.normal.mean + self.normal.stddev * eps

    def log_prob(self, z):
        return self.normal.log_prob(z)


class TableProposal(LinearGaussian):
    def __init__(self, table):
        super().__init__()
        self.table = table

    def proposal(self, x, y=None, index=None):
        q = self.posterior(x)
        return TableDraws(q.mean, q.stddev, self.table[:, index])


@torch.no_grad()
def test_is_nll_chunking_does_not_change_the_estimate():
    # with the same draws in both, chunked and unchunked estimates are the same sums in another order
    torch.manual_seed(1)
    model = TableProposal(torch.randn(300, 37, 3))
    x = model.likelihood(model.prior.sample(37)).sample()
    index = torch.arange(37)
    whole = importance_log_likelihood(model, x, None, index, samples=300, max_rows=10**6)
    for rows in (500, 64, 7):  # images in several chunks, then samples split into chunks too
        chunked = importance_log_likelihood(model, x, None, index, samples=300, max_rows=rows)
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-4)
    exact = model.exact_log_px(x)
    assert abs(whole.mean() - exact.mean()) < 0.05  # and the estimate is right


class ChunkRecordingLinearGaussian(LinearGaussian):
    def __init__(self):
        super().__init__()
        self.decoded_shapes = []

    def likelihood(self, z, y=None):
        self.decoded_shapes.append(tuple(z.shape[:2]))
        return super().likelihood(z, y)


@torch.no_grad()
def test_is_splits_an_images_samples_into_equal_chunks():
    model = ChunkRecordingLinearGaussian()
    x = torch.randn(3, 6)
    importance_log_likelihood(model, x, None, None, samples=5000, max_rows=2048)
    assert model.decoded_shapes == [(1667, 1), (1667, 1), (1666, 1)] * 3  # not 2048, 2048 and 904
    model.decoded_shapes.clear()
    importance_log_likelihood(model, x, None, None, samples=100, max_rows=250)
    assert model.decoded_shapes == [(100, 2), (100, 1)]  # two images per chunk


def test_cpu_chunks_hold_16_mib_of_float32_at_the_widest_decoded_layer_whatever_the_decoding_precision():
    rows = eval_rows(torch.device("cpu"), 784)
    assert rows * 784 * 4 <= 16 * 2**20 < (rows + 1) * 784 * 4
    assert rows >= 5000  # K = 5000 on MNIST: one chunk per image
    assert eval_rows(torch.device("cuda"), 784) == 65536
    mnist = GaussianVAE(784, (400,), 20, StandardNormalPrior(20), "bernoulli")
    digits = GaussianVAE(64, (400,), 20, StandardNormalPrior(20), "bernoulli")
    assert widest_row(mnist, 784) == 784  # the image: MNIST's chunks are sized as they always were
    assert widest_row(digits, 64) == 400  # the hidden layer, 6x the 64-value image


@torch.no_grad()
def test_is_chunks_are_sized_by_the_widest_layer_not_the_image():
    model = ChunkRecordingLinearGaussian()
    model.wide = torch.nn.Linear(1, 4096)  # 4096 values per decoded image: 1024 rows make 16 MiB
    importance_log_likelihood(model, torch.randn(3, 6), None, None, samples=5000)
    assert model.decoded_shapes == [(1000, 1)] * 15  # five equal chunks of K per image, each within 1024 rows


@torch.no_grad()
def test_is_with_one_sample_equals_the_single_sample_elbo_on_average():
    model = LinearGaussian()
    x = model.likelihood(model.prior.sample(4000)).sample()
    index = torch.arange(len(x))
    k1 = importance_log_likelihood(model, x, None, None, samples=1)
    recon, kl = neg_elbo_per_example(model, x, torch.zeros(len(x), dtype=torch.long), index)
    elbo = -(recon + kl)
    standard_error = (k1.std() / len(x) ** 0.5).item()
    assert abs(k1.mean().item() - elbo.mean().item()) < 4 * standard_error + 0.02


@torch.no_grad()
def test_is_nll_is_below_neg_elbo_for_the_linear_model():
    model = LinearGaussian()
    x = model.likelihood(model.prior.sample(500)).sample()
    recon, kl = neg_elbo_per_example(model, x, torch.zeros(len(x), dtype=torch.long), torch.arange(len(x)))
    nll = -importance_log_likelihood(model, x, None, None, samples=1000)
    assert nll.mean() < (recon + kl).mean()


class UpcastLinearGaussian(LinearGaussian):
    """The linear model scoring its (possibly bfloat16) mean in float32, as vaebench's likelihoods do."""

    def likelihood(self, z, y=None):
        return Independent(Normal(at_least_float32(self.decoder(z)), self.scale), 1)


@torch.no_grad()
def test_bfloat16_decoding_stays_close_to_the_exact_likelihood():
    model = UpcastLinearGaussian()
    torch.manual_seed(0)
    x = model.likelihood(model.prior.sample(200)).sample()
    torch.manual_seed(1)
    fp32 = importance_log_likelihood(model, x, None, None, samples=2000)
    torch.manual_seed(1)
    bf16 = importance_log_likelihood(model, x, None, None, samples=2000, decode_dtype=torch.bfloat16)
    assert bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().max() > 0  # the decoder really ran in bfloat16
    exact = model.exact_log_px(x)
    assert abs(bf16.mean().item() - exact.mean().item()) < 0.05
    assert (bf16 - exact).abs().mean().item() < 0.1


class ScoresInDecoderPrecision(Independent):
    """A third-party likelihood that casts the image to its parameters' dtype before scoring."""

    def log_prob(self, value):
        return super().log_prob(value.to(self.base_dist.loc.dtype)).to(self.base_dist.loc.dtype)


class CarelessLinearGaussian(LinearGaussian):
    def likelihood(self, z, y=None):
        return ScoresInDecoderPrecision(Normal(torch.nn.functional.linear(z, self.W, self.b), self.scale), 1)


@torch.no_grad()
def test_bfloat16_decoding_refuses_a_likelihood_that_scores_in_bfloat16():
    model = CarelessLinearGaussian()
    x = torch.randn(5, 6)
    importance_log_likelihood(model, x, None, None, samples=10)  # fine in float32
    with pytest.raises(ValueError, match="returned torch.bfloat16 .* use --is-precision float32"):
        importance_log_likelihood(model, x, None, None, samples=10, decode_dtype=torch.bfloat16)


class FixedClusters(LatentVariableModel):
    def __init__(self, ids, categories=3):
        super().__init__("bernoulli", 3)
        self.ids, self.clusters = ids, categories
        self.prior = StandardNormalPrior(2)

    def cluster(self, x, y=None):
        return self.ids[: len(x)]

    def posterior(self, x, y=None, index=None):
        return Independent(Normal(x[:, :2], torch.ones_like(x[:, :2])), 1)


class PointCodes(LatentVariableModel):
    def __init__(self):
        super().__init__("bernoulli", 3)
        self.prior = StandardNormalPrior(2)

    def posterior(self, x, y=None, index=None):
        return Independent(Normal(x[:, :2], torch.ones(len(x), 2)), 1)


def _ctx(model, x, y, tmp_path):
    data = type("D", (), {})()
    data.n_classes = 3
    data.split = lambda name: Split(x, y)
    return EvalContext(model=model, data=data, run_dir=tmp_path, device=torch.device("cpu"), is_samples=1, seed=0)


def nmi_by_hand(a, b):
    """MI / arithmetic mean of the entropies, from the contingency table."""
    import math
    from collections import Counter

    n = len(a)
    pa, pb, pab = Counter(a), Counter(b), Counter(zip(a, b))
    mi = sum(c / n * math.log((c / n) / (pa[i] / n * pb[j] / n)) for (i, j), c in pab.items())
    h = lambda counts: -sum(c / n * math.log(c / n) for c in counts.values())  # noqa: E731
    return mi / ((h(pa) + h(pb)) / 2)


def test_nmi_of_own_discrete_latent_agrees_with_sklearn(tmp_path):
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    clusters = torch.tensor([1, 1, 0, 2, 2, 2, 0, 0, 0, 1])
    result = NMI()(_ctx(FixedClusters(clusters), torch.zeros(10, 4), labels, tmp_path))
    assert result["nmi"] == pytest.approx(normalized_mutual_info_score(labels.numpy(), clusters.numpy()))
    assert result["nmi"] == pytest.approx(nmi_by_hand(labels.tolist(), clusters.tolist()))
    assert result["nmi_method"] == "own discrete latent (3 categories)"
    assert result["nmi_own"] == result["nmi"] and result["nmi_own_k"] == 3


def test_nmi_uses_k_classes_in_every_row_and_a_latent_of_other_size_gets_its_own_column(tmp_path):
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    labels = np.repeat(np.arange(3), 30)
    x = torch.tensor(centres[labels] + rng.normal(0, 0.5, (90, 2)), dtype=torch.float32)
    ids = torch.tensor(rng.integers(0, 5, 90))  # five categories, unrelated to the labels
    result = NMI()(_ctx(FixedClusters(ids, categories=5), x, torch.tensor(labels), tmp_path))
    assert result["nmi"] == pytest.approx(1.0) and result["nmi_method"].startswith("kmeans(k=3")
    assert result["nmi_own"] == pytest.approx(normalized_mutual_info_score(labels, ids.numpy())) and result["nmi_own_k"] == 5


def test_nmi_falls_back_to_kmeans_on_posterior_means(tmp_path):
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    labels = np.repeat(np.arange(3), 30)
    x = torch.tensor(centres[labels] + rng.normal(0, 0.5, (90, 2)), dtype=torch.float32)
    result = NMI()(_ctx(PointCodes(), x, torch.tensor(labels), tmp_path))
    assert result["nmi"] == pytest.approx(1.0)
    assert result["nmi_method"].startswith("kmeans(k=3")


def _linear_gaussian_gaps(model):
    """The exact gaps of the linear-Gaussian model: the true posterior is N(m, Lambda^-1), so the
    best diagonal Gaussian is N(m, diag(1/Lambda_ii)) (mean-field) and every KL is closed-form."""
    W, s = model.W.detach(), model.scale
    precision = torch.eye(W.shape[1]) + W.T @ W / s**2
    covariance = torch.linalg.inv(precision)
    kl_optimal = 0.5 * (torch.log(torch.diagonal(precision)).sum() - torch.logdet(precision))
    amortised_var = model.inflate * torch.diagonal(covariance)
    kl_amortised = 0.5 * (
        (torch.diagonal(precision) * amortised_var).sum() - W.shape[1] + torch.logdet(covariance) - amortised_var.log().sum()
    )
    return (kl_amortised - kl_optimal).item(), kl_optimal.item(), (1 / torch.diagonal(precision)).sqrt()


def test_gaps_match_the_closed_form_gaps_of_the_linear_gaussian_model():
    from vaebench.metrics.gaps import FixedProposal, neg_elbo_estimate, optimise_posteriors

    model = LinearGaussian(inflate=3.0)  # the "encoder" gets the mean right and the variances 3x too wide
    torch.manual_seed(0)
    with torch.no_grad():
        x = model.likelihood(model.prior.sample(300)).sample()
    amortization, approximation, optimal_std = _linear_gaussian_gaps(model)
    q0 = model.posterior(x)
    fitted = optimise_posteriors(model, q0, x, None)
    relative_error = (fitted.base_dist.scale / optimal_std - 1).abs()
    assert relative_error.mean() < 0.03 and relative_error.max() < 0.15  # stochastic gradients: near, not at, the optimum
    with torch.no_grad():
        amortised = neg_elbo_estimate(model, q0, x, None, 2000).mean().item()
        optimised = neg_elbo_estimate(model, fitted, x, None, 2000).mean().item()
        nll = -importance_log_likelihood(FixedProposal(model, fitted), x, None, torch.arange(len(x)), 5000).mean().item()
    exact_nll = -model.exact_log_px(x).mean().item()
    assert nll == pytest.approx(exact_nll, abs=0.01)
    assert amortised - optimised == pytest.approx(amortization, abs=0.05)  # about 3.06 nats
    assert optimised - nll == pytest.approx(approximation, abs=0.03)  # about 0.27 nats


def test_label_allocation_spends_k_by_the_pilot_with_a_floor_per_label():
    from vaebench.evaluation.importance import LabelAllocation

    allocation = LabelAllocation(5000, 10)
    assert (allocation.pilot, allocation.floor) == (10, 10)
    log_posterior = torch.log(torch.tensor([[0.96] + [0.004] * 9, [0.1] * 10]))
    counts = allocation.counts(log_posterior)
    assert counts.sum(1).tolist() == [4900, 4900]  # K less the pilot's samples, which are not reused
    assert counts.min() >= 10 and counts[0, 0] > 4500 and counts[1].tolist() == [490] * 10
    assert LabelAllocation(20, 10).stratified and "stratified" in LabelAllocation(20, 10).describe()


@torch.no_grad()
def test_allocating_samples_by_the_pilot_beats_stratifying_them_when_the_labels_are_well_separated():
    from vaebench.evaluation.importance import log_likelihoods

    model, classes = LabelledLinearGaussian(classes=10), 10
    model.offsets *= 3.0  # labels far apart: p(y|x) is almost one-hot
    model.inflate = 6.0  # a poor proposal, so each label's estimate needs its samples
    torch.manual_seed(0)
    y = torch.randint(0, classes, (300,))
    x = model.likelihood(model.prior.sample(300), y).sample()
    log_prior = torch.full((classes,), -math.log(classes))
    exact = torch.logsumexp(torch.stack([model.exact_log_px_given(x, torch.full_like(y, c)) for c in range(classes)], 1) + log_prior, 1)
    allocated = log_likelihoods(model, Split(x, y), None, 1000, label_log_prior=log_prior, max_rows=10**6)
    errors = {}
    for name, per_label in (("allocated", None), ("stratified", 100)):
        if per_label is None:
            estimate = allocated["log_px"]
        else:  # K/C samples of each label, as the estimator did before the pilot
            estimate = torch.logsumexp(torch.stack([importance_log_likelihood(model, x, torch.full_like(y, c), None, per_label)
                                                    for c in range(classes)], 1) + log_prior, 1)
        errors[name] = (exact - estimate).mean().item()  # IS underestimates log p(x): the error is >= 0 on average
    assert errors["allocated"] < 0.5 * errors["stratified"], errors
    assert abs(errors["allocated"]) < 0.05
    # K/5 from the same samples is further from the truth than K, and the ESS is at most K
    assert (exact - allocated["log_px_fifth"]).mean() > (exact - allocated["log_px"]).mean()
    assert ((allocated["ess"] > 0) & (allocated["ess"] <= 1000 + 1e-3)).all()


@torch.no_grad()
def test_with_the_exact_posterior_as_proposal_every_weight_is_p_x_so_the_ess_is_k_and_k_over_5_agrees():
    from vaebench.evaluation.importance import log_likelihoods

    model = LinearGaussian(x_dim=4, z_dim=1, inflate=1.0)  # one latent: the mean-field posterior is exact
    torch.manual_seed(0)
    x = model.likelihood(model.prior.sample(50)).sample()
    result = log_likelihoods(model, Split(x, torch.zeros(50, dtype=torch.long)), None, 500, max_rows=1000)
    torch.testing.assert_close(result["log_px"], model.exact_log_px(x), atol=1e-3, rtol=0)
    torch.testing.assert_close(result["log_px_fifth"], result["log_px"], atol=1e-3, rtol=0)
    torch.testing.assert_close(result["ess"], torch.full((50,), 500.0), atol=0.5, rtol=0)


def test_a_learned_prior_is_built_once_per_evaluation_and_the_numbers_do_not_change(digits, tmp_path, monkeypatch):
    """The VampPrior's distribution encodes its pseudo-inputs: evaluation builds it once for every
    metric (it was rebuilt at every one of the gaps' optimisation steps), with the same values."""
    import contextlib

    from vaebench.distributions import VampPrior
    from vaebench.evaluation import context as eval_context
    from vaebench.evaluation.context import evaluate
    from vaebench.metrics.elbo import TestELBO
    from vaebench.metrics.gaps import InferenceGaps
    from vaebench.metrics.is_nll import ImportanceSampledNLL

    torch.manual_seed(0)
    model = GaussianVAE(digits.dim, (16,), 3, VampPrior(digits.dim, 20))
    builds = []
    original = VampPrior.distribution
    monkeypatch.setattr(VampPrior, "distribution", lambda self: builds.append(1) or original(self))
    metrics = [TestELBO(), ImportanceSampledNLL(), InferenceGaps()]

    def run():
        ctx = EvalContext(model=model, data=digits, run_dir=tmp_path, device=torch.device("cpu"), is_samples=20, seed=0)
        builds.clear()
        result = evaluate(ctx, metrics)
        assert result.errors == {}, result.errors
        return result.values, len(builds)

    frozen, frozen_builds = run()
    monkeypatch.setattr(eval_context, "frozen_priors", lambda model: contextlib.nullcontext())
    rebuilt, rebuilt_builds = run()
    assert frozen_builds == 1 and rebuilt_builds > 300  # the gaps alone took 300 optimisation steps
    for key in ("neg_elbo", "is_nll", "amortization_gap", "approximation_gap"):
        assert frozen[key] == pytest.approx(rebuilt[key], rel=1e-6, abs=1e-6), key
    assert "distribution" not in model.prior.__dict__  # the method is the class's again after the block
