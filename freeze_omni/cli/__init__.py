"""`freeze-omni` command line. Each subcommand lives in its own module with a `register` function.

User-facing failures (`FreezeOmniError`, bad arguments) end with one line on stderr and a
non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from freeze_omni import __version__
from freeze_omni.errors import FreezeOmniError


class CommandParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> CommandParser:
    from freeze_omni.cli import bench, chat, data, evaluate, say, serve, train

    parser = CommandParser(
        prog="freeze-omni",
        description="Speech-to-speech dialogue around a frozen text LLM.",
    )
    parser.add_argument("--version", action="version", version=f"freeze-omni {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for module in (chat, serve, say, train, evaluate, data, bench):
        module.register(commands)
    return parser


def add_leaf(commands, name: str, help: str, run, **kwargs) -> CommandParser:
    """Add a subcommand whose `run(args) -> int` does the work; `args.prog` names it in messages."""
    sub = commands.add_parser(name, help=help, description=help, **kwargs)
    sub.set_defaults(run=run, prog=sub.prog)
    return sub


def add_draft_threshold(parser: argparse.ArgumentParser) -> None:
    """`--draft-threshold` of the commands that run the turn engine live."""
    parser.add_argument("--draft-threshold", type=float, metavar="P",
                        help="p(answer) at which a silent chunk begins a draft answer in idle time "
                             "(turn.py rule 9; above 1: no drafts; default: the engine's, 0)")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1, with a clear message otherwise."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0, with a clear message otherwise."""
    return _int_at_least(text, 0, "an integer >= 0")


def finite_non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0, with a clear message otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def add_prior_weight(parser: argparse.ArgumentParser) -> None:
    """`--prior-weight` of the commands that speak with the decoder (`say`, `eval`/`bench speech-out`)."""
    parser.add_argument("--prior-weight", type=finite_non_negative_float, metavar="W",
                        help="weight of the voice's prior in the choice of each code (0: the decoder's "
                             "logits alone; default: as the dialogue speaks)")


def prior_weight(args: argparse.Namespace) -> float:
    """The `--prior-weight` asked for, or the one the dialogue speaks with."""
    from freeze_omni.decoder.sampling import SamplingConfig

    return SamplingConfig.prior_weight if args.prior_weight is None else args.prior_weight


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def add_group(commands, name: str, help: str, metavar: str):
    """Add a subcommand that only groups others (`freeze-omni data synth`); alone it shows its help."""
    group = commands.add_parser(name, help=help, description=help)
    group.set_defaults(run=lambda args: _usage(group))
    return group.add_subparsers(dest=name.replace("-", "_"), metavar=metavar, parser_class=CommandParser)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args) or 0)
    except FreezeOmniError as err:
        print(f"{args.prog}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{args.prog}: interrupted", file=sys.stderr)
        return 130
