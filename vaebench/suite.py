"""Suites: named runs x seeds, each run a variant with its own prior, objective, options and settings.

A suite comes from a TOML file (``--suite``), from ``vaebench run`` flags, or from
``vaebench.run()``; all three end in :func:`make_suite`. Shared settings sit at the
top of a suite file; ``variants = [...]`` adds one run per variant, named after it;
``[runs.NAME]`` tables add runs with their own components, options and settings;
``[grids.NAME]`` expands one option over a list of values into one run per value::

    dataset = "mnist"
    seeds = [0, 1, 2]
    variants = ["gaussian", "mog-prior"]

    [runs.gaussian-vamp]
    variant = "gaussian"
    prior = "vampprior"

    [runs.iwae-k50]
    variant = "gaussian"
    objective = "iwae"
    options = { k = 50 }

    [grids.beta]
    variant = "example-beta-vae"
    option = "beta"
    values = [0.5, 1, 2, 4]

Every error names the setting, where it came from (file:line, flag or API) and
what is accepted.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaebench.errors import UsageError
from vaebench.settings import FIELDS, RunSettings, make_settings

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")
RUN_KEYS = {"variant", "prior", "objective", "options", "reference", "seeds"}
REFERENCE_KEYS = {"source": str, "value": (int, float), "samples": int, "epochs": int}
GRID_KEYS = {"variant", "prior", "objective", "options", "option", "values"}
SUITE_KEYS = {"variants", "seeds", "options", "runs", "grids"}


@dataclass(frozen=True)
class RunSpec:
    """One row of the leaderboard: a variant with its components, options and settings."""

    name: str
    variant: str
    settings: RunSettings
    prior: str | None = None
    objective: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # flat "key" or qualified "component.key" -> value
    reference: dict | None = None  # a published result this run reproduces (metrics/reference.py)
    seeds: list[int] | None = None  # this run's own seeds, where they differ from the suite's

    def components(self) -> dict[str, str]:
        out = {"variant": self.variant}
        if self.prior:
            out["prior"] = self.prior
        if self.objective:
            out["objective"] = self.objective
        return out


@dataclass
class Suite:
    runs: list[RunSpec]
    seeds: list[int]
    settings: RunSettings  # the shared settings (a run may override some)
    source: str = "command line"

    @property
    def variants(self) -> list[str]:
        return [r.variant for r in self.runs]

    def seeds_of(self, run: RunSpec) -> list[int]:
        return run.seeds if run.seeds is not None else self.seeds


def default_run_name(variant: str, prior: str | None, objective: str | None, options: dict[str, Any]) -> str:
    """A row name that says what differs: ``gaussian+vampprior+iwae+k=5``."""
    parts = [variant, *(p for p in (prior, objective) if p)]
    parts += [f"{key.split('.')[-1]}={option_text(value)}" for key, value in sorted(options.items())]
    return "+".join(parts)


def option_text(value: Any) -> str:
    """An option's value as run names and labels write it: 4.0 as 4, True as true."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).lower() if isinstance(value, bool) else str(value)


# ----------------------------------------------------------------------------- TOML


