"""Importance-sampled log-likelihood, top to bottom: chunk sizes, decoder precision, the
estimator, and the marginal over labels for label-conditioned models.

    log p(x) ~= log (1/K sum_k p(x, z_k) / r(z_k | x)),  z_k ~ r(z | x)

where r is the model's proposal (its posterior q(z|x) unless the model says otherwise).
Images x samples are decoded in bounded chunks and the weights combined with a
running logsumexp, so memory stays bounded for any K. The speed paths this uses
(oneDNN linears on a CPU, a compiled likelihood for large evaluations) live in
:mod:`vaebench.fast` and fall back to eager PyTorch.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor

from vaebench import fast
from vaebench.evaluation.context import chunks
from vaebench.models import proposal_of

CPU_CHUNK_BYTES = 16 * 2**20  # float32 values of a chunk's widest decoded layer on a CPU
GPU_CHUNK_ROWS = 65536

# The arithmetic of the decoder inside importance sampling. bfloat16 runs it under
# torch.autocast (bf16 matmuls, which pay on CPUs with AVX512_BF16 or AMX, and on GPUs);
# the likelihood, the weights and their logsumexp stay in float32. Opt-in, and
# recorded with every run (benchmarks/README.md gives its measured speed and error).
IS_PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def eval_rows(device: torch.device, row_values: int) -> int:
    """Decoded images per importance-sampling chunk, when one decoded image holds ``row_values``
    float32 values at its widest (:func:`widest_row`).

    On a CPU, as many as make 16 MiB at the widest layer: 5,349 MNIST images (784 values,
    wider than its 400-unit hidden layer), so K = 5000 takes one chunk per image. Besides
    the decoder, each chunk pays for sampling, the prior's and the proposal's log-densities
    and a logsumexp, small ops with a per-call cost, so fewer chunks are faster; but a chunk
    whose activations outgrow the caches runs at memory speed, and one whose buffers are
    each over glibc's mmap threshold pays page faults on every chunk. (Sized by the 64-value
    output alone, an 8x8 digits chunk with a 400-unit hidden layer held 100 MiB per
    activation, and IS-NLL took twice as long: benchmarks/README.md.) The size does not
    depend on the decoder's precision: from one seed both precisions draw the same latent
    samples, which the paired comparison of the two relies on. A GPU wants big launches.
    """
    if device.type == "cuda":
        return GPU_CHUNK_ROWS
    return max(1, CPU_CHUNK_BYTES // (row_values * 4))


def widest_row(model: torch.nn.Module, image_values: int) -> int:
    """Values one decoded image holds at its widest: the image, or the widest linear layer's
    output if wider (the model's layers are read from its ``nn.Linear`` modules)."""
    widths = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return max([image_values, *widths])


def decoding(dtype: torch.dtype, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a decoder runs in to decode in ``dtype``: nothing for float32, else autocast."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def chunk_plan(n: int, samples: int, max_rows: int) -> tuple[int, int]:
    """(images per chunk, samples per chunk): whole images when K fits, else equal parts of K."""
    image_chunk = max(1, min(n, max_rows // min(samples, max_rows)))
    sample_chunk = max(1, min(samples, max_rows // image_chunk))
    sample_chunk = math.ceil(samples / math.ceil(samples / sample_chunk))  # equal chunks: no small remainder
    return image_chunk, sample_chunk


@torch.inference_mode()
def importance_log_likelihood(
    model,
    x: Tensor,
    y: Tensor | None,
    index: Tensor | None,
    samples: int,
    max_rows: int | None = None,
    decode_dtype: torch.dtype = torch.float32,
    progress=None,
) -> Tensor:
    """log p(x) per example, estimated with ``samples`` importance samples from the model's proposal.

    At most ``max_rows`` decoded images per chunk (``None`` picks the size for ``x``'s
    device). ``decode_dtype`` below float32 runs ``model.likelihood`` under autocast; its
    ``log_prob`` must still return float32 (vaebench's likelihoods upcast the logits).
    ``progress(done, total)`` is called after each chunk of images.
    """
    n = x.shape[0]
    max_rows = max_rows or eval_rows(x.device, widest_row(model, math.prod(x.shape[1:])))
    with fast.compiling(n * samples):
        model = fast.with_prepacked_linears(model, x.device)
        image_chunk, sample_chunk = chunk_plan(n, samples, max_rows)
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
            if progress is not None:
                progress(s.stop, n)
    return log_px


def samples_per_label(samples: int, classes: int) -> int:
    """Importance samples per label when ``samples`` (y, z) pairs are stratified over ``classes`` labels."""
    return max(1, samples // classes)


def log_likelihoods(model, split, positions, samples: int, *, label_log_prior: Tensor | None = None,
                    max_rows: int | None = None, decode_dtype: torch.dtype = torch.float32, progress=None) -> dict[str, Tensor]:
    """Per-example ``log_px`` (and ``log_px_given_y`` for label-conditioned models), on the CPU.

    A label-conditioned model gives p(x|y); its marginal is log sum_y p(y) p(x|y), with
    ``label_log_prior`` = log p(y). Its latent is the pair (y, z), and ``samples`` counts
    those pairs, as it counts z for every other model: the proposal p(y) r(z|x, y) is
    sampled stratified over the C labels, ``samples // C`` samples each (at least 1), so
    every row of a table decodes the same number of images per test image.
    """
    if not getattr(model, "label_conditioned", False):
        return {"log_px": importance_log_likelihood(model, split.x, split.y, positions, samples, max_rows, decode_dtype, progress).cpu()}
    classes = label_log_prior.shape[0]
    samples = samples_per_label(samples, classes)
    per_class = []
    for c in range(classes):
        label = torch.full_like(split.y, c)
        step = None if progress is None else (lambda done, total, c=c: progress(c * total + done, classes * total))
        per_class.append(importance_log_likelihood(model, split.x, label, positions, samples, max_rows, decode_dtype, step).cpu())
    per_class = torch.stack(per_class, dim=1)  # [N, C]
    given_y = per_class.gather(1, split.y.cpu().unsqueeze(1)).squeeze(1)
    return {"log_px": torch.logsumexp(per_class + label_log_prior, dim=1), "log_px_given_y": given_y}
