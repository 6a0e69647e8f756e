"""What defines each built-in variant, checked on short digits runs."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import metrics_of, run_tiny
from vaebench.metrics import importance_log_likelihood
from vaebench.plugin_manager import load_plugins
from vaebench.execution.training import train
from vaebench.settings import RunSettings
from vaebench.variant import BuildContext

SETTINGS = RunSettings(hidden=(32,), latent_dim=4)


def build(name, data, epochs=2, settings=SETTINGS, **options):
    variant = load_plugins().registry.get("variant", name)
    ctx = BuildContext(settings, data.dim, data.n_classes, len(data.train), epochs, variant.resolve_options(options), data.name)
    return variant.build(ctx)


def fit(recipe, data, tmp_path, epochs=2):
    return train(recipe, data, budget=epochs, batch_size=128, lr=1e-3, optimizer="adam", seed=0, device=torch.device("cpu"), run_dir=tmp_path)


@pytest.fixture(scope="module")
def all_variants(tmp_path_factory):
    """One tiny sweep of all eight variants, shared by the tests below."""
    out = tmp_path_factory.mktemp("sweep")
    names = ["gaussian", "bernoulli-sfe", "conditional", "gumbel-capacity", "mog-prior", "latent-opt", "ae-gmm", "kl-annealing"]
    result = run_tiny(out, names, epochs=4)
    assert result.failures == []
    return out


def test_every_row_has_finite_headline_numbers(all_variants):
    board = pd.read_csv(all_variants / "leaderboard.csv").set_index("variant")
    assert len(board) == 8
    for column in ("neg_elbo", "is_nll", "nmi", "train_images_per_s"):
        assert board[column].map(math.isfinite).all(), column
    # IS tightens each model's own bound; conditional's -ELBO bounds -log p(x|y), its is_nll is the marginal
    own_nll = board["is_nll_given_y"].fillna(board["is_nll"])
    assert (own_nll <= board["neg_elbo"] + 0.5).all()


def test_conditional_labels_change_the_images_and_both_nlls_are_reported(all_variants, digits, tmp_path):
    m = metrics_of(all_variants, "conditional")
    assert math.isfinite(m["is_nll"]) and math.isfinite(m["is_nll_given_y"])
    # log p(x) = log sum_y p(y) p(x|y) >= log p(y_true) + log p(x|y_true)
    assert m["is_nll"] <= m["is_nll_given_y"] - math.log(0.09)
    grid = Image.open(all_variants / "runs/conditional/seed-0/samples_by_class.png")
    rows = (grid.height - 2) // (8 * 4 + 2)  # 8x8 images enlarged 4x, 2px padding
    assert rows == 10
    recipe = build("conditional", digits)
    fit(recipe, digits, tmp_path)
    z = torch.randn(1, 4).expand(10, 4)
    images = recipe.model.likelihood(z, torch.arange(10)).mean
    assert (images[1:] - images[0]).abs().amax(dim=1).min() > 1e-3


def test_gumbel_records_nmi_every_epoch_and_writes_category_grids(all_variants):
    history = pd.read_csv(all_variants / "runs/gumbel-capacity/seed-0/history.csv")
    assert len(history) == 4 and history["nmi"].between(0, 1).all()
    # on digits C_z rises linearly to 1 nat and C_c to 0.6 over the budget (44 steps); the history holds image-weighted epoch means
    sizes = [128] * 10 + [1294 - 1280]

    def epoch_mean(final, e):
        return sum(final * (11 * e + s) / 44 * n for s, n in enumerate(sizes)) / 1294

    assert list(history["capacity_z"]) == pytest.approx([epoch_mean(1.0, e) for e in range(4)], rel=1e-5)
    assert list(history["capacity_c"]) == pytest.approx([epoch_mean(0.6, e) for e in range(4)], rel=1e-5)
    assert (all_variants / "runs/gumbel-capacity/seed-0/samples_by_category.png").exists()
    assert (all_variants / "runs/gumbel-capacity/seed-0/nmi_curve.png").exists()
    assert metrics_of(all_variants, "gumbel-capacity")["nmi_method"] == "own discrete latent (10 categories)"


def test_mog_prior_parameters_change_during_training(digits, tmp_path):
    recipe = build("mog-prior", digits)
    before = {k: v.clone() for k, v in recipe.model.prior.state_dict().items()}
    assert set(before) == {"means", "logvars", "logits"} and before["means"].shape == (16, 4)
    fit(recipe, digits, tmp_path)
    after = recipe.model.prior.state_dict()
    for key in before:
        assert not torch.allclose(before[key], after[key]), key


def test_latent_opt_has_no_encoder_and_a_table_at_ten_times_the_lr(digits, tmp_path):
    recipe = build("latent-opt", digits)
    model = recipe.model
    assert not hasattr(model, "encoder") and not any("encoder" in n for n, _ in model.named_parameters())
    assert model.latents.mu.shape == (len(digits.train), 4) and model.latents.logvar.shape == (len(digits.train), 4)
    decoder_group, table_group = recipe.param_groups(1e-3)
    assert decoder_group["lr"] == 1e-3 and table_group["lr"] == pytest.approx(1e-2)
    assert {id(p) for p in table_group["params"]} == {id(model.latents.mu), id(model.latents.logvar)}
    fit(recipe, digits, tmp_path)
    model.eval()
    decoder_before = [p.clone() for p in model.decoder.parameters()]
    model.prepare_inference("test", digits.test.x, digits.test.y)
    assert all(torch.equal(a, b) for a, b in zip(decoder_before, model.decoder.parameters()))  # decoder frozen
    fitted = model.posterior(digits.test.x, index=torch.arange(len(digits.test)))
    assert fitted.batch_shape == (len(digits.test),) and not torch.allclose(fitted.mean, torch.zeros_like(fitted.mean))

    # the test-time fit converges: ten times the steps gain little, so the row measures the model, not the fit
    from vaebench.objectives import elbo_parts

    def fitted_neg_elbo(steps):
        model.inference_steps = steps
        model._use(model.fit_posteriors(digits.test.x, None))
        with torch.no_grad():
            return -elbo_parts(model, digits.test.x, None, torch.arange(len(digits.test))).elbo.mean().item()

    default, long = fitted_neg_elbo(100), fitted_neg_elbo(1000)
    assert default <= long + 0.5, (default, long)  # (one z per image: the two differ by noise too)


def test_latent_opt_is_its_own_row_not_a_gap_measurement(all_variants):
    """Its -ELBO is another model's (a decoder trained without an encoder); the gaps metric
    measures amortisation on each amortised variant with its own decoder."""
    board = pd.read_csv(all_variants / "leaderboard.csv").set_index("variant")
    assert "amortisation_gap_vs_gaussian" not in board.columns
    m = metrics_of(all_variants, "latent-opt")
    assert m["amortization_gap"] is None and "no encoder" in m["amortization_gap_na"]
    config = json.loads((all_variants / "runs/latent-opt/seed-0/config.json").read_text())
    assert "no encoder" in config["note"] and "fitted per image" in config["note"]
    for name in ("gaussian", "kl-annealing", "mog-prior", "conditional"):
        assert metrics_of(all_variants, name)["gap_images"] > 0, name
    for name in ("bernoulli-sfe", "gumbel-capacity", "ae-gmm"):
        assert "not a diagonal Gaussian" in metrics_of(all_variants, name)["amortization_gap_na"], name


def test_ae_gmm_has_no_kl_fits_a_gmm_and_samples_through_it(digits, tmp_path):
    recipe = build("ae-gmm", digits)
    history = fit(recipe, digits, tmp_path).history
    assert "kl" not in history[0] and history[0]["loss"] == pytest.approx(history[0]["reconstruction"])
    recipe.post_training(recipe.model, digits)
    prior = recipe.model.prior
    assert prior.weights.shape == (20,) and not torch.allclose(prior.weights, torch.full((20,), 0.05))
    assert isinstance(prior.distribution().component_distribution, torch.distributions.MultivariateNormal)
    samples = recipe.model.likelihood(prior.sample(16)).mean
    assert samples.shape == (16, 64) and torch.isfinite(samples).all()


def test_ae_gmms_parameter_count_includes_its_fitted_mixture(digits):
    from vaebench.variant import count_parameters

    recipe = build("ae-gmm", digits)
    k, d = recipe.model.prior.means.shape
    trainable = sum(p.numel() for p in recipe.model.parameters())
    assert count_parameters(recipe.model) == trainable + (k - 1) + k * d + k * d * (d + 1) // 2


def test_ae_gmm_likelihood_is_valid_and_its_proposal_documented(all_variants):
    m = metrics_of(all_variants, "ae-gmm")
    assert math.isfinite(m["is_nll"]) and m["is_nll"] <= m["neg_elbo"] + 0.5
    assert "chosen on validation" in m["is_proposal"] and m["proposal_selection"].startswith("best of 13 proposals")
    assert m["gmm_components"] == 20 and m["nmi_method"].startswith("kmeans(k=10") and m["nmi_own_k"] == 20
    assert 0 <= m["nmi_own"] <= 1
    # the ELBO's q is chosen on validation apart from IS's proposal, and each is recorded
    assert "chosen on validation" in m["elbo_q"] and m["elbo_q_selection"].startswith("best of ")


def test_kl_annealing_logs_its_weight_and_is_evaluated_at_beta_one(all_variants, digits, tmp_path):
    recipe = build("kl-annealing", digits, epochs=10, warmup_fraction=0.2, anneal_fraction=0.4)
    history = fit(recipe, digits, tmp_path, epochs=10).history
    assert [h["kl_weight"] for h in history] == pytest.approx([0, 0, 0.25, 0.5, 0.75, 1, 1, 1, 1, 1])
    m = metrics_of(all_variants, "kl-annealing")
    assert m["neg_elbo"] == pytest.approx(m["neg_elbo_reconstruction"] + m["neg_elbo_kl"])


def test_bernoulli_sfe_samples_discrete_latents_and_checkpoints_its_baseline(all_variants):
    state = torch.load(all_variants / "runs/bernoulli-sfe/seed-0/checkpoint.pt", weights_only=True)
    assert state["objective"]["updates"].item() == 4 * 11  # 4 epochs of 11 batches
    assert state["objective"]["baseline"].item() < 0  # running mean of log p(x|z)
    history = pd.read_csv(all_variants / "runs/bernoulli-sfe/seed-0/history.csv")
    assert history["baseline"].iloc[-1] > history["baseline"].iloc[0]  # reconstructions improve


@pytest.mark.parametrize("name", ["gaussian", "conditional", "gumbel-capacity", "bernoulli-sfe"])
def test_bfloat16_is_decoding_error_is_far_below_the_estimators_own_noise(name, digits, tmp_path):
    """--is-precision bfloat16 on trained models with different decoders and latents: with the
    same latent samples it moves log p(x) much less than a fresh set of samples does in float32."""
    recipe = build(name, digits, epochs=3)
    fit(recipe, digits, tmp_path, epochs=3)
    model = recipe.model.eval()
    x, y = digits.test.x, digits.test.y
    index = torch.arange(len(x))
    estimates = {}
    for seed, dtype in ((1, torch.float32), (1, torch.bfloat16), (2, torch.float32)):
        torch.manual_seed(seed)
        estimates[seed, dtype] = importance_log_likelihood(model, x, y, index, 200, decode_dtype=dtype).double()
    fp32 = estimates[1, torch.float32]
    rounding = estimates[1, torch.bfloat16] - fp32
    sampling = estimates[2, torch.float32] - fp32
    assert rounding.abs().max() > 0  # bfloat16 did run
    assert abs(rounding.mean().item()) < 0.01
    assert rounding.std().item() < 0.2 * sampling.std().item()


def test_bernoulli_sfe_clips_encoder_and_decoder_gradients_separately(digits):
    """Reference 000 clips each network at norm 5. A joint clip would shrink the decoder's
    gradient by the score-function gradient's large norm."""
    from vaebench.objectives import Batch
    from vaebench.schedules import Progress
    from vaebench.execution.training import gradient_clipper

    recipe = build("bernoulli-sfe", digits)
    model = recipe.model
    assert recipe.grad_clip == {"encoder": 5.0, "decoder": 5.0}
    index = torch.arange(128)
    x, y = digits.training_batch(index)
    recipe.objective(model, Batch(x, y, index), Progress(0, 0, 11, 2)).loss.backward()  # baseline 0: a large advantage
    norm = {name: torch.cat([p.grad.flatten() for p in getattr(model, name).parameters()]).norm().item() for name in ("encoder", "decoder")}
    before = {name: [p.grad.clone() for p in getattr(model, name).parameters()] for name in norm}
    assert norm["encoder"] > 5.0  # the score-function gradient is large at the start
    gradient_clipper(model, recipe.grad_clip)()
    for name in ("encoder", "decoder"):
        scale = min(1.0, 5.0 / norm[name])
        for grad, old in zip((p.grad for p in getattr(model, name).parameters()), before[name]):
            torch.testing.assert_close(grad, old * scale, rtol=1e-4, atol=1e-7)


