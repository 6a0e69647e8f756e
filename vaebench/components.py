"""What every registered component shares: a name, a description, a reference, and typed options.

Variants, priors and objectives are components. Their ``options`` are either a dict of
defaults (each option's type is its default's; numbers must be finite) or a pydantic
model, which may also state ranges::

    class Options(BaseModel):
        components: int = Field(16, ge=1, description="mixture components")

    class MoGPrior(Variant):
        options = Options

Options are set per run: ``--option mog-prior.components=32`` on the command line,
``options = { components = 32 }`` in a suite's run table. A bad value is one line
naming the option, where it came from, and what is accepted.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from vaebench.errors import UsageError

OPTIONS_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class Component:
    """Base class of variants, priors and objectives (see the module docstring)."""

    kind: ClassVar[str] = "component"
    name: str = ""
    description: str = ""
    reference: str = ""
    options: dict[str, Any] | type[BaseModel] = {}

    def option_model(self) -> type[BaseModel]:
        return option_model(self.name, self.options)

    def option_defaults(self) -> dict[str, Any]:
        return self.option_model()().model_dump()

    def resolve_options(self, overrides: dict[str, Any], sources: dict[str, str] | None = None) -> dict[str, Any]:
        """The defaults with ``overrides`` applied and checked; :class:`UsageError` names a bad one."""
        return resolve_options(self.name, self.kind, self.options, overrides, sources)


def option_model(name: str, options: dict[str, Any] | type[BaseModel]) -> type[BaseModel]:
    if isinstance(options, type) and issubclass(options, BaseModel):
        return options
    fields = {key: (type(default), default) for key, default in dict(options or {}).items()}
    return create_model(f"{name or 'component'}_options", __config__=OPTIONS_CONFIG, **fields)


def resolve_options(name: str, kind: str, options, overrides: dict[str, Any], sources: dict[str, str] | None = None) -> dict:
    model = option_model(name, options)
    known = list(model.model_fields)
    unknown = sorted(set(overrides) - set(known))
    sources = sources or {}
    if unknown:
        where = sources.get(unknown[0])
        listed = ", ".join(known) or "none"
        raise UsageError(f"{kind} '{name}' has no option '{unknown[0]}'{_from(where)}; its options are: {listed}")
    try:
        return model(**overrides).model_dump()
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error.get("loc") else "?"
        field = model.model_fields.get(key)
        accepted = _accepted(field) if field is not None else "see the component's docstring"
        message = error.get("msg", "invalid").removeprefix("Value error, ").lower()
        return_value = overrides.get(key)
        raise UsageError(
            f"option {name}.{key}{_from(sources.get(key))} got {return_value!r}: {message}; accepted: {accepted}"
        ) from None


def _from(where: str | None) -> str:
    return f" (from {where})" if where else ""


def _accepted(field) -> str:
    from typing import get_args

    annotation = field.annotation
    optional = type(None) in get_args(annotation)
    if optional:
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    words = {bool: "on or off", int: "a whole number", float: "a finite number", str: "text"}.get(annotation, str(annotation))
    bounds = []
    for item in field.metadata:
        for attr, text in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(item, attr, None)
            if value is not None:
                bounds.append(f"{text} {value}")
    default = "unset: the component chooses" if field.default is None else f"default {field.default!r}"
    return words + (f" {' and '.join(bounds)}" if bounds else "") + f" ({default})"


def split_run_options(run_name: str, options: dict[str, Any], components: dict[str, Component], sources: dict[str, str] | None = None
                      ) -> dict[str, dict[str, Any]]:
    """A run's options by component name.

    ``components`` maps a role (variant, prior, objective) to the component. A qualified key
    ``component.key`` goes to that component; a plain ``key`` goes to whichever of the run's
    components has that option (an error when none or several do).
    """
    sources = sources or {}
    by_name = {c.name: c for c in components.values()}
    out: dict[str, dict[str, Any]] = {c.name: {} for c in components.values()}
    for key, value in options.items():
        where = sources.get(key)
        if "." in key:
            component, option = key.split(".", 1)
            if component not in by_name:
                raise UsageError(
                    f"option '{key}'{_from(where)} is for '{component}', which run '{run_name}' does not use; "
                    f"its components are: {', '.join(by_name)}"
                )
        else:
            owners = [c.name for c in components.values() if key in c.option_model().model_fields]
            if not owners:
                listed = "; ".join(f"{c.name}: {', '.join(c.option_model().model_fields) or 'none'}" for c in components.values())
                raise UsageError(f"no component of run '{run_name}' has option '{key}'{_from(where)}; options by component: {listed}")
            if len(owners) > 1:
                raise UsageError(f"option '{key}'{_from(where)} is ambiguous in run '{run_name}'; write {' or '.join(o + '.' + key for o in owners)}")
            component, option = owners[0], key
        out[component][option] = value
    return out


class PriorComponent(Component):
    """A registered prior: ``build(context) -> Prior`` over the run's continuous latent
    (``context.settings.latent_dim`` dimensions; ``context.options`` holds its options).

    A prior that needs the model (the VampPrior evaluates the encoder on its pseudo-inputs)
    defines ``bind(model)``; models that accept priors call it.
    """

    kind: ClassVar[str] = "prior"

    def build(self, context):
        raise NotImplementedError


class ObjectiveComponent(Component):
    """A registered training objective: ``build(context) -> Objective`` (see vaebench.objectives)."""

    kind: ClassVar[str] = "objective"

    def build(self, context):
        raise NotImplementedError
