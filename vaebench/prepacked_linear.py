"""Linear layers with their weights laid out once for oneDNN's CPU matmul, for evaluation.

Importance sampling decodes 5·10⁷ latent samples at K = 5000 on MNIST, so the
decoder's matmuls are most of its time. On a CPU, ``nn.Linear`` calls torch's
``addmm``, which for float32 is MKL's sgemm in the PyPI wheels: on this project's
AMD machine about two thirds of the rate of oneDNN's kernel on the same cores
(benchmarks/RESULTS.md measures both). Under bfloat16 autocast ``addmm`` also
casts the weight and copies the bias into the output on every call.
:func:`with_prepacked_linears` gives a view of a model whose ``nn.Linear`` layers
call oneDNN's linear (the kernel torch.compile's CPU backend uses for frozen
weights) with the weight reordered once per dtype: the same function, with the
bias added inside the matmul.

It is for scoring only. A call that wants a gradient, a dtype oneDNN cannot
take on this CPU, or a torch without these kernels gets ``nn.Linear``'s own
``F.linear``; on a GPU the model is used as it is.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROWS_HINT = 2048  # rows per call oneDNN lays the weight out for: a layout hint, any row count works
PACKABLE_DTYPES = (torch.float32, torch.bfloat16)


def onednn_linear_available() -> bool:
    """Whether this torch has oneDNN and the prepacked-linear kernels."""
    ops = torch.ops.mkldnn
    return torch.backends.mkldnn.is_available() and all(
        hasattr(ops, name) for name in ("_reorder_linear_weight", "_linear_pointwise", "_is_mkldnn_bf16_supported")
    )


def _dtype_supported(dtype: torch.dtype) -> bool:
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return dtype in PACKABLE_DTYPES


class PrepackedLinear(nn.Linear):
    """An ``nn.Linear`` sharing ``linear``'s parameters whose calls without gradient go
    through oneDNN, with the weight reordered once per compute dtype.

    The compute dtype is what ``nn.Linear`` would use: the autocast dtype inside
    ``torch.autocast``, else the input's. The packed copies are taken the first
    time each dtype is seen, so the parameters must not change while it is in use.
    """

    def __init__(self, linear: nn.Linear):
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_parameter("weight", linear.weight)
        self.register_parameter("bias", linear.bias)
        self._packed: dict[torch.dtype, tuple[Tensor, Tensor | None] | None] = {}

    def forward(self, x: Tensor) -> Tensor:
        dtype = self._compute_dtype(x)
        packed = None if torch.is_grad_enabled() or dtype is None else self._packed_for(dtype)
        if packed is None:
            return F.linear(x, self.weight, self.bias)
        weight, bias = packed
        rows = x.to(dtype).reshape(-1, self.in_features)
        out = torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")
        return out.reshape(*x.shape[:-1], self.out_features)

    def _compute_dtype(self, x: Tensor) -> torch.dtype | None:
        """The dtype ``nn.Linear`` computes in; ``None`` where it would refuse the input (mixed dtypes)."""
        if torch.is_autocast_enabled(x.device.type):
            return torch.get_autocast_dtype(x.device.type)
        return x.dtype if x.dtype == self.weight.dtype else None

    def _packed_for(self, dtype: torch.dtype) -> tuple[Tensor, Tensor | None] | None:
        if dtype not in self._packed:
            self._packed[dtype] = self._pack(dtype)
        return self._packed[dtype]

    def _pack(self, dtype: torch.dtype) -> tuple[Tensor, Tensor | None] | None:
        weight = self.weight
        if weight.device.type != "cpu" or weight.dtype not in PACKABLE_DTYPES or not _dtype_supported(dtype):
            return None
        with torch.no_grad():
            packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().to(dtype), ROWS_HINT)
            bias = None if self.bias is None else self.bias.detach().to(dtype)
        return packed, bias

    def extra_repr(self) -> str:
        return super().extra_repr() + ", oneDNN"


def with_prepacked_linears(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every ``nn.Linear`` (exactly that class) wrapped in :class:`PrepackedLinear`.

    A structural copy: modules are shallow copies sharing ``model``'s parameters,
    buffers and attributes, so ``model`` itself is left as it was. Returns
    ``model`` unchanged off the CPU, or where torch lacks the oneDNN kernels.
    """
    if device.type != "cpu" or not onednn_linear_available():
        return model
    return _wrap_linears(model)


def _wrap_linears(module: nn.Module) -> nn.Module:
    if type(module) is nn.Linear:
        return PrepackedLinear(module)
    if not module._modules:
        return module
    clone = copy.copy(module)
    clone._modules = {name: None if child is None else _wrap_linears(child) for name, child in module._modules.items()}
    return clone
