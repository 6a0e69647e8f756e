"""Evaluation of one trained run: the context metrics read, and the loop over metrics.

A metric is an object with ``name``, ``description`` and
``__call__(context) -> dict``. A value that does not apply to the variant is
``None`` with a ``<name>_na`` entry giving the reason; a metric never skips
quietly. Artifacts (PNG, CSV) go to ``context.run_dir``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from vaebench.data import ImageData, Split


@dataclass
class EvalContext:
    """What a metric may read about a finished run."""

    model: Any
    data: ImageData
    run_dir: Path
    device: torch.device
    is_samples: int
    seed: int
    training: Any = None  # TrainingResult
    n_parameters: int = 0
    eval_batch_rows: int | None = None  # images x samples per IS chunk; None: eval_rows(device, image size)
    is_precision: str = "float32"  # a key of IS_PRECISIONS: the decoder's arithmetic inside IS-NLL
    values: dict = field(default_factory=dict)  # what earlier metrics computed

    def split(self, name: str, limit: int | None = None) -> tuple[Split, Tensor]:
        """A split (or its first ``limit`` examples in a fixed random order) and the positions used.

        The model's ``prepare_inference`` is called first, so a model without an
        encoder fits its posteriors for these examples.
        """
        whole = self.data.split(name)
        self.model.prepare_inference(name, whole.x, whole.y)
        positions = torch.arange(len(whole), device=whole.x.device)
        if limit is None or limit >= len(whole):
            return whole, positions
        generator = torch.Generator().manual_seed(4321)
        positions = torch.randperm(len(whole), generator=generator)[:limit].sort().values.to(whole.x.device)
        return Split(whole.x[positions], whole.y[positions]), positions


    def label_log_prior(self) -> Tensor:
        """log p(y) of a label-conditioned model: the training split's label frequencies, on the CPU."""
        counts = torch.bincount(self.data.train.y.cpu(), minlength=self.data.n_classes).double()
        return (counts / counts.sum()).log().float()


CPU_CHUNK_BYTES = 16 * 2**20  # float32 decoder output per importance-sampling chunk on a CPU


def eval_rows(device: torch.device, image_values: int) -> int:
    """Decoded images per importance-sampling chunk, for images of ``image_values`` values.

    On a CPU, as many as make 16 MiB of float32 decoder output: 5,349 MNIST images,
    so K = 5000 takes one chunk per image. Besides the decoder, each chunk pays for
    sampling, the prior's and the posterior's log-densities and a logsumexp, small
    ops with a per-call cost, so fewer chunks are faster (benchmarks/IS_TRIALS.md
    times several sizes). The size does not depend on ``--is-precision``: from one
    seed both precisions draw the same latent samples, which the paired comparison
    of the two relies on. A GPU wants big launches.
    """
    if device.type == "cuda":
        return 65536
    return max(1, CPU_CHUNK_BYTES // (image_values * 4))


# The arithmetic of the decoder inside importance sampling. bfloat16 runs it under
# torch.autocast (bf16 matmuls, which pay on CPUs with AVX512_BF16 or AMX, and on GPUs);
# the likelihood, the weights and their logsumexp stay in float32. Opt-in, and
# recorded with every run (benchmarks/README.md gives its measured speed and error).
IS_PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def decoding(dtype: torch.dtype, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a decoder runs in to decode in ``dtype``: nothing for float32, else autocast."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@torch.inference_mode()
def posterior_means(ctx: EvalContext, split: Split, positions: Tensor, batch: int = 4096) -> Tensor:
    """E_q[z | x] for every example, on the CPU."""
    means = []
    for s in chunks(len(split), batch):
        q = ctx.model.posterior(split.x[s], split.y[s], positions[s])
        means.append(q.mean.float().cpu())
    return torch.cat(means)


def evaluate(ctx: EvalContext, metrics: list, on_metric=None) -> tuple[dict, float]:
    """Run ``metrics`` in order; return their merged values and the seconds they took.

    ``on_metric(name)`` is called as each metric starts (the progress display shows it).
    """
    ctx.model.eval()
    start = time.perf_counter()
    prepare = getattr(ctx.model, "prepare_evaluation", None)
    if prepare is not None:
        with torch.inference_mode():
            ctx.values.update(prepare(ctx.data, ctx.is_samples) or {})
    for metric in metrics:
        if on_metric is not None:
            on_metric(metric.name)
        with torch.inference_mode(False):
            ctx.values.update(metric(ctx))
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    return ctx.values, time.perf_counter() - start
