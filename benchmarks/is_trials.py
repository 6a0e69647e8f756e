"""IS-NLL on the CPU: where its time goes, and what bfloat16 decoding costs in accuracy.

Trains vaebench's Gaussian VAE (784-400-20) on MNIST for a few epochs, then measures

1. IS-NLL time at K = 5000 with chunks of at most 2,048, vaebench's CPU default (16 MiB of
   float32 decoder output), 8,192 and 65,536 rows, the decoder in float32 and in bfloat16;
2. one 2,048-row chunk: the decoder's last layer through oneDNN with a prepacked weight (as
   vaebench runs it) and as ``nn.Linear``, in both precisions; softplus over its logits; the Bernoulli
   likelihood as vaebench scores it (one compiled pass) against the same function run eagerly,
   for float32 logits and for the bfloat16 logits of ``--is-precision bfloat16``;
3. ``--is-precision bfloat16`` against float32 on several built-in variants trained the same
   way, with the same latent samples, beside the estimator's own noise (float32 with fresh
   samples), and a bf16 variant vaebench does not ship: the decoder's last matmul in bf16
   around an fp32 anchor, l = l(mu) + W (h - h(mu));
4. the share of hidden units that a whole chunk of one image's samples leaves at zero.

Writes ``benchmarks/IS_TRIALS.md``.

    python benchmarks/is_trials.py --data-dir ../shared/data
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vaebench.cli import positive
from vaebench.distributions import bernoulli_likelihood
from vaebench.distributions.likelihoods import bernoulli_log_prob
from vaebench.evaluation import decoding, eval_rows
from vaebench.metrics.is_nll import importance_log_likelihood
from vaebench.plugin_manager import load_plugins
from vaebench.prepacked_linear import PrepackedLinear
from vaebench.training import train
from vaebench.variant import BuildContext, SharedSettings

sys.path.insert(0, str(Path(__file__).parent))
from speed import command_line, machine, mnist, report_parser, run_script, write_report  # noqa: E402

CHUNK = 2048
VARIANTS = ("gaussian", "mog-prior", "conditional", "gumbel-capacity", "bernoulli-sfe")


def seconds(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def per_image_is(model, x: torch.Tensor, samples: int, decode) -> torch.Tensor:
    """log p(x) image by image, with ``decode(z, anchor_z)`` giving the logits; one sampling order for all."""
    prior = model.prior.distribution()
    out = []
    for i in range(x.shape[0]):
        xb = x[i : i + 1]
        q = model.posterior(xb)
        total = torch.full((1,), -math.inf)
        for start in range(0, samples, CHUNK):
            z = q.sample((min(CHUNK, samples - start),))
            logits = decode(z, q.mean)
            log_w = bernoulli_likelihood(logits).log_prob(xb) + prior.log_prob(z) - q.log_prob(z)
            total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
        out.append(total - math.log(samples))
    return torch.cat(out)


def compare(model, x, samples, decode, reference_decode) -> tuple[float, float, float, float]:
    """(mean, sd, max |difference| in nats, speed-up) of ``decode`` against ``reference_decode``."""
    torch.manual_seed(1)
    start = time.perf_counter()
    exact = per_image_is(model, x, samples, reference_decode)
    t_exact = time.perf_counter() - start
    torch.manual_seed(1)
    start = time.perf_counter()
    other = per_image_is(model, x, samples, decode)
    t_other = time.perf_counter() - start
    d = other.double() - exact.double()
    return d.mean().item(), d.std().item(), d.abs().max().item(), t_exact / t_other


def trained(name: str, data, epochs: int, device: torch.device):
    """A built-in variant at the suite defaults (784-400-20), trained as ``vaebench run`` trains it."""
    variant = load_plugins().registry.get("variant", name)
    context = BuildContext(SharedSettings(), data.dim, data.n_classes, len(data.train), epochs, variant.resolve_options({}))
    torch.manual_seed(0)
    recipe = variant.build(context)
    with tempfile.TemporaryDirectory() as tmp:
        train(recipe, data, epochs=epochs, batch_size=128, lr=1e-3, optimizer="adam", seed=0, device=device, run_dir=Path(tmp))
    if recipe.post_training is not None:
        recipe.post_training(recipe.model, data)
    return recipe.model.eval()


def precision_row(name: str, model, x, y, samples: int) -> str:
    """bfloat16 against float32 with the same samples, and float32 against itself with fresh ones."""
    index = torch.arange(len(x))
    runs, seconds = {}, {}
    for seed, dtype in ((1, torch.float32), (1, torch.bfloat16), (2, torch.float32)):
        torch.manual_seed(seed)
        start = time.perf_counter()
        runs[seed, dtype] = importance_log_likelihood(model, x, y, index, samples, decode_dtype=dtype).double()
        seconds[seed, dtype] = time.perf_counter() - start
    fp32 = runs[1, torch.float32]
    rounding = runs[1, torch.bfloat16] - fp32
    sampling = runs[2, torch.float32] - fp32
    speedup = seconds[1, torch.float32] / seconds[1, torch.bfloat16]
    return (
        f"| {name} | {-fp32.mean().item():.3f} | {-rounding.mean().item():+.4f} | {rounding.std().item():.4f} | "
        f"{rounding.abs().max().item():.3f} | {sampling.std().item():.4f} | {speedup:.2f}× |"
    )


def main(argv=None) -> int:
    parser = report_parser(__doc__, "IS_TRIALS.md")
    parser.add_argument("--epochs", type=positive(int), default=10)
    parser.add_argument("--images", type=positive(int), default=1000, help="test images for the accuracy comparisons (K = 1000)")
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    data = mnist(args.data_dir, device)
    model = trained("gaussian", data, args.epochs, device)
    first, hidden_to_pixels = model.decoder[0], model.decoder[2]
    x = data.test.x

    # 1. chunk size
    few = x[:20]
    default = eval_rows(device, data.dim)
    chunk_seconds = {
        (rows, dtype): seconds(lambda: importance_log_likelihood(model, few, None, None, 5000, max_rows=rows, decode_dtype=dtype))
        for dtype in (torch.float32, torch.bfloat16)
        for rows in sorted({CHUNK, default, 4 * CHUNK, 65536})
    }

    # 2. one chunk: matmul, softplus, and the likelihood compiled and eager
    with torch.inference_mode():
        h = torch.relu(first(model.posterior(x[:1]).sample((CHUNK,))))
        prepacked = PrepackedLinear(hidden_to_pixels)
        matmuls = {}
        for dtype in (torch.float32, torch.bfloat16):
            with decoding(dtype, device):
                prepacked(h)  # packs the weight for this dtype, before the clock starts
                matmuls[dtype] = (seconds(lambda: prepacked(h), 20), seconds(lambda: hidden_to_pixels(h), 20))
        logits = hidden_to_pixels(h)
        softplus = seconds(lambda: F.softplus(logits).sum(-1), 20)
        scoring = {}
        for dtype in (torch.float32, torch.bfloat16):
            chunk_logits = logits.to(dtype)
            bernoulli_log_prob(chunk_logits, x[0])  # compiles, before the clock starts
            scoring[dtype] = (
                seconds(lambda: bernoulli_log_prob(chunk_logits, x[0]), 20),
                seconds(lambda: bernoulli_log_prob.fn(chunk_logits, x[0]), 20),
            )

    # 3. --is-precision bfloat16 on several variants; the anchored variant on the Gaussian VAE
    sub_x, sub_y = x[: args.images], data.test.y[: args.images]
    precision_rows = [precision_row("gaussian", model, sub_x, sub_y, 1000)]
    for name in VARIANTS[1:]:
        precision_rows.append(precision_row(name, trained(name, data, args.epochs, device), sub_x, sub_y, 1000))
    w_bf16 = hidden_to_pixels.weight.t().contiguous().to(torch.bfloat16)

    def anchored(z, mu):
        h_mu = torch.relu(first(mu))
        return hidden_to_pixels(h_mu) + ((torch.relu(first(z)) - h_mu).to(torch.bfloat16) @ w_bf16).float()

    anchor = compare(model, x[:300], 1000, anchored, lambda z, mu: model.decode(z))

    # 4. hidden units off for a whole chunk
    with torch.inference_mode():
        active = [
            (torch.relu(first(model.posterior(x[i : i + 1]).sample((CHUNK,)))) > 0).flatten(0, 1).any(0).float().mean().item()
            for i in range(50)
        ]

    mean, sd, worst, speedup = anchor
    lines = [
        "# IS-NLL trials on the CPU",
        "",
        f"Command: `{command_line('is_trials.py', argv)}`",
        "",
        f"Machine: {machine(device)}. Variants at the suite defaults (784-400-20) trained {args.epochs} epochs on MNIST (seed 0).",
        "",
        "| measurement | result |",
        "|---|---|",
        *(
            f"| IS-NLL K = 5000, 20 test images, chunks of at most {rows:,} rows{' (the CPU default)' if rows == default else ''}, "
            f"decoder in {str(dtype)[6:]} | {time_taken:.2f} s |"
            for (rows, dtype), time_taken in chunk_seconds.items()
        ),
        *(
            f"| one 2,048-row chunk: decoder layer 400→784 in {str(dtype)[6:]}, oneDNN with a prepacked weight as vaebench "
            f"runs it / `nn.Linear` (torch's addmm{', under autocast' if dtype != torch.float32 else ''}) | "
            f"{packed * 1e3:.1f} ms / {plain * 1e3:.1f} ms |"
            for dtype, (packed, plain) in matmuls.items()
        ),
        f"| one 2,048-row chunk: softplus over its logits, summed | {softplus * 1e3:.1f} ms |",
        *(
            f"| one 2,048-row chunk of {str(dtype)[6:]} logits: Bernoulli log-likelihood, compiled as vaebench runs it "
            f"/ the same function eagerly | {fused * 1e3:.1f} ms / {eager * 1e3:.1f} ms |"
            for dtype, (fused, eager) in scoring.items()
        ),
        f"| bf16 anchored last matmul (not shipped) vs fp32, gaussian, K = 1000, 300 test images, same samples | "
        f"difference mean {mean:+.4f}, sd {sd:.4f}, max {worst:.3f} nats; {speedup:.2f}× the fp32 speed |",
        f"| hidden units active for some sample of a 2,048-sample chunk (50 test images) | mean {statistics.mean(active):.1%}, "
        f"range {min(active):.1%}–{max(active):.1%} |",
        "",
        f"## `--is-precision bfloat16` against float32: K = 1000, the first {args.images} test images",
        "",
        "Rounding: bfloat16 minus float32 -log p(x) per image, with the same latent samples. "
        "Sampling: float32 with fresh samples minus float32, per image: the estimator's own noise at this K. "
        "conditional is scored as -log p(x|y) with the true label.",
        "",
        "| variant | -log p(x), float32 | rounding: mean | rounding: sd | rounding: worst image | sampling: sd | bf16 speed |",
        "|---|---|---|---|---|---|---|",
        *precision_rows,
        "",
    ]
    return write_report(args.out, lines)


if __name__ == "__main__":
    sys.exit(run_script(main))
