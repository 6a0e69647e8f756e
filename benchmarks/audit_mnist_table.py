"""Audit a committed leaderboard's likelihood columns from its saved weights, with this script's own loops.

    python benchmarks/audit_mnist_table.py results/mnist-standard --data-dir ../shared/data [--seeds 0] [--images 2000]

It measures, independently of the metrics that wrote the table (plain loops over images, the
model's distributions, torch's logsumexp), what issue #30 found:

* **ae-gmm's -ELBO under each q the variant offers**: the encoder-centred Gaussian alone at each
  scale, the defensive mixtures, the prior alone; on the validation split (where a choice may be
  made) and the test split. Any q gives a valid bound; the table's should be the best on validation.
* **conditional's marginal IS-NLL**: K/C samples per label (stratified) against all K samples
  given to the true label (log p(y) + log p(x|y), itself an upper bound on -log p(x)), on
  ``--images`` test images; and, when vaebench's estimator offers it, its allocation by a pilot p(y|x).
* **Convergence in K**: IS-NLL at K/5 and K from the same samples, and the effective sample size,
  on ``--images`` test images of every run.

Each figure is a mean over images with its standard error (sample std / sqrt(n)), in nats.
"""

from __future__ import annotations

import argparse
import math
import zlib
from pathlib import Path

import torch

from vaebench.execution.reevaluate import load_run
from vaebench.plugin_manager import load_plugins

K = 5000
SUBSET_SEED = 4321


def subset(split, n: int):
    pick = torch.randperm(len(split), generator=torch.Generator().manual_seed(SUBSET_SEED))[:n].sort().values
    return split.x[pick], split.y[pick], pick


@torch.inference_mode()
def log_weights(model, x, y, index, samples: int, q=None, chunk: int = 2500) -> torch.Tensor:
    """log p(x, z_k) - log r(z_k|x) for ``samples`` draws per image from r (the model's proposal), [samples, B]."""
    prior = model.prior.distribution()
    r = q if q is not None else model.proposal(x, y, index)
    out = []
    for start in range(0, samples, chunk):
        z = r.sample((min(chunk, samples - start),))
        out.append(model.likelihood(z, y).log_prob(x) + prior.log_prob(z) - r.log_prob(z))
    return torch.cat(out)


def mean_se(values: torch.Tensor) -> str:
    values = values.double()
    return f"{values.mean().item():.3f} ± {values.std().item() / math.sqrt(len(values)):.3f}"


@torch.inference_mode()
def neg_elbo(model, x, y, index, q_of) -> torch.Tensor:
    """One-sample -ELBO per image under q_of(x)."""
    values = []
    for s in range(0, len(x), 1000):
        xb = x[s: s + 1000]
        q = q_of(xb)
        z = q.sample()
        values.append(-(model.likelihood(z, None).log_prob(xb) + model.prior.distribution().log_prob(z) - q.log_prob(z)))
    return torch.cat(values)


def audit_ae_gmm(run) -> list[str]:
    from vaebench.plugins.ae_gmm import PROPOSAL_SCALES, PROPOSAL_WEIGHTS

    model = run.model
    torch.manual_seed(zlib.crc32(f"prepare:{run.seed}".encode()))
    chosen = model.prepare_evaluation(run.data, K)
    lines = [f"  IS proposal chosen on validation: w = {chosen['proposal_weight']}, s = {chosen['proposal_scale']}",
             "  | q | -ELBO validation | -ELBO test |", "  |---|---|---|"]
    saved = model.proposal_weight, model.proposal_scale
    candidates = [(1.0, s) for s in PROPOSAL_SCALES] + [(w, s) for w in PROPOSAL_WEIGHTS for s in PROPOSAL_SCALES] + [(0.0, 1.0)]
    for weight, scale in candidates:
        model.proposal_weight, model.proposal_scale = weight, scale
        row = []
        for split in (run.data.val, run.data.test):
            torch.manual_seed(0)
            row.append(mean_se(neg_elbo(model, split.x, None, None, lambda xb: model.proposal(xb))))
        label = "prior alone" if weight == 0 else f"Gaussian alone, s = {scale:g}" if weight == 1 else f"{weight:g} Gaussian (s = {scale:g}) + {1 - weight:g} prior"
        lines.append(f"  | {label} | {row[0]} | {row[1]} |")
    model.proposal_weight, model.proposal_scale = saved
    return lines


