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
from dataclasses import dataclass

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


def fifth(counts: Tensor) -> Tensor:
    """The samples per image of the K/5 estimate drawn from the same samples: the first fifth (at least 1)."""
    return torch.clamp(counts // 5, min=1)


def image_chunks(counts: list[int], max_rows: int):
    """(positions, samples per chunk) covering images in ascending order of their sample counts.

    A chunk holds whole images while their largest count times their number fits ``max_rows``;
    an image whose count alone exceeds it is its own chunk, its samples split into equal
    parts. With equal counts this is :func:`chunk_plan`'s plan."""
    order = sorted(range(len(counts)), key=counts.__getitem__)
    i = 0
    while i < len(order):
        largest = counts[order[i]]
        if largest > max_rows:
            yield order[i: i + 1], chunk_plan(1, largest, max_rows)[1]
            i += 1
            continue
        j = i + 1
        while j < len(order) and (j - i + 1) * counts[order[j]] <= max_rows:
            j += 1
        yield order[i:j], counts[order[j - 1]]
        i = j


@dataclass
class Sums:
    """Per image, the log-sums of its importance weights w: log sum w, log sum w^2, and log sum w over
    the first fifth of its samples, with the sample counts they cover."""

    log_sum: Tensor
    log_sum_sq: Tensor
    log_sum_fifth: Tensor
    counts: Tensor

    def log_mean(self) -> Tensor:
        return self.log_sum - self.counts.log()

    def log_mean_fifth(self) -> Tensor:
        return self.log_sum_fifth - fifth(self.counts).log()


@torch.inference_mode()
def weight_sums(
    model,
    x: Tensor,
    y: Tensor | None,
    index: Tensor | None,
    counts: Tensor,
    max_rows: int | None = None,
    decode_dtype: torch.dtype = torch.float32,
    progress=None,
) -> Sums:
    """The importance weights' log-sums per image, ``counts[i]`` samples for image i from the model's proposal.

    At most ``max_rows`` decoded images per chunk (``None`` picks the size for ``x``'s device);
    images are grouped by their counts, so unequal counts waste little. ``decode_dtype`` below
    float32 runs ``model.likelihood`` under autocast; its ``log_prob`` must still return float32
    (vaebench's likelihoods upcast the logits). ``progress(done, total)`` follows the images."""
    n = x.shape[0]
    counts = counts.to(torch.long).cpu()
    max_rows = max_rows or eval_rows(x.device, widest_row(model, math.prod(x.shape[1:])))
    sums = Sums(*(torch.full((n,), -math.inf, device=x.device) for _ in range(3)), counts.to(x.device, torch.float32))
    wanted = counts.tolist()
    firsts = fifth(counts).tolist()
    done = 0
    with fast.compiling(int(counts.sum())):
        model = fast.with_prepacked_linears(model, x.device)
        prior = model.prior.distribution()
        for positions, sample_chunk in image_chunks(wanted, max_rows):
            rows = torch.tensor(positions, device=x.device)
            xb = x[rows]
            yb = None if y is None else y[rows]
            q = proposal_of(model, xb, yb, None if index is None else index[rows])
            need = torch.tensor([wanted[i] for i in positions], device=x.device)
            need_fifth = torch.tensor([firsts[i] for i in positions], device=x.device)
            total, squares, first = (torch.full((len(positions),), -math.inf, device=x.device) for _ in range(3))
            for k in chunks(int(need.max()), sample_chunk):
                z = q.sample((k.stop - k.start,))  # [S, B, D]
                with decoding(decode_dtype, xb.device):
                    likelihood = model.likelihood(z, yb)
                log_px_given_z = likelihood.log_prob(xb)
                if log_px_given_z.dtype != z.dtype:
                    raise ValueError(
                        f"{type(likelihood).__name__}.log_prob returned {log_px_given_z.dtype} from a decoder run in "
                        f"{decode_dtype}; cast the decoder's output to {z.dtype} before scoring, or use --is-precision float32"
                    )
                log_w = log_px_given_z + prior.log_prob(z) - q.log_prob(z)  # [S, B]
                drawn = torch.arange(k.start, k.stop, device=x.device).unsqueeze(1)
                if k.stop > int(need.min()):  # some images of the chunk need fewer samples: theirs beyond are not counted
                    log_w = log_w.masked_fill(drawn >= need, -math.inf)
                total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
                squares = torch.logaddexp(squares, torch.logsumexp(2 * log_w, dim=0))
                if k.start < int(need_fifth.max()):
                    first = torch.logaddexp(first, torch.logsumexp(log_w.masked_fill(drawn >= need_fifth, -math.inf), dim=0))
            sums.log_sum[rows], sums.log_sum_sq[rows], sums.log_sum_fifth[rows] = total, squares, first
            done += len(positions)
            if progress is not None:
                progress(done, n)
    return sums


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
    """log p(x) per example, estimated with ``samples`` importance samples from the model's proposal
    (:func:`weight_sums` with equal counts; its other arguments are explained there)."""
    counts = torch.full((x.shape[0],), samples, dtype=torch.long)
    return weight_sums(model, x, y, index, counts, max_rows, decode_dtype, progress).log_mean()


def samples_per_label(samples: int, classes: int) -> int:
    """Importance samples per label when ``samples`` (y, z) pairs are stratified over ``classes`` labels."""
    return max(1, samples // classes)


PILOT_SHARE = 50  # the pilot takes K / 50 of an image's samples: 100 of K = 5000, 10 per MNIST label


@dataclass(frozen=True)
class LabelAllocation:
    """How a label-conditioned model's K samples of (y, z) are spread over the C labels of each image.

    A pilot of ``pilot`` samples per label estimates p(y|x); the other K - C * pilot samples
    go to the labels in proportion to it, each label getting at least ``floor``. The pilot's
    samples decide the allocation and are not used in the estimate, so the allocation does not
    depend on the samples it weights and the estimate of p(x) stays unbiased. When K is too small
    for a pilot and a floor (K < 3C), the samples are stratified, K // C per label."""

    samples: int
    classes: int

    @property
    def pilot(self) -> int:
        return max(1, self.samples // (PILOT_SHARE * self.classes))

    @property
    def floor(self) -> int:
        return self.pilot

    @property
    def stratified(self) -> bool:
        return self.samples < 3 * self.classes

    def describe(self) -> str:
        if self.stratified:
            return f"stratified: K/C = {samples_per_label(self.samples, self.classes)} per label"
        return (f"by a pilot p(y|x) ({self.pilot} samples per label, not reused), the other "
                f"{self.samples - self.classes * self.pilot} in proportion to it, at least {self.floor} per label")

    def counts(self, log_posterior: Tensor) -> Tensor:
        """[N, C] samples per image and label from the pilot's log p(y|x) [N, C]: the floor, then the
        rest by largest remainders, so each row sums to K - C * pilot."""
        rest = self.samples - self.classes * (self.pilot + self.floor)
        share = torch.softmax(log_posterior.double(), dim=1) * rest  # normalised here, whatever rounding left
        counts = share.floor().long()
        short = rest - counts.sum(1)  # [N], each < C
        order = (share - counts).argsort(dim=1, descending=True)
        extra = (torch.arange(self.classes).unsqueeze(0) < short.unsqueeze(1)).long()
        counts.scatter_add_(1, order, extra)
        return counts + self.floor


def log_likelihoods(model, split, positions, samples: int, *, label_log_prior: Tensor | None = None,
                    max_rows: int | None = None, decode_dtype: torch.dtype = torch.float32, progress=None) -> dict[str, Tensor]:
    """Per example, on the CPU: ``log_px``, ``log_px_fifth`` (the same estimate from the first fifth of the
    samples) and ``ess`` (the effective sample size of the estimate's weights, (sum a)^2 / sum a^2);
    for label-conditioned models also ``log_px_given_y``.

    A label-conditioned model gives p(x|y); its marginal is log sum_y p(y) p(x|y), with
    ``label_log_prior`` = log p(y). Its latent is the pair (y, z), and ``samples`` counts those
    pairs, as it counts z for every other model, so every row of a table decodes the same number
    of images per test image: :class:`LabelAllocation` spreads them over the labels.
    """
    n = split.x.shape[0]
    if not getattr(model, "label_conditioned", False):
        sums = weight_sums(model, split.x, split.y, positions, torch.full((n,), samples, dtype=torch.long), max_rows, decode_dtype, progress)
        return {"log_px": sums.log_mean().cpu(), "log_px_fifth": sums.log_mean_fifth().cpu(),
                "ess": (2 * sums.log_sum - sums.log_sum_sq).exp().cpu()}
    classes = label_log_prior.shape[0]
    allocation = LabelAllocation(samples, classes)
    stages = 1 if allocation.stratified else 2

    def per_label(counts: Tensor, stage: int) -> list[Sums]:
        out = []
        for c in range(classes):
            label = torch.full_like(split.y, c)
            step = None if progress is None else (
                lambda done, total, c=c: progress(((stage * classes) + c) * total + done, stages * classes * total))
            out.append(weight_sums(model, split.x, label, positions, counts[:, c], max_rows, decode_dtype, step))
        return out

    if allocation.stratified:
        counts = torch.full((n, classes), samples_per_label(samples, classes), dtype=torch.long)
    else:
        pilot = per_label(torch.full((n, classes), allocation.pilot, dtype=torch.long), 0)
        log_joint = torch.stack([p.log_mean().cpu() for p in pilot], dim=1) + label_log_prior
        counts = allocation.counts(log_joint - torch.logsumexp(log_joint, dim=1, keepdim=True))
    sums = per_label(counts, stages - 1)
    log_prior = label_log_prior.unsqueeze(0)
    means = torch.stack([s.log_mean().cpu() for s in sums], dim=1)  # [N, C] log p(x|y)
    means_fifth = torch.stack([s.log_mean_fifth().cpu() for s in sums], dim=1)
    log_counts = counts.double().log().float()
    # each sample's share of the estimate is a = p(y) w / n_y: ESS = (sum a)^2 / sum a^2
    log_a = torch.logsumexp(log_prior - log_counts + torch.stack([s.log_sum.cpu() for s in sums], dim=1), dim=1)
    log_a_sq = torch.logsumexp(2 * (log_prior - log_counts) + torch.stack([s.log_sum_sq.cpu() for s in sums], dim=1), dim=1)
    given_y = means.gather(1, split.y.cpu().unsqueeze(1)).squeeze(1)
    return {"log_px": torch.logsumexp(means + log_prior, dim=1), "log_px_given_y": given_y,
            "log_px_fifth": torch.logsumexp(means_fifth + log_prior, dim=1), "ess": (2 * log_a - log_a_sq).exp()}
