"""The ``vaebench`` command line: run, evaluate, list, plugins, leaderboard.

The settings flags of ``vaebench run`` are generated from :mod:`vaebench.settings`.
Bad input is one line on stderr naming the problem and the fix, and exit code 2; a
sweep with failed runs exits with 1 after writing everything it finished; an
interrupted one (Ctrl-C, SIGTERM) keeps its finished runs and checkpoints and exits
with 130 or 143.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import signal
import sys
from pathlib import Path

from vaebench import __version__
from vaebench.errors import PluginError, UsageError

DEFAULT_OUT = "vaebench-out"
log = logging.getLogger("vaebench")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit code 2."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def positive(kind):
    """An argparse type for positive numbers (the benchmark scripts use it too)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value

    return parse


def _option(text: str) -> tuple[str, str]:
    if "=" not in text or not text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE or COMPONENT.KEY=VALUE (for example iwae.k=5)")
    key, value = text.split("=", 1)
    return key.strip(), value


def _settings_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    from vaebench.settings import FIELDS

    group = parser.add_argument_group("settings (defaults in parentheses; a suite file accepts the same names)")
    for info in FIELDS.values():
        if only is not None and info.name not in only:
            continue
        default = _default_text(info.name)
        group.add_argument(info.flag, dest=f"setting_{info.name}", metavar=info.metavar or (info.choices and "|".join(info.choices)) or info.kind.upper(),
                           help=f"{info.help} ({default})" if default else info.help)


def _default_text(name: str) -> str:
    from vaebench.settings import RunSettings

    default = RunSettings.model_fields[name].default
    if default is None or default == ():
        return ""
    if isinstance(default, tuple):
        return "default " + ",".join(str(d) for d in default)
    return f"default {default}"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vaebench", description="Train and compare VAE variants under matched budgets.")
    parser.add_argument("--version", action="version", version=f"vaebench {__version__}")
    parser.add_argument("-p", dest="plugin_modules", action="append", default=[], metavar="MODULE",
                        help="load a plugin module from the import path (repeatable; also VAEBENCH_PLUGINS=mod1,mod2)")
    parser.add_argument("--disable-plugin", dest="disabled_plugins", action="append", default=[], metavar="NAME",
                        help="do not load this plugin (repeatable; also VAEBENCH_DISABLE_PLUGINS)")
    parser.add_argument("--strict", action="store_true", help="a plugin that fails to load is fatal")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    noise.add_argument("-q", "--quiet", action="store_true", help="no progress, only warnings, errors and the final table")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    def noise_flags(command):  # -q and -v work after the command too
        group = command.add_mutually_exclusive_group()
        group.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
        group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress, only warnings and errors")

    run = sub.add_parser("run", help="train and evaluate variants; write run folders and a leaderboard")
    run.add_argument("variants", nargs="*", metavar="VARIANT", help="variant names (see `vaebench list`); with --suite, the suite's runs to run")
    run.add_argument("--all", action="store_true", help="every installed variant")
    run.add_argument("--suite", type=Path, help="a suite TOML file (flags given on the command line win)")
    run.add_argument("--prior", help="a registered prior for the named variants (see `vaebench list`)")
    run.add_argument("--objective", help="a registered training objective for the named variants")
    run.add_argument("--option", action="append", type=_option, default=[], metavar="[COMPONENT.]KEY=VALUE",
                     help="an option of a variant, prior or objective, e.g. iwae.k=5 (repeatable)")
    run.add_argument("--seeds", help="number of seeds, 0..N-1, or a comma-separated list (default 1)")
    run.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT_OUT})")
    run.add_argument("--resume", action="store_true", help="keep finished runs, continue unfinished ones from their checkpoints")
    run.add_argument("--extend", action="store_true", help="with --resume: train finished runs on to a larger budget (--epochs N)")
    run.add_argument("--jobs", type=positive(int), default=1, metavar="N",
                     help="train up to N runs at once in worker processes, the CPU threads divided among them (default 1)")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="where runs execute: this machine (local, with --jobs), or Ray tasks (ray; pip install 'vaebench[ray]')")
    run.add_argument("--ray-address", metavar="HOST:PORT", help="with --executor ray: join this Ray cluster (default: start a local instance)")
    run.add_argument("--cpus-per-run", type=positive(int), default=1, metavar="N", help="with --executor ray: CPUs (torch threads) per run")
    run.add_argument("--gpus-per-run", type=positive(float), default=1.0, metavar="F",
                     help="with --executor ray on CUDA: GPUs per run; a fraction packs runs on one GPU (0.25: four)")
    run.add_argument("--tracker", action="append", default=[], metavar="NAME",
                     help="also log every run to this tracker: mlflow or tensorboard, or a plugin's (repeatable)")
    noise_flags(run)
    _settings_flags(run)

    evaluate = sub.add_parser("evaluate", help="evaluate saved runs again (another K, precision or metric) without retraining")
    evaluate.add_argument("dir", type=Path, metavar="OUT", help="the --out folder of a vaebench run")
    evaluate.add_argument("--runs", help="comma-separated run names to evaluate (default all)")
    evaluate.add_argument("--resume", action="store_true",
                          help="skip run folders already evaluated with the same metrics, K and precision (an interrupted evaluate goes on)")
    noise_flags(evaluate)
    _settings_flags(evaluate, only=("metrics", "is_samples", "is_precision", "data_dir", "device"))

    lst = sub.add_parser("list", help="variants, priors, objectives, datasets and metrics with the plugin that provides each")
    lst.add_argument("--json", action="store_true")
    plg = sub.add_parser("plugins", help="installed plugins: distribution, version, hooks, what they registered, status")
    plg.add_argument("--json", action="store_true")
    board = sub.add_parser("leaderboard", help="rebuild the leaderboard of an --out folder from its run folders")
    board.add_argument("dir", type=Path)
    board.add_argument("--format", default="table", choices=["table", "md", "csv", "json"])
    board.add_argument("--write", action="store_true",
                       help="also write DIR/leaderboard.{csv,md,json} and DIR/figures (after editing or repairing run records)")
    report = sub.add_parser("report", help="write OUT/report.html: sortable leaderboard, pictures, settings, plugin versions")
    report.add_argument("dir", type=Path, metavar="OUT", help="the --out folder of a vaebench run")
    return parser


