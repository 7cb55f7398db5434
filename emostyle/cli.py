"""The `emostyle` command: weights, doctor, config, reproduce, manipulate, sweep."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import sys
import textwrap
import threading
import warnings
from pathlib import Path

from . import __version__
from .config import PROFILES, ConfigError, load_config, parse_overrides

__all__ = ["main", "run", "build_parser"]


def _add_profile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="offline", choices=PROFILES, help="configuration profile (default: offline)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set guidance.steps=50 (repeatable)")


def _cmd_config(args) -> int:
    config = load_config(args.profile, parse_overrides(args.overrides))
    print(json.dumps(config.to_dict(), indent=2))
    return 0


def _cmd_doctor(args) -> int:
    from .doctor import doctor

    return doctor()


def _cmd_reproduce(args) -> int:
    from .reproduce import Interrupted, reproduce

    try:
        manifest = reproduce(args.profile, only=args.only, device=args.device, out=args.out, run_dir=args.run_dir,
                             overrides=parse_overrides(args.overrides), force=args.force, jobs=args.jobs,
                             songs=args.songs)
    except Interrupted as stop:
        print(f"emostyle reproduce: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt as stop:  # before the notebooks started, or between their end and publishing
        print(f"emostyle reproduce: interrupted; nothing published to {args.out}", file=sys.stderr)
        return 128 + getattr(stop, "signum", signal.SIGINT)
    print(f"run {manifest['run_dir']}: executed notebooks and their intermediate files")
    print(f"published to {manifest['figures_dir']}: {len(manifest['outputs'])} files and manifest.json")
    for name, entry in manifest["notebooks"].items():
        how = {"ran": f"ran in {entry['seconds']:.1f} s", "reused": "reused: inputs unchanged",
               "kept": "kept from an earlier run", "failed": "FAILED"}[entry["status"]]
        made = ", ".join(sorted({f.rsplit(".", 1)[0] for f in entry.get("outputs", [])}))
        print(f"  {name}: {how}" + (f" -> {made}" if made else ""))
    for name, reason in manifest["failed"].items():
        missing = manifest["not_made"].get(name)
        print(f"not made by {name}: {', '.join(missing)}; {reason}" if missing else
              f"{name} failed after its figures and tables were made; {reason}", file=sys.stderr)
    return 1 if manifest["failed"] else 0


def _cmd_manipulate(args) -> int:
    from .inversion import error_text
    from .pipeline import manipulate
    from .samples import lyrics_file

    overrides = parse_overrides(args.overrides)
    if args.device != "auto":
        overrides["device"] = args.device
    result = manipulate(args.song, profile=args.profile, method=args.method, seed=args.seed, out=args.out,
                        overrides=overrides, lyrics=_lyrics_argument(args.lyrics), force=args.force, image=args.image,
                        dataset=args.dataset)
    written = sorted(p.name + ("/" if p.is_dir() else "") for p in Path(args.out).expanduser().iterdir())
    print(f"wrote {args.out}: {', '.join(written)}")
    if result.get("dataset"):
        print(f"  dataset: {result['dataset']} of profile {args.profile}")
    if result.get("inversion"):
        inv = result["inversion"]
        print(f"  your photo: reconstruction error {error_text(inv['error'])} ({inv['steps']} steps)")
    beside, source = lyrics_file(args.song), result["lyrics"]["source"]
    read = {"label": f" (from {beside.name}: none were read from the song)",
            "speech": f" (heard by {result['lyrics']['backend']}, as the paper transcribes"
                      + (f"; --lyrics {shlex.quote(str(beside))} reads the .txt beside the song instead)"
                         if beside.is_file() else ")"),
            "tags": " (none heard: the sound's audio tags stand in)",
            "given": " (given with --lyrics)"}.get(source, "")
    text = result["lyrics"]["text"]
    shown = textwrap.shorten(text, 200, placeholder=" ...")  # a whole song's lyrics would bury the summary
    more = f" ({len(text.split())} words, all in manifest.json)" if shown != " ".join(text.split()) else ""
    print(f"  lyrics{read}: {shown!r}{more}")
    polarity = result["polarity"]
    composed = ("" if polarity["emotion"] == polarity["label"] else
                f"; the music is composed {polarity['label']}, a tie-break that does not guide")
    print(f"  polarity: {polarity['emotion']} ({polarity['backend']}, score {polarity['score']:+.2f}{composed})")
    if result.get("categories"):
        from .affective.categories import Categories

        categories = Categories.from_json(result["categories"])  # its caption says when none was found
        print(f"  emotion category: {categories.explained} ({categories.backend})")
    if "valence" not in result:  # EmoGen generates one image: no before and after
        return 0
    v = result["valence"]

    def shown(x):
        return "n/a" if x is None else f"{x:+.2f}"

    within = ""
    if v.get("resolution") is not None:
        within = f" (one-pixel resolution {_resolution_text(v['resolution'])}" + (
            ": no one-pixel shift moves the judge's reading of the input, which is saturated there"
            if _saturated(v) else "") + ")"
    print(f"  valence by the judge ({v['judge'] or 'none'}), on the saved images: "
          f"{shown(v['before'])} -> {shown(v['after'])}{within}{_judged_move(v, polarity['emotion'])}")
    space = v["in_guidance_space"]
    print(f"  valence in the guidance space (the guiding model's reading, its own scale): "
          f"{shown(space['before'])} -> {shown(space['after'])}")
    pulls = {k: x for k, x in space.get("targets", {}).items() if x is not None}
    if pulls:
        print("  the song's targets in the guidance space (> 0 pulls toward happy): "
              + " · ".join(f"{k} {x:+.2f}" for k, x in pulls.items()))
    audio = result.get("audio")
    if audio and audio.get("heard_as"):
        from .spaces.affect import audio_summary

        print(f"  the audio, {audio_summary(audio)}")
    for note in v.get("notes", []):
        print(f"  note: {note}")
    return 0


# A judge's one-pixel resolution below this (a ten-thousandth of its scale): no one-pixel shift of the
# input moves its reading, a judge sure of it. A fine judge is not saturated: the colour judge, which
# averages every pixel, reads a one-pixel shift as 0.0004-0.001.
SATURATED = 1e-4


def _saturated(v: dict) -> bool:
    """No one-pixel shift of the input moves the judge's reading (`SATURATED`)."""
    return v["resolution"] < SATURATED


