"""The runner: every run x seed of a suite trained and evaluated under the same budget.

:func:`plan` checks everything before anything is trained: component names and
options, what each variant accepts, settings, data, the device, and the ``--out``
folder (its lock, the suites and settings its runs were made with). :func:`execute`
then trains and evaluates each run into ``<out>/runs/<run>/seed-<n>/``:

* ``config.json``: what the run is (settings, components with their plugin and
  version, options, the objective, the budget);
* ``checkpoint.pt`` (every epoch), ``model.safetensors`` (the evaluated weights),
  ``history.csv``, ``metrics.json`` (status and every metric) and pictures.

A run that raises or goes non-finite is recorded as failed with its reason, and the
sweep goes on. ``resume`` keeps finished runs and continues unfinished ones from their
last checkpoint; it refuses settings that differ from a run's record, except a larger
budget with ``extend``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from vaebench import __version__
from vaebench.atomic import WEIGHTS_FILE, clean_temporary_files, save_weights, write_atomic, write_json
from vaebench.data import TEST_BINARIZATION_SEED, ImageData, prepare
from vaebench.errors import TrainingFailure, UsageError
from vaebench.evaluation.context import Column, EvalContext, evaluate
from vaebench.execution.locking import OutLock
from vaebench.execution.records import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    SUITE_FILE,
    check_is_ours,
    differences,
    mark_as_ours,
    read_json,
    recorded_settings,
    run_dir_of,
)
from vaebench.execution.training import Budget, SilentReporter, train
from vaebench.plugin_manager import Plugins
from vaebench.reporting.figures import all_figures
from vaebench.reporting.leaderboard import leaderboard, run_records, write_leaderboard
from vaebench.settings import FIELDS, RunSettings
from vaebench.suite import RunSpec, Suite, option_text, resolve_device
from vaebench.components import split_run_options
from vaebench.models import glorot_init, he_init
from vaebench.variant import BuildContext, count_parameters

log = logging.getLogger("vaebench.runner")

# the harness's own columns: what every run reports about itself, whatever its metrics
RUN_COLUMNS = (
    Column("latent", "none", "", "the latent space", text=True),
    Column("n_parameters", "none", "", "free parameters: the trainable ones plus any fitted otherwise (ae-gmm's mixture)",
           label="params", digits=0),
    Column("epochs_run", "none", "epochs", "epochs trained", digits=1),
    Column("steps_run", "none", "steps", "optimizer steps taken", digits=0),
    Column("images_seen", "none", "images", "training images seen", digits=0),
    Column("selected_epoch", "none", "", "the evaluated epoch, counted from 0 (the best validation epoch unless the row says otherwise)", digits=1),
    Column("train_wall_seconds", "none", "s", "seconds training took, start to end, validation and checkpoints included, "
           "summed over the processes of a resumed run", digits=1),
    Column("eval_seconds", "none", "s", "seconds the evaluation behind the values took (vaebench evaluate adds its time when it keeps "
           "earlier values)", digits=1),
    Column("wall_seconds", "none", "s", "train_wall_seconds + eval_seconds: the time the row's values cost (vaebench evaluate adds to it "
           "as to eval_seconds)", digits=1),
)
# what training measured: written by the run, kept as they are by `vaebench evaluate`
TRAINING_FIELDS = ("epochs_run", "steps_run", "images_seen", "train_seconds", "train_images_per_s", "train_wall_seconds",
                   "peak_memory_mb", "peak_memory_method", "train_step", "train_step_reason", "best_epoch", "selected_epoch",
                   "stopped_early", "resumed_from_epoch")
# the rest of what the harness writes into a run's record (metrics.json), beside the settings: no metric may declare
# or return these ("reference" is the one exception: the reference_nll metric reports the published source under it)
RECORD_KEYS = ("run", "variant", "prior", "objective", "seed", "seeds", "device", "dataset", "binarization", "image_shape",
               "n_classes", "n_train", "n_val", "n_test", "test_binarization_seed", "options", "component_options", "latent",
               "note", "selection", "budget_history", "status", "reason", "where", "columns", "metric_errors", "evaluated_with",
               "run_wall_seconds")
# what the harness records itself: a metric's value under one of these names is dropped (vaebench.evaluation.context.evaluate)
HARNESS_KEYS = frozenset(TRAINING_FIELDS) | frozenset(RECORD_KEYS) | frozenset(FIELDS) | {c.name for c in RUN_COLUMNS} | {"budget_unit"}


@dataclass
class SweepResult:
    board: pd.DataFrame
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    trained: list[tuple[str, int]] = field(default_factory=list)
    kept: list[tuple[str, int]] = field(default_factory=list)
    metric_errors: dict[str, list[str]] = field(default_factory=dict)  # metric -> "run seed n: error"


@dataclass
class RunPlan:
    """One validated run: its spec, its components and their resolved options."""

    spec: RunSpec
    variant: object
    prior: object | None
    objective: object | None
    options: dict[str, dict]
    metrics: list
    provenance: dict[str, dict]

    @property
    def settings(self) -> RunSettings:
        return self.spec.settings

    def identity(self) -> dict:
        """What a run's record must match for ``--resume`` to continue it."""
        return {
            "settings": self.settings.identity(),
            "components": {role: p["name"] for role, p in self.provenance.items() if role not in ("metrics", "dataset")},
            "options": self.options,
        }


