"""The pixel likelihoods against torch.distributions, eager (training) and compiled (evaluation)."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal

from vaebench import fast
from vaebench.fast import InferenceKernel
from vaebench.distributions import bernoulli_likelihood, gaussian_likelihood
from vaebench.distributions.likelihoods import GAUSSIAN_SCALE, bernoulli_log_prob, gaussian_log_prob


def extreme_logits() -> torch.Tensor:
    """Importance samples x images x pixels, with saturated logits at both ends."""
    torch.manual_seed(0)
    return torch.cat([torch.randn(3, 4, 50) * 8, torch.full((3, 4, 2), 40.0), torch.full((3, 4, 2), -40.0)], dim=-1)


def torchs_bernoulli(logits):
    return Independent(Bernoulli(logits=logits), 1)


def torchs_gaussian(logits):
    return Independent(Normal(torch.sigmoid(logits), GAUSSIAN_SCALE), 1)


CASES = [
    (bernoulli_likelihood, torchs_bernoulli, lambda: (torch.rand(4, 54) < 0.5).float()),
    (gaussian_likelihood, torchs_gaussian, lambda: torch.rand(4, 54)),
]


@pytest.mark.parametrize("ours,torchs,images", CASES, ids=["bernoulli", "gaussian"])
def test_log_prob_and_gradient_are_torchs_when_training(ours, torchs, images):
    """With gradients on (training), the eager function: values and gradients equal torch's,
    for importance samples broadcast against one batch of images."""
    logits = extreme_logits().requires_grad_(True)
    x = images()
    mine, reference = ours(logits).log_prob(x), torchs(logits).log_prob(x)
    assert mine.shape == (3, 4)
    torch.testing.assert_close(mine, reference, rtol=1e-6, atol=1e-4)
    (g_mine,) = torch.autograd.grad(mine.sum(), logits)
    (g_reference,) = torch.autograd.grad(reference.sum(), logits)
    torch.testing.assert_close(g_mine, g_reference)


@pytest.mark.parametrize("ours,torchs,images", CASES, ids=["bernoulli", "gaussian"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_log_prob_is_torchs_when_evaluating(ours, torchs, images, dtype):
    """Under inference mode (evaluation), the compiled kernel: torch's value for float32
    logits, and for bfloat16 logits (a decoder under autocast) the float32 value of the
    same logits, returned in float32."""
    logits, x = extreme_logits().to(dtype), images()
    with torch.inference_mode():
        mine = ours(logits).log_prob(x)
        reference = torchs(logits.float()).log_prob(x)
    assert mine.dtype == torch.float32
    torch.testing.assert_close(mine, reference, rtol=1e-6, atol=1e-4)


def test_bernoulli_log_prob_by_hand():
    """p = sigmoid(0) = 1/2 for each of 54 pixels, whatever the image."""
    x = (torch.rand(54) < 0.5).float()
    assert bernoulli_likelihood(torch.zeros(54)).log_prob(x).item() == pytest.approx(54 * math.log(0.5), rel=1e-6)
    with torch.inference_mode():
        assert bernoulli_log_prob(torch.zeros(54), x).item() == pytest.approx(54 * math.log(0.5), rel=1e-6)


def test_gaussian_log_prob_by_hand():
    """A pixel at its mean scores -log(sigma sqrt(2 pi)); one sigma away, 1/2 less."""
    mean = torch.tensor([0.5, 0.5])
    expected = 2 * -math.log(GAUSSIAN_SCALE * math.sqrt(2 * math.pi)) - 0.5
    with torch.inference_mode():
        value = gaussian_log_prob(mean, torch.tensor([0.5, 0.5 + GAUSSIAN_SCALE]))
    assert value.item() == pytest.approx(expected, rel=1e-6)


def squared_sum(a):
    return (a * a).sum(-1)


def test_kernel_runs_compiled_only_without_gradients_in_a_large_evaluation():
    """Compiling costs seconds, so a kernel compiles only inside fast.compiling(rows) for rows
    enough to repay it, and only for calls without gradients (training stays eager)."""
    kernel = InferenceKernel(squared_sum)
    calls = []
    kernel.compiled = lambda *args: calls.append(1) or squared_sum(*args)
    a = torch.randn(5, 7)
    torch.testing.assert_close(kernel(a), squared_sum(a))
    with torch.inference_mode():
        torch.testing.assert_close(kernel(a), squared_sum(a))
        with fast.compiling(fast.COMPILE_MIN_ROWS - 1) as allowed:
            assert not allowed and kernel(a) is not None
    assert calls == []  # gradients on, or no large evaluation: eager
    with fast.compiling(fast.COMPILE_MIN_ROWS) as allowed:
        torch.testing.assert_close(kernel(a), squared_sum(a))  # gradients on: still eager
        with torch.inference_mode():
            torch.testing.assert_close(kernel(a), squared_sum(a))
    assert allowed and calls == [1] and not kernel.eager_only


def test_fast_paths_off_compiles_nothing(monkeypatch):
    monkeypatch.setenv(fast.FAST_ENV, "0")
    with fast.compiling(10**9) as allowed:
        assert not allowed


def cubed_sum(a):
    return (a * a * a).sum(-1)


def test_kernel_stays_eager_with_one_warning_when_compiling_fails(tmp_path, monkeypatch, caplog):
    """A machine without a C++ compiler: the real torch.compile failure, not a stand-in."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # nothing compiled before can be reused
    import torch._inductor.config

    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", (None, str(tmp_path / "no-such-compiler")))
    kernel = InferenceKernel(cubed_sum)
    a = torch.randn(5, 7)
    with caplog.at_level(logging.WARNING, logger="vaebench.fast"), torch.inference_mode(), fast.compiling(fast.COMPILE_MIN_ROWS):
        first, second = kernel(a), kernel(a)
    torch.testing.assert_close(first, cubed_sum(a))
    torch.testing.assert_close(second, cubed_sum(a))
    assert kernel.eager_only
    warnings = [r.getMessage() for r in caplog.records if r.name == "vaebench.fast"]
    assert len(warnings) == 1 and "cubed_sum" in warnings[0] and "eagerly" in warnings[0]


