"""Training throughput and cost: images/s (training steps only), peak memory, parameters."""

from __future__ import annotations

import resource
import sys

import torch

from vaebench.evaluation.context import Column, EvalContext


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return rss * scale / 2**20, "process peak RSS (since process start)"


class Throughput:
    name = "throughput"
    description = "training images/s excluding evaluation, training seconds, peak memory, parameter count"
    columns = (
        Column("train_images_per_s", "higher", "images/s", "training images per second, optimizer steps only (no validation or evaluation)",
               label="train img/s", headline=True, digits=0),
        Column("train_seconds", "none", "s", "seconds spent in training steps", digits=1),
        Column("peak_memory_mb", "none", "MiB", "peak memory: CUDA's max allocated, or the process's peak resident set on a CPU", digits=0),
        Column("peak_memory_method", "none", "", "how peak memory was measured", text=True),
    )

    def __call__(self, ctx: EvalContext) -> dict:
        training = ctx.training
        memory, how = peak_memory_mb(ctx.device)
        return {
            "train_images_per_s": training.images_per_s,
            "train_seconds": training.train_seconds,
            "peak_memory_mb": memory,
            "peak_memory_method": how,
        }
