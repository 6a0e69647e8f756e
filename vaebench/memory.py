"""Peak memory of the process: CUDA's max allocated on a GPU, the peak resident set on a CPU."""

from __future__ import annotations

import resource
import sys

import torch


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """(MiB, how it was measured) for ``device``, since the process started."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return rss * scale / 2**20, "process peak RSS (since process start)"