@dataclass
class Plan:
    """A validated suite with its data loaded and its --out folder locked."""

    suite: Suite
    out: Path
    resume: bool
    extend: bool
    runs: list[RunPlan]
    data: dict[tuple, ImageData]
    device: torch.device
    lock: OutLock | None = None
    callbacks: tuple = ()
    jobs: int = 1  # worker processes (execution/parallel.py)
    plugin_args: dict = field(default_factory=dict)  # how the workers load the plugins the parent loaded
    trackers: tuple[str, ...] = ()  # the trackers asked for (--tracker)
    executor: dict = field(default_factory=lambda: {"name": "local"})  # local, or ray with its address and resources
    workers: object | None = None  # the command's WorkerManager (execution/worker_manager.py), where it started one
    callback_provenance: tuple = ()  # which plugin and version each callback comes from, as config.json records it

    def data_for(self, settings: RunSettings) -> ImageData:
        return self.data[_data_key(settings)]


def _data_key(settings: RunSettings) -> tuple:
    return (settings.dataset, str(settings.data_dir), settings.binarization, settings.val_images, settings.val_split)


def load_data(settings: RunSettings, plugins: Plugins, device: torch.device) -> dict[tuple, ImageData]:
    """The data a run with ``settings`` trains on, by its key in :attr:`Plan.data`."""
    s = settings
    return {_data_key(s): prepare(plugins.registry.get("dataset", s.dataset), s.data_dir, s.binarization, device, s.val_images, s.val_split)}


def callbacks_of(plugins: Plugins, trackers: tuple[str, ...] = ()) -> tuple:
    """What runs beside training: every always-on callback (``register_callbacks``), then the
    trackers named in ``trackers`` (``--tracker NAME``, ``register_trackers``), in that order."""
    import importlib.util

    registry = plugins.registry
    known = registry.names("tracker")
    for name in trackers:
        if name not in known:
            raise UsageError(f"--tracker {name}: no such tracker; the installed trackers are: {', '.join(known) or 'none'}")
        module, hint = getattr(registry.get("tracker", name), "requires", None) or (None, "")
        if module and importlib.util.find_spec(module) is None:
            raise UsageError(f"--tracker {name} needs the '{module}' package, which is not installed: {hint}")
    chosen = [registry.get("tracker", n) for n in dict.fromkeys(trackers)]
    return tuple(registry.get("callback", n) for n in registry.names("callback")) + tuple(chosen)