def test_kernel_stays_eager_where_torch_compile_refuses_the_platform(monkeypatch, caplog):
    """torch.compile itself raising (an OS or Python it does not support) costs speed, not results."""

    def refuse(*args, **kwargs):
        raise RuntimeError("Windows not yet supported for torch.compile")

    monkeypatch.setattr(torch, "compile", refuse)
    kernel = InferenceKernel(cubed_sum)
    a = torch.randn(5, 7)
    with caplog.at_level(logging.WARNING, logger="vaebench.fast"), torch.inference_mode(), fast.compiling(fast.COMPILE_MIN_ROWS):
        torch.testing.assert_close(kernel(a), cubed_sum(a))
    assert kernel.eager_only
    assert [r.getMessage() for r in caplog.records if r.name == "vaebench.fast"] == [
        "torch.compile failed for cubed_sum (Windows not yet supported for torch.compile); evaluating it eagerly, which is slower"
    ]


def test_training_and_is_nll_give_the_same_numbers_with_the_fast_paths_off_and_on(digits, tmp_path, monkeypatch):
    """The speed paths (compiled likelihood, prepacked oneDNN linears) change speed, never results:
    a short training and an IS-NLL with VAEBENCH_FAST=0 and with every fast path forced on."""
    from helpers import metrics_of, run_tiny

    results = {}
    for fast_on in (False, True):
        monkeypatch.setenv(fast.FAST_ENV, "1" if fast_on else "0")
        monkeypatch.setattr(fast, "COMPILE_MIN_ROWS", 0 if fast_on else 10**12)  # compile even this small evaluation
        run_tiny(tmp_path / str(fast_on), ["gaussian"], epochs=2, metrics=["elbo", "is_nll"], is_samples=50)
        results[fast_on] = metrics_of(tmp_path / str(fast_on), "gaussian")
    off, on = results[False], results[True]
    assert off["neg_elbo"] == pytest.approx(on["neg_elbo"], abs=1e-4)  # same training, same ELBO
    assert off["is_nll"] == pytest.approx(on["is_nll"], abs=1e-3)  # same draws; float32 summation order only
    assert bernoulli_log_prob.compiled is not None or bernoulli_log_prob.eager_only  # the compiled path was taken (or failed)


def test_listing_components_loads_no_compiler():
    """`vaebench list` and friends import no dynamo or inductor: they start as fast as torch does."""
    import subprocess
    import sys

    for argv in (["list", "--json"], ["plugins", "--json"], ["--help"]):
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "vaebench", *argv], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        modules = [line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
        assert modules and not any(m.startswith(("torch._dynamo", "torch._inductor", "torchvision")) for m in modules), argv