def _resolution_text(resolution: float) -> str:
    """A resolution to two decimals, or to its first digit below 0.01 (the colour judge's 0.0004), so
    that a fine judge's does not print as 0.00 (a saturated one's does)."""
    return f"{resolution:.2f}" if resolution >= 0.01 or resolution < SATURATED else f"{resolution:.1g}"


def _judged_move(v: dict, emotion: str) -> str:
    """Which way the judge saw the image move, beyond its resolution, and whether that is the lyrics' way."""
    if v["before"] is None or v["after"] is None or v.get("resolution") is None:
        return ""
    change = v["after"] - v["before"]
    if abs(change) <= v["resolution"]:
        return ": no move beyond that resolution" + (": a saturated judge cannot tell" if _saturated(v) else "")
    way = "happier" if change > 0 else "sadder"
    if emotion not in ("positive", "negative"):
        return f": {way}"
    return f": {way}, {'the' if (change > 0) == (emotion == 'positive') else 'against the'} lyrics' way"


def _lyrics_argument(lyrics: str | None) -> str | Path | None:
    """--lyrics: the lyrics themselves, or a text file that holds them (a .txt as beside a song for
    `reproduce --songs`, or any existing file), given as its Path so that `manipulate` reads it and
    keeps it out of --out: a path read as lyrics would be a silent wrong result."""
    if lyrics is None:
        return None
    if not lyrics.strip():
        raise ValueError("--lyrics is empty: give the lyrics themselves in quotes, or the path of a text file")
    path = Path(os.path.expanduser(lyrics.strip()))  # "~ la la ~" is lyrics, not a user's home
    # os.path.isfile, not Path.is_file: long lyrics make no valid path, and that is no error
    named = path.suffix.lower() == ".txt" or "\n" not in lyrics and os.path.isfile(path)
    # one word with a folder or a file's extension in it is a path mistyped, not lyrics
    looks_like_a_path = not any(c.isspace() for c in lyrics.strip()) and (
        os.sep in lyrics or "/" in lyrics or re.fullmatch(r"[^.]+\.[A-Za-z0-9]{1,4}", lyrics.strip()) is not None)
    if "\n" not in lyrics and os.path.isdir(path):  # "~/My Lyrics" as well as "lyrics/"
        raise ValueError(f"--lyrics names a folder: {path} (give the lyrics themselves in quotes, or the path of "
                         "a text file)")
    if not named and not looks_like_a_path:
        return lyrics
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--lyrics names a file that does not exist: {path} (give the lyrics themselves "
                                "in quotes, or the path of a text file)")
    return path  # read by `manipulate` (`samples.read_lyrics`) before any work


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose mistakes (an unknown choice, a missing argument) are one line, as
    every other error of the command is, instead of its usage block and then the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="emostyle", description="EmoStyle reproducibility kit: "
                     "emotion-aware semantic image manipulation with audio guidance.")
    parser.add_argument("--version", action="version", version=f"emostyle {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from .registry import add_weights_parser

    add_weights_parser(sub)

    p = sub.add_parser("doctor", help="what this machine has, and the command that fixes each missing piece")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("config", help="print the resolved configuration of a profile")
    _add_profile(p)
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("reproduce", help="execute the notebooks and regenerate the figures and tables")
    _add_profile(p)
    p.add_argument("--only", default=None, help="comma-separated figures/tables or notebooks, e.g. fig2,table1")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", default="figures", help="folder for figures and tables (default: figures)")
    p.add_argument("--run-dir", default=None,
                   help="a new or empty folder for the executed notebooks (default: runs/<time>-<profile>); the "
                        "folder that holds it keeps the cache of reusable notebooks (.cache)")
    p.add_argument("--jobs", type=int, default=None,
                   help="notebooks run at once (default: one per CPU core; each gets its share of the cores)")
    p.add_argument("--force", action="store_true",
                   help="execute every notebook, even those whose inputs are unchanged since a cached run")
    p.add_argument("--songs", default=None, metavar="DIR",
                   help="a folder of your songs (WAV, FLAC, OGG, MP3; lyrics in a .txt beside each, or transcribed) "
                        "for the figures and tables of songs, instead of the kit's data/songs")
    p.set_defaults(func=_cmd_reproduce)

    from .guidance import MANIPULATE_METHODS

    p = sub.add_parser("manipulate", help="the whole pipeline for one song: music, retrieval, guidance")
    p.add_argument("song", help="an audio file (WAV, FLAC, OGG, MP3); a .txt of its name beside it stands in for "
                   "its lyrics where none are heard")
    _add_profile(p)
    p.add_argument("--method", default="emostyle", choices=MANIPULATE_METHODS,
                   help="a weighting of the guidance loss, or emogen (an image generated from the song's category)")
    p.add_argument("--seed", type=int, default=None, help="overrides the profile's seed")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--lyrics", default=None,
                   help="use these lyrics instead of transcribing the song (text, or a text file holding them)")
    p.add_argument("--out", default="out", help="output folder, published only when complete; a previous "
                   "result there is replaced (default: out)")
    p.add_argument("--force", action="store_true", help="replace --out even when it holds other files")
    p.add_argument("--image", default=None, metavar="PHOTO",
                   help="edit your own photo (inverted into the generator) instead of a retrieved image")
    p.add_argument("--dataset", default=None, metavar="NAME",
                   help="one of the profile's datasets, as the figures run it (offline: 'FFHQ-style faces', the "
                        "default, or 'LHQ-style scenes'); a word of the name is enough, e.g. --dataset scenes")
    p.set_defaults(func=_cmd_manipulate)

    from .sweep import add_sweep_parser

    add_sweep_parser(sub)
    return parser


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning as a user of the command reads it: its message, not the kit's file and line."""
    return f"warning: {message}\n"


