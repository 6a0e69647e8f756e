"""The settings a published recipe needs (Tomczak & Welling 2018's code): gated layers, He
initialisation, AdamNormGrad, a clipped encoder log-variance and the last images as validation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from helpers import assert_one_line_error, metrics_of, run_cli, run_tiny
from vaebench.data import DatasetSpec, RawData, prepare
from vaebench.distributions import StandardNormalPrior
from vaebench.execution.training import AdamNormGrad, make_optimizer
from vaebench.fast.train_step import step_path
from vaebench.models import GatedDense, GaussianVAE, he_init, mlp
from vaebench.objectives import ELBO


def test_gated_layers_compute_h_times_sigmoid_g_and_the_last_layer_stays_linear():
    torch.manual_seed(0)
    net = mlp([6, 5, 4, 3], "gated")
    assert [type(m) for m in net] == [GatedDense, GatedDense, nn.Linear]
    x = torch.randn(7, 6)
    first = net[0]
    expected = (x @ first.h.weight.T + first.h.bias) * torch.sigmoid(x @ first.g.weight.T + first.g.bias)
    torch.testing.assert_close(first(x), expected)
    with pytest.raises(ValueError, match="activation must be one of"):
        mlp([3, 2], "softplus")


def test_he_init_draws_every_linear_weight_with_variance_two_over_fan_in():
    torch.manual_seed(0)
    model = GaussianVAE(784, (300, 300), 40, StandardNormalPrior(40), activation="gated")
    before = {name: p.clone() for name, p in model.named_parameters() if name.endswith("bias")}
    he_init(model)
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    assert len(linears) == 10  # 2 gated layers (h and g) each way, the encoder's head and the decoder's output
    for layer in linears:
        std = layer.weight.std().item()
        expected = math.sqrt(2.0 / layer.in_features)
        # the sample std of n >= 12,000 normal draws is within 3% of sigma with overwhelming probability
        assert abs(std - expected) < 0.03 * expected, (layer, std, expected)
        assert abs(layer.weight.mean().item()) < 0.03 * expected
    for name, p in model.named_parameters():  # biases keep PyTorch's default, as in the authors' code
        if name.endswith("bias"):
            assert torch.equal(p, before[name])


def test_adam_normgrad_is_adam_on_each_tensors_normalised_gradient():
    torch.manual_seed(0)
    a = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(4))]
    b = [nn.Parameter(p.detach().clone()) for p in a]
    normgrad = make_optimizer("adam-normgrad", [{"params": a, "lr": 1e-2}])
    assert isinstance(normgrad, AdamNormGrad)
    plain = torch.optim.Adam(b, lr=1e-2)
    for step in range(5):
        grads = [torch.randn_like(p) * (10.0 ** step) for p in a]  # scales that Adam alone would not cancel on step 1
        for p, q, g in zip(a, b, grads):
            p.grad = g.clone()
            q.grad = g / (torch.linalg.vector_norm(g) + 1e-7)
        normgrad.step()
        plain.step()
        for p, q in zip(a, b):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_adam_normgrad_trains_eagerly_and_says_why():
    model = nn.Linear(3, 2)
    opt = make_optimizer("adam-normgrad", [{"params": list(model.parameters()), "lr": 1e-3}])
    path = step_path("compiled", optimizer=opt, objective=ELBO(), grad_clip=None, device=torch.device("cpu"),
                     total_steps=10**6, seconds=None)
    assert path.name == "eager" and "AdamNormGrad trains eagerly" in path.reason


def test_logvar_range_clips_the_posterior_scale():
    torch.manual_seed(0)
    model = GaussianVAE(8, (6,), 2, StandardNormalPrior(2), logvar_range=(-6.0, 2.0))
    with torch.no_grad():
        model.encoder[-1].bias.copy_(torch.tensor([0.0, 0.0, 50.0, -50.0]))  # log sigma^2 far outside [-6, 2]
        model.encoder[-1].weight.zero_()
    scale = model.posterior(torch.rand(3, 8)).base_dist.scale
    torch.testing.assert_close(scale[:, 0], torch.full((3,), math.exp(1.0)))
    torch.testing.assert_close(scale[:, 1], torch.full((3,), math.exp(-3.0)))


def test_a_variant_that_cannot_clip_its_log_variance_refuses_the_setting(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "ae-gmm", "--budget", "smoke", "--hidden", "16", "--latent-dim", "2",
                           "--logvar-range=-6,2", "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, "ae-gmm", "does not clip", "--logvar-range")
    assert not (tmp_path / "out" / "runs").exists()  # refused before anything trained
    code, _, err = run_cli(capsys, "run", "gaussian", "--budget", "smoke", "--logvar-range=2,-6", "--out", str(tmp_path / "o2"))
    assert_one_line_error(code, err, "logvar_range", "lo < hi")


def test_the_recipe_trains_end_to_end_and_records_its_settings(tmp_path):
    out = tmp_path / "recipe"
    run_tiny(out, ["gaussian"], epochs=2, activation="gated", init="he", optimizer="adam-normgrad",
             logvar_range=(-6.0, 2.0), val_split="last", val_images=200, metrics=("elbo",))
    row = metrics_of(out, "gaussian")
    assert (row["activation"], row["init"], row["optimizer"], row["val_split"]) == ("gated", "he", "adam-normgrad", "last")
    assert row["logvar_range"] == [-6.0, 2.0] and row["train_step"].startswith("eager")
    assert math.isfinite(row["neg_elbo"])


def test_val_split_last_holds_out_the_last_training_images_in_the_sources_order():
    train_x = torch.arange(50, dtype=torch.float32).repeat_interleave(4).reshape(50, 4) / 50  # image i is filled with i/50
    raw = RawData(train_x, torch.arange(50) % 10, torch.rand(5, 4), torch.arange(5), (1, 2, 2), 10, "ordered")
    spec = DatasetSpec("ordered", "images in a known order", lambda data_dir: raw)
    last = prepare(spec, None, "none", torch.device("cpu"), val_images=10, val_split="last")
    assert torch.equal(last.val.x, train_x[40:]) and torch.equal(last.val.y, raw.train_y[40:])
    assert torch.equal(last.train.x, train_x[:40])  # the rest, in order: Tomczak & Welling's x_train[0:50000]
    random = prepare(spec, None, "none", torch.device("cpu"), val_images=10)
    assert not torch.equal(random.val.x, train_x[40:])  # the default: a fixed-seed random subset
    assert sorted(torch.cat([random.train.x, random.val.x])[:, 0].tolist()) == train_x[:, 0].tolist()
