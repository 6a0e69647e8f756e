"""The speed paths of evaluation, in one place, each with an eager fallback.

Two paths use PyTorch APIs that are private or may change between releases:

* **Compiled likelihood kernels** (``torch.compile``, ``torch._dynamo``): scoring decoded
  images is the inner loop of importance sampling, and a compiled kernel sums a
  likelihood over the pixels in one pass instead of one pass and one buffer per op.
  Compiling costs seconds (tens of seconds on a cold cache), so it is switched on
  only for evaluations large enough to repay it (:data:`COMPILE_MIN_ROWS` decoded
  images, for example K = 5000 on the 10,000 MNIST test images) by
  :func:`compiling`. Nothing here imports the compiler until a kernel is compiled,
  so ``vaebench list`` and ``--help`` never load it.
* **Prepacked oneDNN linears** (``torch.ops.mkldnn._reorder_linear_weight`` and
  ``_linear_pointwise``): on a CPU, IS-NLL runs a model's ``nn.Linear`` layers through
  oneDNN with the weights laid out once; torch's own fp32 matmul there is MKL's sgemm,
  about two thirds of oneDNN's rate on AMD machines (``benchmarks/RESULTS.md``).

Either path falls back to plain eager PyTorch, with the same numbers up to float32
rounding, when it is missing or fails: a PyTorch upgrade that removes one costs
speed, never results. ``VAEBENCH_FAST=0`` switches both off (a test compares the
two), and ``TORCH_COMPILE_DISABLE=1`` switches compiling off.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import logging
import os
import sys
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaebench.errors import first_line

log = logging.getLogger(__name__)

FAST_ENV = "VAEBENCH_FAST"
COMPILE_MIN_ROWS = 20_000_000  # decoded images in one evaluation before compiling pays for itself


def fast_paths_enabled() -> bool:
    """False when ``VAEBENCH_FAST=0``: every path below runs plain eager PyTorch."""
    return os.environ.get(FAST_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


# --------------------------------------------------------------------------- compiled kernels

_compile_allowed: contextvars.ContextVar[bool] = contextvars.ContextVar("vaebench_compile_allowed", default=False)


@contextlib.contextmanager
def compiling(rows: int) -> Iterator[bool]:
    """Allow compiled kernels inside this block when ``rows`` decoded images are about to be
    scored (at least :data:`COMPILE_MIN_ROWS`); yields whether they are allowed."""
    allowed = fast_paths_enabled() and rows >= COMPILE_MIN_ROWS
    token = _compile_allowed.set(allowed)
    try:
        yield allowed
    finally:
        _compile_allowed.reset(token)


def _load_compiler_quietly() -> None:
    """Import the module torch.compile's C++ backend loads, without its start-up warning.

    On a machine with a CUDA toolkit but no GPU it logs "No CUDA runtime is found"
    once, in the middle of the progress display, about a toolkit a CPU kernel never
    uses. Its logger is raised to ERROR for this import only.
    """
    if "torch.utils.cpp_extension" in sys.modules:
        return
    quieted = logging.getLogger("torch.utils.cpp_extension")
    level = quieted.level
    quieted.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension  # noqa: F401
    finally:
        quieted.setLevel(level)


class InferenceKernel:
    """``fn``, compiled (with dynamic shapes) for calls made without gradients inside
    :func:`compiling`; eager everywhere else, and for good after a failed compile."""

    def __init__(self, fn: Callable[..., Tensor]):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.eager_only = False
        self.compiled: Callable[..., Tensor] | None = None

    def __call__(self, *args):
        if self.eager_only or torch.is_grad_enabled() or not _compile_allowed.get():
            return self.fn(*args)
        try:
            if self.compiled is None:
                self.compiled = torch.compile(self.fn, dynamic=True)
            _load_compiler_quietly()
            return self.compiled(*args)
        except Exception as error:  # dynamo/inductor failures, or a platform torch.compile refuses
            self._give_up(error)
            return self.fn(*args)  # an error of the inputs themselves is raised again here, eagerly

    def _give_up(self, error: Exception) -> None:
        self.eager_only = True
        reason = first_line(error)
        log.warning("torch.compile failed for %s (%s); evaluating it eagerly, which is slower", self.fn.__name__, reason)


def inference_kernel(fn: Callable[..., Tensor]) -> InferenceKernel:
    """Decorator: ``fn`` becomes an :class:`InferenceKernel`."""
    return InferenceKernel(fn)


# --------------------------------------------------------------------------- prepacked linears

ROWS_HINT = 2048  # rows per call oneDNN lays the weight out for: a layout hint, any row count works
PACKABLE_DTYPES = (torch.float32, torch.bfloat16)


def onednn_linear_available() -> bool:
    """Whether this torch has oneDNN and the prepacked-linear kernels."""
    ops = getattr(torch.ops, "mkldnn", None)
    return (
        ops is not None
        and torch.backends.mkldnn.is_available()
        and all(hasattr(ops, name) for name in ("_reorder_linear_weight", "_linear_pointwise", "_is_mkldnn_bf16_supported"))
    )


def _dtype_supported(dtype: torch.dtype) -> bool:
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return dtype in PACKABLE_DTYPES


class PrepackedLinear(nn.Linear):
    """An ``nn.Linear`` sharing ``linear``'s parameters whose calls without gradient go
    through oneDNN, with the weight reordered once per compute dtype.

    The compute dtype is what ``nn.Linear`` would use: the autocast dtype inside
    ``torch.autocast``, else the input's. The packed copies are taken the first time
    each dtype is seen, so the parameters must not change while it is in use. If the
    oneDNN call fails, the layer says so once and uses ``F.linear`` from then on.
    """

    def __init__(self, linear: nn.Linear):
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_parameter("weight", linear.weight)
        self.register_parameter("bias", linear.bias)
        self._packed: dict[torch.dtype, tuple[Tensor, Tensor | None] | None] = {}
        self._broken = False

    def forward(self, x: Tensor) -> Tensor:
        dtype = self._compute_dtype(x)
        packed = None if self._broken or torch.is_grad_enabled() or dtype is None else self._packed_for(dtype)
        if packed is None:
            return F.linear(x, self.weight, self.bias)
        weight, bias = packed
        rows = x.to(dtype).reshape(-1, self.in_features)
        try:
            out = torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")
        except RuntimeError as error:
            self._broken = True
            log.warning("oneDNN linear failed (%s); using torch's own matmul, which is slower", str(error).splitlines()[0])
            return F.linear(x, self.weight, self.bias)
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
        try:
            with torch.no_grad():
                packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().to(dtype), ROWS_HINT)
                bias = None if self.bias is None else self.bias.detach().to(dtype)
        except RuntimeError:
            return None
        return packed, bias

    def extra_repr(self) -> str:
        return super().extra_repr() + ", oneDNN"


def with_prepacked_linears(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every ``nn.Linear`` (exactly that class) wrapped in :class:`PrepackedLinear`.

    A structural copy: modules are shallow copies sharing ``model``'s parameters,
    buffers and attributes, so ``model`` itself is left as it was. Returns ``model``
    unchanged off the CPU, with the fast paths off, or where torch lacks the kernels.
    """
    if device.type != "cpu" or not fast_paths_enabled() or not isinstance(model, nn.Module) or not onednn_linear_available():
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