def audit_conditional(run, images: int) -> list[str]:
    model, data = run.model, run.data
    x, y, _ = subset(data.test, images)
    counts = torch.bincount(data.train.y.cpu(), minlength=data.n_classes).double()
    log_py = (counts / counts.sum()).log()
    classes = data.n_classes
    stratified, true_only = [], []
    torch.manual_seed(0)
    for i in range(len(x)):
        xi = x[i: i + 1]
        per_label = torch.stack([
            torch.logsumexp(log_weights(model, xi, torch.full((1,), c), None, K // classes), 0) - math.log(K // classes)
            for c in range(classes)]).squeeze(1).double()
        stratified.append(-torch.logsumexp(per_label + log_py, 0))
        given = torch.logsumexp(log_weights(model, xi, y[i: i + 1], None, K), 0).double() - math.log(K)
        true_only.append(-(given.squeeze() + log_py[y[i]]))
    stratified, true_only = torch.stack(stratified), torch.stack(true_only)
    lines = [f"  {len(x)} test images, K = {K}",
             f"  stratified (K/{classes} per label): {mean_se(stratified)}",
             f"  true label only, all K (an upper bound on -log p(x)): {mean_se(true_only)}",
             f"  stratified - true label only: {mean_se(stratified - true_only)}"]
    try:
        from vaebench.evaluation.importance import log_likelihoods
        from vaebench.data import Split
    except ImportError:
        return lines
    torch.manual_seed(0)
    result = log_likelihoods(model, Split(x, y), None, K, label_log_prior=log_py.float())
    allocated = -result["log_px"].double()
    lines += [f"  vaebench's estimator (is_nll, as the table computes it now): {mean_se(allocated)}",
              f"  vaebench's - true label only: {mean_se(allocated - true_only)}"]
    return lines


def audit_k(run, images: int) -> str:
    model = run.model
    x, y, index = subset(run.data.test, images)
    if getattr(model, "label_conditioned", False):
        return "  (label-conditioned: see the conditional audit)"
    if hasattr(model, "prepare_evaluation"):
        torch.manual_seed(zlib.crc32(f"prepare:{run.seed}".encode()))
        model.prepare_evaluation(run.data, K)
    model.prepare_inference("test", run.data.test.x, run.data.test.y)
    torch.manual_seed(0)
    at_k, at_fifth, ess = [], [], []
    for s in range(0, len(x), 4):
        log_w = log_weights(model, x[s: s + 4], y[s: s + 4], index[s: s + 4], K)
        at_k.append(-(torch.logsumexp(log_w, 0) - math.log(K)))
        at_fifth.append(-(torch.logsumexp(log_w[: K // 5], 0) - math.log(K // 5)))
        ess.append(torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)))
    at_k, at_fifth, ess = torch.cat(at_k), torch.cat(at_fifth), torch.cat(ess)
    return (f"  IS-NLL at K = {K}: {mean_se(at_k)}; at K/5 = {K // 5}: {mean_se(at_fifth)}; K/5 - K: {mean_se(at_fifth - at_k)}; "
            f"ESS mean {ess.mean().item():.0f}, median {ess.median().item():.0f} of {K}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--images", type=int, default=2000, help="test images for the K audit")
    parser.add_argument("--conditional-images", type=int, default=300)
    parser.add_argument("--runs", nargs="+", help="runs to audit (default: every run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    plugins = load_plugins()
    cache: dict = {}
    for folder in sorted(args.out.glob("runs/*/seed-*")):
        name, seed = folder.parent.name, int(folder.name.split("-")[1])
        if seed not in args.seeds or (args.runs and name not in args.runs):
            continue
        run = load_run(folder, plugins, args.data_dir, cache=cache)
        print(f"{name} seed {seed} (table: -ELBO {run.record.get('neg_elbo'):.2f}, IS-NLL {run.record.get('is_nll'):.2f})", flush=True)
        if name == "ae-gmm":
            print("\n".join(audit_ae_gmm(run)), flush=True)
        if getattr(run.model, "label_conditioned", False):
            print("\n".join(audit_conditional(run, args.conditional_images)), flush=True)
        print(audit_k(run, args.images), flush=True)


if __name__ == "__main__":
    main()
