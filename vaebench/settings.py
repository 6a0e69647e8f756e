"""The run settings, defined once: type, range, default and help of every setting.

``vaebench run``'s flags, the keys a suite TOML accepts, the keyword arguments of
``vaebench.run()``, the defaults, the descriptions in every results row and the
comparison that ``--resume`` makes are all generated from :class:`RunSettings`.
A bad value is one line naming the setting, where it came from (a flag, a
file and line, or the API) and what is accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vaebench.errors import UsageError


@dataclass(frozen=True)
class Budget:
    """A budget preset: epochs and the default number of importance samples."""

    name: str
    epochs: int
    is_samples: int


BUDGETS = {
    "smoke": Budget("smoke", epochs=2, is_samples=100),
    "quick": Budget("quick", epochs=50, is_samples=1000),
    "standard": Budget("standard", epochs=100, is_samples=5000),
}
BUDGET_UNITS = ("epochs", "steps", "seconds")


def setting(default: Any, help: str, accepts: str, *, identity: bool = True, flag_metavar: str | None = None, **constraints):
    """A field of :class:`RunSettings`: its default, help text and accepted values in words.

    ``identity=False`` marks a setting that says where or how a run executes (data
    folder, device) rather than what it computes; ``--resume`` ignores its changes.
    """
    extra = {"accepts": accepts, "identity": identity, "metavar": flag_metavar}
    return Field(default, description=help, json_schema_extra=extra, **constraints)


PositiveInts = tuple[int, ...]


class RunSettings(BaseModel):
    """Everything a run is trained and evaluated with, apart from its components (variant, prior,
    objective) and their options. A suite shares one set; a run may override any of them."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # --- data
    dataset: str = setting("digits", "dataset: digits (offline), mnist, fashion-mnist, binarized-mnist or a plugin's", "a registered dataset name (see `vaebench list`)")
    data_dir: Path | None = setting(None, "folder holding MNIST/raw, FashionMNIST/raw or BinarizedMNIST (else $VAEBENCH_DATA, then the user cache)", "a folder", identity=False, flag_metavar="DIR")
    binarization: Literal["dynamic", "static", "threshold", "none"] = setting(
        "dynamic", "pixels: a Bernoulli draw per batch (dynamic), one draw (static), x >= 0.5 (threshold), grey (none)", "dynamic, static, threshold or none"
    )
    val_images: int | None = setting(None, "validation images held out of the training split (default: the dataset's split)", "a positive whole number", gt=0)
    val_split: Literal["random", "last"] = setting(
        "random", "which training images are held out for validation: a fixed-seed random subset, or the last ones (Tomczak & Welling 2018: the last 10,000)", "random or last"
    )
    # --- budget
    budget: Literal["smoke", "quick", "standard"] = setting("quick", "preset for epochs and K: smoke (2, 100), quick (50, 1000), standard (100, 5000)", "smoke, quick or standard")
    epochs: int | None = setting(None, "training epochs (default: the budget's)", "a positive whole number", gt=0)
    steps: int | None = setting(None, "train for this many optimizer steps instead of epochs", "a positive whole number", gt=0)
    seconds: float | None = setting(None, "train for this many seconds of training time instead of epochs", "a finite positive number of seconds", gt=0)
    # --- networks
    hidden: PositiveInts = setting((400,), "hidden layer widths of encoder and decoder (mirrored), e.g. 400 or 512,256", "comma-separated positive widths", flag_metavar="W[,W...]")
    activation: Literal["relu", "tanh", "gated"] = setting(
        "relu", "hidden layers: linear then relu or tanh, or gated linear units h(x)*sigmoid(g(x)) (Tomczak & Welling 2018's GatedDense)", "relu, tanh or gated"
    )
    init: Literal["torch", "glorot", "he"] = setting(
        "torch", "weights: PyTorch's default; Glorot-uniform, output bias at logit(mean image) (Burda et al. 2016's code); or N(0, 2/fan_in) (Tomczak & Welling 2018's code)", "torch, glorot or he"
    )
    latent_dim: int = setting(20, "size of the continuous latent", "a positive whole number", gt=0)
    likelihood: Literal["bernoulli", "gaussian"] = setting("bernoulli", "pixel likelihood p(x|z)", "bernoulli or gaussian")
    logvar_range: tuple[float, ...] = setting(
        (), "clip the encoder's log sigma^2 into [lo, hi] with a hard tanh, e.g. --logvar-range=-6,2 (Tomczak & Welling 2018's code); empty: unclipped", "two numbers lo,hi with lo < hi", flag_metavar="LO,HI"
    )
    # --- optimisation
    optimizer: Literal["adam", "adam-normgrad", "adamax", "sgd"] = setting(
        "adam", "optimizer; adam-normgrad is Adam on each tensor's gradient divided by its norm (Tomczak & Welling 2018's AdamNormGrad)", "adam, adam-normgrad, adamax or sgd"
    )
    lr: float = setting(1e-3, "learning rate", "a finite positive number", gt=0)
    adam_beta1: float = setting(0.9, "Adam's beta1 (Burda et al. 2016's code: 0.99; beta2 is 0.999)", "a number in [0, 1)", ge=0, lt=1)
    adam_eps: float = setting(1e-8, "Adam's epsilon (Burda et al. 2016: 1e-4)", "a finite positive number", gt=0)
    lr_milestones: PositiveInts = setting((), "epochs after which the learning rate is multiplied by --lr-gamma (a step schedule)", "comma-separated positive epochs, increasing", flag_metavar="E[,E...]")
    lr_gamma: float = setting(0.1, "factor of the step schedule", "a number in (0, 1]", gt=0, le=1)
    batch_size: int = setting(128, "training batch size", "a positive whole number", gt=0)
    patience: int | None = setting(None, "stop after this many epochs without a better validation score (off by default)", "a positive whole number", gt=0)
    select_epoch: Literal["best-val", "last"] = setting("best-val", "the weights evaluated: the best validation epoch, or the last", "best-val or last")
    # --- evaluation
    # identity=False: the metrics change no training; --resume keeps finished runs' values, and
    # `vaebench evaluate --metrics` adds a metric to runs that lack it
    metrics: tuple[str, ...] | None = setting(None, "metrics to compute (default: every registered metric)", "comma-separated registered metric names", identity=False, flag_metavar="M[,M...]")
    is_samples: int | None = setting(None, "importance samples K for IS-NLL (default: the budget's)", "a positive whole number", gt=0)
    is_precision: Literal["float32", "bfloat16"] = setting("float32", "the decoder's arithmetic inside IS-NLL (bfloat16 is faster where supported)", "float32 or bfloat16")
    # --- execution
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "where to train: auto picks CUDA when present", "auto, cpu or cuda", identity=False)
    train_step: Literal["auto", "compiled", "eager"] = setting(
        "auto", "training step: one compiled graph (objective, gradients, Adam), eager, or auto (compiled from 100,000 steps)",
        "auto, compiled or eager", identity=False,
    )

    @field_validator("lr", "seconds", "lr_gamma", "adam_eps")
    @classmethod
    def _finite(cls, value):
        if value is not None and not math.isfinite(value):
            raise ValueError("must be finite")
        return value

    @field_validator("hidden")
    @classmethod
    def _widths(cls, value):
        if not value or any(w <= 0 for w in value):
            raise ValueError("needs at least one width, each positive")
        return value

    @field_validator("logvar_range")
    @classmethod
    def _logvar_range(cls, value):
        if value and (len(value) != 2 or not all(math.isfinite(v) for v in value) or not value[0] < value[1]):
            raise ValueError("needs two finite numbers lo,hi with lo < hi")
        return value

    @field_validator("lr_milestones")
    @classmethod
    def _milestones(cls, value):
        if any(m <= 0 for m in value) or list(value) != sorted(set(value)):
            raise ValueError("must be positive epochs in increasing order")
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value):
        if value is not None and (not value or any(not m for m in value)):
            raise ValueError("needs at least one metric name")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        units = [u for u in BUDGET_UNITS if getattr(self, u) is not None]
        if len(units) > 1:
            raise ValueError(f"give one budget unit, not {' and '.join('--' + u for u in units)}")
        if self.binarization == "none" and self.likelihood == "bernoulli":
            raise ValueError(
                "binarization 'none' keeps grey pixels, which a Bernoulli likelihood cannot score; "
                "use --likelihood gaussian or --binarization dynamic"
            )
        return self

    # --- resolved values
    @property
    def budget_unit(self) -> str:
        return "steps" if self.steps is not None else "seconds" if self.seconds is not None else "epochs"

    @property
    def epochs_resolved(self) -> int | None:
        """Epochs to train: the setting, else the budget's unless steps or seconds bound training."""
        if self.epochs is not None:
            return self.epochs
        return None if self.budget_unit != "epochs" else BUDGETS[self.budget].epochs

    @property
    def is_samples_resolved(self) -> int:
        return self.is_samples if self.is_samples is not None else BUDGETS[self.budget].is_samples

    def describe(self) -> dict:
        """The settings as a results row records them: every value, resolved, JSON-ready."""
        data = self.model_dump(mode="json")
        data["epochs"] = self.epochs_resolved
        data["is_samples"] = self.is_samples_resolved
        data["budget_unit"] = self.budget_unit
        return data

    def identity(self) -> dict:
        """What ``--resume`` compares: every setting that changes what a run computes."""
        described = self.describe()
        return {k: v for k, v in described.items() if FIELDS.get(k) is None or FIELDS[k].identity}


