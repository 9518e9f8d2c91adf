#!/usr/bin/env bash
# Build the extra music corpus (~25 min of 24 kHz mono WAV: other soundfonts, other produced music)
# fully offline from Debian packages that make_corpus.sh and make_heldout.sh do not use. Needs root.
#   usage: bash make_corpus_extra.sh OUTDIR        (a few minutes on 2 cores)
# Writes OUTDIR/music/*.wav and OUTDIR/manifest.csv. Why: see build_extra.py.
set -euo pipefail
source "$(dirname "$0")/build_with.sh"
OUT="${1:?usage: make_corpus_extra.sh OUTDIR}"
PKGS=(
  sox ffmpeg fluidsynth mma python3-venv
  musescore-general-soundfont-small csound-soundfont hyperrogue-music singularity-music drascula-music
)
build_with build_extra.py "$OUT" "${PKGS[@]}"
