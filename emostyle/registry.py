"""The weights and data registry: every external file, where it comes from, and its cache.

Entries live in `registry.toml` (name -> filename, public source, size, sha256, license,
profiles that need it). Files are cached as `$EMOSTYLE_HOME/weights/<name>/<filename>`
(default `~/.cache/emostyle`). `path(name)` returns a verified file or raises
`MissingWeightError` naming the command that fetches it (`ChecksumError` for a copy that
fails its check: such a file is never used); `fetch(name)` is the only call that touches
the network. `used()` lists every file a run used (inside `recording()`, else this process),
with its sha256, for run manifests; a cache of results keeps the files they were made from
(`kept_with_uses`, `replay`) and records them again when it serves one. Nothing happens at import.

Any entry also takes a file the user names (`fetch NAME --from PATH`, or
`$EMOSTYLE_WEIGHT_<NAME>`), and a read-only reference folder (`$EMOSTYLE_MIRROR`, e.g.
`../shared/data`) that holds some files under `mirror` paths.

This module is the public API; the parts live in `emostyle.weights`: `table` (the entries),
`integrity` (checks and hashes), `sources` (downloads), `cache` (path, fetch, verify),
`cli` (the `emostyle weights` commands).
"""

from .weights.cache import Check, fetch, fetch_profile, kept_with_uses, path, presence, recording, replay, used, \
    verify
from .weights.cli import add_weights_parser, main
from .weights.integrity import file_sha256, tree_sha256
from .weights.table import ChecksumError, Entry, FetchError, MissingWeightError, entries, entry, home, \
    profile_files, profiles

__all__ = [
    "MissingWeightError",
    "ChecksumError",
    "FetchError",
    "Entry",
    "Check",
    "entries",
    "entry",
    "profiles",
    "profile_files",
    "home",
    "path",
    "fetch",
    "fetch_profile",
    "verify",
    "presence",
    "used",
    "recording",
    "kept_with_uses",
    "replay",
    "file_sha256",
    "tree_sha256",
    "add_weights_parser",
    "main",
]

if __name__ == "__main__":
    import sys

    sys.exit(main())