@dataclass(frozen=True)
class FieldInfo:
    """One setting, as the CLI, the TOML reader and the docs see it."""

    name: str
    help: str
    accepts: str
    identity: bool
    metavar: str | None
    choices: tuple[str, ...] | None
    kind: str  # "int", "float", "str", "path", "ints", "floats", "strs"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _kind(annotation) -> tuple[str, tuple[str, ...] | None]:
    inner = annotation
    if get_origin(annotation) not in (Literal, tuple):  # X | None: the X
        inner = next((a for a in get_args(annotation) if a is not type(None)), annotation)
    if get_origin(inner) is Literal:
        return "str", tuple(get_args(inner))
    if get_origin(inner) is tuple:
        return {int: "ints", float: "floats"}.get(get_args(inner)[0], "strs"), None
    if inner is Path:
        return "path", None
    return {int: "int", float: "float", str: "str"}[inner], None


def _fields() -> dict[str, FieldInfo]:
    out = {}
    for name, field in RunSettings.model_fields.items():
        extra = field.json_schema_extra or {}
        kind, choices = _kind(field.annotation)
        out[name] = FieldInfo(name, field.description or "", extra["accepts"], extra["identity"], extra.get("metavar"), choices, kind)
    return out


FIELDS: dict[str, FieldInfo] = _fields()


