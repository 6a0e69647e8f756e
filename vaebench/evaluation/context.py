"""Evaluation of one trained run: the metric interface, the context metrics read, and the loop.

A **metric** is an object with

* ``name`` and ``description``;
* ``columns``: a tuple of :class:`Column`, the values it adds to the leaderboard, each
  with its direction (lower or higher is better), unit and description;
* ``__call__(context) -> dict``: its values, keyed by column name (and any extra
  values to keep in the run's ``metrics.json``, such as per-class means).

A value that does not apply to the variant is ``None`` with a ``<column>_na`` entry
giving the reason; a metric never skips quietly. A metric that raises costs only its
own columns: they stay empty, the error is recorded in the run
(``metric_errors``), and the other metrics and the run complete. Artifacts (PNG,
CSV) go to ``context.run_dir``.
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from vaebench.atomic import jsonable
from vaebench.data import ImageData, Split
from vaebench.distributions.priors import frozen_priors

log = logging.getLogger("vaebench.evaluation")

DIRECTIONS = ("lower", "higher", "none")


@dataclass(frozen=True)
class Column:
    """One leaderboard column declared by a metric.

    ``direction`` says which way is better (``"none"`` for descriptive numbers such as a
    parameter count); ``unit`` is printed in the legend (``"nats"``, ``"images/s"``, ``""``);
    ``headline`` puts it in the main table; ``text`` marks a descriptive text column (the
    value every seed shares, or "mixed"); ``label`` is its short header.
    """

    name: str
    direction: str
    unit: str
    description: str
    label: str = ""
    headline: bool = False
    digits: int = 2
    text: bool = False

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"column {self.name!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")

    @property
    def header(self) -> str:
        return self.label or self.name

    def as_dict(self) -> dict:
        return asdict(self)


def columns_of(metric) -> tuple[Column, ...]:
    """A metric's declared columns (none for a metric that declares nothing)."""
    return tuple(getattr(metric, "columns", ()) or ())


def declarations(metric) -> dict[str, dict]:
    """A metric's columns as a record keeps them, each naming the metric (evaluate retires what it stops declaring)."""
    return {c.name: {**c.as_dict(), "metric": metric.name} for c in columns_of(metric)}


@dataclass
class EvalContext:
    """What a metric may read about a finished run."""

    model: Any
    data: ImageData
    run_dir: Path
    device: torch.device
    is_samples: int
    seed: int
    training: Any = None  # TrainingResult
    n_parameters: int = 0
    eval_batch_rows: int | None = None  # images x samples per IS chunk; None: importance.eval_rows for the model
    is_precision: str = "float32"  # a key of importance.IS_PRECISIONS: the decoder's arithmetic inside IS-NLL
    values: dict = field(default_factory=dict)  # what earlier metrics computed
    progress: Any = None  # progress(text) shows what the evaluation is doing (the progress display)
    settings: Any = None  # the run's RunSettings
    reference: dict | None = None  # the published result a reproduction names (see metrics/reference.py)

    def split(self, name: str, limit: int | None = None) -> tuple[Split, Tensor]:
        """A split (or ``limit`` of its examples, chosen with a fixed seed) and the positions used.

        The model's ``prepare_inference`` is called first, so a model without an
        encoder fits its posteriors for these examples.
        """
        whole = self.data.split(name)
        self.model.prepare_inference(name, whole.x, whole.y)
        positions = torch.arange(len(whole), device=whole.x.device)
        if limit is None or limit >= len(whole):
            return whole, positions
        generator = torch.Generator().manual_seed(4321)
        positions = torch.randperm(len(whole), generator=generator)[:limit].sort().values.to(whole.x.device)
        return Split(whole.x[positions], whole.y[positions]), positions

    def label_log_prior(self) -> Tensor:
        """log p(y) of a label-conditioned model: the training split's label frequencies, on the CPU."""
        counts = torch.bincount(self.data.train.y.cpu(), minlength=self.data.n_classes).double()
        return (counts / counts.sum()).log().float()

    def say(self, text: str) -> None:
        if self.progress is not None:
            self.progress(text)


def chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@torch.inference_mode()
def posterior_means(ctx: EvalContext, split: Split, positions: Tensor, batch: int = 4096) -> Tensor:
    """E_q[z | x] for every example, on the CPU."""
    means = []
    for s in chunks(len(split), batch):
        q = ctx.model.posterior(split.x[s], split.y[s], positions[s])
        means.append(q.mean.float().cpu())
    return torch.cat(means)


@dataclass
class Evaluation:
    """What :func:`evaluate` found: the values, the declared columns, the failures and the time."""

    values: dict
    columns: dict[str, dict]
    errors: dict[str, str]
    seconds: float


