"""oneDNN linear layers with prepacked weights (importance sampling on a CPU) against nn.Linear."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vaebench import fast as prepacked_linear
from vaebench.distributions.priors import StandardNormalPrior
from vaebench.models import GaussianVAE
from vaebench.fast import PrepackedLinear, onednn_linear_available, with_prepacked_linears

needs_onednn = pytest.mark.skipif(
    not onednn_linear_available(), reason="this torch build has no oneDNN linear kernels (the layer falls back to F.linear)"
)


def layer_and_input():
    torch.manual_seed(0)
    return nn.Linear(20, 37), torch.randn(3, 5, 20)  # importance samples x images x latent


@needs_onednn
@torch.inference_mode()
def test_float32_output_is_nn_linears_through_onednn():
    linear, x = layer_and_input()
    prepacked = PrepackedLinear(linear)
    out = prepacked(x)
    assert prepacked._packed[torch.float32] is not None  # the oneDNN path ran
    assert out.shape == (3, 5, 37) and out.dtype == torch.float32
    torch.testing.assert_close(out, linear(x), rtol=1e-5, atol=1e-5)


@needs_onednn
@torch.inference_mode()
def test_bfloat16_autocast_output_is_nn_linears_under_autocast():
    linear, x = layer_and_input()
    prepacked = PrepackedLinear(linear)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, expected = prepacked(x), linear(x)
    if prepacked._packed[torch.bfloat16] is None:
        pytest.skip("this CPU has no oneDNN bfloat16 kernels")
    assert out.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected.float(), rtol=1e-2, atol=1e-2)  # bf16 rounding of either sum
    assert prepacked(x).dtype == torch.float32  # outside autocast it computes in the input's dtype again


def test_with_gradients_it_is_nn_linear():
    linear, x = layer_and_input()
    prepacked = PrepackedLinear(linear)
    x.requires_grad_(True)
    prepacked(x).square().sum().backward()
    ours = x.grad.clone(), linear.weight.grad.clone()
    x.grad, linear.weight.grad = None, None
    linear(x).square().sum().backward()
    assert prepacked._packed == {}  # nothing was packed for a call that wants a gradient
    torch.testing.assert_close(ours[0], x.grad)
    torch.testing.assert_close(ours[1], linear.weight.grad)


@torch.inference_mode()
def test_a_dtype_onednn_cannot_take_falls_back_to_f_linear(monkeypatch):
    monkeypatch.setattr(prepacked_linear, "_dtype_supported", lambda dtype: False)
    linear, x = layer_and_input()
    prepacked = PrepackedLinear(linear)
    torch.testing.assert_close(prepacked(x), linear(x), rtol=0, atol=0)
    assert prepacked._packed == {torch.float32: None}


@torch.inference_mode()
def test_an_input_nn_linear_refuses_is_refused_the_same_way():
    linear, x = layer_and_input()
    with pytest.raises(RuntimeError) as theirs:
        linear(x.bfloat16())  # bf16 input, fp32 weight, no autocast
    with pytest.raises(RuntimeError) as ours:
        PrepackedLinear(linear)(x.bfloat16())
    assert str(ours.value) == str(theirs.value)


@torch.inference_mode()
def test_the_model_keeps_its_layers_and_the_view_shares_its_parameters():
    torch.manual_seed(0)
    model = GaussianVAE(12, [8], 3, StandardNormalPrior(3)).eval()
    view = with_prepacked_linears(model, torch.device("cpu"))
    x, z = torch.rand(4, 12), torch.randn(6, 4, 3)
    assert all(type(m) is not PrepackedLinear for m in model.modules())
    if onednn_linear_available():
        assert sum(type(m) is PrepackedLinear for m in view.modules()) == 4  # 2 encoder + 2 decoder layers
    assert [p.data_ptr() for p in view.parameters()] == [p.data_ptr() for p in model.parameters()]
    assert view.prior is model.prior
    torch.testing.assert_close(view.decode(z), model.decode(z), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(view.posterior(x).mean, model.posterior(x).mean, rtol=1e-5, atol=1e-5)


def test_off_the_cpu_or_without_the_kernels_the_model_is_used_as_it_is(monkeypatch):
    model = GaussianVAE(12, [8], 3, StandardNormalPrior(3))
    assert with_prepacked_linears(model, torch.device("cuda")) is model
    monkeypatch.setattr(prepacked_linear, "onednn_linear_available", lambda: False)
    assert with_prepacked_linears(model, torch.device("cpu")) is model
