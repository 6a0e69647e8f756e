"""The training step as one compiled program: objective, gradients and Adam's update.

At the batch sizes papers train with (20 images), an eager step is almost all overhead:
the autograd engine, one kernel launch per operation, and Adam's loop over parameters.
:class:`CompiledAdamStep` traces the whole step into one graph that ``torch.compile``
(Inductor) turns into C++ kernels:

* the objective's forward pass, called on a functional copy of the model
  (``torch.func.functional_call``) whose parameters are views of one flat buffer;
* its gradients, ``torch.func.grad_and_value`` with respect to that buffer;
* Adam's update of the buffer and of its two moment buffers, the formula of
  ``torch.optim.Adam`` (non-fused, non-capturable) line for line.

While the compiled step runs, the flat buffers hold the truth; :meth:`CompiledAdamStep.sync_out`
writes them back into the model's parameters and the ``torch.optim.Adam``'s state (the
training loop does so before every validation, checkpoint and eager step), so checkpoints
are ordinary model and optimizer state dicts, and a run can move between the paths.

Random draws inside the graph (the reparameterisation noise) use PyTorch's own generator
(Inductor's ``fallback_random``), so the compiled step draws the very numbers the eager one
does and the two paths agree up to float32 rounding (a test trains both and compares).

:func:`step_path` decides, per run, which path trains and why: the compiled step needs
Adam with one parameter group and no gradient clipping, an objective that keeps no state
of its own between steps (``compiles = False`` on the objective opts out; the
score-function baseline does), does not read the training progress (a schedule would
recompile the step as its value changes), and a CPU. ``auto`` also asks for a run long
enough to repay compiling (:data:`AUTO_MIN_STEPS`). Any failure to compile falls back to
the eager step for the rest of the run, logged once.
"""

from __future__ import annotations

import logging
import math
import traceback
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vaebench.errors import first_line
from vaebench.fast import _load_compiler_quietly, fast_paths_enabled

log = logging.getLogger(__name__)

# Optimizer steps a run must have before ``auto`` compiles: a cold compile costs about 30 s on
# 2 CPU cores (4 s from a warm cache), which a saving of >= 1 ms a step repays after 30,000 steps;
# this threshold keeps short runs (the quickstart, a 100-epoch MNIST run at batch 128) eager.
AUTO_MIN_STEPS = 100_000
# Inductor options: PyTorch's own random numbers (the eager path's), and a C++ wrapper
# around the kernels, which saves about 0.15 ms a step at batch 20 on 2 CPU cores.
INDUCTOR_OPTIONS = {"fallback_random": True, "cpp_wrapper": True}
STEP_PATHS = ("auto", "compiled", "eager")


@dataclass(frozen=True)
class StepPath:
    """Which training step a run uses (``compiled`` or ``eager``) and why."""

    name: str
    reason: str


def step_path(requested: str, *, optimizer: torch.optim.Optimizer, objective: Any, grad_clip: Any,
              device: torch.device, total_steps: int | None, seconds: float | None) -> StepPath:
    """The path a run's training step takes, from the ``--train-step`` setting and what the run is."""
    if requested not in STEP_PATHS:
        raise ValueError(f"train step must be one of {STEP_PATHS}, got {requested!r}")
    if requested == "eager":
        return StepPath("eager", "--train-step eager")
    refusal = _refusal(optimizer, objective, grad_clip, device)
    if refusal:
        return StepPath("eager", refusal)
    if requested == "auto":
        long_enough = (total_steps is not None and total_steps >= AUTO_MIN_STEPS) or (seconds is not None and seconds >= 300)
        if not long_enough:
            return StepPath("eager", f"a run of fewer than {AUTO_MIN_STEPS:,} steps does not repay compiling (--train-step compiled forces it)")
    return StepPath("compiled", "one compiled graph: objective, gradients and Adam")


