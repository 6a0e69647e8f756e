"""The training loop for one run: data batches -> objective -> optimizer step.

The training split lives on the device; each epoch draws a permutation there
and slices it into batches. Logged terms are summed on the device and read
once per epoch, so the loop never waits on the host per step. The checkpoint
(model, optimizer, objective state such as the score-function baseline, RNG
states, history) is written atomically at the end of every epoch, so a run
can resume after ``kill -9``.
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
from vaebench.errors import TrainingFailure
from vaebench.objectives import Batch
from vaebench.schedules import Progress
from vaebench.variant import Recipe, default_param_groups, make_optimizer

CHECKPOINT = "checkpoint.pt"


class Reporter(Protocol):
    def start(self, run: str, epochs: int) -> None: ...
    def epoch(self, run: str, record: dict) -> None: ...
    def stage(self, run: str, text: str) -> None: ...
    def finish(self, run: str, status: str) -> None: ...


class SilentReporter:
    def start(self, run, epochs):
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
    extra: dict = field(default_factory=dict)

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

    def read(self) -> tuple[list[str], Tensor]:
        """(names, [step, term] float64 table on the CPU)."""
        device_part = self.rows.to("cpu", torch.float64)
        host_part = torch.tensor(self.host, dtype=torch.float64).reshape(self.steps, -1)
        order = self.on_device + [k for k in self.names if k not in self.on_device]
        table = torch.cat([device_part, host_part], dim=1)
        return self.names, table[:, [order.index(k) for k in self.names]]


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


SELECT_EPOCHS = ("best-val", "last")


def train(
    recipe: Recipe,
    data: ImageData,
    *,
    epochs: int,
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
) -> TrainingResult:
    """Train ``recipe`` on ``data.train``; raise :class:`TrainingFailure` on a non-finite term.

    After every epoch ``recipe.validation`` scores the model on the validation split
    (when the recipe has one). With ``select_epoch="best-val"`` the weights of the
    best-scoring epoch are restored at the end, and ``patience`` stops training after
    that many epochs without improvement. ``"last"`` keeps the last epoch's weights.
    """
    if select_epoch not in SELECT_EPOCHS:
        raise ValueError(f"select_epoch must be one of {SELECT_EPOCHS}, got {select_epoch!r}")
    reporter = reporter or SilentReporter()
    validation = recipe.validation
    keep_best = select_epoch == "best-val" and validation is not None
    torch.manual_seed(seed)
    model, objective = recipe.model.to(device), recipe.objective.to(device)
    groups = (recipe.param_groups or default_param_groups(model))(lr)
    opt = make_optimizer(optimizer, groups)
    generator = torch.Generator(device=device).manual_seed(seed)

    n = len(data.train)
    steps_per_epoch = math.ceil(n / batch_size)
    history: list[dict] = []
    start_epoch, best, best_epoch, best_state, waited = 0, math.inf, None, None, 0
    train_seconds, train_images = 0.0, 0
    checkpoint_path = Path(run_dir) / CHECKPOINT
    if resume and checkpoint_path.exists():
        ckpt = load_torch(checkpoint_path, map_location="cpu")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        objective.load_state_dict(ckpt["objective"])
        _set_rng_state(ckpt["rng"], device)
        generator.set_state(ckpt["generator"])
        history = list(ckpt["history"])
        start_epoch = int(ckpt["epoch"]) + 1
        best, best_epoch, waited = float(ckpt["best"]), ckpt["best_epoch"], int(ckpt["waited"])
        best_state = ckpt.get("best_state")
        train_seconds, train_images = float(ckpt["train_seconds"]), int(ckpt["train_images"])
    resumed_from = start_epoch

    clip = gradient_clipper(model, recipe.grad_clip)
    reporter.start(run_name, epochs)
    for record in history:
        reporter.epoch(run_name, record)
    model.train()
    stopped_early = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, epochs):
        if patience is not None and waited >= patience:
            stopped_early = True
            break
        sync(device)
        t0 = time.perf_counter()
        permutation = torch.randperm(n, device=device, generator=generator)
        log = EpochLog(steps_per_epoch, device)
        for step in range(steps_per_epoch):
            index = permutation[step * batch_size : (step + 1) * batch_size]
            x, y = data.training_batch(index)
            progress = Progress(epoch, step, steps_per_epoch, epochs)
            terms = recipe.objective(model, Batch(x, y, index), progress)
            opt.zero_grad(set_to_none=True)
            terms.loss.backward()
            if clip is not None:
                clip()
            opt.step()
            log.add(step, {"loss": terms.loss.detach(), **terms.logs})
        names, table = log.read()  # the epoch's one host synchronisation
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        train_images += n
        finite = torch.isfinite(table)
        if not finite.all():
            step = int((~finite).any(dim=1).nonzero()[0])
            term = names[int((~finite[step]).nonzero()[0])]
            raise TrainingFailure(f"non-finite {term} at epoch {epoch}, step {step}")
        batch_sizes = torch.full((steps_per_epoch, 1), float(batch_size), dtype=torch.float64)
        batch_sizes[-1] = n - batch_size * (steps_per_epoch - 1)
        totals = (table * batch_sizes).sum(dim=0).tolist()
        record = {"epoch": epoch, **{name: total / n for name, total in zip(names, totals)}}
        record["train_seconds"] = seconds
        record["train_images_per_s"] = n / seconds if seconds > 0 else float("nan")
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
        history.append(record)
        reporter.epoch(run_name, record)
        save_torch(
            checkpoint_path,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "objective": objective.state_dict(),
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
            },
        )
    if keep_best and best_state is not None:
        model.load_state_dict(best_state)  # the best validation epoch is the one evaluated
    return TrainingResult(
        history=history,
        train_seconds=train_seconds,
        train_images=train_images,
        epochs_run=len(history),
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        resumed_from_epoch=resumed_from,
        selected_epoch=best_epoch if keep_best and best_state is not None else len(history) - 1,
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
