"""Training throughput and cost: images/s (training steps only), peak memory, parameters."""

from __future__ import annotations

import resource
import sys

import torch

from vaebench.evaluation import EvalContext


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return rss * scale / 2**20, "process peak RSS (since process start)"


class Throughput:
    name = "throughput"
    description = "training images/s excluding evaluation, training seconds, peak memory, parameter count"

    def __call__(self, ctx: EvalContext) -> dict:
        training = ctx.training
        memory, how = peak_memory_mb(ctx.device)
        return {
            "train_images_per_s": training.images_per_s,
            "train_seconds": training.train_seconds,
            "peak_memory_mb": memory,
            "peak_memory_method": how,
            "n_parameters": ctx.n_parameters,
        }
