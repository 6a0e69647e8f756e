"""The runner: every (variant, seed) of a suite trained and evaluated under the same budget.

One folder per run, ``<out>/runs/<variant>/seed-<n>/``, holding ``config.json``,
``checkpoint.pt`` (each epoch), ``model.safetensors``, ``history.csv``,
``metrics.json`` and PNGs. A run that raises or goes non-finite is recorded
as failed with its reason, and the sweep goes on. ``resume`` keeps finished
runs and continues unfinished ones from their last checkpoint.
"""

from __future__ import annotations

import logging
import platform
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from vaebench import __version__
from vaebench.atomic import WEIGHTS_FILE, save_weights, write_atomic, write_json
from vaebench.data import prepare
from vaebench.errors import TrainingFailure, UsageError
from vaebench.evaluation import EvalContext, evaluate
from vaebench.plugin_manager import Plugins
from vaebench.results import METRICS_FILE, combined_figure, leaderboard, run_records, write_leaderboard
from vaebench.suite import Suite, resolve_device
from vaebench.training import SilentReporter, train
from vaebench.variant import BuildContext, count_parameters

log = logging.getLogger("vaebench.runner")


@dataclass
class SweepResult:
    board: pd.DataFrame
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    trained: list[tuple[str, int]] = field(default_factory=list)
    kept: list[tuple[str, int]] = field(default_factory=list)


