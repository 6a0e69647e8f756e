"""Speed benchmark: vaebench's training and IS-NLL against the pytorch/examples VAE loop.

Measured in one process, on one machine:

1. dense fp32 matmul FLOP/s (the machine's ceiling) through torch.mm and, on a CPU, through the
   oneDNN kernel IS-NLL's decoder uses; bf16 for comparison;
2. a reference loop written the way pytorch/examples ``vae/main.py`` is written:
   the same 784-400-20 model, ``DataLoader`` + ``ToTensor``, batch 128, ``.item()`` every step;
3. a bare loop of vaebench's own model and objective, on-device data, no runner;
4. the vaebench harness (runner, rich progress bar, logging) training the Gaussian VAE;
5. IS-NLL images/s at K = 1000, and the time of K = 5000 over the 10,000 MNIST test images
   (measured on a subset and scaled linearly, or in full with ``--full-is``), each with the
   decoder in float32 (the default) and in bfloat16 (``--is-precision bfloat16``).
   ``tests/test_variants.py`` checks that bfloat16 moves log p(x) far less than the estimator's own noise.

Every figure is the median over ``--repeats``. Writes ``benchmarks/RESULTS.md``.

    python benchmarks/speed.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vaebench.cli import OneLineParser, positive
from vaebench.data import DatasetSpec, prepare, torchvision_loader
from vaebench.distributions import StandardNormalPrior
from vaebench.errors import UsageError
from vaebench.evaluation.importance import importance_log_likelihood
from vaebench.models import GaussianVAE
from vaebench.objectives import ELBO, Batch
from vaebench.fast import PrepackedLinear, onednn_linear_available
from vaebench.reporting.progress import RichReporter
from vaebench.schedules import Progress
from vaebench.execution.training import sync, train
from vaebench.execution.training import default_param_groups, make_optimizer
from vaebench.variant import Recipe

log = logging.getLogger("vaebench.bench")
BATCH = 128
# multiply-adds of the 784-400-(2x20) encoder and 20-400-784 decoder
ENCODER_MACS = 784 * 400 + 400 * 40
DECODER_MACS = 20 * 400 + 400 * 784
DECODER_FLOPS = 2 * DECODER_MACS
# forward + weight gradients + input gradients of every layer but the first (x needs none)
TRAIN_FLOPS_PER_IMAGE = 2 * (2 * (ENCODER_MACS + DECODER_MACS) + (ENCODER_MACS + DECODER_MACS - 784 * 400))


# --- 2. the reference: pytorch/examples vae/main.py, as written there ------------------------------


class ExampleVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def example_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def reference_loop(root: Path, device: torch.device, steps: int) -> float:
    """Images/s of the pytorch/examples training loop over ``steps`` batches."""
    from torchvision import datasets, transforms

    loader = torch.utils.data.DataLoader(
        datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor()),
        batch_size=BATCH,
        shuffle=True,
        **({"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}),
    )
    model = ExampleVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    train_loss, images = 0.0, 0
    start = time.perf_counter()
    for batch_idx, (data, _) in enumerate(loader):
        if batch_idx == steps:
            break
        data = data.to(device)
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = example_loss(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
        images += len(data)
    return images / (time.perf_counter() - start)


# --- 3. vaebench's model and objective in a bare loop ------------------------------------------------


def gaussian_recipe(x_dim: int) -> Recipe:
    model = GaussianVAE(x_dim, (400,), 20, StandardNormalPrior(20))
    return Recipe(model, ELBO(), latent="N(0,I) 20-d")


def bare_training(data, device: torch.device):
    """``run(steps)``: vaebench's Gaussian VAE, objective and Adam on the on-device data, without the runner."""
    recipe = gaussian_recipe(data.dim)
    model, objective = recipe.model.to(device), recipe.objective
    optimizer = make_optimizer("adam", default_param_groups(model)(1e-3))
    n = len(data.train)
    per_epoch = (n + BATCH - 1) // BATCH

    def loss_of(x, y, index, step):
        return objective(model, Batch(x, y, index), Progress(0, step, per_epoch, 1)).loss

    def run(steps: int) -> float:
        """Train ``steps`` steps; their mean loss."""
        done = 0
        total = torch.zeros((), device=device)
        while done < steps:
            permutation = torch.randperm(n, device=device)
            for step in range(min(per_epoch, steps - done)):
                index = permutation[step * BATCH : (step + 1) * BATCH]
                x, y = data.training_batch(index)
                loss = loss_of(x, y, index, step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach()
                done += 1
        return total.item() / done

    return run


def images_per_s(run, steps: int, device: torch.device) -> float:
    """Training images/s of ``run(steps)``."""
    sync(device)
    start = time.perf_counter()
    run(steps)
    sync(device)
    return steps * BATCH / (time.perf_counter() - start)


# --- 4. the harness ---------------------------------------------------------------------------------


def harness(data, device: torch.device, epochs: int) -> tuple[float, float]:
    """(training images/s as the harness reports it, images/s over whole epochs incl. validation and checkpoint)."""
    recipe = gaussian_recipe(data.dim)
    with tempfile.TemporaryDirectory() as tmp, RichReporter() as reporter:
        start = time.perf_counter()
        result = train(recipe, data, budget=epochs, batch_size=BATCH, lr=1e-3, optimizer="adam", seed=0,
                       device=device, run_dir=Path(tmp), run_name="harness", reporter=reporter)
        wall = time.perf_counter() - start
    return result.images_per_s, result.train_images / wall


# --- 1. and 5. --------------------------------------------------------------------------------------


def flops_of(product, device: torch.device, n: int, repeats: int) -> float:
    """FLOP/s of ``product()``, an n x n by n x n matrix product."""
    product()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        product()
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def matmul_flops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 10) -> float:
    """torch.mm's rate (on a CPU, the BLAS torch was built with: MKL for the PyPI wheels)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return flops_of(lambda: a @ b, device, n, repeats)


@torch.inference_mode()
def onednn_matmul_flops(n: int = 2048, repeats: int = 10) -> float:
    """fp32 rate of the oneDNN linear with a prepacked weight, the kernel IS-NLL's decoder runs on a CPU."""
    layer, a = PrepackedLinear(nn.Linear(n, n, bias=False)), torch.randn(n, n)
    return flops_of(lambda: layer(a), torch.device("cpu"), n, repeats)