def _refusal(optimizer, objective, grad_clip, device) -> str:
    """Why the compiled step cannot train this run, or '' when it can."""
    if not fast_paths_enabled():
        return "VAEBENCH_FAST=0"
    if device.type != "cpu":
        return f"the compiled step is measured on the CPU only; {device.type} trains eagerly with fused Adam"
    if type(optimizer) is not torch.optim.Adam:  # a subclass (AdamNormGrad) changes the update
        return f"the compiled step implements Adam; {type(optimizer).__name__} trains eagerly"
    if len(optimizer.param_groups) != 1:
        return "the variant has its own optimizer parameter groups"
    group = optimizer.param_groups[0]
    if group.get("weight_decay") or group.get("amsgrad") or group.get("maximize"):
        return "Adam with weight decay, amsgrad or maximize trains eagerly"
    if grad_clip is not None:
        return "the variant clips its gradients"
    if not getattr(objective, "compiles", True):
        return f"the objective {type(objective).__name__} keeps state between steps"
    return ""


class RecordingProgress:
    """A :class:`vaebench.schedules.Progress` that records whether anything read it.

    The first step of a run is taken eagerly with one, so that an objective whose loss
    follows a schedule (KL annealing, capacities) is seen to read the progress and
    trains eagerly: compiled, every new value would be a new graph.
    """

    def __init__(self, progress):
        object.__setattr__(self, "_progress", progress)
        object.__setattr__(self, "read", [])

    def __getattr__(self, name):
        self.read.append(name)
        return getattr(self._progress, name)


class _ObjectiveCall(nn.Module):
    """``objective(model, Batch(x, y, index), progress)`` as a module, for ``functional_call``."""

    def __init__(self, model: nn.Module, objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x, y, index, progress):
        from vaebench.objectives import Batch

        terms = self.objective(self.model, Batch(x, y, index), progress)
        return terms.loss, terms.logs