def _flag_settings(args) -> tuple[dict, dict]:
    from vaebench.settings import FIELDS, parse_text

    values, sources = {}, {}
    for name, info in FIELDS.items():
        text = getattr(args, f"setting_{name}", None)
        if text is None:
            continue
        values[name] = parse_text(name, text)
        sources[name] = info.flag
    return values, sources


def _seeds(text: str | None):
    if text is None:
        return None
    try:
        items = [int(t) for t in text.split(",")]
    except ValueError:
        raise UsageError(f"--seeds {text!r} is not a count or a comma-separated list of seeds, e.g. 3 or 0,1,2") from None
    return items[0] if len(items) == 1 and "," not in text else items


def suite_from_args(args, plugins):
    from vaebench.suite import Tagged, make_suite, read_suite_file

    values, sources = _flag_settings(args)
    options = dict(args.option)
    if args.all and args.variants and not args.suite:
        raise UsageError("give variant names or --all, not both")
    if args.suite:
        parsed = read_suite_file(args.suite)
        settings = parsed["settings"]
        sources = {**parsed["sources"], **sources}
        seeds = _seeds(args.seeds) if args.seeds is not None else (parsed["seeds"] or 1)
        if args.seeds is not None:  # --seeds wins over every run's own seeds too
            for table in parsed["runs"].values():
                table["table"].pop("seeds", None)
        variants = parsed["variants"]
        if args.all:
            variants = plugins.registry.names("variant")
        shared_options = parsed["options"]
        if options:
            base = shared_options.value if isinstance(shared_options, Tagged) else {}
            shared_options = {**_flat(base), **options}
        suite = make_suite(variants, seeds, runs=parsed["runs"], grids=parsed["grids"], prior=args.prior, objective=args.objective,
                           options=shared_options, settings=settings, sources=sources, source=parsed["source"], overrides=values)
        if args.variants:
            wanted = set(args.variants)
            kept = [r for r in suite.runs if r.name in wanted or r.variant in wanted]
            missing = sorted(wanted - {r.name for r in kept} - {r.variant for r in kept})
            if missing:
                raise UsageError(f"'{missing[0]}' is not a run or variant of {args.suite}; its runs are: {', '.join(r.name for r in suite.runs)}")
            suite.runs = kept
        return suite
    variants = plugins.registry.names("variant") if args.all else args.variants
    if not variants:
        raise UsageError("no variant given; name variants or pass --all (see `vaebench list`)")
    seeds = _seeds(args.seeds) if args.seeds is not None else 1
    return make_suite(list(variants), seeds, prior=args.prior, objective=args.objective, options=options,
                      settings=values, sources={**sources, "seeds": "--seeds", "variants": "the command line"}, source="the command line")


def _flat(options) -> dict:
    from vaebench.suite import _options

    return _options(options, None)


def _console():
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=240, soft_wrap=False)


