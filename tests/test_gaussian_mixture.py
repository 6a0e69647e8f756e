"""GaussianMixture and DiagonalGaussianMixture: torch's MixtureSameFamily, with a sampler that draws
one component per sample and a log-density that does not broadcast samples against components."""

import math

import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, MultivariateNormal, Normal

from vaebench.distributions.gaussian_mixture import DiagonalGaussianMixture, GaussianMixture
from vaebench.distributions.proposals import DefensiveMixture


def mixture():
    g = torch.Generator().manual_seed(0)
    weights = torch.tensor([0.5, 0.3, 0.2])
    means = torch.randn(3, 2, generator=g) * 4
    scale_tril = torch.linalg.cholesky(torch.eye(2) * 0.5 + 0.4 * torch.tensor([[[1.0, 0.8], [0.8, 1.0]], [[1.0, -0.5], [-0.5, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]))
    return weights, means, scale_tril


def test_log_prob_is_that_of_mixture_same_family_expanded_or_not():
    weights, means, scale_tril = mixture()
    ours = GaussianMixture(weights, means, scale_tril)
    torchs = MixtureSameFamily(Categorical(probs=weights), MultivariateNormal(means, scale_tril=scale_tril))
    z = torch.randn(7, 5, 2) * 3
    # one triangular solve per component over every sample, not one per pair: float32 rounding apart, equal
    assert torch.allclose(ours.log_prob(z), torchs.log_prob(z), rtol=1e-6, atol=1e-5)
    assert ours.expand((5,)).log_prob(z).shape == (7, 5)
    assert torch.allclose(ours.expand((5,)).log_prob(z), torchs.expand((5,)).log_prob(z), rtol=1e-6, atol=1e-5)
    assert ours.expand((5,)).log_prob(z[:, :1]).shape == (7, 5)  # broadcast against the batch shape, as torch's
    assert torch.allclose(ours.expand((5,)).log_prob(z[:, :1]), torchs.expand((5,)).log_prob(z[:, :1]), rtol=1e-6, atol=1e-5)
    assert ours.expand((5,)).batch_shape == (5,) and isinstance(ours.expand((5,)), GaussianMixture)


def test_log_prob_matches_mixture_same_family_in_20_dimensions_far_from_the_means():
    g = torch.Generator().manual_seed(3)
    weights = torch.softmax(torch.randn(20, generator=g), 0)
    means = torch.randn(20, 20, generator=g) * 3
    a = torch.randn(20, 20, 20, generator=g) * 0.3
    scale_tril = torch.linalg.cholesky(a @ a.transpose(-1, -2) + 0.05 * torch.eye(20))
    z = torch.randn(300, 20, generator=g) * 6
    ours = GaussianMixture(weights, means, scale_tril).log_prob(z)
    torchs = MixtureSameFamily(Categorical(probs=weights), MultivariateNormal(means, scale_tril=scale_tril)).log_prob(z)
    assert torch.allclose(ours, torchs, rtol=1e-5, atol=1e-3)


def test_samples_have_the_mixture_moments_and_component_shares():
    weights, means, scale_tril = mixture()
    d = GaussianMixture(weights, means, scale_tril).expand((4,))
    torch.manual_seed(1)
    z = d.sample((50_000,))
    assert z.shape == (50_000, 4, 2)
    flat = z.reshape(-1, 2)
    covariances = scale_tril @ scale_tril.transpose(-1, -2)
    mean = (weights[:, None] * means).sum(0)
    second = (weights[:, None, None] * (covariances + means[:, :, None] * means[:, None, :])).sum(0)
    covariance = second - mean[:, None] * mean[None, :]
    assert torch.allclose(flat.mean(0), mean, atol=0.03)
    assert torch.allclose(flat.T.cov(), covariance, atol=0.08)
    # each sample near its own component: the shares of the nearest (most responsible) component match the weights
    responsible = MultivariateNormal(means, scale_tril=scale_tril).log_prob(flat[:, None, :]).add(weights.log()).argmax(-1)
    shares = torch.bincount(responsible, minlength=3).float() / len(flat)
    assert torch.allclose(shares, weights, atol=0.02)


def test_a_defensive_mixture_with_a_gaussian_mixture_prior_samples_from_both():
    weights, means, scale_tril = mixture()
    q = MultivariateNormal(torch.full((3, 2), 100.0), scale_tril=torch.eye(2).expand(3, 2, 2))
    r = DefensiveMixture(q, GaussianMixture(weights, means, scale_tril), 0.25)
    torch.manual_seed(2)
    z = r.sample((20_000,))
    near_q = ((z - 100.0).norm(dim=-1) < 10).float().mean()
    assert abs(near_q.item() - 0.25) < 0.02


def diagonal_mixture(components=500, dim=20, small=0.01):
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(components, generator=g)
    loc = torch.randn(components, dim, generator=g) * 2
    scale = torch.exp(torch.rand(components, dim, generator=g) * (0.0 - math.log(1 / small)))  # from `small` to 1
    return logits, loc, scale


def test_the_diagonal_mixture_is_mixture_same_family_in_value_and_gradient_even_with_narrow_components():
    logits, loc, scale = diagonal_mixture()
    exact = MixtureSameFamily(Categorical(logits=logits.double()), Independent(Normal(loc.double(), scale.double()), 1))
    torchs = MixtureSameFamily(Categorical(logits=logits), Independent(Normal(loc, scale), 1))
    g = torch.Generator().manual_seed(6)
    # near the components (where the narrow ones dominate: the expansion would cancel badly in float32) and far from them
    pick = torch.randint(0, 500, (40,), generator=g)
    near = (loc[pick] + scale[pick] * torch.randn(40, 20, generator=g)).reshape(4, 10, 20)
    far = torch.randn(4, 10, 20, generator=g) * 6
    for z in (near, far):
        z = z.clone().requires_grad_(True)
        ours = DiagonalGaussianMixture(logits, loc, scale).log_prob(z)
        assert ours.shape == (4, 10) and ours.dtype == torch.float32
        z64 = z.detach().double().requires_grad_(True)
        reference = exact.log_prob(z64)
        torch.testing.assert_close(ours.double(), reference, rtol=1e-6, atol=1e-4)
        torch.testing.assert_close(torchs.log_prob(z).double(), reference, rtol=1e-6, atol=1e-4)  # torch's own float32 is no closer
        (g_ours,) = torch.autograd.grad(ours.sum(), z)
        (g_exact,) = torch.autograd.grad(reference.sum(), z64)
        torch.testing.assert_close(g_ours.double(), g_exact, rtol=1e-4, atol=1e-3)
    expanded = DiagonalGaussianMixture(logits, loc, scale).expand((10,))
    assert isinstance(expanded, DiagonalGaussianMixture) and expanded.batch_shape == (10,)
    torch.testing.assert_close(expanded.log_prob(far), torchs.expand((10,)).log_prob(far), rtol=1e-5, atol=1e-4)


def test_the_diagonal_mixture_samples_each_component_at_its_weight_with_its_moments():
    logits = torch.tensor([0.0, 1.0, -1.0])
    loc = torch.tensor([[-5.0, 0.0], [5.0, 1.0], [0.0, 8.0]])
    scale = torch.tensor([[0.5, 1.0], [1.0, 0.3], [0.2, 0.2]])
    torch.manual_seed(2)
    z = DiagonalGaussianMixture(logits, loc, scale).expand((3,)).sample((40_000,))
    assert z.shape == (40_000, 3, 2)
    flat = z.reshape(-1, 2)
    nearest = Independent(Normal(loc, scale), 1).log_prob(flat[:, None, :]).argmax(-1)  # the components barely overlap
    shares = torch.bincount(nearest, minlength=3).float() / len(flat)
    torch.testing.assert_close(shares, torch.softmax(logits, 0), atol=0.01, rtol=0)
    for k in range(3):
        mine = flat[nearest == k]
        torch.testing.assert_close(mine.mean(0), loc[k], atol=0.03, rtol=0)
        torch.testing.assert_close(mine.std(0), scale[k], atol=0.03, rtol=0)
