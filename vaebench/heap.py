"""When a vaebench process's C heap (glibc's malloc) gives freed memory back to the kernel.

Evaluation works in chunks: IS-NLL decodes a chunk of samples, the gaps optimise a batch
of posteriors, and each frees its buffers (a few MiB to tens of MiB) before the next
chunk takes the same sizes again. With glibc's defaults, each buffer above the mmap
threshold (128 KiB, rising with use only up to 32 MiB) is a mapping of its own, and free
space past the trim threshold at the top of the heap is handed back, so the next chunk
faults every 4 KiB page in again. On 8x8 digits that was 1.4 million page faults in a
mog-prior run on one thread, and half of its IS-NLL's time (``python benchmarks/heap_faults.py
digits``; benchmarks/README.md).

:func:`keep_freed_memory` raises both thresholds with ``mallopt``: buffers up to
:data:`MMAP_THRESHOLD_BYTES` come from the heap, and up to :data:`TRIM_THRESHOLD_BYTES`
of free space stays mapped for the next chunk. Numbers do not change (torch aligns every
buffer to 64 bytes wherever it lies). At 256 and 512 MiB, an MNIST evaluation's peak
resident memory grew by 14% (1739 -> 1985 MiB, on two threads); at these values it does not
(``python benchmarks/heap_faults.py mnist``: 1693 MiB kept, 1703 MiB with the defaults).
Only the processes vaebench owns call it, the command line and its worker processes, never
``import vaebench``. It does nothing where the C library is not glibc, or when
``VAEBENCH_FAST=0`` (see :mod:`vaebench.fast`).
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 64 << 20  # larger buffers (a dataset, say) are still mapped and unmapped whole
OLD_GLIBC_MMAP_LIMIT = 32 << 20  # half of glibc's heap size: some versions refuse a threshold above it
TRIM_THRESHOLD_BYTES = 128 << 20


def keep_freed_memory() -> bool:
    """Keep freed buffers mapped for reuse in this process; True when glibc took the settings.

    Both thresholds or neither: either alone turns off glibc's adaptive threshold and
    leaves the other at its small default, which faults more than the defaults do."""
    from vaebench.fast import fast_paths_enabled

    if not fast_paths_enabled() or not _glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not any(mallopt(M_MMAP_THRESHOLD, size) for size in (MMAP_THRESHOLD_BYTES, OLD_GLIBC_MMAP_LIMIT)):
        log.debug("glibc refused an mmap threshold; freed memory goes back to the kernel as before")
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def _glibc() -> bool:
    """Whether this process's C library is glibc (asked of the C library itself, not read from a file)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or no such name (musl, macOS)
        return False
