"""The ``jasrbench`` command: one subcommand per DVC stage (DESIGN §1).

Each subcommand lives in its own module, which exposes
``configure_parser(parser)`` and ``run(args) -> int``; the module is imported
only when its subcommand runs, so ``jasrbench --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import JasrbenchError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "download": ("jasrbench.data.download", "download a public dataset (300W, LFW) with SHA-256 checks"),
    "prepare": ("jasrbench.data.prepare", "prepare a raw dataset into HR/LR split files"),
    "pretrain": ("jasrbench.pretrain", "pretrain a joint model's landmark network on HR faces (Super-FAN's FAN)"),
    "train": ("jasrbench.train", "train one model on one prepared dataset"),
    "evaluate": ("jasrbench.evaluate", "evaluate a checkpoint (or bicubic) on a prepared test split"),
    "collect": ("jasrbench.collect", "merge evaluation summaries into results/<profile>/metrics.json"),
    "report": ("jasrbench.report.build", "write the paper's tables and figures from collected results"),
    "check": ("jasrbench.report.check", "regression gate: compare metrics with expected values"),
    "enhance": ("jasrbench.enhance", "super-resolve and landmark tiny faces in your own images"),
    "profile": ("jasrbench.profiles", "show or switch the profile params.yaml selects"),
    "calibrate": ("jasrbench.data.calibrate", "Bicubic row on 300W common over crop margins × protocols (calibration)"),
    "launch": ("jasrbench.launch", "run the out-of-date DVC stages at once on Dask (local workers, GPUs, a cluster)"),
    "model": ("jasrbench.model_check", "check a model against the FaceModel contract (`model check NAME`); `model list`"),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="jasrbench",
        description="Benchmark of joint super-resolution and landmark localization of tiny faces.",
        epilog=f"commands:\n{lines}\n\nRun `jasrbench COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs="?", choices=sorted(COMMANDS), metavar="COMMAND")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0].startswith("-"):
        args = top.parse_args(argv)
        if args.version:
            from . import __version__

            print(__version__)
            return 0
        top.print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.parse_args([name])  # prints argparse's "invalid choice" error and exits 2
    module_name, help_ = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"jasrbench {name}", description=help_)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    module.configure_parser(parser)
    args = parser.parse_args(rest)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(module.run(args) or 0)
    except JasrbenchError as exc:
        print(f"jasrbench {name}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
