"""``vaebench evaluate OUT``: evaluate saved runs again without retraining.

Each run folder keeps its evaluated weights (``model.safetensors``, tensors only,
loaded without running any code) and its record (``config.json``). The model is
rebuilt from the record with the components it names, the weights are loaded, and
the chosen metrics (every registered metric by default) run again, with another K or IS
precision when asked. The run's previous ``metrics.json`` is appended to
``metrics_history.jsonl`` first, so nothing already computed is lost; values of
metrics that were not run again are kept. This is also how a new metric joins an
existing leaderboard.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from vaebench.atomic import WEIGHTS_FILE, load_weights, write_json
from vaebench.data import ImageData, prepare
from vaebench.errors import UsageError
from vaebench.evaluation.context import EvalContext, declarations, evaluate
from vaebench.execution.locking import OutLock
from vaebench.execution.records import CONFIG_FILE, HISTORY_FILE, METRICS_FILE, read_csv_exact, read_json, recorded_settings
from vaebench.execution.runner import HARNESS_KEYS, RUN_COLUMNS, TRAINING_FIELDS, RunPlan, _append_history, build_recipe, merge_columns, run_wall_seconds
from vaebench.execution.training import SilentReporter, TrainingResult
from vaebench.plugin_manager import Plugins
from vaebench.reporting.figures import all_figures
from vaebench.reporting.leaderboard import leaderboard, run_records, write_leaderboard
from vaebench.settings import RunSettings, make_settings
from vaebench.suite import RunSpec, resolve_device
from vaebench.variant import count_parameters

log = logging.getLogger("vaebench.evaluate")


@dataclass
class EvaluateResult:
    board: pd.DataFrame
    evaluated: list[tuple[str, int]] = field(default_factory=list)
    kept: list[tuple[str, int]] = field(default_factory=list)  # already evaluated so (--resume)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (run folder, why)
    metric_errors: dict[str, list[str]] = field(default_factory=dict)


def run_folders(out: Path, runs: list[str] | None = None) -> list[Path]:
    folders = sorted(p for p in Path(out).glob("runs/*/seed-*") if p.is_dir())
    if runs:
        known = {p.parent.name for p in folders}
        unknown = sorted(set(runs) - known)
        if unknown:
            raise UsageError(f"{out} has no run '{unknown[0]}'; its runs are: {', '.join(sorted(known)) or 'none'}")
        folders = [p for p in folders if p.parent.name in runs]
    return folders


def reevaluate(
    out: Path,
    plugins: Plugins,
    *,
    metrics: list[str] | None = None,
    is_samples: int | None = None,
    is_precision: str | None = None,
    data_dir: Path | None = None,
    device: str = "auto",
    runs: list[str] | None = None,
    reporter=None,
    resume: bool = False,
) -> EvaluateResult:
    """Evaluate the saved runs of ``out`` again; see the module docstring."""
    out = Path(out)
    if not out.is_dir():
        raise UsageError(f"{out} is not a folder; pass the --out folder of a vaebench run")
    folders = run_folders(out, runs)
    if not folders:
        raise UsageError(f"{out} has no runs (no runs/<run>/seed-<n>/); pass the --out folder of a vaebench run")
    overrides = {k: v for k, v in {"is_samples": is_samples, "is_precision": is_precision}.items() if v is not None}
    if overrides:
        make_settings(overrides, {k: f"--{k.replace('_', '-')}" for k in overrides})  # a bad value fails before anything runs
    chosen = [plugins.registry.get("metric", name) for name in metrics] if metrics else None
    torch_device = resolve_device(device)
    reporter = reporter or SilentReporter()
    result = EvaluateResult(board=pd.DataFrame())
    data_cache: dict[tuple, ImageData] = {}
    with OutLock(out):
        for folder in folders:
            name = f"{folder.parent.name} {folder.name.replace('-', ' ')}"
            config, record = read_json(folder / CONFIG_FILE), read_json(folder / METRICS_FILE)
            why = _unusable(folder, config, record)
            if why:
                result.skipped.append((str(folder), why))
                log.warning("skipping %s: %s", folder, why)
                continue
            settings = RunSettings(**{**recorded_settings(config), **overrides, "data_dir": data_dir})
            run = _run_plan(config, settings, plugins, chosen)
            if resume and _evaluated_so(record, run, settings):
                result.kept.append((folder.parent.name, int(config["seed"])))
                continue
            data = data_for(settings, plugins, data_dir, torch_device, data_cache)
            seed = int(config["seed"])
            recipe = rebuilt(folder, run, data, seed, torch_device)
            n_parameters = count_parameters(recipe.model)  # structural: counted as vaebench counts now
            history = read_csv_exact(folder / HISTORY_FILE).to_dict("records") if (folder / HISTORY_FILE).exists() else []
            training = recorded_training(record, history)
            starting = getattr(reporter, "start_evaluation", None)  # a reporter written before it had one says "training"
            starting(name) if starting is not None else reporter.start(name, None)
            context = EvalContext(
                model=recipe.model, data=data, run_dir=folder, device=torch_device, is_samples=settings.is_samples_resolved,
                is_precision=settings.is_precision, seed=seed, training=training, n_parameters=n_parameters,
                progress=lambda text, name=name: reporter.stage(name, text), settings=settings, reference=published_reference(config, record),
            )
            context.values["selection"] = record.get("selection", "")
            started = time.perf_counter()
            evaluation = evaluate(context, run.metrics, lambda metric, name=name: reporter.stage(name, f"evaluating {metric}"),
                                  reserved=HARNESS_KEYS)
            _append_history(folder, record)
            updated = dict(record)
            updated.update(evaluation.values)
            updated.update({name: record[name] for name in TRAINING_FIELDS if name in record})  # evaluating never changes them
            updated["n_parameters"] = n_parameters
            updated.update(note=recipe.note, latent=recipe.latent)  # what the variant says of itself now, as the values do
            updated.update(is_samples=settings.is_samples_resolved, is_precision=settings.is_precision)
            ran = {m.name for m in run.metrics}
            updated["columns"] = merge_columns([c.as_dict() for c in RUN_COLUMNS], *columns_in_place(record.get("columns") or [], ran, evaluation.columns,
                                                                                          plugins.registry.names("metric")))
            updated["metric_errors"] = {**{k: v for k, v in (record.get("metric_errors") or {}).items() if k not in {m.name for m in run.metrics}},
                                        **evaluation.errors}
            held = _evaluated_metrics(config, record, run, settings)
            # the time behind every value the record holds: an earlier evaluation's too when some of its values are kept
            earlier = float(record.get("eval_seconds") or 0.0) if len(held) > len(run.metrics) else 0.0
            updated["eval_seconds"] = earlier + time.perf_counter() - started
            updated["evaluated_with"] = {"metrics": held, "device": str(torch_device), **overrides}
            updated.update(run_wall_seconds(updated))
            updated.setdefault("run", folder.parent.name)
            write_json(folder / METRICS_FILE, updated)
            reporter.finish(name, "ok")
            result.evaluated.append((folder.parent.name, seed))
            for metric, error in evaluation.errors.items():
                result.metric_errors.setdefault(metric, []).append(f"{name}: {error}")
        board = leaderboard(run_records(out))
        write_leaderboard(out, board)
        all_figures(out)
    result.board = board
    return result


def columns_in_place(before: list[dict], ran: set[str], fresh: dict[str, dict], order: list[str]) -> list[list[dict]]:
    """The record's column declarations, metric by metric in ``order`` (the metrics' registration order,
    which a run's own evaluation follows; metrics not in it keep their place after): a metric run
    again brings its new declarations, and the columns it no longer declares leave."""
    groups: dict[str | None, list[dict]] = {}
    for column in before:
        # a record older than the "metric" key names no owner: its declaration of a column run again is replaced
        if column.get("metric") not in ran and column.get("name") not in fresh:
            groups.setdefault(column.get("metric"), []).append(column)
    for column in fresh.values():
        groups.setdefault(column.get("metric"), []).append(column)
    rank = {name: i for i, name in enumerate(order)}
    return [groups[m] for m in sorted(groups, key=lambda m: rank.get(m, len(rank)))]


def data_for(settings: RunSettings, plugins: Plugins, data_dir: Path | None, device: torch.device, cache: dict) -> ImageData:
    """The run's data as it was prepared for training (cached by what changes it)."""
    key = (settings.dataset, str(data_dir), settings.binarization, settings.val_images, settings.val_split)
    if key not in cache:
        spec = plugins.registry.get("dataset", settings.dataset)
        cache[key] = prepare(spec, data_dir, settings.binarization, device, settings.val_images, settings.val_split)
    return cache[key]