def test_ae_gmm_proposal_is_never_much_worse_than_the_prior_and_beats_it_when_trained(digits, tmp_path):
    """At equal K its IS-NLL is at most 0.1 nats above plain Monte Carlo from the GMM prior, with a
    good encoder and with a broken one; with a trained encoder it is lower."""
    recipe = build("ae-gmm", digits, epochs=20, settings=RunSettings(hidden=(400,), latent_dim=20))
    fit(recipe, digits, tmp_path, epochs=20)
    model = recipe.model
    recipe.post_training(model, digits)
    model.eval()
    x, k = digits.test.x, 100

    def nll(weight, scale):
        model.proposal_weight, model.proposal_scale = weight, scale
        torch.manual_seed(5)
        return -importance_log_likelihood(model, x, None, None, k).mean().item()

    for broken in (False, True):
        if broken:
            with torch.no_grad():
                model.encoder[-1].bias.add_(50.0)  # every code lands far from where p(z|x) has mass
        chosen = model.prepare_evaluation(digits, k)
        ours = nll(chosen["proposal_weight"], chosen["proposal_scale"] or 1.0)
        prior = nll(0.0, 1.0)
        assert ours <= prior + 0.1, (broken, ours, prior)
        if not broken:
            assert ours < prior - 1.0 and chosen["proposal_weight"] > 0