def cmd_run(args, plugins) -> int:
    from vaebench.execution.runner import execute, plan
    from vaebench.reporting.leaderboard import rich_table
    from vaebench.reporting.progress import make_reporter

    suite = suite_from_args(args, plugins)
    out = args.out or Path(DEFAULT_OUT)
    if args.extend and not args.resume:
        raise UsageError("--extend continues finished runs, so it needs --resume")
    if args.executor != "ray" and (args.ray_address or args.cpus_per_run != 1 or args.gpus_per_run != 1.0):
        raise UsageError("--ray-address, --cpus-per-run and --gpus-per-run go with --executor ray")
    if args.executor == "ray" and args.jobs != 1:
        raise UsageError("--jobs is for --executor local; Ray schedules runs by --cpus-per-run and --gpus-per-run")
    executor = {"name": args.executor, "address": args.ray_address, "cpus_per_run": args.cpus_per_run, "gpus_per_run": args.gpus_per_run}
    checked = plan(suite, plugins, out, resume=args.resume, extend=args.extend, trackers=tuple(args.tracker), jobs=args.jobs,
                   executor=executor, workers=args.worker_manager)
    with make_reporter(quiet=args.quiet) as reporter:
        result = execute(checked, reporter)
    console = _console()
    datasets = sorted({r.settings.dataset for r in suite.runs})
    seed_counts = sorted({len(suite.seeds_of(r)) for r in suite.runs})
    seeds = f"{seed_counts[0]} seed(s)" if len(seed_counts) == 1 else f"{'-'.join(str(n) for n in (seed_counts[0], seed_counts[-1]))} seeds per run"
    console.print(rich_table(result.board, title=f"vaebench leaderboard ({', '.join(datasets)}, {seeds})"))
    console.print(f"wrote {out}/leaderboard.csv, leaderboard.md, leaderboard.json and {out}/runs/", highlight=False)
    if result.kept:
        console.print(f"kept {len(result.kept)} finished run(s) from before (--resume)", highlight=False)
    for metric, errors in result.metric_errors.items():
        print(f"vaebench: metric '{metric}' failed in {len(errors)} run(s), its columns are empty: {errors[0]}", file=sys.stderr)
    if result.failures:
        for run, seed, reason in result.failures:
            print(f"vaebench: run {run} seed {seed} failed: {reason}", file=sys.stderr)
        print(f"vaebench: {len(result.failures)} of {len(result.trained)} run(s) failed; the others are in the leaderboard", file=sys.stderr)
        return 1
    return 0


def cmd_evaluate(args, plugins) -> int:
    from vaebench.execution.reevaluate import reevaluate
    from vaebench.reporting.leaderboard import rich_table
    from vaebench.reporting.progress import make_reporter
    from vaebench.settings import make_settings

    values, sources = _flag_settings(args)
    checked = make_settings(values, sources) if values else None
    runs = [r.strip() for r in args.runs.split(",") if r.strip()] if args.runs else None
    with make_reporter(quiet=args.quiet) as reporter:
        result = reevaluate(
            args.dir, plugins, metrics=list(checked.metrics) if checked is not None and checked.metrics else None,
            is_samples=values.get("is_samples") and checked.is_samples, is_precision=values.get("is_precision") and checked.is_precision,
            data_dir=checked.data_dir if checked is not None else None, device=checked.device if checked is not None else "auto",
            runs=runs, reporter=reporter, resume=args.resume,
        )
    console = _console()
    console.print(rich_table(result.board, title=f"leaderboard of {args.dir}"))
    kept = f", kept {len(result.kept)} already evaluated" if result.kept else ""
    console.print(f"evaluated {len(result.evaluated)} run(s){kept}; wrote {args.dir}/leaderboard.csv, leaderboard.md and leaderboard.json", highlight=False)
    for folder, why in result.skipped:
        print(f"vaebench: skipped {folder}: {why}", file=sys.stderr)
    for metric, errors in result.metric_errors.items():
        print(f"vaebench: metric '{metric}' failed in {len(errors)} run(s), its columns are empty: {errors[0]}", file=sys.stderr)
    return 0


