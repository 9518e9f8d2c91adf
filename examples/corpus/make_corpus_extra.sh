#!/usr/bin/env bash
# Build the extra music corpus (~25 min of 24 kHz mono WAV: other soundfonts, other produced music)
# fully offline from Debian packages that make_corpus.sh and make_heldout.sh do not use. Needs root.
#   usage: bash make_corpus_extra.sh OUTDIR        (a few minutes on 2 cores)
# Writes OUTDIR/music/*.wav and OUTDIR/manifest.csv. Why: see build_extra.py.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:?usage: make_corpus_extra.sh OUTDIR}"
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  sox ffmpeg fluidsynth mma python3-venv
  musescore-general-soundfont-small csound-soundfont hyperrogue-music singularity-music drascula-music
)
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
VENV="${CORPUS_VENV:-/tmp/corpus-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q numpy scipy soundfile soxr
mkdir -p "$OUT"
"$VENV/bin/python" "$HERE/build_extra.py" "$OUT"
du -sh "$OUT"