def rebuilt(folder: Path, run: RunPlan, data: ImageData, seed: int, device: torch.device):
    """The run's recipe, its model holding the saved weights, on ``device``."""
    recipe = build_recipe(run, data, seed)
    load_weights(folder / WEIGHTS_FILE, recipe.model, device)
    recipe.model.to(device)
    return recipe


@dataclass
class SavedRun:
    """A finished run folder brought back: its record, settings, data and model (weights loaded, eval mode)."""

    folder: Path
    config: dict
    record: dict
    settings: RunSettings
    data: ImageData
    model: torch.nn.Module
    seed: int

    def context(self, **fields) -> EvalContext:
        """An evaluation context for this run, as ``vaebench evaluate`` builds one."""
        return EvalContext(model=self.model, data=self.data, run_dir=self.folder, device=self.data.train.x.device,
                           is_samples=self.settings.is_samples_resolved, is_precision=self.settings.is_precision,
                           seed=self.seed, settings=self.settings, **fields)


def load_run(folder: Path, plugins: Plugins, data_dir: Path | None = None, device: str = "cpu", cache: dict | None = None) -> SavedRun:
    """A run folder's model and data, as ``vaebench evaluate`` rebuilds them (for scripts and audits)."""
    folder = Path(folder)
    config, record = read_json(folder / CONFIG_FILE), read_json(folder / METRICS_FILE)
    why = _unusable(folder, config, record)
    if why:
        raise UsageError(f"{folder}: {why}")
    settings = RunSettings(**{**recorded_settings(config), "data_dir": data_dir})
    torch_device = resolve_device(device)
    run = _run_plan(config, settings, plugins, [])
    data = data_for(settings, plugins, data_dir, torch_device, {} if cache is None else cache)
    seed = int(config["seed"])
    model = rebuilt(folder, run, data, seed, torch_device).model
    model.eval()
    return SavedRun(folder, config, record, settings, data, model, seed)


