"""Closed-form KLs against the reference values, and each objective term by term."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from vaebench.distributions import BernoulliPrior, MixturePrior, StandardNormalPrior
from vaebench.models import gaussian_from
from vaebench.objectives import Batch, CapacityELBO, ScoreFunctionELBO, WeightedKL, kl_to_prior
from vaebench.schedules import KLWarmup, LinearRamp, Progress
from vaebench.settings import RunSettings
from vaebench.variant import BuildContext
from vaebench.plugin_manager import load_plugins


def gaussian_kl(mu, logvar):
    q = gaussian_from(torch.cat([torch.tensor([mu]), torch.tensor([logvar])], dim=-1))
    prior = StandardNormalPrior(q.event_shape[0]).distribution()
    return kl_to_prior(q, prior, q.mean)


@pytest.mark.parametrize("mu,logvar,expected", [([[0.0]], [[0.0]], 0.0), ([[1.0]], [[0.0]], 0.5), ([[1.0]], [[2.0]], 2.6945)])
def test_gaussian_kl_reference_values(mu, logvar, expected):
    """shared/reference/000: KL(N(mu, sigma^2) || N(0, 1)) = 0, 0.5 and 2.6945..."""
    assert gaussian_kl(mu, logvar).item() == pytest.approx(expected, abs=1e-4)


def test_gaussian_kl_shape_and_formula():
    mu, logvar = torch.randn(10, 30), torch.randn(10, 30)
    q = gaussian_from(torch.cat([mu, logvar], -1))
    kl = kl_to_prior(q, StandardNormalPrior(30).distribution(), q.mean)
    closed = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1)  # Kingma & Welling, appendix B
    assert kl.shape == (10,)
    torch.testing.assert_close(kl, closed, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("probs,expected", [([[0.5, 0.5]], 0.0), ([[1.0]], math.log(2))])
def test_bernoulli_kl_reference_values(probs, expected):
    """shared/reference/000: KL(q || Bernoulli(0.5)) = 0 for p = 0.5 and 0.693 for p = 1."""
    q = Independent(Bernoulli(probs=torch.tensor(probs)), 1)
    prior = BernoulliPrior(len(probs[0])).distribution()
    assert kl_to_prior(q, prior, q.sample()).item() == pytest.approx(expected, abs=1e-4)


def test_bernoulli_kl_is_dlog2_minus_entropy():
    q = Independent(Bernoulli(logits=torch.randn(7, 12)), 1)
    kl = kl_to_prior(q, BernoulliPrior(12).distribution(), q.sample())
    torch.testing.assert_close(kl, 12 * math.log(2) - q.entropy(), rtol=1e-5, atol=1e-5)


def test_kl_warmup_schedule():
    """Two warm-up epochs at 0, then four annealing epochs ending at weight 1 (not one epoch later)."""
    w = KLWarmup(warmup_epochs=2, anneal_epochs=4)
    weights = [w(Progress(e, s, 10, 10)) for e in range(8) for s in (0, 9)]
    assert weights == [0.0, 0.0, 0.0, 0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "warmup,anneal,expected",
    [
        (0, 1, [1.0, 1.0, 1.0]),  # no warm-up, one annealing epoch: weight 1 from the first epoch
        (0, 0, [1.0, 1.0, 1.0]),  # no annealing at all
        (3, 0, [0.0, 0.0, 0.0, 1.0]),  # warm-up only: a step to 1 right after it
        (1, 2, [0.0, 0.5, 1.0, 1.0]),
    ],
)
def test_kl_warmup_schedule_edges(warmup, anneal, expected):
    w = KLWarmup(warmup_epochs=warmup, anneal_epochs=anneal)
    assert [w(Progress(e, 0, 5, len(expected))) for e in range(len(expected))] == expected


def test_kl_annealing_reaches_weight_one_within_its_first_forty_percent():
    """kl-annealing's defaults: 0 for the first 10% of 50 epochs, 1 from the end of the next 30%."""
    variant = load_plugins().registry.get("variant", "kl-annealing")
    schedule = variant.schedule(50, variant.resolve_options({}))
    weights = [schedule(Progress(e, 0, 11, 50)) for e in range(50)]
    assert weights[:5] == [0.0] * 5 and weights[5] > 0
    assert weights[18] < 1.0 and weights[19] == 1.0  # epoch 20 of 50 is the last annealing epoch


