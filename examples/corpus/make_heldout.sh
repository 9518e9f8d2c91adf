#!/usr/bin/env bash
# Build the held-out evaluation set (~45 clips of 5-10 s, 24 kHz mono 16-bit WAV, speech/music/env)
# fully offline from Debian packages that build_dev.py never uses. Needs root for apt-get.
#   usage: bash make_heldout.sh OUTDIR
# Writes OUTDIR/{speech,music,env}/*.wav and OUTDIR/manifest.csv.
set -euo pipefail
source "$(dirname "$0")/build_with.sh"
OUT="${1:?usage: make_heldout.sh OUTDIR}"
PKGS=(
  sox ffmpeg festival fluidsynth abcmidi python3-venv
  asterisk-core-sounds-fr-g722 asterisk-core-sounds-it-g722 festvox-kdlpc16k festvox-italp16k festvox-suopuhe-mv
  timgm6mb-soundfont planetblupi-music-midi wesnoth-1.16-music
  sonic-pi-samples alsa-utils sound-theme-freedesktop sound-icons
  fillets-ng-data-cs ktuberling-data
)
build_with build_heldout.py "$OUT" "${PKGS[@]}"