def test_conditional_neg_elbo_bounds_the_marginal_like_every_row(all_variants):
    m = metrics_of(all_variants, "conditional")
    assert m["neg_elbo"] == pytest.approx(m["neg_elbo_given_y"] + m["neg_elbo_label"])
    assert m["neg_elbo_label"] == pytest.approx(math.log(10), abs=0.05)  # digits' classes are balanced
    assert m["is_nll"] <= m["neg_elbo"] + 0.5  # a bound on -log p(x), above its estimate
    assert m["is_nll_given_y"] <= m["neg_elbo_given_y"] + 0.5
    assert m["is_proposal"] == "q(z|x,y)"
    config = json.loads((all_variants / "runs/conditional/seed-0/config.json").read_text())
    assert "encoder and decoder get onehot(y)" in config["note"] and "beta = 10" in config["note"]


def test_glorot_init_is_burda_et_al_s():
    """--init glorot: Glorot-uniform weights, zero biases, the decoder's output bias at logit(mean image)."""
    from vaebench.distributions import StandardNormalPrior
    from vaebench.models import GaussianVAE, glorot_init

    torch.manual_seed(0)
    model = GaussianVAE(64, (200, 200), 50, StandardNormalPrior(50), activation="tanh")
    mean = torch.rand(64) * 0.998 + 0.001
    mean[0] = 0.0  # clipped to 0.001, as their code clips
    glorot_init(model, mean)
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    for layer in linears:
        bound = (6 / (layer.in_features + layer.out_features)) ** 0.5
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
    output = linears[-1]
    assert all(not layer.bias.detach().any() for layer in linears[:-1])
    expected = torch.log(mean.clamp(0.001, 0.999) / (1 - mean.clamp(0.001, 0.999)))
    assert torch.allclose(output.bias, expected, atol=1e-5)
    assert torch.allclose(torch.sigmoid(model.decode(torch.zeros(1, 50)))[0], mean.clamp(0.001, 0.999), atol=1e-5)
