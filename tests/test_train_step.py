"""The compiled training step (vaebench/fast/train_step.py): the eager step's numbers, resume, fallbacks, and who takes it."""

from __future__ import annotations

import pytest
import torch

from vaebench.distributions import StandardNormalPrior
from vaebench.execution.training import Budget, make_optimizer, train
from vaebench.fast import train_step as fast_step
from vaebench.models import GaussianVAE
from vaebench.objectives import ELBO, IWAE, ScoreFunctionELBO, WeightedKL
from vaebench.variant import Recipe

BATCH = 20


def _recipe(objective=None, **kwargs) -> Recipe:
    torch.manual_seed(0)
    model = GaussianVAE(64, (32, 32), 8, StandardNormalPrior(8), activation="tanh")
    return Recipe(model, objective or ELBO(), latent="N(0,I) 8-d", **kwargs)


def _train(digits, tmp_path, path, epochs=3, resume=False, recipe=None, **kwargs):
    recipe = recipe or _recipe()
    result = train(recipe, digits, budget=Budget(epochs=epochs), batch_size=BATCH, lr=1e-3, optimizer="adam", seed=0,
                   device=torch.device("cpu"), run_dir=tmp_path, resume=resume, select_epoch="last", train_step=path,
                   adam_beta1=0.99, adam_eps=1e-4, **kwargs)
    return result, recipe.model


@pytest.fixture(scope="module")
def compiled_and_eager(digits, tmp_path_factory):
    """Four epochs (260 steps; the last batch of each epoch, 14 images, takes the eager step) on each path, same seed."""
    compiled = _train(digits, tmp_path_factory.mktemp("compiled"), "compiled", epochs=4)
    eager = _train(digits, tmp_path_factory.mktemp("eager"), "eager", epochs=4)
    return compiled, eager


def test_compiled_step_trains_to_the_eager_numbers(compiled_and_eager):
    (compiled, compiled_model), (eager, eager_model) = compiled_and_eager
    assert compiled.step_path.name == "compiled" and eager.step_path.name == "eager"
    assert compiled.steps_run == eager.steps_run > 200
    for a, b in zip(compiled.history, eager.history):  # per-epoch means of the logged terms
        for term in ("loss", "reconstruction", "kl", "elbo", "val_neg_elbo"):
            assert a[term] == pytest.approx(b[term], rel=1e-4, abs=1e-4), term
    for (name, a), b in zip(compiled_model.state_dict().items(), eager_model.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), name


def test_compiled_step_leaves_an_ordinary_adam_state(digits, tmp_path):
    """The checkpoint holds torch.optim.Adam's own state, so an eager run can continue a compiled one."""
    _train(digits, tmp_path, "compiled", epochs=2)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["optimizer"]["state"]
    model = _recipe().model
    assert len(state) == len(list(model.parameters()))
    for entry, p in zip(state.values(), model.parameters()):
        assert entry["exp_avg"].shape == entry["exp_avg_sq"].shape == p.shape
        assert float(entry["step"]) == 2 * 65  # 1,294 training digits in batches of 20: 65 steps an epoch
        assert entry["exp_avg_sq"].min() >= 0 and entry["exp_avg"].abs().sum() > 0
    continued, _ = _train(digits, tmp_path, "eager", epochs=3, resume=True)
    assert continued.step_path.name == "eager" and continued.steps_run == 3 * 65


def test_resume_on_the_compiled_path_is_bit_identical(digits, tmp_path, compiled_and_eager):
    (whole, whole_model), _ = compiled_and_eager
    first, _ = _train(digits, tmp_path, "compiled", epochs=2)
    # as in a fresh process: nothing traced, torch.distributions' KL dispatch cache empty (a resumed
    # run's first step is compiled at once, with no eager step before it to fill that cache)
    torch._dynamo.reset()
    torch.distributions.kl._KL_MEMOIZE.clear()
    resumed, resumed_model = _train(digits, tmp_path, "compiled", epochs=4, resume=True)
    assert first.step_path.name == resumed.step_path.name == "compiled"
    assert resumed.resumed_from_epoch == 2
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    for a, b in zip(resumed_model.state_dict().values(), whole_model.state_dict().values()):
        assert torch.equal(a, b)


