"""Pure tensor functions that run through torch.compile when no gradient is wanted.

Scoring decoded images is the hot loop of evaluation: importance sampling sums a
likelihood over 784 pixels for thousands of decoded images per chunk. Eager
PyTorch makes one pass over memory, and one fresh buffer, per operation (upcast,
multiply, softplus, sum); torch.compile fuses them into one loop over the logits
(benchmarks/README.md has the figures). The result is the same function up to
float32 summation order.

Training calls the eager function: autograd never meets a compiled graph, and a
training step pays no compilation. Where compiling fails (no C++ compiler, a
platform torch.compile does not support) the kernel logs one warning and stays
eager for the rest of the process. ``TORCH_COMPILE_DISABLE=1``, torch's own
switch, keeps every kernel eager.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Callable

import torch
from torch._dynamo.exc import TorchDynamoException

log = logging.getLogger(__name__)


def _load_compiler_quietly() -> None:
    """Import the module torch.compile's C++ backend loads, without its start-up warning.

    On a machine with a CUDA toolkit but no GPU it logs "No CUDA runtime is found"
    once, in the middle of the progress display, about a toolkit a CPU kernel
    never uses. Its logger is raised to ERROR for this import only.
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
    """``fn``, compiled (with dynamic shapes) for calls made without gradients, eager otherwise."""

    def __init__(self, fn: Callable[..., torch.Tensor]):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.eager_only = False
        try:
            self.compiled = torch.compile(fn, dynamic=True)
        except RuntimeError as error:  # a platform torch.compile refuses outright (an unsupported OS or Python)
            self._give_up(error)

    def __call__(self, *args):
        if self.eager_only or torch.is_grad_enabled():
            return self.fn(*args)
        try:
            _load_compiler_quietly()
            return self.compiled(*args)
        except TorchDynamoException as error:
            self._give_up(error)
            return self.fn(*args)

    def _give_up(self, error: Exception) -> None:
        self.eager_only = True
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        log.warning("torch.compile failed for %s (%s); evaluating it eagerly, which is slower", self.fn.__name__, reason)


def inference_kernel(fn: Callable[..., torch.Tensor]) -> InferenceKernel:
    """Decorator: ``fn`` becomes an :class:`InferenceKernel`."""
    return InferenceKernel(fn)
