"""vaebench.heap: freed buffers stay mapped for the next chunk, counted in the kernel's page faults."""

import platform
import subprocess
import sys

import pytest

from vaebench import fast, heap

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# What an IS-NLL chunk does to the heap: buffers written, then freed, again and again. At 40 MiB they
# are past the 32 MiB to which glibc's own threshold adapts, so its defaults map each one afresh.
CHUNKS = """
import resource, sys, torch
from vaebench.heap import keep_freed_memory

kept = keep_freed_memory() if sys.argv[1] == "keep" else False

def chunk():
    a = torch.empty(10 << 20).fill_(1.0)
    b = a * 2
    return float((b + a)[0])

for _ in range(4):  # the heap settles at its working size
    chunk()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    chunk()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", CHUNKS, mode], capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not GLIBC, reason="mallopt's thresholds are glibc's; elsewhere keep_freed_memory does nothing")
def test_freed_chunks_are_reused_without_faulting_their_pages_in_again():
    kept, faults_kept = _faults("keep")
    default, faults_default = _faults("default")
    assert kept and not default
    pages_per_round = 3 * (40 << 20) // 4096
    assert faults_default > 10 * pages_per_round  # glibc's defaults hand each round's buffers back
    assert faults_kept < pages_per_round  # once settled, twenty rounds together fault in less than one round's buffers


def test_vaebench_fast_0_leaves_malloc_alone(monkeypatch):
    monkeypatch.setenv(fast.FAST_ENV, "0")
    assert heap.keep_freed_memory() is False
