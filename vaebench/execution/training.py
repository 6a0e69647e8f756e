"""The training loop for one run: data batches -> objective -> optimizer step.

The training split lives on the device; each epoch draws a permutation there
and slices it into batches. Logged terms are summed on the device and read
once per epoch, so the loop never waits on the host per step. The checkpoint
(model, optimizer, learning-rate schedule, objective state such as the
score-function baseline, RNG states, history) is written atomically at the end
of every epoch, so a run can resume after ``kill -9``.

A budget is a number of epochs, of optimizer steps, or of seconds of training
(:class:`Budget`); every run records what it received: epochs, steps, seconds
and images seen.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch
from torch import Tensor

from vaebench.atomic import load_torch, save_torch
from vaebench.data import ImageData
from vaebench.errors import TrainingFailure, UsageError
from vaebench.fast.train_step import CompiledAdamStep, RecordingProgress, StepPath, step_path
from vaebench.memory import peak_memory_mb
from vaebench.objectives import Batch
from vaebench.schedules import Progress
from vaebench.variant import Recipe

CHECKPOINT = "checkpoint.pt"


class Reporter(Protocol):
    """Progress of training runs. ``epoch`` gets each epoch's history record; a resumed run first
    replays its earlier epochs, each with ``"resumed": True``."""

    def start(self, run: str, epochs: int | None) -> None: ...
    def start_evaluation(self, run: str) -> None: ...  # `vaebench evaluate`: a saved run, evaluated without training
    def epoch(self, run: str, record: dict) -> None: ...
    def stage(self, run: str, text: str) -> None: ...
    def finish(self, run: str, status: str) -> None: ...


class SilentReporter:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def start(self, run, epochs):
        pass

    def start_evaluation(self, run):
        pass

    def epoch(self, run, record):
        pass

    def stage(self, run, text):
        pass

    def finish(self, run, status):
        pass


@dataclass
class TrainingResult:
    history: list[dict]
    train_seconds: float
    train_images: int
    epochs_run: int
    best_epoch: int | None = None
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    selected_epoch: int | None = None  # the epoch whose weights the model holds now
    steps_run: int = 0
    extra: dict = field(default_factory=dict)
    step_path: object = None  # vaebench.fast.train_step.StepPath: which training step ran, and why
    wall_seconds: float | None = None  # training's wall time, validation and checkpoints included, over every process
    peak_memory_mb: float | None = None  # measured as training ended, before any evaluation
    peak_memory_method: str | None = None

    def received(self) -> dict:
        """What training measured: the budget the run actually received, in every unit, and its cost."""
        received = {"epochs_run": self.epochs_run, "steps_run": self.steps_run, "train_seconds": self.train_seconds,
                    "images_seen": self.train_images, "train_images_per_s": self.images_per_s,
                    "train_wall_seconds": self.wall_seconds, "peak_memory_mb": self.peak_memory_mb,
                    "peak_memory_method": self.peak_memory_method}
        if self.step_path is not None:
            received.update(train_step=self.step_path.name, train_step_reason=self.step_path.reason)
        return received

    @property
    def images_per_s(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds > 0 else float("nan")


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class EpochLog:
    """Each step's logged batch means, read once at the end of the epoch.

    Tensors on the training device go into a [step, term] buffer there (one
    stack per step, no host synchronisation); host values (Python floats such as
    a schedule's weight, or CPU tensors) stay on the host, since copying them to
    a GPU every step would synchronise its stream.
    """

    def __init__(self, steps: int, device: torch.device):
        self.steps, self.device = steps, device
        self.names: list[str] | None = None
        self.on_device: list[str] = []
        self.rows: Tensor | None = None
        self.host: list[list[float]] = []

    def add(self, step: int, logged: dict) -> None:
        if self.names is not None and list(logged) != self.names:
            raise TrainingFailure(
                f"the objective logged {', '.join(logged)} at step {step} but {', '.join(self.names)} at step 0; "
                "log the same terms every step"
            )
        if self.names is None:
            self.names = list(logged)
            # by device type: tensors report cuda:0 where the run's device may read plain cuda
            self.on_device = [k for k, v in logged.items() if isinstance(v, Tensor) and v.device.type == self.device.type]
            self.rows = torch.empty(self.steps, len(self.on_device), device=self.device)
        if self.on_device:
            torch.stack([logged[k].to(torch.float32) for k in self.on_device], out=self.rows[step])
        self.host.append([float(v) for k, v in logged.items() if k not in self.on_device])

    def read(self, steps: int | None = None) -> tuple[list[str], Tensor]:
        """(names, [step, term] float64 table on the CPU) for the first ``steps`` steps (all by default)."""
        steps = self.steps if steps is None else steps
        device_part = self.rows[:steps].to("cpu", torch.float64)
        host_part = torch.tensor(self.host[:steps], dtype=torch.float64).reshape(steps, -1)
        order = self.on_device + [k for k in self.names if k not in self.on_device]
        table = torch.cat([device_part, host_part], dim=1)
        return self.names, table[:, [order.index(k) for k in self.names]]


@dataclass(frozen=True)
class Budget:
    """How long a run trains: ``epochs``, ``steps`` (optimizer steps) or ``seconds`` (of training steps)."""

    epochs: int | None = None
    steps: int | None = None
    seconds: float | None = None

    def __post_init__(self):
        if sum(v is not None for v in (self.epochs, self.steps, self.seconds)) != 1:
            raise ValueError("a budget is exactly one of epochs, steps or seconds")

    @property
    def unit(self) -> str:
        return "epochs" if self.epochs is not None else "steps" if self.steps is not None else "seconds"

    def max_epochs(self, steps_per_epoch: int) -> int | None:
        if self.epochs is not None:
            return self.epochs
        if self.steps is not None:
            return math.ceil(self.steps / steps_per_epoch)
        return None  # as many as fit in the seconds

    def describe(self) -> str:
        value = getattr(self, self.unit)
        return f"{value:g} {self.unit}"


def gradient_clipper(model: torch.nn.Module, grad_clip) -> Callable[[], None] | None:
    """A function that clips the gradients as ``Recipe.grad_clip`` says, or ``None``."""
    if grad_clip is None:
        return None
    if isinstance(grad_clip, (int, float)):
        groups = [(list(model.parameters()), float(grad_clip))]
    else:
        groups = [(list(model.get_submodule(name).parameters()), float(norm)) for name, norm in grad_clip.items()]

    def clip() -> None:
        for params, norm in groups:
            torch.nn.utils.clip_grad_norm_(params, norm)

    return clip


def default_param_groups(model: torch.nn.Module) -> Callable[[float], list[dict]]:
    return lambda lr: [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]


OPTIMIZERS = ("adam", "adam-normgrad", "adamax", "sgd")


class AdamNormGrad(torch.optim.Adam):
    """Adam on normalised gradients: each parameter tensor's gradient is first divided by its
    own L2 norm plus 1e-7 (Tomczak & Welling 2018's code, ``utils/optimizer.py``), then the
    plain (bias-corrected) Adam update follows."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.div_(torch.linalg.vector_norm(p.grad) + 1e-7)
        super().step()
        return loss


def make_optimizer(name: str, groups: list[dict], beta1: float = 0.9, eps: float = 1e-8) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``groups``; ``beta1`` and ``eps`` are Adam's and Adamax's (beta2 stays 0.999)."""
    # fused: one kernel updates every parameter (CPU and CUDA); the per-parameter
    # loop is a large share of a small model's training step on the CPU.
    if name == "adam":
        return torch.optim.Adam(groups, betas=(beta1, 0.999), eps=eps, fused=True)
    if name == "adam-normgrad":
        return AdamNormGrad(groups, betas=(beta1, 0.999), eps=eps, foreach=True)
    if name == "adamax":
        return torch.optim.Adamax(groups, betas=(beta1, 0.999), eps=eps, foreach=True)
    if name == "sgd":
        return torch.optim.SGD(groups, momentum=0.9, fused=True)
    raise UsageError(f"unknown optimizer '{name}'; choose {', '.join(OPTIMIZERS)}")


SELECT_EPOCHS = ("best-val", "last")


def _notify(callbacks, method: str, *args) -> None:
    """Call ``method`` on every callback that has it; a failing callback costs a warning, never the run."""
    import logging

    for callback in callbacks:
        fn = getattr(callback, method, None)
        if fn is None:
            continue
        try:
            fn(*args)
        except Exception as exc:  # a tracker that fails must not stop training
            logging.getLogger("vaebench.callbacks").warning(
                "callback %s.%s failed (%s: %s); the run goes on", getattr(callback, "name", type(callback).__name__), method,
                type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "",
            )


def train(
    recipe: Recipe,
    data: ImageData,
    *,
    budget: Budget | int,
    batch_size: int,
    lr: float,
    optimizer: str,
    seed: int,
    device: torch.device,
    run_dir: Path,
    run_name: str = "run",
    reporter: Reporter | None = None,
    patience: int | None = None,
    resume: bool = False,
    select_epoch: str = "best-val",
    lr_milestones: tuple[int, ...] = (),
    lr_gamma: float = 0.1,
    callbacks: tuple = (),
    run_info: dict | None = None,
    adam_beta1: float = 0.9,
    adam_eps: float = 1e-8,
    train_step: str = "auto",
) -> TrainingResult:
    """Train ``recipe`` on ``data.train``; raise :class:`TrainingFailure` on a non-finite term.

    ``budget`` is a :class:`Budget` (an int means that many epochs). After every epoch
    ``recipe.validation`` scores the model on the validation split (when the recipe has
    one). With ``select_epoch="best-val"`` the weights of the best-scoring epoch are
    restored at the end, and ``patience`` stops training after that many epochs without
    improvement. ``"last"`` keeps the last epoch's weights. ``lr_milestones`` (epochs)
    and ``lr_gamma`` give a step schedule of the learning rate. Each callback's
    ``on_epoch_end(run_info, record)`` is called after every epoch. ``train_step``
    (auto, compiled or eager) picks the step's path (:mod:`vaebench.fast.train_step`);
    a full batch takes the compiled step when the run allows it, a partial last batch
    the eager one, and the path a run used is kept in its checkpoint for ``resume``.
    """
    began = time.perf_counter()
    if isinstance(budget, int):
        budget = Budget(epochs=budget)
    if select_epoch not in SELECT_EPOCHS:
        raise ValueError(f"select_epoch must be one of {SELECT_EPOCHS}, got {select_epoch!r}")
    reporter = reporter or SilentReporter()
    validation = recipe.validation
    keep_best = select_epoch == "best-val" and validation is not None
    torch.manual_seed(seed)
    # an objective is any callable (model, batch, progress) -> Terms; Objective subclasses also move
    # to the device and carry state through checkpoints (the score-function baseline)
    model, objective = recipe.model.to(device), recipe.objective
    if hasattr(objective, "to"):
        objective = objective.to(device)
    groups = (recipe.param_groups or default_param_groups(model))(lr)
    opt = make_optimizer(optimizer, groups, adam_beta1, adam_eps)
    schedule = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(lr_milestones), gamma=lr_gamma) if lr_milestones else None
    generator = torch.Generator(device=device).manual_seed(seed)

    n = len(data.train)
    steps_per_epoch = math.ceil(n / batch_size)
    max_epochs = budget.max_epochs(steps_per_epoch)
    total_steps = budget.steps if budget.steps is not None else (max_epochs * steps_per_epoch if max_epochs else None)
    history: list[dict] = []
    recorded_path = None
    start_epoch, best, best_epoch, best_state, waited = 0, math.inf, None, None, 0
    train_seconds, train_images, steps_run = 0.0, 0, 0
    earlier_wall: float | None = 0.0  # the training wall time of the processes before this one (resumed runs)
    checkpoint_path = Path(run_dir) / CHECKPOINT
    if resume and checkpoint_path.exists():
        ckpt = load_torch(checkpoint_path, map_location="cpu")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if schedule is not None and ckpt.get("schedule") is not None:
            schedule.load_state_dict(ckpt["schedule"])
        if hasattr(objective, "load_state_dict"):
            objective.load_state_dict(ckpt["objective"])
        _set_rng_state(ckpt["rng"], device)
        generator.set_state(ckpt["generator"])
        history = list(ckpt["history"])
        start_epoch = int(ckpt["epoch"]) + 1
        best, best_epoch, waited = float(ckpt["best"]), ckpt["best_epoch"], int(ckpt["waited"])
        best_state = ckpt.get("best_state")
        train_seconds, train_images = float(ckpt["train_seconds"]), int(ckpt["train_images"])
        steps_run = int(ckpt.get("steps_run", start_epoch * steps_per_epoch))
        recorded_path = ckpt.get("step_path", "eager")  # checkpoints from before the compiled step were eager
        earlier_wall = ckpt.get("wall_seconds")  # None: a checkpoint written before wall time was kept
    resumed_from = start_epoch
    path, compiled_step, probe_pending = _choose_step(train_step, model, opt, objective, recipe.grad_clip, device, total_steps, budget,
                                                      recorded_path if resumed_from else None)

    clip = gradient_clipper(model, recipe.grad_clip)
    reporter.start(run_name, max_epochs)
    for record in history:
        reporter.epoch(run_name, {**record, "resumed": True})  # trained before this process: no rate to time
    model.train()
    stopped_early = False
    epoch = start_epoch

    def budget_left() -> bool:
        if budget.epochs is not None:
            return epoch < budget.epochs
        if budget.steps is not None:
            return steps_run < budget.steps
        return train_seconds < budget.seconds

    while budget_left():
        if patience is not None and waited >= patience:
            stopped_early = True
            break
        sync(device)
        t0 = time.perf_counter()
        permutation = torch.randperm(n, device=device, generator=generator)
        log = EpochLog(steps_per_epoch, device)
        done, images = 0, 0
        for step in range(steps_per_epoch):
            if budget.steps is not None and steps_run >= budget.steps:
                break
            if budget.seconds is not None and step > 0 and train_seconds + time.perf_counter() - t0 >= budget.seconds:
                break
            index = permutation[step * batch_size : (step + 1) * batch_size]
            x, y = data.training_batch(index)
            if budget.seconds is not None:
                fraction = min(1.0, (train_seconds + time.perf_counter() - t0) / budget.seconds)
            else:
                fraction = None
            progress = Progress(epoch, step, steps_per_epoch, max_epochs or epoch + 1, total_steps=total_steps, time_fraction=fraction)
            out = compiled_step(x, y, index, progress) if compiled_step is not None and not probe_pending and len(index) == batch_size else None
            if out is None:
                if compiled_step is not None:
                    compiled_step.sync_out()  # the eager step reads and writes the model and the optimizer
                    if compiled_step.failed is not None:
                        path, compiled_step = StepPath("eager", f"compiling failed: {compiled_step.failed}"), None
                seen = RecordingProgress(progress) if probe_pending else progress
                terms = objective(model, Batch(x, y, index), seen)
                opt.zero_grad(set_to_none=True)
                terms.loss.backward()
                if clip is not None:
                    clip()
                opt.step()
                if probe_pending:
                    probe_pending = False
                    if seen.read:
                        path, compiled_step = StepPath("eager", f"the objective reads the training progress ({seen.read[0]}): a schedule"), None
                out = terms.loss.detach(), terms.logs
            log.add(step, {"loss": out[0], **out[1]})
            done += 1
            steps_run += 1
            images += len(index)
        if compiled_step is not None:
            compiled_step.sync_out()  # validation, callbacks and the checkpoint see the model and the optimizer
        names, table = log.read(done)  # the epoch's one host synchronisation
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        train_images += images
        finite = torch.isfinite(table)
        if not finite.all():
            bad = int((~finite).any(dim=1).nonzero()[0])
            term = names[int((~finite[bad]).nonzero()[0])]
            raise TrainingFailure(f"non-finite {term} at epoch {epoch}, step {bad}")
        batch_sizes = torch.full((done, 1), float(batch_size), dtype=torch.float64)
        batch_sizes[-1] = images - batch_size * (done - 1)
        totals = (table * batch_sizes).sum(dim=0).tolist()
        record = {"epoch": epoch, **{name: total / images for name, total in zip(names, totals)}}
        record["train_seconds"] = seconds
        record["train_images_per_s"] = images / seconds if seconds > 0 else float("nan")
        record["lr"] = opt.param_groups[0]["lr"]
        record["train_step"] = path.name
        if validation is not None:
            score = record[validation.name] = validation(model, data)
            model.train()
            if not math.isfinite(score):
                raise TrainingFailure(f"non-finite {validation.name} at epoch {epoch}")
            if score < best:
                best, best_epoch, waited = score, epoch, 0
                if keep_best:
                    best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
        if recipe.epoch_metrics is not None:
            record.update(recipe.epoch_metrics(model, data))
            model.train()
        if schedule is not None:
            schedule.step()
        history.append(record)
        reporter.epoch(run_name, record)
        _notify(callbacks, "on_epoch_end", run_info or {"run": run_name}, record)
        save_torch(
            checkpoint_path,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "schedule": None if schedule is None else schedule.state_dict(),
                "objective": objective.state_dict() if hasattr(objective, "state_dict") else {},
                "rng": _rng_state(device),
                "generator": generator.get_state(),
                "history": history,
                "epoch": epoch,
                "best": best,
                "best_epoch": best_epoch,
                "waited": waited,
                "best_state": best_state,
                "train_seconds": train_seconds,
                "train_images": train_images,
                "steps_run": steps_run,
                "step_path": path.name,
                "wall_seconds": None if earlier_wall is None else earlier_wall + time.perf_counter() - began,
            },
        )
        epoch += 1
    if keep_best and best_state is not None:
        model.load_state_dict(best_state)  # the best validation epoch is the one evaluated
    sync(device)
    memory, memory_method = peak_memory_mb(device)
    return TrainingResult(
        history=history,
        train_seconds=train_seconds,
        train_images=train_images,
        epochs_run=len(history),
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        resumed_from_epoch=resumed_from,
        selected_epoch=best_epoch if keep_best and best_state is not None else len(history) - 1,
        steps_run=steps_run,
        step_path=path,
        wall_seconds=None if earlier_wall is None else earlier_wall + time.perf_counter() - began,
        peak_memory_mb=memory,
        peak_memory_method=memory_method,
    )


def _choose_step(requested: str, model, opt, objective, grad_clip, device, total_steps, budget: Budget, recorded: str | None):
    """(path, the compiled step or None, whether its first step probes the objective eagerly).

    A resumed run keeps the path its checkpoint records, so that it continues bit-identically,
    except that ``--train-step compiled`` moves an eagerly trained run onto the compiled step
    (the numbers then agree to float32 rounding, not bit for bit); each epoch's record says
    which path trained it. A fresh or switched run's first step is eager and records whether
    the objective reads the progress.
    """
    path = step_path(requested, optimizer=opt, objective=objective, grad_clip=grad_clip, device=device,
                     total_steps=total_steps, seconds=budget.seconds)
    switched = recorded == "eager" and path.name == "compiled"
    if switched and requested != "compiled":
        path = StepPath("eager", "the run's checkpoint was trained eagerly (--train-step compiled switches it)")
    elif switched:
        path = StepPath("compiled", "resumed an eagerly trained checkpoint; --train-step compiled from there on")
    if path.name != "compiled":
        return path, None, False
    try:
        step = CompiledAdamStep(model, objective, opt)
    except ValueError as error:
        return StepPath("eager", str(error)), None, False
    return path, step, recorded is None or switched  # a switched run probes the objective again


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