def check_out_dir(out: Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder (it is created if missing)")
    return out


def resolve_run(spec: RunSpec, plugins: Plugins) -> RunPlan:
    """Look up a run's components and check its options and what its variant accepts."""
    registry = plugins.registry
    variant = registry.get("variant", spec.variant)
    prior = registry.get("prior", spec.prior) if spec.prior else None
    objective = registry.get("objective", spec.objective) if spec.objective else None
    if prior is not None and not getattr(variant, "accepts_prior", False):
        takers = [n for n in registry.names("variant") if getattr(registry.get("variant", n), "accepts_prior", False)]
        raise UsageError(f"run '{spec.name}': variant '{variant.name}' takes no prior of another kind; variants that do: {', '.join(takers) or 'none'}")
    if objective is not None and not getattr(variant, "accepts_objective", False):
        takers = [n for n in registry.names("variant") if getattr(registry.get("variant", n), "accepts_objective", False)]
        raise UsageError(f"run '{spec.name}': variant '{variant.name}' trains with its own objective; variants that take another: {', '.join(takers) or 'none'}")
    components = {"variant": variant, **({"prior": prior} if prior else {}), **({"objective": objective} if objective else {})}
    by_component = split_run_options(spec.name, spec.options, components)
    options = {c.name: c.resolve_options(by_component[c.name]) for c in components.values()}
    names = spec.settings.metrics if spec.settings.metrics is not None else registry.names("metric")
    metrics = [registry.get("metric", name) for name in names]
    provenance = {role: plugins.provenance(role, c.name) for role, c in components.items()}
    provenance["metrics"] = {m.name: plugins.provenance("metric", m.name) for m in metrics}
    registry.get("dataset", spec.settings.dataset)  # an unknown dataset: one line naming the known ones
    provenance["dataset"] = plugins.provenance("dataset", spec.settings.dataset)
    return RunPlan(spec, variant, prior, objective, options, metrics, provenance)


def build_recipe(run: RunPlan, data: ImageData, seed: int):
    """The run's model and objective, built as training builds them (seeded)."""
    settings = run.settings
    torch.manual_seed(seed)
    common = dict(settings=settings, x_dim=data.dim, n_classes=data.n_classes, n_train=len(data.train),
                  epochs=settings.epochs_resolved, dataset=data.name, image_shape=tuple(data.image_shape))
    prior = run.prior.build(BuildContext(options=run.options[run.prior.name], **common)) if run.prior else None
    if prior is not None:  # what the run records of its prior is the registered component and its options
        prior.label = component_label(run.prior.name, run.options[run.prior.name])
    objective = run.objective.build(BuildContext(options=run.options[run.objective.name], **common)) if run.objective else None
    recipe = run.variant.build(BuildContext(options=run.options[run.variant.name], prior=prior, objective=objective, **common))
    if settings.logvar_range and tuple(getattr(recipe.model, "logvar_range", ())) != tuple(settings.logvar_range):
        raise UsageError(f"run '{run.spec.name}': variant '{run.variant.name}' does not clip its encoder's log-variance; "
                         f"drop --logvar-range (the Gaussian-encoder variants honour it)")
    if settings.init == "glorot":
        glorot_init(recipe.model, data.train.x.mean(dim=0))
    elif settings.init == "he":
        he_init(recipe.model)
    return recipe


def component_label(name: str, options: dict) -> str:
    """A component as a row names it: ``mog(components=16)``, or the bare name without options."""
    shown = ",".join(f"{key}={option_text(value)}" for key, value in options.items())
    return f"{name}({shown})" if shown else name


def plan(suite: Suite, plugins: Plugins, out: Path, resume: bool = False, extend: bool = False,
         trackers: tuple[str, ...] = (), jobs: int = 1, executor: dict | None = None, workers=None) -> Plan:
    """Check every input (names, options, numbers, device, data, --out, trackers) before anything is trained."""
    out = check_out_dir(out)
    callbacks = callbacks_of(plugins, tuple(trackers))
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: give a whole number of worker processes, at least 1")
    executor = executor or {"name": "local"}
    if executor["name"] == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError("--executor ray needs Ray, which is not installed: pip install 'vaebench[ray]'")
    runs = [resolve_run(spec, plugins) for spec in suite.runs]
    for spec in suite.runs:
        plugins.registry.get("dataset", spec.settings.dataset)
    devices = {spec.settings.device for spec in suite.runs}
    device = resolve_device(devices.pop() if len(devices) == 1 else "auto")
    data: dict[tuple, ImageData] = {}
    for spec in suite.runs:
        key = _data_key(spec.settings)
        if key not in data:
            data.update(load_data(spec.settings, plugins, device))
        if spec.settings.batch_size > len(data[key].train):
            raise UsageError(
                f"--batch-size {spec.settings.batch_size} is larger than the training set ({len(data[key].train)} images); use a smaller batch"
            )
    for run in runs:  # a dry build: options the variant rejects, a budget it cannot use
        try:
            recipe = build_recipe(run, data[_data_key(run.settings)], seed=0)
        except UsageError:
            raise
        except Exception:  # a variant that fails to build fails its own runs, recorded, not the sweep
            log.debug("dry build of %s failed; its runs will record why", run.spec.name, exc_info=True)
            continue
        _warn_if_slow(run, recipe, data[_data_key(run.settings)], device)
    check_is_ours(out)
    lock = OutLock(out)
    lock.acquire()
    try:
        clean_temporary_files(out)
        _check_out_contents(suite, runs, out, resume, extend)
        mark_as_ours(out, __version__)
    except BaseException:
        lock.release()
        raise
    return Plan(suite, out, resume, extend, runs, data, device, lock, callbacks, jobs, plugins.load_args, tuple(trackers), executor,
                workers, callback_provenance(plugins, callbacks))


def callback_provenance(plugins: Plugins, callbacks: tuple) -> tuple:
    """Which plugin and version each callback and tracker of a run comes from, and which kind it is."""
    trackers = set(plugins.registry.names("tracker"))
    return tuple({**plugins.provenance("tracker" if c.name in trackers else "callback", c.name),
                  "kind": "tracker" if c.name in trackers else "callback"} for c in callbacks)


SLOW_DECODES = 10**9  # decoded images per run past which IS-NLL's time is estimated up front


def _warn_if_slow(run: RunPlan, recipe, data: ImageData, device: torch.device) -> None:
    """A K so large that IS-NLL runs for hours is allowed (chunks keep memory bounded), but said up front."""
    from vaebench.evaluation.importance import eval_rows, widest_row

    wants_is = any(m.name == "is_nll" for m in run.metrics)
    k = run.settings.is_samples_resolved
    images = len(data.test) + min(len(data.test), 1000)
    decodes = k * images  # label-conditioned models split K over their labels (evaluation/importance.py)
    if not wants_is or decodes < SLOW_DECODES:
        return
    model = recipe.model.to(device).eval()
    rows = min(eval_rows(device, widest_row(model, data.dim)), 4096)
    with torch.inference_mode():
        z = model.prior.sample(rows).to(device)
        y = torch.zeros(rows, dtype=torch.long, device=device)
        model.likelihood(z, y).log_prob(data.test.x[:1].expand(rows, -1))  # warm-up
        started = time.perf_counter()
        model.likelihood(z, y).log_prob(data.test.x[:1].expand(rows, -1))
        rate = rows / max(time.perf_counter() - started, 1e-9)
    hours = decodes / rate / 3600
    log.warning(
        "--is-samples %d: IS-NLL of %s decodes %.2g images per run; chunked, so memory stays bounded, "
        "but at about %.3g images/s here that takes about %.1f hours per run", k, run.spec.name, decodes, rate, hours,
    )


def _check_out_contents(suite: Suite, runs: list[RunPlan], out: Path, resume: bool, extend: bool) -> None:
    """Refuse what would overwrite, mix or silently ignore: see the module docstring."""
    _check_runs(suite, runs, out, resume, extend)
    suite_file = out / SUITE_FILE
    if suite_file.exists():
        recorded = read_json(suite_file)
        if isinstance(recorded, dict) and "settings" in recorded:
            current = suite.settings.identity()
            # settings that no longer count as identity (metrics, say) are not compared, and a
            # setting newer than the record reads as its default, the behaviour the record had
            defaults = RunSettings().identity()
            before = {k: recorded["settings"].get(k, defaults.get(k)) for k in current}
            diff = differences(before, current)
            budget_only = all(k in BUDGET_KEYS for k in diff_keys(before, current))
            if diff and not (resume and extend and budget_only):
                raise UsageError(
                    f"{out} holds runs of another suite (its shared settings differ: {diff}); "
                    "choose another --out, or run with the settings it was made with"
                )


BUDGET_KEYS = ("epochs", "steps", "seconds", "budget", "budget_unit")


def _check_runs(suite: Suite, runs: list[RunPlan], out: Path, resume: bool, extend: bool) -> None:
    for run in runs:
        for seed in suite.seeds_of(run.spec):
            run_dir = run_dir_of(out, run.spec.name, seed)
            config, metrics, checkpoint = run_dir / CONFIG_FILE, run_dir / METRICS_FILE, run_dir / "checkpoint.pt"
            if not resume and metrics.exists():
                raise UsageError(f"{out} already holds runs of this suite ({run.spec.name} seed {seed}); pass --resume to keep them and finish the rest, or choose another --out")
            if not resume and checkpoint.exists():
                raise UsageError(f"{run_dir} holds a checkpoint of an interrupted run; pass --resume to continue it, or choose a fresh --out")
            if resume and config.exists():
                recorded = read_json(config)
                if not isinstance(recorded, dict):
                    continue  # an unreadable record: the run restarts, see run_one
                diff = differences(recorded_identity(recorded), run.identity())
                budget_only = diff and all(key.split(".")[-1] in BUDGET_KEYS for key in diff_keys(recorded_identity(recorded), run.identity()))
                if diff and not (extend and budget_only):
                    hint = "; to train longer pass --extend" if budget_only else ""
                    raise UsageError(
                        f"--resume with settings that differ from those {run.spec.name} seed {seed} was made with: {diff}; "
                        f"rerun with the recorded settings{hint}, or choose another --out"
                    )


def recorded_identity(config: dict) -> dict:
    """A run record's identity, in the shape :meth:`RunPlan.identity` returns (old records included)."""
    settings = recorded_settings(config)
    identity = RunSettings(**settings).identity() if settings is not None else {}
    components = config.get("components") or {"variant": config.get("variant")}
    return {
        "settings": identity,
        "components": {role: (c["name"] if isinstance(c, dict) else c) for role, c in components.items() if role != "metrics"},
        "options": config.get("component_options") or {config.get("variant"): config.get("options", {})},
    }


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            keys += diff_keys(left, right, f"{prefix}{key}.")
        elif left != right:
            keys.append(prefix + key)
    return keys


def execute(p: Plan, reporter=None) -> SweepResult:
    """Train and evaluate every run of the plan, then write the leaderboard and combined figures."""
    reporter = reporter or SilentReporter()
    result = SweepResult(board=pd.DataFrame())
    try:
        write_json(p.out / SUITE_FILE, {"source": p.suite.source, "settings": p.suite.settings.identity(),
                                         "runs": [r.spec.name for r in p.runs], "seeds": p.suite.seeds})
        todo = []
        for index, run in enumerate(p.runs):
            for seed in p.suite.seeds_of(run.spec):
                done = read_json(run_dir_of(p.out, run.spec.name, seed) / METRICS_FILE)
                if p.resume and isinstance(done, dict) and done.get("status") == "ok" and not _extends(p, run, done):
                    result.kept.append((run.spec.name, seed))
                else:
                    todo.append((index, seed))
        if (p.executor["name"] == "ray" and todo) or (p.jobs > 1 and len(todo) > 1):
            records = _run_in_workers(p, todo, reporter)
        else:
            if p.workers is not None:
                p.workers.close()  # one run or none: it trains here, and the manager's imports leave its cores
            records = {(i, seed): run_one(p, p.runs[i], seed, run_dir_of(p.out, p.runs[i].spec.name, seed), reporter) for i, seed in todo}
        for index, seed in todo:
            name, record = p.runs[index].spec.name, records[(index, seed)]
            result.trained.append((name, seed))
            if record["status"] != "ok":
                result.failures.append((name, seed, record.get("reason")))
            for metric, error in (record.get("metric_errors") or {}).items():
                result.metric_errors.setdefault(metric, []).append(f"{name} seed {seed}: {error}")
        board = leaderboard(run_records(p.out))
        write_leaderboard(p.out, board)
        all_figures(p.out)
        result.board = board
    finally:
        if p.lock is not None:
            p.lock.release()
    return result


def _run_in_workers(p: Plan, todo: list[tuple[int, int]], reporter) -> dict[tuple[int, int], dict]:
    from vaebench.execution.parallel import Task, run_parallel, threads_per_job

    ray = p.executor["name"] == "ray"
    threads = p.executor["cpus_per_run"] if ray else threads_per_job(p.jobs) if p.device.type == "cpu" else 1
    tasks = [Task(p.suite, index, seed, p.out, p.resume, p.extend, str(p.device), p.plugin_args, threads, p.trackers)
             for index, seed in todo]
    if ray:
        from vaebench.execution.ray_executor import run_on_ray

        return run_on_ray(tasks, reporter, p.executor.get("address"), p.executor["gpus_per_run"])
    if p.workers is not None:
        return p.workers.run(tasks, p.jobs, reporter)
    return run_parallel(tasks, p.jobs, reporter)


def _extends(p: Plan, run: RunPlan, done: dict) -> bool:
    """Whether ``--extend`` asks a finished run for more training than it had."""
    if not p.extend:
        return False
    unit = run.settings.budget_unit
    new = getattr(run.settings, "epochs_resolved" if unit == "epochs" else unit)
    old = done.get("epochs" if unit == "epochs" else unit)
    return old is not None and new is not None and new > old


def run_suite(suite: Suite, plugins: Plugins, out: Path, resume: bool = False, reporter=None, extend: bool = False,
              jobs: int = 1, trackers: tuple[str, ...] = (), executor: dict | None = None) -> SweepResult:
    return execute(plan(suite, plugins, out, resume, extend, trackers=trackers, jobs=jobs, executor=executor), reporter)


def run_one(p: Plan, run: RunPlan, seed: int, run_dir: Path, reporter) -> dict:
    """Train and evaluate one run; return its record (``status`` ok or failed, with the reason)."""
    settings, spec = run.settings, run.spec
    data = p.data_for(settings)
    run_name = f"{spec.name} seed {seed}"
    started = time.perf_counter()
    previous = read_json(run_dir / METRICS_FILE)
    previous_config = read_json(run_dir / CONFIG_FILE)
    budget_history = list(previous_config.get("budget_history", [])) if isinstance(previous_config, dict) else []
    requested = {settings.budget_unit: settings.epochs_resolved if settings.budget_unit == "epochs" else getattr(settings, settings.budget_unit)}
    if not budget_history or budget_history[-1] != requested:
        budget_history.append(requested)
    record = {
        "run": spec.name,
        "variant": spec.variant,
        "prior": spec.prior,
        "objective": spec.objective,
        "seed": seed,
        "seeds": p.suite.seeds_of(spec),
        "device": str(p.device),
        **settings.describe(),
        **{k: v for k, v in data.describe().items() if k != "dataset"},
        "dataset": data.name,
        "test_binarization_seed": TEST_BINARIZATION_SEED if settings.binarization in ("dynamic", "static") else None,
        "options": run.options.get(spec.variant, {}),
        "component_options": run.options,
        "reference": spec.reference,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(previous, dict):  # a finished record is superseded (--extend, or a retried failure): keep it
        _append_history(run_dir, previous)
    (run_dir / METRICS_FILE).unlink(missing_ok=True)
    resume = p.resume and _checkpoint_usable(run_dir, run_name)
    context = None
    evaluation = None
    try:
        recipe = build_recipe(run, data, seed)
        record.update(latent=recipe.latent, n_parameters=count_parameters(recipe.model), note=recipe.note)
        write_json(
            run_dir / CONFIG_FILE,
            {
                **record,
                "settings": settings.model_dump(mode="json"),
                "components": {role: prov for role, prov in run.provenance.items() if role != "dataset"},
                "dataset_plugin": run.provenance.get("dataset"),
                "callbacks": list(p.callback_provenance),
                "budget_history": budget_history,
                "objective_description": describe_objective(recipe.objective),
                "grad_clip": recipe.grad_clip,
                "variant_description": run.variant.description,
                "variant_reference": run.variant.reference,  # the literature; "reference" is the published result reproduced
                "vaebench_version": __version__,
                "torch_version": torch.__version__,
                "torch_threads": torch.get_num_threads(),  # float32 sums round differently at another thread count
                "python": platform.python_version(),
            },
        )
        budget = Budget(**{settings.budget_unit: requested[settings.budget_unit]})
        info = {"run": spec.name, "seed": seed, "run_dir": str(run_dir), "settings": settings.describe(), "variant": spec.variant}
        _notify(p.callbacks, "on_run_start", info)
        training = train(
            recipe, data, budget=budget, batch_size=settings.batch_size, lr=settings.lr, optimizer=settings.optimizer,
            seed=seed, device=p.device, run_dir=run_dir, run_name=run_name, reporter=reporter, patience=settings.patience,
            resume=resume, select_epoch=settings.select_epoch, lr_milestones=settings.lr_milestones, lr_gamma=settings.lr_gamma,
            callbacks=p.callbacks, run_info=info, adam_beta1=settings.adam_beta1, adam_eps=settings.adam_eps,
            train_step=settings.train_step,
        )
        history = pd.DataFrame(training.history)
        write_atomic(run_dir / HISTORY_FILE, lambda tmp: history.to_csv(tmp, index=False))
        record.update(
            **training.received(),
            best_epoch=training.best_epoch,
            selected_epoch=training.selected_epoch,
            selection=_selection(settings.select_epoch, recipe),
            stopped_early=training.stopped_early,
            resumed_from_epoch=training.resumed_from_epoch,
            budget_history=budget_history,
        )
        if recipe.post_training is not None:
            record.update(recipe.post_training(recipe.model, data))
        save_weights(run_dir / WEIGHTS_FILE, recipe.model)
        context = EvalContext(
            model=recipe.model, data=data, run_dir=run_dir, device=p.device, is_samples=settings.is_samples_resolved,
            is_precision=settings.is_precision, seed=seed, training=training, n_parameters=record["n_parameters"],
            progress=lambda text: reporter.stage(run_name, text), settings=settings, reference=spec.reference,
        )
        context.values["selection"] = record["selection"]
        evaluation = evaluate(context, run.metrics, lambda name: reporter.stage(run_name, f"evaluating {name}"), reserved=HARNESS_KEYS)
        record.update(evaluation.values)
        record.update(status="ok", reason=None, eval_seconds=evaluation.seconds)
    except Exception as exc:  # one bad run never stops the sweep
        if context is not None:  # the metrics that finished before the failure are kept
            record.update(context.values)
        reason = str(exc) if isinstance(exc, (TrainingFailure, UsageError)) else f"{type(exc).__name__}: {exc}"
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        record.update(status="failed", reason=reason, where=f"{where.filename}:{where.lineno}" if where else None)
        log.debug("run %s failed", run_name, exc_info=True)
    record["columns"] = merge_columns([c.as_dict() for c in RUN_COLUMNS], evaluation.columns if evaluation else _declared(run.metrics))
    record["metric_errors"] = evaluation.errors if evaluation else {}
    record.update(run_wall_seconds(record, fallback=time.perf_counter() - started))
    write_json(run_dir / METRICS_FILE, record)
    reporter.finish(run_name, record["status"])
    _notify(p.callbacks, "on_run_end", {"run": spec.name, "seed": seed, "run_dir": str(run_dir)}, record)
    return record


def run_wall_seconds(record: dict, fallback: float | None = None) -> dict:
    """``wall_seconds`` (and its n/a reason): training's wall time plus the evaluation's.

    A run that failed before its training finished has no training wall time: its
    ``fallback`` (the process's seconds) stands in. A run resumed from a checkpoint that
    predates wall-time keeping has none to add up."""
    train_wall, evaluation = record.get("train_wall_seconds"), record.get("eval_seconds")
    if train_wall is not None and evaluation is not None:
        return {"wall_seconds": train_wall + evaluation, "wall_seconds_na": None}
    if record.get("status") != "ok" and fallback is not None:
        return {"wall_seconds": fallback, "wall_seconds_na": None}
    why = ("resumed from a checkpoint that did not keep the earlier processes' wall time" if train_wall is None
           else "the record has no evaluation time")
    return {"wall_seconds": None, "wall_seconds_na": why}


def merge_columns(*groups) -> list[dict]:
    """Column declarations in order, later declarations of a name replacing earlier ones in place.

    Kept as a list in ``metrics.json``: the order is the order the leaderboard shows."""
    merged: dict[str, dict] = {}
    for group in groups:
        items = group.values() if isinstance(group, dict) else group
        for column in items or ():
            merged[column["name"]] = column
    return list(merged.values())


def describe_objective(objective) -> dict:
    describe = getattr(objective, "describe", None)
    return describe() if describe is not None else {"objective": getattr(objective, "__qualname__", type(objective).__name__)}


def _declared(metrics) -> dict:
    from vaebench.evaluation.context import declarations

    return {name: column for m in metrics for name, column in declarations(m).items()}


def _notify(callbacks, method: str, *args) -> None:
    from vaebench.execution.training import _notify as notify

    notify(callbacks, method, *args)


def _checkpoint_usable(run_dir: Path, run_name: str) -> bool:
    """Whether the run's checkpoint loads; a damaged one is set aside (named) and the run restarts."""
    checkpoint = run_dir / "checkpoint.pt"
    if not checkpoint.exists():
        return False
    from vaebench.atomic import load_torch

    try:
        load_torch(checkpoint, map_location="cpu")
        return True
    except Exception as exc:  # truncated, empty, or not a checkpoint at all
        aside = checkpoint.with_name("checkpoint.pt.damaged")
        os.replace(checkpoint, aside)
        log.warning("%s: %s cannot be read (%s); moved it to %s and training %s from the start",
                    run_name, checkpoint, type(exc).__name__, aside.name, run_name)
        return False


def _append_history(run_dir: Path, record: dict) -> None:
    """Keep a superseded metrics record in ``metrics_history.jsonl``: nothing computed is lost."""
    path = run_dir / "metrics_history.jsonl"
    old = path.read_text() if path.exists() else ""
    write_atomic(path, lambda tmp: tmp.write_text(old + json.dumps(record, sort_keys=True, default=str) + "\n"))


def _selection(select_epoch: str, recipe) -> str:
    """How the evaluated epoch was chosen, in words for the results row."""
    if select_epoch == "last":
        return "last epoch"
    if recipe.validation is None:
        return f"last epoch ({recipe.no_validation_reason or 'no validation criterion'})"
    return f"best {recipe.validation.name}"