def parse_text(name: str, text: str) -> Any:
    """A flag's text as the Python value its setting takes (lists split on commas); validation comes later."""
    kind = FIELDS[name].kind
    if kind in ("ints", "floats", "strs"):
        if kind == "floats" and not text.strip():
            return ()  # an empty range: the setting's "off"
        items = [item.strip() for item in text.split(",")]
        if kind == "strs":
            return tuple(items)
        try:
            return tuple((int if kind == "ints" else float)(item) for item in items)
        except ValueError:
            return text  # rejected with the accepted values by validation
    return text


def make_settings(values: dict[str, Any], sources: dict[str, str] | None = None, base: RunSettings | None = None) -> RunSettings:
    """Validate ``values`` (on top of ``base``) into :class:`RunSettings`.

    ``sources`` names where each value came from (``--lr``, ``suite.toml:7``, ``vaebench.run()``);
    the first invalid value raises :class:`UsageError` naming the setting, its source and what
    is accepted.
    """
    sources = sources or {}
    merged = {**(base.model_dump() if base is not None else {}), **values}
    unknown = sorted(set(merged) - set(FIELDS))
    if unknown:
        raise UsageError(
            f"unknown setting '{unknown[0]}'{_from(sources.get(unknown[0]))}; known settings: {', '.join(FIELDS)}"
        )
    try:
        return RunSettings(**merged)
    except ValidationError as exc:
        raise settings_error(exc, merged, sources) from None


def settings_error(exc: ValidationError, values: dict, sources: dict[str, str]) -> UsageError:
    error = exc.errors()[0]
    location = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
    name = location[0] if location else None
    message = error.get("msg", "invalid").removeprefix("Value error, ")
    if name is None or name not in FIELDS:  # a check across settings
        involved = [n for n in FIELDS if n in message or f"--{n}" in message]
        where = next((sources[n] for n in involved if n in sources), None)
        return UsageError(f"{message}{_from(where)}")
    info = FIELDS[name]
    shown = values.get(name)
    return UsageError(
        f"setting '{name}'{_from(sources.get(name))} got {_show(shown)}: {message.lower()}; accepted: {info.accepts}"
    )


def _from(source: str | None) -> str:
    return f" (from {source})" if source else ""


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "an empty list"
    return repr(value)


def reference_lines() -> list[str]:
    """The settings as the README's CLI reference lists them: flag, values, help, default."""
    lines = []
    for info in FIELDS.values():
        values = info.metavar or ("|".join(info.choices) if info.choices else info.kind.upper())
        default = RunSettings.model_fields[info.name].default
        shown = "" if default is None or default == () else f" (default {','.join(map(str, default)) if isinstance(default, tuple) else default})"
        lines.append(f"  {info.flag + ' ' + values:<38} {info.help}{shown}")
    return lines