class Stopped(KeyboardInterrupt):
    """SIGTERM (`timeout`, a scheduler, CI cancelling) or SIGHUP (a closed terminal), raised where
    Ctrl-C raises KeyboardInterrupt, so that the same clean-up runs: a staged output is removed."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum, frame):
    raise Stopped(signum)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (128 + the signal's number after a signal)."""
    warnings.formatwarning = _warning_line
    if not sys.stderr.isatty():  # a log, not a terminal: each redraw of a bar would be a line of it
        os.environ.setdefault("TQDM_MININTERVAL", "10")  # read when tqdm is imported (with the parser)
    command = "emostyle"
    from .outputs import signals_held

    # a signal the process ignores stays ignored: `nohup` (SIGHUP), a background job (Ctrl-C)
    stopping = [s for s in (signal.SIGTERM, signal.SIGHUP) if threading.current_thread() is threading.main_thread()
                and signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, _stop) for s in stopping}
    try:
        # torch's C code imports numpy and clears whatever error that raises, a KeyboardInterrupt
        # too: a signal there was lost, or left numpy half imported for the command to fail on later
        with signals_held():
            parser = build_parser()  # imports torch, and numpy with it: a second after the command starts
        args = parser.parse_args(argv)
        command = f"emostyle {args.command}"
        return args.func(args) or 0
    except (ConfigError, ValueError, OSError, RuntimeError, KeyError) as error:
        text = error.args[0] if isinstance(error, KeyError) and error.args else error
        _close_progress_bars()
        print(f"{command}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # Ctrl-C: every command writes beside its output and renames it into place
        _close_progress_bars()
        signum = getattr(stop, "signum", signal.SIGINT)
        what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        from .outputs import Published

        tail = f" after {stop}" if isinstance(stop, Published) else "; nothing half-done was put in place"
        print(f"{command}: {what}{tail}", file=sys.stderr)
        return 128 + signum
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _close_progress_bars() -> None:
    """Close the progress bars an error or Ctrl-C left open (which clears their line), so that the one
    line after them starts a line of its own. A Ctrl-C often lands in a bar's __init__ right after it
    first drew itself, before tqdm recorded what it drew: such a bar can be neither closed nor cleared,
    so its line is ended instead."""
    from tqdm import tqdm

    for bar in list(tqdm._instances):
        unfinished = hasattr(bar, "sp") and not hasattr(bar, "last_print_t")
        bar.close()
        if unfinished:
            bar.fp.write("\n")


def run() -> None:
    """The `emostyle` command: `main`, and after a Ctrl-C it handled, the process ends by SIGINT
    itself, so that a shell script or loop calling it stops too (a shell goes on after a child
    that exits with 130; it stops after one that a Ctrl-C ended). The shell's status is 130 either way."""
    status = main()
    if status > 128:  # ended by a signal: end by it again, as the shell expects
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(status - 128, signal.SIG_DFL)
        os.kill(os.getpid(), status - 128)
    sys.exit(status)


if __name__ == "__main__":
    run()