def test_linear_ramp_reaches_final_value_linearly():
    ramp = LinearRamp(5.0, ramp_fraction=0.5)
    values = [ramp(Progress(e, 0, 1, 10)) for e in range(10)]
    assert values[0] == 0.0 and values[5] == 5.0 and values[9] == 5.0
    assert values[1:6] == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0])


def build(variant_name, epochs=4, **options):
    plugins = load_plugins()
    variant = plugins.registry.get("variant", variant_name)
    ctx = BuildContext(RunSettings(hidden=(16,), latent_dim=3), x_dim=6, n_classes=4, n_train=20, epochs=epochs, options=variant.resolve_options(options))
    return variant.build(ctx)


def test_weighted_kl_logs_true_elbo_beside_weighted_loss():
    recipe = build("kl-annealing", epochs=10)
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    batch = Batch(x, torch.zeros(5, dtype=torch.long), torch.arange(5))
    terms = recipe.objective(recipe.model, batch, Progress(0, 0, 1, 10))
    assert terms.logs["kl_weight"] == 0.0  # a host value: the schedule is known without the device
    assert terms.loss.item() == pytest.approx(terms.logs["reconstruction"].item(), rel=1e-6)
    assert terms.logs["elbo"].item() == pytest.approx(-(terms.logs["reconstruction"] + terms.logs["kl"]).item(), rel=1e-6)


def test_score_function_gradient_matches_hand_computation():
    """The encoder gets (log p(x|z) - b) * grad log q(z|x) + grad KL; b is the running mean."""
    recipe = build("bernoulli-sfe")
    model, objective = recipe.model, recipe.objective
    torch.manual_seed(1)
    x = torch.bernoulli(torch.full((4, 6), 0.5))
    batch = Batch(x, torch.zeros(4, dtype=torch.long), torch.arange(4))
    objective.baseline = torch.tensor(-3.0)
    objective.updates = torch.tensor(7)
    torch.manual_seed(2)
    terms = objective(model, batch, Progress(0, 0, 1, 1))
    model.zero_grad()
    terms.loss.backward()
    auto = [p.grad.clone() for p in model.encoder.parameters()]

    # by hand: the same z (same seed), then the estimator's formula
    torch.manual_seed(2)
    q = model.posterior(x)
    z = q.sample()
    with torch.no_grad():
        log_lik = model.likelihood(z).log_prob(x)
    log_q = q.log_prob(z)
    kl = kl_divergence(q, BernoulliPrior(q.event_shape[0]).distribution().expand(q.batch_shape))
    encoder_objective = ((log_lik - (-3.0)) * log_q - kl).mean()
    grads = torch.autograd.grad(-encoder_objective, list(model.encoder.parameters()))
    for a, b in zip(auto, grads):
        torch.testing.assert_close(a, b)
    # z was not reparameterised: the sample carries no gradient
    assert not z.requires_grad
    # the baseline became the running average over all updates: (7 * -3 + mean log_lik) / 8
    assert objective.baseline.item() == pytest.approx((7 * -3.0 + log_lik.mean().item()) / 8, rel=1e-5)
    assert objective.updates.item() == 8


def test_score_function_baseline_is_checkpointed():
    objective = ScoreFunctionELBO()
    objective.baseline, objective.updates = torch.tensor(-42.5), torch.tensor(11)
    fresh = ScoreFunctionELBO()
    fresh.load_state_dict(objective.state_dict())
    assert fresh.baseline.item() == -42.5 and fresh.updates.item() == 11


def test_gumbel_softmax_is_finite_for_extreme_logits():
    recipe = build("gumbel-capacity")
    model = recipe.model
    from torch.distributions import RelaxedOneHotCategorical

    logits = torch.tensor([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, -1e4, 1e4]], requires_grad=True)
    for temperature in (0.01, 0.67, 5.0):
        c = RelaxedOneHotCategorical(torch.tensor(temperature), logits=logits).rsample((500,))
        assert torch.isfinite(c).all()
        torch.testing.assert_close(c.sum(-1), torch.ones(500, 2))
        (c * torch.randn_like(c)).sum().backward()
        assert torch.isfinite(logits.grad).all()
    # and through the whole objective: encoder outputs of +-1e4 give a finite loss
    with torch.no_grad():
        model.encoder[-1].bias[-4:] = torch.tensor([1e4, -1e4, 1e4, -1e4])
    x = torch.bernoulli(torch.full((3, 6), 0.5))
    terms = recipe.objective(model, Batch(x, torch.zeros(3, dtype=torch.long), torch.arange(3)), Progress(0, 0, 1, 4))
    assert torch.isfinite(terms.loss)