def check_out_dir(out: Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder (it is created if missing)")
    return out


def validate(suite: Suite, plugins: Plugins):
    """Resolve every name against the registry before anything is trained."""
    registry = plugins.registry
    if not suite.variants:
        raise UsageError("no variant given; name variants or pass --all (see `vaebench list`)")
    variants = [registry.get("variant", name) for name in suite.variants]
    spec = registry.get("dataset", suite.dataset)
    names = suite.metrics if suite.metrics is not None else registry.names("metric")
    metrics = [registry.get("metric", name) for name in names]
    for name, overrides in suite.options.items():
        if name not in suite.variants:
            raise UsageError(f"options given for variant '{name}', which is not in this suite; add it or drop the options")
    options = {v.name: v.resolve_options(suite.options.get(v.name, {})) for v in variants}
    return variants, spec, metrics, options


@dataclass
class Plan:
    """A validated suite with its data loaded: nothing can be wrong with the input any more."""

    suite: Suite
    out: Path
    resume: bool
    variants: list
    metrics: list
    options: dict
    data: object
    device: torch.device


def plan(suite: Suite, plugins: Plugins, out: Path, resume: bool = False) -> Plan:
    """Check every input (names, numbers, device, data, --out) before anything is trained."""
    out = check_out_dir(out)
    variants, spec, metrics, options = validate(suite, plugins)
    device = resolve_device(suite.device)
    if not resume and any(
        (out / "runs" / v.name / f"seed-{s}" / METRICS_FILE).exists() for v in variants for s in suite.seeds
    ):
        raise UsageError(f"{out} already holds runs of this suite; pass --resume to keep them and finish the rest, or choose another --out")
    data = prepare(spec, suite.data_dir, suite.binarization, device)
    if suite.settings.batch_size > len(data.train):
        raise UsageError(
            f"--batch-size {suite.settings.batch_size} is larger than the training set ({len(data.train)} images); use a smaller batch"
        )
    return Plan(suite, out, resume, variants, metrics, options, data, device)


def execute(p: Plan, reporter=None) -> SweepResult:
    """Train and evaluate every run of the plan, then write the leaderboard and combined figures."""
    reporter = reporter or SilentReporter()
    result = SweepResult(board=pd.DataFrame())
    for variant in p.variants:
        for seed in p.suite.seeds:
            run_dir = p.out / "runs" / variant.name / f"seed-{seed}"
            done = run_dir / METRICS_FILE
            if p.resume and done.exists() and _status(done) == "ok":
                result.kept.append((variant.name, seed))
                continue
            reason = run_one(p.suite, variant, p.options[variant.name], p.data, p.metrics, seed, p.device, run_dir, reporter, p.resume)
            result.trained.append((variant.name, seed))
            if reason is not None:
                result.failures.append((variant.name, seed, reason))
    board = leaderboard(run_records(p.out))
    write_leaderboard(p.out, board)
    combined_figure(p.out)
    combined_figure(p.out, "reconstructions.png")
    result.board = board
    return result


def run_suite(suite: Suite, plugins: Plugins, out: Path, resume: bool = False, reporter=None) -> SweepResult:
    return execute(plan(suite, plugins, out, resume), reporter)


def _status(path: Path) -> str:
    import json

    try:
        return json.loads(path.read_text()).get("status", "")
    except (OSError, ValueError):
        return ""


def _selection(select_epoch: str, recipe) -> str:
    """How the evaluated epoch was chosen, in words for the results row."""
    if select_epoch == "last":
        return "last epoch"
    if recipe.validation is None:
        return f"last epoch ({recipe.no_validation_reason or 'no validation criterion'})"
    return f"best {recipe.validation.name}"


def run_one(suite, variant, options, data, metrics, seed, device, run_dir: Path, reporter, resume) -> str | None:
    """Train and evaluate one run; return None on success or the failure's reason."""
    run_name = f"{variant.name} seed {seed}"
    started = time.perf_counter()
    record = {
        "variant": variant.name,
        "seed": seed,
        "device": str(device),
        **suite.describe(),
        **{k: v for k, v in data.describe().items() if k != "dataset"},
        "dataset": data.name,
        "options": options,
        "comparisons": dict(getattr(variant, "comparisons", {}) or {}),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / METRICS_FILE).unlink(missing_ok=True)
    context = None
    try:
        torch.manual_seed(seed)
        recipe = variant.build(
            BuildContext(
                settings=suite.settings,
                x_dim=data.dim,
                n_classes=data.n_classes,
                n_train=len(data.train),
                epochs=suite.epochs,
                options=options,
                dataset=data.name,
            )
        )
        record.update(latent=recipe.latent, n_parameters=count_parameters(recipe.model))
        write_json(
            run_dir / "config.json",
            {
                **record,
                "objective": recipe.objective.describe(),
                "grad_clip": recipe.grad_clip,
                "note": recipe.note,
                "variant_description": variant.description,
                "reference": variant.reference,
                "vaebench_version": __version__,
                "torch_version": torch.__version__,
                "python": platform.python_version(),
            },
        )
        training = train(
            recipe,
            data,
            epochs=suite.epochs,
            batch_size=suite.settings.batch_size,
            lr=suite.settings.lr,
            optimizer=suite.settings.optimizer,
            seed=seed,
            device=device,
            run_dir=run_dir,
            run_name=run_name,
            reporter=reporter,
            patience=suite.patience,
            resume=resume,
            select_epoch=suite.select_epoch,
        )
        history = pd.DataFrame(training.history)
        write_atomic(run_dir / "history.csv", lambda tmp: history.to_csv(tmp, index=False))
        record.update(
            epochs_run=training.epochs_run,
            best_epoch=training.best_epoch,
            selected_epoch=training.selected_epoch,
            selection=_selection(suite.select_epoch, recipe),
            stopped_early=training.stopped_early,
            resumed_from_epoch=training.resumed_from_epoch,
        )
        if recipe.post_training is not None:
            record.update(recipe.post_training(recipe.model, data))
        save_weights(run_dir / WEIGHTS_FILE, recipe.model)
        context = EvalContext(
            model=recipe.model,
            data=data,
            run_dir=run_dir,
            device=device,
            is_samples=suite.is_samples,
            is_precision=suite.is_precision,
            seed=seed,
            training=training,
            n_parameters=record["n_parameters"],
        )
        values, eval_seconds = evaluate(context, metrics, lambda name: reporter.stage(run_name, f"evaluating {name}"))
        record.update(values)
        record.update(status="ok", reason=None, eval_seconds=eval_seconds)
    except Exception as exc:  # one bad run never stops the sweep
        if context is not None:  # the metrics that finished before the failure are kept
            record.update(context.values)
        reason = str(exc) if isinstance(exc, TrainingFailure) else f"{type(exc).__name__}: {exc}"
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        record.update(status="failed", reason=reason, where=f"{where.filename}:{where.lineno}" if where else None)
        log.debug("run %s failed", run_name, exc_info=True)
    record["wall_seconds"] = time.perf_counter() - started
    write_json(run_dir / METRICS_FILE, record)
    reporter.finish(run_name, record["status"])
    return record.get("reason") if record["status"] != "ok" else None