def is_seconds(data, device: torch.device, k: int, images: int, dtype: torch.dtype) -> float:
    """Seconds of IS-NLL with K samples on the first ``images`` test images, the decoder in ``dtype``
    (untrained model: the cost does not depend on the weights' values)."""
    model = gaussian_recipe(data.dim).model.to(device).eval()
    x, y = data.test.x[:images], data.test.y[:images]
    sync(device)
    start = time.perf_counter()
    importance_log_likelihood(model, x, y, None, samples=k, decode_dtype=dtype)
    sync(device)
    return time.perf_counter() - start


def report_parser(doc: str, report: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes: where MNIST is, and where its report goes.

    Like vaebench's own parser, a usage error is one line; :func:`run_script` prints it.
    """
    parser = OneLineParser(description=doc.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="folder holding MNIST/raw (else $VAEBENCH_DATA or the cache)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name(report), help=f"the report (default benchmarks/{report})")
    return parser


def run_script(main: Callable[[], int]) -> int:
    """A benchmark's ``main``, with bad input (a usage error, a missing --data-dir) as one line on stderr and exit code 2."""
    try:
        return main()
    except UsageError as error:
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        return 2


def mnist(data_dir: Path | None, device: torch.device):
    """MNIST as ``vaebench run --dataset mnist`` loads it, dynamically binarised, on ``device``."""
    spec = DatasetSpec("mnist", "", torchvision_loader("MNIST"), val_fraction=1 / 12)
    return prepare(spec, data_dir, "dynamic", device)


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that reproduces a report, as it was run."""
    return " ".join([f"python benchmarks/{script}", *(argv if argv is not None else sys.argv[1:])])


def write_report(path: Path, lines: list[str]) -> int:
    """Write a Markdown report, print it, and return the exit status."""
    text = "\n".join(lines)
    path.write_text(text)
    print(text)
    return 0


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, Python {platform.python_version()}"


def peak_memory_line() -> list[str]:
    """The process's peak resident memory, where the platform reports it (a leak shows here)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return []
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    gib = peak / 2**30 if sys.platform == "darwin" else peak / 2**20
    return [f"- Peak resident memory of the benchmark process: {gib:.1f} GiB."]


def main(argv=None) -> int:
    parser = report_parser(__doc__, "RESULTS.md")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=positive(int), default=7, help="rounds; each measures every loop back to back")
    parser.add_argument("--steps", type=positive(int), default=300, help="training steps per measurement")
    parser.add_argument("--harness-epochs", type=positive(int), default=1)
    parser.add_argument("--is-images", type=positive(int), default=200, help="test images for the IS measurements")
    parser.add_argument("--full-is", action="store_true", help="time K = 5000 on all 10,000 test images")
    parser.add_argument("--matmul-size", type=positive(int), default=2048, help="n of the n x n matrix products that measure FLOP/s")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device)

    data = mnist(args.data_dir, device)
    root = Path(data.source.split(" ")[0]).parent.parent  # <root>/MNIST/raw, for torchvision's reference loader
    log.info("MNIST from %s; %s", data.source, machine(device))

    onednn = device.type == "cpu" and onednn_linear_available()
    keys = ("flops", "flops_bf16", "flops_onednn", "reference", "bare", "harness", "harness_wall", "is1000", "is1000_bf16")
    rows: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(args.repeats):
        rows["flops"].append(matmul_flops(device, n=args.matmul_size))
        rows["flops_bf16"].append(matmul_flops(device, torch.bfloat16, n=args.matmul_size))
        if onednn:
            rows["flops_onednn"].append(onednn_matmul_flops(n=args.matmul_size))
        # the reference runs before and after vaebench's loops (half the steps each), so a drift of
        # the machine's speed within the round falls on both sides of the ratio alike
        before = reference_loop(root, device, max(1, args.steps // 2))
        rows["bare"].append(images_per_s(bare_training(data, device), args.steps, device))
        h, w = harness(data, device, args.harness_epochs)
        rows["harness"].append(h)
        rows["harness_wall"].append(w)
        after = reference_loop(root, device, args.steps - args.steps // 2)
        rows["reference"].append(2 / (1 / before + 1 / after))
        for key, dtype in (("is1000", torch.float32), ("is1000_bf16", torch.bfloat16)):
            rows[key].append(args.is_images / is_seconds(data, device, 1000, args.is_images, dtype))
        log.info("repeat %d: %s", r + 1, {k: f"{v[-1]:.4g}" for k, v in rows.items() if v})
    is5000 = {}  # seconds for K = 5000 over the 10,000 test images, by decoder precision
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        if args.full_is:
            is5000[name] = is_seconds(data, device, 5000, len(data.test), dtype)
            how = "measured on all 10,000 test images"
        else:
            per_image = statistics.median(is_seconds(data, device, 5000, args.is_images, dtype) / args.is_images for _ in range(args.repeats))
            is5000[name], how = per_image * len(data.test), f"{args.is_images} test images, scaled to 10,000"
        log.info("IS-NLL K = 5000, decoder in %s: %.0f s", name, is5000[name])

    med = {k: statistics.median(v) for k, v in rows.items() if v}
    # Ratios are taken within each round (the loops ran seconds apart), then the median over rounds:
    # a shared machine's speed drifts by +-15% over minutes, which a ratio of medians would mix in.
    per_round = [h / r for h, r in zip(rows["harness"], rows["reference"])]
    harness_speedup = statistics.median(per_round)
    speedup = statistics.median(b / r for b, r in zip(rows["bare"], rows["reference"]))
    overhead = statistics.median(b / h for b, h in zip(rows["bare"], rows["harness"])) - 1
    utilisation = med["harness"] * TRAIN_FLOPS_PER_IMAGE / med["flops"]
    decoder_flops = med.get("flops_onednn", med["flops"])  # the rate of the kernel the decoder runs
    is_floor = 10000 * 5000 * DECODER_FLOPS / decoder_flops
    target_speedup = 10.0 if device.type == "cuda" else 2.5
    lines = [
        "# Speed benchmark",
        "",
        f"Command: `{command_line('speed.py', argv)}`",
        "",
        f"Machine: {machine(device)}.",
        f"Model 784-400-20, batch {BATCH}, MNIST with dynamic binarisation, all in one process. {args.repeats} rounds; "
        f"each runs the loops back to back: the reference ({args.steps} steps, half before and half after vaebench's loops), "
        f"the bare loop ({args.steps} steps) and the harness ({args.harness_epochs} epoch of 55,000 images). "
        "Figures are medians over rounds; ratios are taken within each round, then the median.",
        "",
        "| measurement | median |",
        "|---|---|",
        f"| dense fp32 matmul (2048², torch.mm) | {med['flops'] / 1e9:.1f} GFLOP/s |",
        *(
            [f"| dense fp32 matmul (2048², oneDNN linear with a prepacked weight, as IS-NLL decodes on a CPU) | {med['flops_onednn'] / 1e9:.1f} GFLOP/s |"]
            if "flops_onednn" in med
            else []
        ),
        f"| dense bf16 matmul (2048², torch.mm) | {med['flops_bf16'] / 1e9:.1f} GFLOP/s |",
        f"| reference loop (pytorch/examples style: DataLoader + ToTensor, `.item()` per step) | {med['reference']:,.0f} images/s |",
        f"| vaebench model, bare loop (on-device data, no runner) | {med['bare']:,.0f} images/s |",
        f"| vaebench harness (runner, progress bar, logging): training images/s | {med['harness']:,.0f} images/s |",
        f"| vaebench harness, whole epochs incl. validation and checkpoint | {med['harness_wall']:,.0f} images/s |",
        f"| IS-NLL, K = 1000 | {med['is1000']:,.1f} images/s |",
        f"| IS-NLL, K = 1000, `--is-precision bfloat16` | {med['is1000_bf16']:,.1f} images/s |",
        f"| IS-NLL, K = 5000, 10,000 MNIST test images ({how}) | {is5000['float32']:,.0f} s |",
        f"| same, `--is-precision bfloat16` | {is5000['bfloat16']:,.0f} s ({is5000['float32'] / is5000['bfloat16']:.2f}× faster) |",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| training ≥ {target_speedup:g}× the reference loop | harness {harness_speedup:.2f}× (bare loop {speedup:.2f}×; "
        f"rounds {min(per_round):.2f}–{max(per_round):.2f}×) | {'yes' if harness_speedup >= target_speedup else 'no'} |",
        f"| harness overhead ≤ 5% over the bare loop | {overhead * 100:+.1f}% | {'yes' if overhead <= 0.05 else 'no'} |",
    ]
    if device.type == "cpu":
        for name, seconds in is5000.items():
            lines.append(
                f"| IS-NLL K = 5000 on 10,000 test images ≤ 180 s, decoder in {name} | {seconds:,.0f} s | {'yes' if seconds <= 180 else 'no'} |"
            )
        lines.append("| on a GPU: training ≥ 10× the reference loop on the same GPU | not measured by this CPU run (`--device cuda`) | — |")
    lines += [
        "",
        f"- Training reaches {utilisation * 100:.1f}% of torch.mm's fp32 rate (training's matmuls are torch's) "
        f"({TRAIN_FLOPS_PER_IMAGE / 1e6:.2f} MFLOP per training image: the forward pass, every weight gradient, "
        "and the input gradients of all layers but the first).",
        f"- IS-NLL at K = 5000 decodes 5·10⁷ latent samples of {DECODER_FLOPS / 1e3:.0f} kFLOP each: "
        f"{is_floor:,.0f} s of decoder matmuls alone at the measured fp32 rate of the kernel they run in, before the likelihood is read. "
        f"The float32 time is {is_floor / is5000['float32'] * 100:.0f}% matmul. bfloat16 decoding "
        f"(`--is-precision bfloat16`, opt-in, recorded in every row) runs those matmuls at the bf16 rate; "
        "its effect on log p(x) is tested to be far below the estimator's own sampling noise.",
        "- IS-NLL at K = 5000 on the full test split includes compiling the likelihood kernel (torch.compile), "
        "as a `vaebench run` process does for evaluations that large.",
        *peak_memory_line(),
        "",
    ]
    return write_report(args.out, lines)


if __name__ == "__main__":
    sys.exit(run_script(main))