def cmd_list(args, plugins) -> int:
    registry = plugins.registry
    rows = []
    for kind in ("variant", "prior", "objective", "dataset", "metric", "tracker", "callback"):
        for name in registry.names(kind):
            obj = registry.get(kind, name)
            provenance = plugins.provenance(kind, name)
            rows.append(
                {
                    "kind": kind,
                    "name": name,
                    "plugin": provenance["plugin"],
                    "distribution": provenance["distribution"],
                    "version": provenance["version"],
                    "description": getattr(obj, "description", ""),
                    "reference": getattr(obj, "reference", ""),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="vaebench components")
    for column in ("kind", "name", "plugin", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["kind"], row["name"], escape(row["plugin"]), escape(row["description"]))
    _console().print(table)
    return 0


def cmd_plugins(args, plugins) -> int:
    records = [r.as_dict() for r in plugins.records]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="vaebench plugins")
    for column in ("plugin", "distribution", "version", "hooks", "registered", "status"):
        table.add_column(column)
    for r in records:
        registered = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in r["registered"].items())
        status = r["status"] if r["error"] is None else f"error: {r['error']}"
        table.add_row(r["name"], r["distribution"] or r["source"], r["version"] or "", ", ".join(h.removeprefix("register_") for h in r["hooks"]),
                      escape(registered), escape(status))
    _console().print(table)
    return 0


def cmd_leaderboard(args, plugins) -> int:
    from vaebench.reporting.leaderboard import board_json, rebuild, rich_table, to_markdown, write_leaderboard

    board = rebuild(args.dir)
    if args.write:
        from vaebench.reporting.figures import all_figures

        write_leaderboard(args.dir, board)
        all_figures(args.dir)
    if args.format == "csv":
        sys.stdout.write(board.to_csv(index=False))
    elif args.format == "json":
        sys.stdout.write(board_json(board))
    elif args.format == "md":
        sys.stdout.write(to_markdown(board))
    else:
        _console().print(rich_table(board, title=f"leaderboard of {args.dir}"))
    return 0


def cmd_report(args, plugins) -> int:
    from vaebench.reporting.html_report import write_report

    path = write_report(args.dir)
    print(f"wrote {path}")
    return 0


COMMANDS = {"run": cmd_run, "evaluate": cmd_evaluate, "list": cmd_list, "plugins": cmd_plugins, "leaderboard": cmd_leaderboard,
            "report": cmd_report}


class Terminated(BaseException):
    """SIGTERM, handled like Ctrl-C: finished runs and checkpoints are kept."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _writing_error(exc: OSError) -> str | None:
    """A one-line message for an output folder that cannot be written, or None for other errors."""
    reasons = {errno.ENOSPC: "the disk is full", errno.EACCES: "permission denied", errno.EROFS: "the file system is read-only",
               errno.EDQUOT: "the disk quota is exceeded", errno.EPERM: "permission denied"}
    if exc.errno not in reasons:
        return None
    where = exc.filename or "the output folder"
    return f"cannot write {where} ({reasons[exc.errno]}); free space or choose another --out: finished runs are kept"


def _log_to_stderr() -> tuple[logging.Handler, tuple]:
    """vaebench's log lines go to the stderr of this call, one line each: 'vaebench: ...'.

    Returns the handler and the logger's previous level and propagation, restored on exit."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("vaebench: %(message)s"))
    previous = (log.level, log.propagate)
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False
    return handler, previous


def main(argv: list[str] | None = None) -> int:
    handler, logging_state = _log_to_stderr()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    manager = None
    try:
        args = build_parser().parse_args(argv)
        if args.verbose and args.quiet:
            raise UsageError("give --verbose or --quiet, not both")
        if args.verbose:
            log.setLevel(logging.DEBUG)
        from vaebench.heap import keep_freed_memory
        from vaebench.plugin_manager import load_plugins

        keep_freed_memory()
        if getattr(args, "jobs", 1) > 1 and getattr(args, "executor", "local") == "local":
            from vaebench.execution.worker_manager import start_worker_manager

            manager = start_worker_manager()  # it imports the runs' libraries beside the checks below
        args.worker_manager = manager

        plugins = load_plugins(strict=args.strict, modules=args.plugin_modules, disable=args.disabled_plugins)
        return COMMANDS[args.command](args, plugins)
    except UsageError as exc:
        print(f"vaebench: error: {exc}", file=sys.stderr)
        return 2
    except PluginError as exc:
        print(f"vaebench: error: {exc} (--strict)", file=sys.stderr)
        return 2
    except OSError as exc:
        message = _writing_error(exc)
        if message is None:
            raise
        print(f"vaebench: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaebench: interrupted; finished runs and the last epoch's checkpoints are kept, continue with --resume", file=sys.stderr)
        return 130
    except Terminated:
        print("vaebench: terminated (SIGTERM); finished runs and the last epoch's checkpoints are kept, continue with --resume", file=sys.stderr)
        return 143
    finally:
        if manager is not None:
            manager.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        log.removeHandler(handler)
        log.setLevel(logging_state[0])
        log.propagate = logging_state[1]


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