def test_capacity_loss_matches_formula_term_by_term():
    recipe = build("gumbel-capacity", epochs=4, ramp_fraction=1.0, ramp_fraction_c=1.0)
    objective, model = recipe.objective, recipe.model
    x = torch.bernoulli(torch.full((8, 6), 0.5))
    batch = Batch(x, torch.zeros(8, dtype=torch.long), torch.arange(8))
    progress = Progress(epoch=2, step_in_epoch=0, steps_per_epoch=1, epochs=4)  # half way
    torch.manual_seed(3)
    terms = objective(model, batch, progress)
    torch.manual_seed(3)
    log_lik, kl_z, kl_c = objective.terms(model, batch, progress)
    c_z, c_c = 5.0 * 0.5, min(5.0, math.log(4)) * 0.5
    expected = -log_lik.mean() + 30.0 * (kl_z.mean() - c_z).abs() + 30.0 * (kl_c.mean() - c_c).abs()
    assert terms.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms.logs["capacity_z"] == pytest.approx(c_z)
    assert terms.logs["capacity_c"] == pytest.approx(c_c)
    # KL_c against the uniform prior is log K - H(q(c|x))
    q_c = model.posterior(x).parts[1]
    torch.testing.assert_close(kl_c, math.log(4) - q_c.entropy())


def test_capacities_reach_their_targets_after_the_ramp_share_of_the_budget():
    objective = build("gumbel-capacity", epochs=10).objective  # 28x28 defaults: reached after 30% of the budget
    assert objective.c_z(Progress(1, 0, 1, 10)) == pytest.approx(5.0 * 1 / 3)
    assert objective.c_z(Progress(3, 0, 1, 10)) == pytest.approx(5.0)
    assert objective.c_c(Progress(9, 0, 1, 10)) == pytest.approx(math.log(4))  # capped at log K


def test_capacity_off_is_the_plain_relaxed_elbo():
    recipe = build("gumbel-capacity", capacity="off")
    x = torch.bernoulli(torch.full((8, 6), 0.5))
    batch = Batch(x, torch.zeros(8, dtype=torch.long), torch.arange(8))
    torch.manual_seed(4)
    terms = recipe.objective(recipe.model, batch, Progress(2, 0, 1, 4))
    torch.manual_seed(4)
    log_lik, kl_z, kl_c = recipe.objective.terms(recipe.model, batch, Progress(2, 0, 1, 4))
    assert terms.loss.item() == pytest.approx((-log_lik + kl_z + kl_c).mean().item(), rel=1e-6)


def test_mixture_prior_log_prob_matches_brute_force():
    prior = MixturePrior(dim=3, components=5)
    with torch.no_grad():
        prior.logits.copy_(torch.randn(5))
        prior.logvars.copy_(torch.randn(5, 3) * 0.3)
    z = torch.randn(11, 3)
    weights = torch.log_softmax(prior.logits, 0)
    per_component = torch.stack(
        [weights[k] + Normal(prior.means[k], torch.exp(0.5 * prior.logvars[k])).log_prob(z).sum(-1) for k in range(5)]
    )
    torch.testing.assert_close(prior.log_prob(z), torch.logsumexp(per_component, 0))


def test_mixture_prior_sampling_is_vectorised_and_follows_the_device():
    prior = MixturePrior(dim=4, components=16)
    samples = prior.sample(10000)
    assert samples.shape == (10000, 4) and samples.device == prior.means.device
    # the sample mean matches the mixture mean
    mean = (torch.softmax(prior.logits, 0)[:, None] * prior.means).sum(0)
    torch.testing.assert_close(samples.mean(0), mean.detach(), atol=0.1, rtol=0)
    if torch.cuda.is_available():
        assert prior.to("cuda").sample(5).device.type == "cuda"