def test_an_eager_checkpoint_stays_eager_unless_compiled_is_asked_for(digits, tmp_path, monkeypatch, compiled_and_eager):
    """``auto`` keeps a resumed run on its recorded path; ``--train-step compiled`` moves it, and each epoch says which trained it."""
    _, (whole, _) = compiled_and_eager
    _train(digits, tmp_path, "eager", epochs=2)
    monkeypatch.setattr(fast_step, "AUTO_MIN_STEPS", 1)  # auto would compile this run, were it fresh
    kept, _ = _train(digits, tmp_path, "auto", epochs=3, resume=True)
    assert kept.step_path.name == "eager" and "trained eagerly" in kept.step_path.reason
    switched, _ = _train(digits, tmp_path, "compiled", epochs=4, resume=True)
    assert switched.step_path.name == "compiled" and "resumed an eagerly trained checkpoint" in switched.step_path.reason
    assert [h["train_step"] for h in switched.history] == ["eager", "eager", "eager", "compiled"]
    for a, b in zip(switched.history, whole.history):  # the same run, to float32 rounding
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), a["epoch"]


def test_a_failed_compile_falls_back_to_the_eager_numbers(digits, tmp_path, monkeypatch, compiled_and_eager):
    _, (eager, eager_model) = compiled_and_eager

    def broken_compile(fn, **kwargs):
        def refuse(*args):
            raise RuntimeError("no C++ compiler on this machine")
        return refuse

    monkeypatch.setattr(fast_step.torch, "compile", broken_compile)
    result, model = _train(digits, tmp_path, "compiled", epochs=4)
    assert result.step_path.name == "eager" and "no C++ compiler" in result.step_path.reason
    assert [h["loss"] for h in result.history] == [h["loss"] for h in eager.history]
    for a, b in zip(model.state_dict().values(), eager_model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "make, reason",
    [(lambda: _recipe(ScoreFunctionELBO()), "keeps state between steps"), (lambda: _recipe(grad_clip=1.0), "clips its gradients")],
    ids=["score-function", "gradient-clipping"],
)
def test_runs_the_compiled_step_cannot_take_say_why(digits, tmp_path, make, reason):
    result, _ = _train(digits, tmp_path, "compiled", epochs=1, recipe=make())
    assert result.step_path.name == "eager" and reason in result.step_path.reason


def test_own_parameter_groups_train_eagerly(digits, tmp_path):
    recipe = _recipe()
    model = recipe.model
    recipe.param_groups = lambda lr: [{"params": list(model.encoder.parameters()), "lr": lr},
                                      {"params": list(model.decoder.parameters()), "lr": 10 * lr}]
    result, _ = _train(digits, tmp_path, "compiled", epochs=1, recipe=recipe)
    assert result.step_path.name == "eager" and "parameter groups" in result.step_path.reason


def test_an_objective_that_reads_the_progress_trains_eagerly(digits, tmp_path):
    """KL annealing's weight follows the progress: its first step (always eager) sees it read."""
    annealed = WeightedKL(lambda progress: min(1.0, progress.fraction * 2))
    result, _ = _train(digits, tmp_path, "compiled", epochs=1, recipe=_recipe(annealed))
    assert result.step_path.name == "eager" and "reads the training progress (fraction)" in result.step_path.reason


def test_iwae_objective_takes_the_compiled_step(digits, tmp_path):
    result, _ = _train(digits, tmp_path, "compiled", epochs=1, recipe=_recipe(IWAE(5)))
    assert result.step_path.name == "compiled"
    assert all(torch.isfinite(torch.tensor(h["iwae_bound"])) for h in result.history)


def test_auto_compiles_only_runs_long_enough_to_repay_it(monkeypatch):
    model = _recipe().model
    optimizer = make_optimizer("adam", [{"params": list(model.parameters()), "lr": 1e-3}])
    choose = lambda steps, seconds=None: fast_step.step_path(  # noqa: E731
        "auto", optimizer=optimizer, objective=ELBO(), grad_clip=None, device=torch.device("cpu"), total_steps=steps, seconds=seconds)
    assert choose(fast_step.AUTO_MIN_STEPS - 1).name == "eager"
    assert choose(fast_step.AUTO_MIN_STEPS).name == "compiled"
    assert choose(None, seconds=600).name == "compiled"
    sgd = make_optimizer("sgd", [{"params": list(model.parameters()), "lr": 1e-3}])
    assert "SGD trains eagerly" in fast_step.step_path("compiled", optimizer=sgd, objective=ELBO(), grad_clip=None,
                                                      device=torch.device("cpu"), total_steps=10**7, seconds=None).reason
    monkeypatch.setenv("VAEBENCH_FAST", "0")
    assert choose(10**7).reason == "VAEBENCH_FAST=0"
