"""Speed benchmark: vaebench's training and IS-NLL against reference loops written the plain way.

Measured in one process, on one machine, in alternating rounds:

1. dense fp32 matmul FLOP/s (the machine's ceiling) through torch.mm and, on a CPU, through the
   oneDNN kernel IS-NLL's decoder uses; bf16 for comparison;
2. two training configurations, each against its own reference loop:

   * **iwae**: the IWAE paper's network (Burda et al. 2016), 784-200-200-50 tanh, batch 20, against
     a plain eager loop over tensor slices (``torch.optim.Adam`` as constructed by default,
     ``.item()`` every step);
   * **examples**: pytorch/examples' VAE, 784-400-20 relu, batch 128, against that example's own
     loop (``DataLoader`` + ``ToTensor``, ``.item()`` every step);

   vaebench's harness trains each with the compiled step (``--train-step compiled``: one graph
   of objective, gradients and Adam) and with the eager one; the compiled step's first epoch
   includes compiling it, and the report gives that time apart (cold: an empty Inductor cache,
   made for this process unless ``--keep-compile-cache``; warm: the later rounds);
3. IS-NLL images/s at K = 1000, and the time of K = 5000 over the 10,000 MNIST test images
   (measured on a subset and scaled linearly, or in full with ``--full-is``), each with the
   decoder in float32 (the default) and in bfloat16 (``--is-precision bfloat16``).

Every figure is the median over ``--repeats`` rounds; ratios are taken within each round,
then the median. Writes ``benchmarks/RESULTS.md``.

    python benchmarks/speed.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vaebench.cli import OneLineParser, positive
from vaebench.data import DatasetSpec, Split, prepare, torchvision_loader
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
BATCH = 128  # pytorch/examples' batch


@dataclass(frozen=True)
class Config:
    """A network and batch size that the benchmark trains, with the reference loop it is held against."""

    name: str
    what: str
    hidden: tuple[int, ...]
    latent: int
    activation: str
    batch: int
    reference: str  # "plain": an eager loop over tensor slices; "dataloader": pytorch/examples' own loop

    @property
    def network(self) -> str:
        return "-".join(map(str, (784, *self.hidden, self.latent))) + f" {self.activation}"

    def train_flops_per_image(self) -> int:
        """Forward pass, every weight gradient, and the input gradients of every layer but the first (x needs none)."""
        encoder = list(zip((784, *self.hidden), (*self.hidden, 2 * self.latent)))
        decoder = list(zip((self.latent, *reversed(self.hidden)), (*reversed(self.hidden), 784)))
        macs = sum(a * b for a, b in encoder + decoder)
        first = encoder[0][0] * encoder[0][1]
        return 2 * (2 * macs + macs - first)


IWAE = Config("iwae", "the IWAE paper's network (Burda et al. 2016)", (200, 200), 50, "tanh", 20, "plain")
EXAMPLES = Config("examples", "pytorch/examples' VAE", (400,), 20, "relu", BATCH, "dataloader")
CONFIGS = (IWAE, EXAMPLES)
# multiply-adds of the 20-400-784 decoder, for the IS-NLL floor
DECODER_FLOPS = 2 * (20 * 400 + 400 * 784)
TRAIN_FLOPS_PER_IMAGE = EXAMPLES.train_flops_per_image()


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


class PlainVAE(nn.Module):
    """``config``'s VAE written the plain way: MLPs, reparameterisation, Bernoulli BCE plus the Gaussian KL."""

    def __init__(self, config: Config):
        super().__init__()
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}[config.activation]
        sizes = (784, *config.hidden)
        self.encoder = nn.Sequential(*[m for a, b in zip(sizes[:-1], sizes[1:]) for m in (nn.Linear(a, b), act())],
                                     nn.Linear(sizes[-1], 2 * config.latent))
        back = (config.latent, *reversed(config.hidden))
        self.decoder = nn.Sequential(*[m for a, b in zip(back[:-1], back[1:]) for m in (nn.Linear(a, b), act())],
                                     nn.Linear(back[-1], 784))

    def forward(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        bce = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return (bce + kld) / len(x)


def plain_loop(images: torch.Tensor, config: Config, device: torch.device, steps: int) -> float:
    """Images/s of a plain eager loop: tensor slices of a permutation, a Bernoulli draw, Adam, ``.item()``."""
    model = PlainVAE(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    permutation = torch.randperm(len(images), device=device)
    train_loss = 0.0
    sync(device)
    start = time.perf_counter()
    for i in range(steps):
        x = torch.bernoulli(images[permutation[i * config.batch : (i + 1) * config.batch]])
        optimizer.zero_grad()
        loss = model(x)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
    return steps * config.batch / (time.perf_counter() - start)


def reference(config: Config, data, root: Path, device: torch.device, steps: int) -> float:
    """Images/s of ``config``'s reference loop."""
    if config.reference == "dataloader":
        return reference_loop(root, device, steps)
    return plain_loop(data.train.x, config, device, steps)


# --- 3. vaebench's model and objective in a bare loop ------------------------------------------------


def gaussian_recipe(x_dim: int, config: Config = EXAMPLES) -> Recipe:
    model = GaussianVAE(x_dim, config.hidden, config.latent, StandardNormalPrior(config.latent), activation=config.activation)
    return Recipe(model, ELBO(), latent=f"N(0,I) {config.latent}-d")


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


@dataclass
class HarnessTiming:
    images_per_s: float  # training images/s, epochs after the first where there are more (the first compiles)
    wall_images_per_s: float  # images/s over the whole call: every epoch, validation, checkpoints, compiling
    first_epoch_extra_s: float  # how much longer the first epoch took than a later one: compiling
    path: str  # the training step the run took


def harness(data, device: torch.device, epochs: int, config: Config = EXAMPLES, train_step: str = "eager") -> tuple[float, float]:
    """(training images/s as the harness reports it, images/s over whole epochs incl. validation and checkpoint)."""
    timing = harness_timing(data, device, epochs, config, train_step)
    return timing.images_per_s, timing.wall_images_per_s


def harness_timing(data, device: torch.device, epochs: int, config: Config, train_step: str) -> HarnessTiming:
    """The vaebench harness (runner loop, rich progress, checkpoints) training ``config`` for ``epochs``."""
    recipe = gaussian_recipe(data.dim, config)
    with tempfile.TemporaryDirectory() as tmp, RichReporter() as reporter:
        start = time.perf_counter()
        result = train(recipe, data, budget=epochs, batch_size=config.batch, lr=1e-3, optimizer="adam", seed=0,
                       device=device, run_dir=Path(tmp), run_name=f"harness {config.name} {train_step}", reporter=reporter,
                       train_step=train_step)
        wall = time.perf_counter() - start
    seconds = [h["train_seconds"] for h in result.history]
    images = result.train_images / len(seconds)
    later = seconds[1:] or seconds
    steady = sum(later) / len(later)
    return HarnessTiming(images / steady, result.train_images / wall, seconds[0] - steady if len(seconds) > 1 else 0.0,
                         result.step_path.name)


# --- 1. and 5. --------------------------------------------------------------------------------------


FLOPS_SECONDS = 2.0  # at most about this long per rate: a CPU without bf16 kernels runs a bf16 product at < 1 GFLOP/s


def flops_of(product, device: torch.device, n: int, repeats: int) -> float:
    """FLOP/s of ``product()``, an n x n by n x n matrix product: ``repeats`` of them, or as many as
    ``FLOPS_SECONDS`` allows when one product is slow (the first, warm-up product sets the pace)."""
    start = time.perf_counter()
    product()
    sync(device)
    first = time.perf_counter() - start
    repeats = max(1, min(repeats, int(FLOPS_SECONDS / max(first, 1e-9))))
    start = time.perf_counter()
    for _ in range(repeats):
        product()
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def matmul_flops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 10) -> float:
    """torch.mm's rate (on a CPU, the BLAS torch was built with: MKL for the PyPI wheels), on n x n
    products, or smaller ones when a 256 x 256 probe shows that one n x n product would outlast
    ``FLOPS_SECONDS`` (bf16 on a CPU without bf16 kernels)."""
    probe = min(n, 256)
    a, b = torch.randn(probe, probe, device=device, dtype=dtype), torch.randn(probe, probe, device=device, dtype=dtype)
    rate = flops_of(lambda: a @ b, device, probe, 3)
    n = min(n, max(probe, int((rate * FLOPS_SECONDS / 2) ** (1 / 3))))
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


def harness_data(data, images: int | None):
    """``data`` with its training split cut to the first ``images`` (all by default)."""
    if images is None or images >= len(data.train):
        return data
    return dataclasses.replace(data, train=Split(data.train.x[:images], data.train.y[:images]))


def _relative(speedup: float) -> str:
    """``speedup`` (float32 time over bfloat16's) as words: faster or slower."""
    return f"{speedup:.2f}× faster" if speedup >= 1 else f"{1 / speedup:.1f}× slower: this CPU has no fast bf16 kernels"


def main(argv=None) -> int:
    parser = report_parser(__doc__, "RESULTS.md")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=positive(int), default=5, help="rounds; each measures every loop back to back")
    parser.add_argument("--steps", type=positive(int), default=400, help="steps of each reference loop per round")
    parser.add_argument("--harness-images", type=positive(int), default=None,
                        help="training images the harness's epochs cover (default: the whole split, 55,000)")
    parser.add_argument("--keep-compile-cache", action="store_true",
                        help="use Inductor's usual cache instead of an empty one, so that the first compile is not cold")
    parser.add_argument("--is-images", type=positive(int), default=200, help="test images for the IS measurements")
    parser.add_argument("--full-is", action="store_true", help="time K = 5000 on all 10,000 test images")
    parser.add_argument("--matmul-size", type=positive(int), default=2048, help="n of the n x n matrix products that measure FLOP/s")
    parser.add_argument("--configs", default=",".join(c.name for c in CONFIGS),
                        help=f"comma-separated training configurations to measure (default all: {', '.join(c.name for c in CONFIGS)})")
    args = parser.parse_args(argv)
    known = {c.name: c for c in CONFIGS}
    wanted = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        parser.error(f"--configs {args.configs}: no configuration '{unknown[0] if unknown else ''}'; choose from {', '.join(known)}")
    configs = [known[name] for name in wanted]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device)
    cache = None if args.keep_compile_cache else tempfile.TemporaryDirectory(prefix="vaebench-inductor-")
    if cache is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name  # the first compile of each configuration is cold

    data = mnist(args.data_dir, device)
    train_data = harness_data(data, args.harness_images)
    root = Path(data.source.split(" ")[0]).parent.parent  # <root>/MNIST/raw, for torchvision's reference loader
    log.info("MNIST from %s; %s", data.source, machine(device))

    onednn = device.type == "cpu" and onednn_linear_available()
    rows: dict[str, list[float]] = {k: [] for k in ("flops", "flops_bf16", "flops_onednn", "bare", "is1000", "is1000_bf16")}
    for config in configs:
        for key in ("reference", "compiled", "compiled_wall", "compile_s", "eager", "eager_wall"):
            rows[f"{config.name}_{key}"] = []
    paths = {}
    for r in range(args.repeats):
        rows["flops"].append(matmul_flops(device, n=args.matmul_size))
        rows["flops_bf16"].append(matmul_flops(device, torch.bfloat16, n=args.matmul_size))
        if onednn:
            rows["flops_onednn"].append(onednn_matmul_flops(n=args.matmul_size))
        for config in configs:
            # the reference runs before and after vaebench's loops (half the steps each), so a drift of
            # the machine's speed within the round falls on both sides of the ratio alike
            before = reference(config, data, root, device, max(1, args.steps // 2))
            compiled = harness_timing(train_data, device, 2, config, "compiled")
            eager = harness_timing(train_data, device, 1, config, "eager")
            after = reference(config, data, root, device, args.steps - args.steps // 2)
            paths[config.name] = compiled.path
            for key, value in (("reference", 2 / (1 / before + 1 / after)), ("compiled", compiled.images_per_s),
                               ("compiled_wall", compiled.wall_images_per_s), ("compile_s", compiled.first_epoch_extra_s),
                               ("eager", eager.images_per_s), ("eager_wall", eager.wall_images_per_s)):
                rows[f"{config.name}_{key}"].append(value)
        if EXAMPLES in configs:
            rows["bare"].append(images_per_s(bare_training(data, device), args.steps, device))
        for key, dtype in (("is1000", torch.float32), ("is1000_bf16", torch.bfloat16)):
            rows[key].append(args.is_images / is_seconds(data, device, 1000, args.is_images, dtype))
        log.info("round %d: %s", r + 1, {k: f"{v[-1]:.4g}" for k, v in rows.items() if v})
    is5000 = {}  # seconds for K = 5000 over the 10,000 test images, by decoder precision
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        if args.full_is:
            is5000[name] = is_seconds(data, device, 5000, len(data.test), dtype)
            how = "measured on all 10,000 test images"
        else:
            per_image = statistics.median(is_seconds(data, device, 5000, args.is_images, dtype) / args.is_images for _ in range(args.repeats))
            is5000[name], how = per_image * len(data.test), f"{args.is_images} test images, scaled to 10,000"
        log.info("IS-NLL K = 5000, decoder in %s: %.0f s", name, is5000[name])
    if cache is not None:
        cache.cleanup()

    med = {k: statistics.median(v) for k, v in rows.items() if v}
    ratio = lambda a, b: [x / y for x, y in zip(rows[a], rows[b])]  # noqa: E731  within each round
    decoder_flops = med.get("flops_onednn", med["flops"])  # the rate of the kernel the decoder runs
    is_floor = 10000 * 5000 * DECODER_FLOPS / decoder_flops
    epoch_images = len(train_data.train)
    lines = [
        "# Speed benchmark",
        "",
        f"Command: `{command_line('speed.py', argv)}`",
        "",
        f"Machine: {machine(device)}.",
        f"MNIST with dynamic binarisation, all in one process. {args.repeats} rounds; each runs, per configuration, "
        f"its reference loop ({args.steps} steps, half before and half after vaebench's), the harness with the compiled "
        f"step (2 epochs of {epoch_images:,} images: the first compiles, the second is timed) and with the eager step "
        "(1 epoch). Figures are medians over rounds; ratios are taken within each round, then the median.",
        "",
        "| measurement | median |",
        "|---|---|",
        f"| dense fp32 matmul (2048², torch.mm) | {med['flops'] / 1e9:.1f} GFLOP/s |",
        *(
            [f"| dense fp32 matmul (2048², oneDNN linear with a prepacked weight, as IS-NLL decodes on a CPU) | {med['flops_onednn'] / 1e9:.1f} GFLOP/s |"]
            if "flops_onednn" in med
            else []
        ),
        f"| dense bf16 matmul (torch.mm, up to 2048²: smaller where bf16 is slow) | {med['flops_bf16'] / 1e9:.1f} GFLOP/s |",
        f"| IS-NLL, K = 1000 | {med['is1000']:,.1f} images/s |",
        f"| IS-NLL, K = 1000, `--is-precision bfloat16` | {med['is1000_bf16']:,.1f} images/s |",
        f"| IS-NLL, K = 5000, 10,000 MNIST test images ({how}) | {is5000['float32']:,.0f} s |",
        f"| same, `--is-precision bfloat16` | {is5000['bfloat16']:,.0f} s ({_relative(is5000['float32'] / is5000['bfloat16'])}) |",
        "",
        "Training, per configuration (ms/step = batch / images/s; FLOP share: training FLOP/s over torch.mm's fp32 rate in this run):",
        "",
        "| configuration | loop | images/s | ms/step | × reference | FLOP share |",
        "|---|---|---|---|---|---|",
    ]
    targets = []
    for config in configs:
        n = config.name
        flops = config.train_flops_per_image()
        ref_name = "plain eager loop (tensor slices, Adam, `.item()` per step)" if config.reference == "plain" else \
            "pytorch/examples loop (DataLoader + ToTensor, `.item()` per step)"
        label = f"{n}: {config.network}, batch {config.batch}"
        for loop, key in ((ref_name, "reference"), (f"vaebench, compiled step (`--train-step compiled`; took: {paths[n]})", "compiled"),
                          ("vaebench, eager step (`--train-step eager`)", "eager")):
            speed = med[f"{n}_{key}"]
            times = "1.00×" if key == "reference" else f"{statistics.median(ratio(f'{n}_{key}', f'{n}_reference')):.2f}×"
            lines.append(f"| {label} | {loop} | {speed:,.0f} | {1e3 * config.batch / speed:.3f} | {times} | "
                         f"{speed * flops / med['flops'] * 100:.1f}% |")
        cold, warm = rows[f"{n}_compile_s"][0], statistics.median(rows[f"{n}_compile_s"][1:] or rows[f"{n}_compile_s"])
        lines.append(f"| {label} | compiling the step (the first epoch's extra time) | first round {cold:.1f} s"
                     f"{' (empty cache)' if cache is not None else ''}, later rounds {warm:.1f} s | | | |")
        got = statistics.median(ratio(f"{n}_compiled", f"{n}_reference"))
        spread = ratio(f"{n}_compiled", f"{n}_reference")
        floor = 2.0 if n == "iwae" else None
        verdict = "yes" if got >= 3 else ("no (below 2×: fails)" if floor and got < floor else "no")
        targets.append(f"| {n}: training ≥ 3× the {'plain eager loop' if config.reference == 'plain' else 'DataLoader reference loop'} "
                       f"| compiled {got:.2f}× (rounds {min(spread):.2f}–{max(spread):.2f}×), {1e3 * config.batch / med[f'{n}_compiled']:.2f} ms/step | {verdict} |")
    lines += ["", "| target | measured | met |", "|---|---|---|", *targets]
    if "examples_eager" in rows:  # the bare loop trains the examples network
        overhead = statistics.median(b / h for b, h in zip(rows["bare"], rows["examples_eager"])) - 1
        lines.append(f"| harness overhead ≤ 5% over a bare eager loop (examples, eager step) | {overhead * 100:+.1f}% | "
                     f"{'yes' if overhead <= 0.05 else 'no'} |")
    if device.type == "cpu":
        for name, seconds in is5000.items():
            lines.append(
                f"| IS-NLL K = 5000 on 10,000 test images ≤ 180 s, decoder in {name} | {seconds:,.0f} s | {'yes' if seconds <= 180 else 'no'} |"
            )
        lines.append("| on a GPU: training ≥ 20× the reference loop at batch 128 | not measured by this CPU run (`--device cuda`) | — |")
    lines += [
        "",
        f"- FLOPs per training image: {', '.join(f'{c.name} {c.train_flops_per_image() / 1e6:.2f} M' for c in configs)} "
        "(the forward pass, every weight gradient, and the input gradients of all layers but the first).",
        f"- IS-NLL at K = 5000 decodes 5·10⁷ latent samples of {DECODER_FLOPS / 1e3:.0f} kFLOP each (784-400-20): "
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