def recorded_training(record: dict, history: list[dict]) -> TrainingResult:
    """What the run's training measured, as its record keeps it: metrics that report training read this."""
    seconds = float(record.get("train_seconds") or 0.0)
    images = record.get("images_seen")
    if images is None and record.get("train_images_per_s"):  # records written before images_seen was kept
        images = round(float(record["train_images_per_s"]) * seconds)
    return TrainingResult(
        history=history, train_seconds=seconds, train_images=int(images or 0),
        epochs_run=int(record.get("epochs_run") or len(history)), selected_epoch=record.get("selected_epoch"),
        steps_run=int(record.get("steps_run") or 0), wall_seconds=record.get("train_wall_seconds"),
        best_epoch=record.get("best_epoch"), stopped_early=bool(record.get("stopped_early", False)),
        peak_memory_mb=record.get("peak_memory_mb"), peak_memory_method=record.get("peak_memory_method"),
    )


def _evaluated_so(record: dict, run: RunPlan, settings: RunSettings) -> bool:
    """Whether ``record`` comes from an evaluate with (at least) these metrics, this K and this precision,
    and holds every column those metrics declare now, as they declare it: a metric that has changed
    what it reports since (a new column, a new meaning) is evaluated again."""
    done = record.get("evaluated_with")
    if not (isinstance(done, dict) and {m.name for m in run.metrics} <= set(done.get("metrics") or ())
            and _same_estimate(record, settings)):
        return False
    held = {c.get("name"): c for c in record.get("columns") or [] if isinstance(c, dict)}
    return all(held.get(name) == column for metric in run.metrics for name, column in declarations(metric).items())