def evaluate(ctx: EvalContext, metrics: list, on_metric=None, reserved: frozenset[str] = frozenset()) -> Evaluation:
    """Run ``metrics`` in order, each isolated from the others' failures.

    ``on_metric(name)`` is called as each metric starts (the progress display shows it).
    A value a metric returns under another metric's column, or under a name in ``reserved``
    (what the harness records itself: settings, training's measurements, the run's identity),
    is dropped: silently when the metric declares that name as its own column (throughput shows
    training's own figures), else with an error naming the key and its owner.
    """
    ctx.model.eval()
    start = time.perf_counter()
    errors: dict[str, str] = {}
    columns: dict[str, dict] = {}
    prepare = getattr(ctx.model, "prepare_evaluation", None)
    if prepare is not None:
        torch.manual_seed(zlib.crc32(f"prepare:{ctx.seed}".encode()))
        with torch.inference_mode():
            ctx.values.update(prepare(ctx.data, ctx.is_samples) or {})
    with frozen_priors(ctx.model):  # a learned prior is built once for every metric, not at every step
        _run_metrics(ctx, metrics, columns, errors, on_metric, reserved)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    return Evaluation(ctx.values, columns, errors, time.perf_counter() - start)


def _own_values(metric, values, owners: dict[str, str], reserved: frozenset[str], errors: dict) -> dict:
    """What ``metric`` returned, checked: values under another metric's column or a name the harness
    records are dropped (see :func:`evaluate`); a value JSON cannot hold, a number that is not finite,
    or text in a numeric column becomes n/a, as do all its columns when it returns none of them (a
    column that does not apply to a model may be left out). Each is the metric's error."""
    if not isinstance(values, dict):
        raise TypeError(f"returned a {type(values).__name__}, not a dict of values by column name")
    declared = {c.name: c for c in columns_of(metric)}
    kept, problems = {}, []
    for key, value in values.items():
        column = key.removesuffix("_na")
        owner = owners.get(column)
        if owner is not None and owner != metric.name:
            problems.append(f"'{key}' (metric '{owner}' owns it): dropped")
            continue
        if column in reserved:
            if column not in declared:
                problems.append(f"'{key}' (the harness records it): dropped")
            continue
        try:  # as metrics.json will hold it (write_json's conversions: scalar tensors and numpy numbers)
            value = json.loads(json.dumps(value, default=jsonable))
        except (TypeError, ValueError, RuntimeError):
            problems.append(f"'{key}' as a {type(value).__name__}, which JSON cannot hold: n/a")
            value = None
        if key in declared and not declared[key].text and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"'{key}' as {type(value).__name__} in a numeric column: n/a")
                value = None
            elif not math.isfinite(value):
                problems.append(f"'{key}' as {value}: n/a")
                value = None
        kept[key] = value
    if declared and not any(name in values or f"{name}_na" in values for name in declared):  # some may not apply; none is a fault
        problems.append(f"none of its columns ({', '.join(declared)})")
        kept.update({name: None for name in declared})
    if problems:
        reason = f"returned {'; '.join(problems)}"
        errors[metric.name] = reason
        for name in declared:
            if kept.get(name) is None and name in kept and not kept.get(f"{name}_na"):
                kept[f"{name}_na"] = f"metric '{metric.name}' {reason}"
    return kept


def _run_metrics(ctx: EvalContext, metrics: list, columns: dict, errors: dict, on_metric, reserved: frozenset[str]) -> None:
    owners: dict[str, str] = {}  # column -> the first metric that declares it (the registry refuses a second)
    for metric in metrics:
        for column in columns_of(metric):
            owners.setdefault(column.name, metric.name)
    for metric in metrics:
        declared = columns_of(metric)
        columns.update(declarations(metric))
        if on_metric is not None:
            on_metric(metric.name)
        # each metric draws from its own seed: its values do not depend on which metrics ran
        # before it, so `vaebench evaluate` reproduces a run's values exactly (on a CPU)
        torch.manual_seed(zlib.crc32(f"{metric.name}:{ctx.seed}".encode()))
        began = time.perf_counter()
        try:
            with torch.inference_mode(False):
                values = metric(ctx)
            ctx.values.update(_own_values(metric, values, owners, reserved, errors))
        except (Exception, SystemExit) as exc:  # a broken metric (one that raises, or exits) costs only its own columns
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".rstrip(": ")
            errors[metric.name] = reason
            log.debug("metric %s failed:\n%s", metric.name, traceback.format_exc())
            for column in declared:
                ctx.values[column.name] = None
                ctx.values[f"{column.name}_na"] = f"metric '{metric.name}' failed: {reason}"
        log.debug("metric %s: %.2f s", metric.name, time.perf_counter() - began)
