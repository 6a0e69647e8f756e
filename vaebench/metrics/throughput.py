"""Training throughput and cost, as training measured them: images/s (training steps only), seconds, peak memory.

The values come from the run's training (``context.training``), never from the evaluation:
``vaebench evaluate`` rebuilds them from the run's record, so re-evaluating leaves them as
training measured them.
"""

from __future__ import annotations

from vaebench.evaluation.context import Column, EvalContext


class Throughput:
    name = "throughput"
    description = "training images/s excluding evaluation, training seconds, peak memory during training"
    columns = (
        Column("train_images_per_s", "higher", "images/s", "training images per second, optimizer steps only (no validation or evaluation)",
               label="train img/s", headline=True, digits=0),
        Column("train_seconds", "none", "s", "seconds spent in training steps", digits=1),
        Column("peak_memory_mb", "none", "MiB", "peak memory by the end of training (before evaluation): CUDA's max allocated, "
               "or the process's peak resident set on a CPU", digits=0),
        Column("peak_memory_method", "none", "", "how peak memory was measured", text=True),
    )

    def __call__(self, ctx: EvalContext) -> dict:
        training = ctx.training
        return {
            "train_images_per_s": training.images_per_s,
            "train_seconds": training.train_seconds,
            "peak_memory_mb": training.peak_memory_mb,
            "peak_memory_method": training.peak_memory_method,
        }