def read_suite_file(path: Path) -> dict[str, Any]:
    """Parse a suite file into :func:`make_suite` keywords, each value tagged with its file:line."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"suite file {path} does not exist; pass --suite with a TOML file (see benchmarks/)")
    try:
        text = path.read_text()
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"suite file {path} is not valid TOML ({exc}); fix the syntax at that line") from None
    lines = text.splitlines()

    def where(key: str, table: str | None = None) -> str:
        return f"{path}:{_line_of(lines, key, table)}"

    known = SUITE_KEYS | set(FIELDS)
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(
            f"suite file {where(unknown[0])} has unknown key '{unknown[0]}'; known keys: {', '.join(sorted(known))}"
        )
    for key in ("runs", "grids", "options"):
        if key in data and not isinstance(data[key], dict):
            raise UsageError(f"suite file {where(key)}: '{key}' must be a table ([{key}.NAME] sections), got {_type(data[key])}")
    settings = {k: v for k, v in data.items() if k in FIELDS}
    sources = {k: where(k) for k in settings}
    runs = {}
    for name, table in data.get("runs", {}).items():
        runs[name] = _table(path, lines, "runs", name, table, RUN_KEYS)
    grids = {}
    for name, table in data.get("grids", {}).items():
        grids[name] = _table(path, lines, "grids", name, table, GRID_KEYS)
    return {
        "variants": _tagged(data.get("variants"), where("variants")) if "variants" in data else None,
        "seeds": _tagged(data.get("seeds"), where("seeds")) if "seeds" in data else None,
        "options": _tagged(data.get("options"), where("options")) if "options" in data else None,
        "runs": runs,
        "grids": grids,
        "settings": settings,
        "sources": sources,
        "source": str(path),
    }


@dataclass
class Tagged:
    """A value read from a file, with the place it was read from."""

    value: Any
    where: str


def _tagged(value, where):
    return Tagged(value, where)


def _table(path: Path, lines: list[str], kind: str, name: str, table: Any, keys: set[str]) -> dict:
    header = f"{kind}.{name}"
    line = _line_of(lines, None, header)
    if not isinstance(table, dict):
        raise UsageError(f"suite file {path}:{_line_of(lines, name, kind)}: {header} must be a table, got {_type(table)}")
    allowed = keys | set(FIELDS)
    for key in table:
        if key not in allowed:
            raise UsageError(
                f"suite file {path}:{_line_of(lines, key, header)}: [{header}] has unknown key '{key}'; "
                f"known keys: {', '.join(sorted(allowed))}"
            )
    settings = {k: v for k, v in table.items() if k in FIELDS}
    return {
        "table": {k: v for k, v in table.items() if k not in FIELDS},
        "settings": settings,
        "sources": {k: f"{path}:{_line_of(lines, k, header)}" for k in table},
        "where": f"{path}:{line}",
    }


def _line_of(lines: list[str], key: str | None, table: str | None = None) -> int:
    """The 1-based line of ``key = ...`` (inside ``[table]`` when given), or of the table header."""
    start = 0
    if table is not None:
        headers = {f"[{table}]", f"[ {table} ]"}
        for i, line in enumerate(lines):
            if line.strip() in headers:
                start = i
                if key is None:
                    return i + 1
                break
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key or '')}[\"']?\s*=")
    for i in range(start, len(lines)):
        if i > start and table is not None and lines[i].lstrip().startswith("["):
            break
        if key is not None and pattern.match(lines[i]):
            return i + 1
    if table is not None:  # an inline table, e.g. runs = { a = {...} }
        return _line_of(lines, table.split(".")[0], None)
    return 1


def _type(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


# ----------------------------------------------------------------------------- building


def _variant_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"variants{_at(where)} must be a list of variant names, e.g. [\"gaussian\", \"mog-prior\"]; got {_type(value)}")
    return list(value)


def _seed_list(value: Any, where: str) -> list[int]:
    if isinstance(value, bool):
        pass
    elif isinstance(value, int) and value > 0:
        return list(range(value))
    elif isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
        if len(set(value)) == len(value):
            return list(value)
    raise UsageError(f"seeds{_at(where)} must be a positive count or a list of distinct non-negative seeds, got {value!r}")


def _options(value: Any, where: str) -> dict[str, Any]:
    """Options as flat ``key`` or qualified ``component.key`` -> value (nested tables flattened)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"options{_at(where)} must be a table like {{ k = 50 }} or {{ iwae = {{ k = 50 }} }}, got {_type(value)}")
    flat: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            for inner, inner_value in item.items():
                if isinstance(inner_value, (dict, list)):
                    raise UsageError(f"option {key}.{inner}{_at(where)} must be a single value, got {_type(inner_value)}")
                flat[f"{key}.{inner}"] = inner_value
        elif isinstance(item, list):
            raise UsageError(f"option {key}{_at(where)} must be a single value, got a list (use [grids.NAME] to sweep values)")
        else:
            flat[key] = item
    return flat


