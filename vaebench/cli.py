"""The ``vaebench`` command line: run, list, plugins, leaderboard.

Bad input is one line on stderr and exit code 2; a sweep with failed runs
exits with 1 after writing everything it finished.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from vaebench import __version__
from vaebench.errors import PluginError, UsageError

DEFAULT_OUT = "vaebench-out"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit code 2."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value

    return parse


def _option(text: str) -> tuple[str, str, str]:
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"{text!r} is not VARIANT.KEY=VALUE (for example gumbel-capacity.capacity=off)")
    key, value = text.split("=", 1)
    variant, name = key.split(".", 1)
    return variant, name, value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vaebench", description="Train and compare VAE variants under matched budgets.")
    parser.add_argument("--version", action="version", version=f"vaebench {__version__}")
    parser.add_argument("--strict", action="store_true", help="a plugin that fails to load is fatal")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = sub.add_parser("run", help="train and evaluate variants; write run folders and a leaderboard")
    run.add_argument("variants", nargs="*", metavar="VARIANT", help="variant names (see `vaebench list`)")
    run.add_argument("--all", action="store_true", help="every installed variant")
    run.add_argument("--suite", type=Path, help="a suite TOML file (flags given on the command line win)")
    run.add_argument("--dataset", help="digits (default), mnist, fashion-mnist, or a plugin's dataset")
    run.add_argument("--data-dir", type=Path, help="folder holding MNIST/raw or FashionMNIST/raw")
    run.add_argument("--budget", help="smoke, quick (default) or standard")
    run.add_argument("--epochs", type=positive(int), help="override the budget's epochs")
    run.add_argument("--seeds", type=positive(int), help="number of seeds, 0..N-1 (default 1)")
    run.add_argument("--device", help="auto (default), cpu or cuda")
    run.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT_OUT})")
    run.add_argument("--resume", action="store_true", help="keep finished runs, continue unfinished ones from their checkpoints")
    run.add_argument("--metrics", help="comma-separated metrics to compute (default all), e.g. throughput")
    run.add_argument("--is-samples", type=positive(int), help="importance samples K (default 1000 quick, 5000 standard)")
    run.add_argument("--is-precision", help="decoder arithmetic inside IS-NLL: float32 (default) or bfloat16 (faster, recorded in every row)")
    run.add_argument("--batch-size", type=positive(int))
    run.add_argument("--lr", type=positive(float))
    run.add_argument("--latent-dim", type=positive(int))
    run.add_argument("--hidden", help="comma-separated hidden widths, e.g. 400 or 512,256")
    run.add_argument("--likelihood", help="pixel likelihood: bernoulli (default) or gaussian")
    run.add_argument("--binarization", help="dynamic (default), static, threshold or none")
    run.add_argument("--patience", type=positive(int), help="early stopping on the validation criterion (off by default)")
    run.add_argument("--select-epoch", help="weights to evaluate: best-val (default, the best validation epoch) or last")
    run.add_argument("--option", action="append", type=_option, default=[], metavar="VARIANT.KEY=VALUE", help="a variant's own option")

    lst = sub.add_parser("list", help="variants, datasets and metrics with the plugin that provides each")
    lst.add_argument("--json", action="store_true")
    plg = sub.add_parser("plugins", help="installed plugins: version, hooks, what they registered, status")
    plg.add_argument("--json", action="store_true")
    board = sub.add_parser("leaderboard", help="rebuild the leaderboard of an --out folder from its run folders")
    board.add_argument("dir", type=Path)
    board.add_argument("--format", default="table", choices=["table", "md", "csv", "json"])
    return parser


def _suite_kwargs(args) -> dict:
    from vaebench.suite import read_suite_file

    kwargs = read_suite_file(args.suite) if args.suite else {}
    flags = {
        "dataset": args.dataset,
        "budget": args.budget,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "device": args.device,
        "is_samples": args.is_samples,
        "is_precision": args.is_precision,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "latent_dim": args.latent_dim,
        "binarization": args.binarization,
        "likelihood": args.likelihood,
        "patience": args.patience,
        "select_epoch": args.select_epoch,
        "data_dir": args.data_dir,
    }
    kwargs.update({k: v for k, v in flags.items() if v is not None})
    if args.hidden:
        try:
            kwargs["hidden"] = [int(h) for h in args.hidden.split(",")]
        except ValueError:
            raise UsageError(f"--hidden {args.hidden!r} is not a comma-separated list of widths, e.g. 400 or 512,256") from None
    if args.metrics:
        kwargs["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    options = {k: dict(v) for k, v in kwargs.get("options", {}).items()}
    for variant, key, value in args.option:
        options.setdefault(variant, {})[key] = value
    kwargs["options"] = options
    return kwargs


def cmd_run(args, plugins) -> int:
    from rich.console import Console

    from vaebench.reporting import RichReporter
    from vaebench.results import rich_table
    from vaebench.runner import execute, plan
    from vaebench.suite import make_suite

    kwargs = _suite_kwargs(args)
    if args.all and args.variants:
        raise UsageError("give variant names or --all, not both")
    variants = plugins.registry.names("variant") if args.all else (args.variants or kwargs.pop("variants", []))
    kwargs.pop("variants", None)
    if not variants:
        raise UsageError("no variant given; name variants or pass --all (see `vaebench list`)")
    suite = make_suite(variants, **kwargs)
    out = args.out or Path(DEFAULT_OUT)
    checked = plan(suite, plugins, out, resume=args.resume)
    with RichReporter() as reporter:
        result = execute(checked, reporter)
    console = Console()
    console.print(rich_table(result.board, title=f"vaebench leaderboard ({suite.dataset}, {suite.budget}, {len(suite.seeds)} seed(s))"))
    console.print(f"wrote {out}/leaderboard.csv, {out}/leaderboard.md and {out}/runs/")
    if result.kept:
        console.print(f"kept {len(result.kept)} finished run(s) from before (--resume)")
    if result.failures:
        for variant, seed, reason in result.failures:
            print(f"vaebench: run {variant} seed {seed} failed: {reason}", file=sys.stderr)
        print(f"vaebench: {len(result.failures)} of {len(result.trained)} run(s) failed; the others are in the leaderboard", file=sys.stderr)
        return 1
    return 0


def cmd_list(args, plugins) -> int:
    registry = plugins.registry
    rows = []
    for kind in ("variant", "dataset", "metric", "prior"):
        for name in registry.names(kind):
            obj = registry.get(kind, name)
            rows.append(
                {
                    "kind": kind,
                    "name": name,
                    "plugin": registry.owner(kind, name),
                    "description": getattr(obj, "description", ""),
                    "reference": getattr(obj, "reference", ""),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="vaebench components")
    for column in ("kind", "name", "plugin", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["kind"], row["name"], row["plugin"], row["description"])
    Console().print(table)
    return 0


def cmd_plugins(args, plugins) -> int:
    records = [r.as_dict() for r in plugins.records]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="vaebench plugins")
    for column in ("plugin", "version", "module", "hooks", "registered", "status"):
        table.add_column(column)
    for r in records:
        registered = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in r["registered"].items())
        status = r["status"] if r["error"] is None else f"error: {r['error']}"
        table.add_row(r["name"], r["version"] or "", r["module"], ", ".join(r["hooks"]), registered, status)
    Console().print(table)
    return 0


def cmd_leaderboard(args, plugins) -> int:
    from vaebench.results import rebuild, rich_table, to_markdown

    board = rebuild(args.dir)
    if args.format == "csv":
        sys.stdout.write(board.to_csv(index=False))
    elif args.format == "json":
        sys.stdout.write(board.to_json(orient="records", indent=2) + "\n")
    elif args.format == "md":
        sys.stdout.write(to_markdown(board))
    else:
        from rich.console import Console

        Console().print(rich_table(board, title=f"leaderboard of {args.dir}"))
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "plugins": cmd_plugins, "leaderboard": cmd_leaderboard}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="vaebench: %(message)s", stream=sys.stderr)
    try:
        args = build_parser().parse_args(argv)
        if args.verbose:
            logging.getLogger("vaebench").setLevel(logging.DEBUG)
        from vaebench.plugin_manager import load_plugins

        plugins = load_plugins(strict=args.strict)
        return COMMANDS[args.command](args, plugins)
    except UsageError as exc:
        print(f"vaebench: error: {exc}", file=sys.stderr)
        return 2
    except PluginError as exc:
        print(f"vaebench: error: {exc} (--strict)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaebench: interrupted; finished runs are kept, continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
