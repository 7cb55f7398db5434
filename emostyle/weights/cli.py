"""`emostyle weights list | fetch | verify` (also `python -m emostyle.registry ...`)."""

from __future__ import annotations

import argparse
import sys
import textwrap

from . import cache, table
from .integrity import digest
from .table import ChecksumError, FetchError, MissingWeightError, public_source

__all__ = ["add_weights_parser", "main"]

_DESCRIPTION = "List, fetch and verify the kit's external files (weights, vocabularies, sample audio)."


def _human(n: int | None, approx: bool = False) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            text = f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
            return ("~" if approx else "") + text
        n /= 1000


def _cmd_list(args) -> int:
    known = table.entries().values()
    if args.long:
        for e in known:
            size = _human(e.size or e.approx_size, approx=e.size is None and e.approx_size is not None)
            print(f"{e.name}  ({size}; profiles {','.join(e.profiles) or '-'}; present: {cache.presence(e.name)})")
            for label, text in (("file", e.filename + ("/" if e.directory else "")), ("what", e.description),
                                ("source", public_source(e) or "by hand: " + e.source.get("instructions", "")),
                                ("sha256", e.sha256 or "not published (the copy you fetch is recorded)"),
                                ("licence", e.license)):
                print(textwrap.fill(text, width=100, initial_indent=f"  {label + ':':9s}",
                                    subsequent_indent=" " * 11, break_long_words=False, break_on_hyphens=False))
        return 0
    rows = [(e.name, _human(e.size or e.approx_size, approx=e.size is None and e.approx_size is not None),
             textwrap.shorten(e.license.split(" (")[0], width=36, placeholder=" ..."),  # whole under --long
             ",".join(e.profiles) or "-", cache.presence(e.name)) for e in known]
    head = ("name", "size", "licence", "profiles", "present")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print("(`emostyle weights list --long`: source, sha256 and licence of each file)")
    return 0


def _cmd_fetch(args) -> int:
    if bool(args.names) == bool(args.profile):
        raise ValueError("give entry names or --profile P (not both); `emostyle weights list` names them")
    if args.from_path and (args.profile or len(args.names) != 1):
        raise ValueError("--from PATH takes exactly one entry name")
    names = table.profile_files(args.profile) if args.profile else args.names
    failed = 0
    for n in names:
        try:
            got = cache.fetch(n, progress=not args.quiet, from_path=args.from_path)
        except (KeyError, MissingWeightError, ChecksumError, FetchError, FileNotFoundError) as err:
            print(f"{n}: FAILED: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
            failed += 1
            continue
        pinned = "" if table.entry(n).sha256 else " (no published sha256: this copy is recorded)"
        print(f"{n}: {got} sha256 {digest(got)}{pinned}")
    return 1 if failed else 0


def _cmd_verify(args) -> int:
    report = cache.verify(args.names or None)
    for c in report:
        print(f"{c.status:8s} {c.name}  {c.path or ''}  {c.detail}".rstrip())
    return 1 if any(c.status == "bad" for c in report) else 0


def _add_commands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="weights_command", metavar="{list,fetch,verify}", required=True)
    p = sub.add_parser("list", help="table of every registry entry: size, licence, profiles, present?")
    p.add_argument("--long", action="store_true", help="also each file's source and sha256, wrapped")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("fetch", help="download (or copy) files into the cache, verified")
    p.add_argument("names", nargs="*", metavar="NAME", help="registry entries (see `list`)")
    p.add_argument("--profile", choices=table.profiles(), help="every file this profile needs")
    p.add_argument("--from", dest="from_path", metavar="PATH", help="take NAME from this local file or folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_fetch)
    p = sub.add_parser("verify", help="re-check sha256 and size of every present file")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.set_defaults(func=_cmd_verify)


def add_weights_parser(subparsers) -> argparse.ArgumentParser:
    """Add `weights list [--long] | fetch NAME... | fetch --profile P | verify` to a CLI.

    Each leaf sets `func(args) -> exit code`.
    """
    parser = subparsers.add_parser("weights", help="list, fetch and verify external files", description=_DESCRIPTION)
    _add_commands(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m emostyle.registry list|fetch|verify ...`."""
    parser = argparse.ArgumentParser(prog="python -m emostyle.registry", description=_DESCRIPTION)
    _add_commands(parser)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as error:  # a mistake in the arguments, as `emostyle weights` says it
        print(f"{parser.prog} {args.weights_command}: error: {error}", file=sys.stderr)
        return 2