def _reference(value: Any, where: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UsageError(f"reference{_at(where)} must be a table like {{ source = \"...\", value = 89.78, samples = 200, epochs = 500 }}")
    for key, kind in REFERENCE_KEYS.items():
        item = value.get(key)
        if key == "epochs" and item is None:
            continue
        if not isinstance(item, kind) or isinstance(item, bool) or (key != "source" and item <= 0):
            raise UsageError(f"reference.{key}{_at(where)} must be {'text' if key == 'source' else 'a positive number'}, got {item!r}")
    unknown = sorted(set(value) - set(REFERENCE_KEYS))
    if unknown:
        raise UsageError(f"reference{_at(where)} has unknown key '{unknown[0]}'; its keys: {', '.join(REFERENCE_KEYS)}")
    return dict(value)


def _at(where: str | None) -> str:
    return f" (from {where})" if where else ""


def _component(table: dict, key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise UsageError(f"{key}{_at(where)} must be a component name (see `vaebench list`), got {_type(value)}")
    return value


def make_suite(
    variants: list[str] | None = None,
    seeds: int | list[int] = 1,
    *,
    runs: dict[str, dict] | None = None,
    grids: dict[str, dict] | None = None,
    prior: str | None = None,
    objective: str | None = None,
    options: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    sources: dict[str, str] | None = None,
    source: str = "vaebench.run()",
    overrides: dict[str, Any] | None = None,
    **more_settings,
) -> Suite:
    """Validate everything and build a :class:`Suite` (component names are checked against the
    registry later, in :func:`vaebench.execution.runner.plan`).

    ``variants`` become one run each (with ``prior``, ``objective`` and ``options`` when given);
    ``runs`` and ``grids`` are the tables of a suite file. Settings are keyword arguments here.
    """
    sources = dict(sources or {})
    overrides = dict(overrides or {})
    all_settings = {**(settings or {}), **more_settings, **overrides}
    for key in all_settings:
        sources.setdefault(key, source)
    shared = make_settings(all_settings, sources)

    def settings_of(parsed: dict) -> RunSettings:
        """A run table's settings on top of the shared ones; ``overrides`` (command-line flags) win over both."""
        if not parsed["settings"]:
            return shared
        return make_settings({**parsed["settings"], **overrides}, {**parsed["sources"], **{k: sources[k] for k in overrides}}, base=shared)
    seeds_value, seeds_where = (seeds.value, seeds.where) if isinstance(seeds, Tagged) else (seeds, sources.get("seeds", source))
    seed_list = _seed_list(seeds_value, seeds_where)
    shared_options_where = source
    if isinstance(options, Tagged):
        options, shared_options_where = options.value, options.where
    shared_options = _options(options, shared_options_where)

    specs: list[RunSpec] = []
    names_seen: dict[str, str] = {}

    def add(name: str, where: str, **kwargs) -> None:
        if not RUN_NAME.match(name):
            raise UsageError(f"run name '{name}'{_at(where)} must start with a letter or digit and use only letters, digits and _ . + = -")
        if name in names_seen:
            raise UsageError(f"run name '{name}'{_at(where)} is used twice (also {names_seen[name]}); give each run its own name")
        names_seen[name] = where
        specs.append(RunSpec(name=name, **kwargs))

    variant_where = source
    if isinstance(variants, Tagged):
        variants, variant_where = variants.value, variants.where
    for variant in _variant_list(variants, variant_where) if variants is not None else []:
        opts = dict(shared_options)
        name = default_run_name(variant, prior, objective, {k: v for k, v in opts.items()}) if (prior or objective or opts) else variant
        add(name, variant_where, variant=variant, settings=shared, prior=prior, objective=objective, options=opts)
    for name, parsed in (runs or {}).items():
        parsed = _parsed(parsed, source)
        table, where = parsed["table"], parsed["where"]
        variant = _component(table, "variant", where)
        if variant is None:
            raise UsageError(f"[runs.{name}]{_at(where)} needs a variant, e.g. variant = \"gaussian\"")
        run_settings = settings_of(parsed)
        opts = {**shared_options, **_options(table.get("options"), parsed["sources"].get("options", where))}
        add(name, where, variant=variant, settings=run_settings, prior=_component(table, "prior", where),
            objective=_component(table, "objective", where), options=opts,
            reference=_reference(table.get("reference"), parsed["sources"].get("reference", where)),
            seeds=_seed_list(table["seeds"], parsed["sources"].get("seeds", where)) if "seeds" in table else None)
    for name, parsed in (grids or {}).items():
        parsed = _parsed(parsed, source)
        table, where = parsed["table"], parsed["where"]
        variant = _component(table, "variant", where)
        option, values = table.get("option"), table.get("values")
        if variant is None or not isinstance(option, str) or not option:
            raise UsageError(f"[grids.{name}]{_at(where)} needs variant = \"...\", option = \"KEY\" and values = [...]")
        if not isinstance(values, list) or not values or any(isinstance(v, (list, dict)) for v in values):
            raise UsageError(f"[grids.{name}] values{_at(parsed['sources'].get('values', where))} must be a non-empty list of single values")
        run_settings = settings_of(parsed)
        base_options = {**shared_options, **_options(table.get("options"), where)}
        for value in values:
            add(f"{name}-{option.split('.')[-1]}={option_text(value)}", where, variant=variant, settings=run_settings,
                prior=_component(table, "prior", where), objective=_component(table, "objective", where),
                options={**base_options, option: value})
    if not specs:
        raise UsageError("no variant given; name variants or pass --all (see `vaebench list`)")
    return Suite(runs=specs, seeds=seed_list, settings=shared, source=source)


def _parsed(parsed: dict, source: str) -> dict:
    """API callers pass plain tables; suite files pass them already split by :func:`_table`."""
    if "table" in parsed and "where" in parsed:
        return parsed
    settings = {k: v for k, v in parsed.items() if k in FIELDS}
    unknown = sorted(set(parsed) - RUN_KEYS - GRID_KEYS - set(FIELDS))
    if unknown:
        raise UsageError(f"run table key '{unknown[0]}' (from {source}) is not a setting or one of {', '.join(sorted(RUN_KEYS | GRID_KEYS))}")
    return {"table": {k: v for k, v in parsed.items() if k not in FIELDS}, "settings": settings,
            "sources": {k: source for k in parsed}, "where": source}


def resolve_device(choice: str) -> torch.device:
    """``auto`` picks CUDA when it is there; ``cuda`` without CUDA is a usage error."""
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for but CUDA is not available here; use --device cpu or auto")
        return torch.device("cuda")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
