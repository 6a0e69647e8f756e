"""Importance-sampled negative log-likelihood with the variant's own proposal q(z|x).

    -log p(x) ~= -log (1/K sum_k p(x, z_k) / q(z_k|x)),  z_k ~ q(z|x)

computed in chunks of images x samples with a running logsumexp, so memory
stays bounded for any K. For label-conditioned models the metric reports
-log p(x|y) and the marginal -log sum_y p(y) p(x|y), with p(y) the training
label frequencies; ``is_nll`` is the marginal, comparable with the other rows.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import Tensor

from vaebench.atomic import write_atomic
from vaebench.evaluation import IS_PRECISIONS, EvalContext, chunks, decoding, eval_rows
from vaebench.models import proposal_of
from vaebench.prepacked_linear import with_prepacked_linears

TRAIN_SUBSET = 1000  # train-vs-test comparison uses this many fixed training examples


@torch.inference_mode()
def importance_log_likelihood(
    model,
    x: Tensor,
    y: Tensor | None,
    index: Tensor | None,
    samples: int,
    max_rows: int | None = None,
    decode_dtype: torch.dtype = torch.float32,
) -> Tensor:
    """log p(x) per example, estimated with ``samples`` importance samples from q(z|x).

    At most ``max_rows`` decoded images per chunk, the samples of an image split into
    equal chunks; ``None`` picks the size for ``x``'s device.
    ``decode_dtype`` below float32 runs ``model.likelihood`` under autocast; its
    ``log_prob`` must still return float32 (vaebench's likelihoods upcast the logits).
    On a CPU the model's ``nn.Linear`` layers run through oneDNN with their weights
    packed once for this call (:mod:`vaebench.prepacked_linear`).
    """
    model = with_prepacked_linears(model, x.device)
    max_rows = max_rows or eval_rows(x.device, math.prod(x.shape[1:]))
    n = x.shape[0]
    image_chunk = max(1, min(n, max_rows // min(samples, max_rows)))
    sample_chunk = max(1, min(samples, max_rows // image_chunk))
    sample_chunk = math.ceil(samples / math.ceil(samples / sample_chunk))  # equal chunks: no small remainder
    prior = model.prior.distribution()
    log_px = torch.empty(n, device=x.device)
    for s in chunks(n, image_chunk):
        xb = x[s]
        yb = None if y is None else y[s]
        q = proposal_of(model, xb, yb, None if index is None else index[s])
        total = torch.full((xb.shape[0],), -math.inf, device=xb.device)
        for k in chunks(samples, sample_chunk):
            z = q.sample((k.stop - k.start,))  # [S, B, D]
            with decoding(decode_dtype, xb.device):
                likelihood = model.likelihood(z, yb)
            log_px_given_z = likelihood.log_prob(xb)
            if log_px_given_z.dtype != z.dtype:
                raise ValueError(
                    f"{type(likelihood).__name__}.log_prob returned {log_px_given_z.dtype} from a decoder run in "
                    f"{decode_dtype}; cast the decoder's output to {z.dtype} before scoring, or use --is-precision float32"
                )
            log_w = log_px_given_z + prior.log_prob(z) - q.log_prob(z)
            total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
        log_px[s] = total - math.log(samples)
    return log_px


def log_likelihoods(ctx: EvalContext, split, positions) -> dict[str, Tensor]:
    """Per-example log p(x) (and log p(x|y) for label-conditioned models), on the CPU."""
    model, k, rows, dtype = ctx.model, ctx.is_samples, ctx.eval_batch_rows, IS_PRECISIONS[ctx.is_precision]
    if not getattr(model, "label_conditioned", False):
        return {"log_px": importance_log_likelihood(model, split.x, split.y, positions, k, rows, dtype).cpu()}
    log_prior = ctx.label_log_prior()
    per_class = []
    for c in range(ctx.data.n_classes):
        label = torch.full_like(split.y, c)
        per_class.append(importance_log_likelihood(model, split.x, label, positions, k, rows, dtype).cpu())
    per_class = torch.stack(per_class, dim=1)  # [N, C]
    given_y = per_class.gather(1, split.y.cpu().unsqueeze(1)).squeeze(1)
    return {"log_px": torch.logsumexp(per_class + log_prior, dim=1), "log_px_given_y": given_y}


class ImportanceSampledNLL:
    name = "is_nll"
    description = "importance-sampled -log p(x) on the test split (K = --is-samples), per class and train vs test"

    def __call__(self, ctx: EvalContext) -> dict:
        values: dict = {
            "is_samples": ctx.is_samples,
            "is_precision": ctx.is_precision,
            "is_proposal": getattr(ctx.model, "proposal_label", "q(z|x)"),
        }
        frames = []
        for split_name, limit in (("test", None), ("train", TRAIN_SUBSET)):
            split, positions = ctx.split(split_name, limit)
            result = log_likelihoods(ctx, split, positions)
            frame = pd.DataFrame(
                {"split": split_name, "index": positions.cpu().numpy(), "label": split.y.cpu().numpy()}
            )
            for key, tensor in result.items():
                frame["nll" + key[len("log_px"):]] = (-tensor).numpy()
            frames.append(frame)
            suffix = "" if split_name == "test" else "_train"
            values["is_nll" + suffix] = float(frame["nll"].mean())
            if "nll_given_y" in frame:
                values["is_nll_given_y" + suffix] = float(frame["nll_given_y"].mean())
            if split_name == "test":
                for label, mean in frame.groupby("label")["nll"].mean().items():
                    values[f"is_nll_class_{label}"] = float(mean)
        values["is_nll_train_minus_test"] = values["is_nll_train"] - values["is_nll"]
        table = pd.concat(frames, ignore_index=True)
        path = ctx.run_dir / "is_nll_per_example.csv"
        write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))
        return values