def _same_estimate(record: dict, settings: RunSettings) -> bool:
    """Whether ``record``'s values were estimated with this K and this IS precision."""
    return record.get("is_samples") == settings.is_samples_resolved and record.get("is_precision") == settings.is_precision


def _evaluated_metrics(config: dict, record: dict, run: RunPlan, settings: RunSettings) -> list[str]:
    """The metrics whose values the record now holds from evaluations at this K and precision:
    this one's, and the earlier evaluation's (an evaluate's, or the run's own, whose metrics its
    config.json names) when it used the same K and precision, since their values are kept."""
    now = [m.name for m in run.metrics]
    done = record.get("evaluated_with")
    earlier = done.get("metrics") if isinstance(done, dict) else list(((config.get("components") or {}).get("metrics")) or {})
    same = _same_estimate(record, settings)
    return [m for m in (earlier or []) if same and m not in now] + now


def published_reference(config: dict, record: dict) -> dict | None:
    """The published result a run reproduces (its suite table's ``reference = {...}``), or None.

    Records written before config.json kept it apart from the variant's literature reference
    (a string) hold it only in metrics.json: it is rebuilt from there."""
    for reference in (config.get("reference"), record.get("reference")):
        if isinstance(reference, dict):
            return reference
    if record.get("reference_value") is None or not isinstance(record.get("reference"), str):
        return None
    shortened = re.search(r"of (\d+) epochs", str(record.get("reproduction") or ""))
    return {"source": record["reference"], "value": record["reference_value"], "samples": record["reference_samples"],
            "epochs": int(shortened.group(1)) if shortened else None}


def _unusable(folder: Path, config, record) -> str | None:
    if not isinstance(config, dict):
        return f"no readable {CONFIG_FILE}"
    if not isinstance(record, dict):
        return f"no readable {METRICS_FILE} (the run did not finish; continue it with vaebench run --resume)"
    if not (folder / WEIGHTS_FILE).exists():
        return f"no {WEIGHTS_FILE} (the run failed before its weights were saved, or they were not kept)"
    if recorded_settings(config) is None:
        return f"its {CONFIG_FILE} records no settings"
    return None


def _run_plan(config: dict, settings: RunSettings, plugins: Plugins, metrics) -> RunPlan:
    """The run's components as its record names them, with its recorded options."""
    registry = plugins.registry
    components = config.get("components") or {"variant": {"name": config["variant"]}}
    names = {role: (c["name"] if isinstance(c, dict) else c) for role, c in components.items() if role != "metrics"}
    variant = registry.get("variant", names["variant"])
    prior = registry.get("prior", names["prior"]) if names.get("prior") else None
    objective = registry.get("objective", names["objective"]) if names.get("objective") else None
    recorded_options = config.get("component_options") or {variant.name: config.get("options", {})}
    options = {}
    for component in filter(None, (variant, prior, objective)):
        options[component.name] = component.resolve_options(recorded_options.get(component.name, {}))
    if metrics is None:  # every registered metric: evaluating is how metrics join a leaderboard
        metrics = [registry.get("metric", n) for n in registry.names("metric")]
    spec = RunSpec(name=config.get("run", variant.name), variant=variant.name, settings=settings,
                   prior=prior.name if prior else None, objective=objective.name if objective else None)
    return RunPlan(spec, variant, prior, objective, options, list(metrics), {})
