"""Where a training step's time goes: vaebench's Gaussian VAE (784-400-20, batch 128, MNIST) in the bare loop.

Measures, in one process:

1. the step's wall time, median over rounds;
2. torch.profiler's self CPU time per step, by kind of op: matrix products; random numbers
   (dynamic binarisation's uniform draws, the reparameterisation's normal draws, the epoch's
   permutation); the optimizer (fused Adam, ``zero_grad`` and their Python); everything else
   (elementwise ops, reductions, copies, autograd's bookkeeping). The profiler's own cost
   inflates the small ops, so the shares are of the profiled time;
3. measured and not shipped: the same loop with the model and objective under ``torch.compile``,
   in rounds alternating with the eager loop, and the first step's loss in both from one seed.

Writes ``benchmarks/TRAIN_PROFILE.md``.

    python benchmarks/train_profile.py --data-dir ../shared/data
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from vaebench.cli import positive

sys.path.insert(0, str(Path(__file__).parent))
from speed import (  # noqa: E402
    BATCH,
    TRAIN_FLOPS_PER_IMAGE,
    bare_training,
    command_line,
    images_per_s,
    machine,
    matmul_flops,
    mnist,
    report_parser,
    run_script,
    write_report,
)

KINDS = {
    "matrix products (mm, addmm)": lambda name: name in ("aten::mm", "aten::addmm"),
    "random numbers (uniform_, normal_, randperm)": lambda name: name in ("aten::uniform_", "aten::normal_", "aten::randperm"),
    "optimizer (fused Adam, zero_grad, their Python)": lambda name: name.startswith("Optimizer.") or "adam" in name,
}


def kind_of(name: str) -> str:
    return next((kind for kind, matches in KINDS.items() if matches(name)), "everything else")


def profiled_ms_per_step(run, steps: int) -> dict[str, float]:
    """Self CPU milliseconds per step by kind of op, under torch.profiler."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(steps)
    per_kind = dict.fromkeys([*KINDS, "everything else"], 0.0)
    for event in prof.key_averages():
        per_kind[kind_of(event.key)] += event.self_cpu_time_total / 1e3 / steps
    return per_kind


def first_step_loss(data, device, compile_loss: bool) -> tuple:
    """(the loop, the loss of its first step from seed 0): both loops start from the same weights and batch."""
    torch.manual_seed(0)
    run = bare_training(data, device, compile_loss)
    return run, run(1)


def compiled_training(data, device):
    """(loop, first step's loss, "") with the model and objective compiled; (None, None, reason) where torch.compile fails."""
    try:
        return (*first_step_loss(data, device, compile_loss=True), "")
    except RuntimeError as error:  # no C++ compiler, or a platform torch.compile does not support
        return None, None, (str(error).strip().splitlines() or [type(error).__name__])[0]


def compile_rows(speeds: dict[str, list[float]], losses: tuple[float, float | None], failure: str) -> list[str]:
    if failure:
        return [f"| compiled vs eager | not measured: torch.compile failed on this machine ({failure}) |"]
    ratios = [c / e for c, e in zip(speeds["compiled"], speeds["eager"])]
    return [
        f"| compiled vs eager, training images/s (median of per-round ratios) | {statistics.median(ratios):.2f}× "
        f"(rounds {min(ratios):.2f}–{max(ratios):.2f}×; {statistics.median(speeds['compiled']):,.0f} vs "
        f"{statistics.median(speeds['eager']):,.0f} images/s) |",
        f"| first step's loss from seed 0, eager / compiled | {losses[0]:.6f} / {losses[1]:.6f} |",
    ]


def main(argv=None) -> int:
    parser = report_parser(__doc__, "TRAIN_PROFILE.md")
    parser.add_argument("--rounds", type=positive(int), default=7)
    parser.add_argument("--steps", type=positive(int), default=300, help="training steps per measurement")
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    data = mnist(args.data_dir, device)

    eager, first_eager = first_step_loss(data, device, compile_loss=False)
    compiled, first_compiled, failure = compiled_training(data, device)
    for run in (eager, compiled):
        if run is not None:
            run(20)  # warm-up (and, compiled, any recompilation), before the clock starts
    speeds = {"eager": [], "compiled": []}
    for _ in range(args.rounds):  # alternating, so the machine's drift falls on both alike
        speeds["eager"].append(images_per_s(eager, args.steps, device))
        if compiled is not None:
            speeds["compiled"].append(images_per_s(compiled, args.steps, device))
    wall_ms = 1e3 * BATCH / statistics.median(speeds["eager"])
    mm_before = matmul_flops(device)  # around the profile: the machine's speed drifts within minutes
    per_kind = profiled_ms_per_step(eager, args.steps)
    mm_rate = (mm_before + matmul_flops(device)) / 2
    profiled = sum(per_kind.values())
    step_matmul_rate = TRAIN_FLOPS_PER_IMAGE * BATCH / (per_kind[next(iter(KINDS))] / 1e3)

    lines = [
        "# Training step profile",
        "",
        f"Command: `{command_line('train_profile.py', argv)}`",
        "",
        f"Machine: {machine(device)}. vaebench's Gaussian VAE 784-400-20, batch {BATCH}, MNIST with dynamic "
        f"binarisation, Adam (fused), in the bare loop of `speed.py`; {args.rounds} rounds of {args.steps} steps.",
        "",
        f"Step wall time, eager as vaebench trains: **{wall_ms:.2f} ms** (median; {statistics.median(speeds['eager']):,.0f} images/s).",
        "",
        f"torch.profiler, {args.steps} steps, self CPU time per step ({profiled:.2f} ms profiled):",
        "",
        "| kind of op | ms per step | share |",
        "|---|---|---|",
        *(f"| {kind} | {ms:.2f} | {ms / profiled * 100:.0f}% |" for kind, ms in per_kind.items()),
        "",
        f"The step's matrix products ({TRAIN_FLOPS_PER_IMAGE * BATCH / 1e6:.0f} MFLOP: the forward pass, every weight "
        f"gradient and the input gradients of all layers but the first) run at {step_matmul_rate / 1e9:.0f} GFLOP/s "
        f"under the profiler; torch.mm on 2048² fp32 matrices runs at {mm_rate / 1e9:.0f} GFLOP/s (mean of one measurement just before the profile and one just after).",
        "",
        "Measured, not shipped: the model and objective under `torch.compile` (inductor), the optimizer eager.",
        "",
        "| measurement | result |",
        "|---|---|",
        *compile_rows(speeds, (first_eager, first_compiled), failure),
        "",
    ]
    return write_report(args.out, lines)


if __name__ == "__main__":
    sys.exit(run_script(main))