class CompiledAdamStep:
    """One optimizer step of ``objective`` on ``model`` with ``optimizer`` (a one-group
    ``torch.optim.Adam``), as one compiled graph over flat parameter and moment buffers."""

    def __init__(self, model: nn.Module, objective, optimizer: torch.optim.Adam):
        self.model, self.optimizer = model, optimizer
        self.call = _ObjectiveCall(model, objective)
        group = optimizer.param_groups[0]
        self.params: list[nn.Parameter] = list(group["params"])
        names = {id(p): name for name, p in self.call.named_parameters()}
        missing = [p for p in self.params if id(p) not in names]
        if missing:
            raise ValueError("the optimizer holds parameters that are not the model's")
        self.names = [names[id(p)] for p in self.params]
        self.shapes = [p.shape for p in self.params]
        self.sizes = [p.numel() for p in self.params]
        device, dtype = self.params[0].device, self.params[0].dtype
        total = sum(self.sizes)
        self.flat = torch.zeros(total, device=device, dtype=dtype)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.steps = 0
        self.active = False  # whether the flat buffers, not the model and optimizer, hold the truth
        self.failed: str | None = None
        self.warmed = False  # whether the objective has run eagerly in this process (see _warm_up)
        self.compiled = torch.compile(self._program(), fullgraph=True, options=INDUCTOR_OPTIONS)

    # --- moving state between the model/optimizer and the flat buffers

    def _views(self, flat: Tensor) -> list[Tensor]:
        return [t.view(shape) for t, shape in zip(flat.split(self.sizes), self.shapes)]

    @torch.no_grad()
    def sync_in(self) -> None:
        """Copy the model's parameters and Adam's state into the flat buffers."""
        for view, p in zip(self._views(self.flat), self.params):
            view.copy_(p)
        state = [self.optimizer.state.get(p, {}) for p in self.params]
        if all("exp_avg" in s for s in state):
            for buffer, key in ((self.exp_avg, "exp_avg"), (self.exp_avg_sq, "exp_avg_sq")):
                for view, s in zip(self._views(buffer), state):
                    view.copy_(s[key])
            self.steps = int(float(state[0]["step"]))
        else:
            self.exp_avg.zero_()
            self.exp_avg_sq.zero_()
            self.steps = 0
        self.active = True

    @torch.no_grad()
    def sync_out(self) -> None:
        """Write the flat buffers back into the model's parameters and Adam's state."""
        if not self.active:
            return
        fused = bool(self.optimizer.param_groups[0].get("fused"))
        for p, value, avg, avg_sq in zip(self.params, self._views(self.flat), self._views(self.exp_avg), self._views(self.exp_avg_sq)):
            p.copy_(value)
            state = self.optimizer.state[p]
            step_device = p.device if fused else torch.device("cpu")
            state["step"] = torch.tensor(float(self.steps), dtype=torch.float32, device=step_device)
            state["exp_avg"] = avg.clone()
            state["exp_avg_sq"] = avg_sq.clone()
        self.active = False

    # --- the step

    def _program(self):
        """The step as a function of tensors (and the progress) alone: what ``torch.compile`` traces.

        Everything else it uses is bound here once, as constants, so that the compiled
        step's guards check its inputs and not the optimizer's or this object's attributes.
        """
        call, names, sizes, shapes = self.call, tuple(self.names), tuple(self.sizes), tuple(self.shapes)
        group = self.optimizer.param_groups[0]
        beta1, beta2 = (float(b) for b in group["betas"])
        eps = float(group["eps"])

        def loss(flat, x, y, index, progress):
            params = {name: t.view(shape) for name, t, shape in zip(names, flat.split(sizes), shapes)}
            value, logs = torch.func.functional_call(call, params, (x, y, index, progress), strict=False)
            return value, (value, logs)

        def step(flat, exp_avg, exp_avg_sq, hyper, x, y, index, progress):
            grad, (value, logs) = torch.func.grad(loss, has_aux=True)(flat, x, y, index, progress)
            # torch.optim.Adam's single-tensor update, with the host's step size and bias correction
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / hyper[1]).add_(eps)
            flat.sub_(hyper[0] * (exp_avg / denom))
            return value.detach(), {k: v.detach() if isinstance(v, Tensor) else v for k, v in logs.items()}

        return step

    def _warm_up(self, x: Tensor, y: Tensor, index: Tensor, progress) -> None:
        """Run the objective once eagerly, without gradients, leaving the random state as it was.

        Python caches the objective fills on its first call are then filled outside the
        trace: ``torch.distributions``' KL dispatch picks its rule with ``min`` over a
        generator on a cache miss, which Dynamo cannot trace. A fresh run's first step is
        eager anyway; a resumed run's first step would otherwise compile against a cold cache.
        """
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            buffers = [(b, b.clone()) for b in self.call.buffers()]  # running statistics stay as they were
            self.call(x, y, index, progress)
            for buffer, value in buffers:
                buffer.copy_(value)
        self.warmed = True

    def __call__(self, x: Tensor, y: Tensor, index: Tensor, progress) -> tuple[Tensor, dict] | None:
        """Take one step; ``(loss, logs)``, or ``None`` when compiling failed (the caller steps eagerly)."""
        if self.failed is not None:
            return None
        if not self.warmed:
            self._warm_up(x, y, index, progress)
        if not self.active:
            self.sync_in()
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        step = self.steps + 1
        hyper = torch.tensor([group["lr"] / (1 - beta1**step), math.sqrt(1 - beta2**step)], dtype=self.flat.dtype)
        try:
            _load_compiler_quietly()
            out = self.compiled(self.flat, self.exp_avg, self.exp_avg_sq, hyper, x, y, index, progress)
        except Exception as error:  # dynamo/inductor failures, a missing C++ compiler
            self.failed = first_line(error)
            log.warning("the compiled training step failed (%s); training eagerly from here, which is slower", self.failed)
            log.debug("the compiled training step's error:\n%s", "".join(traceback.format_exception(error)))
            self.sync_out()
            return None
        self.steps = step
        return out
