#!/usr/bin/env bash
# Tokenize a folder of audio into bin shards, train a small next-token transformer on them for a
# few minutes on CPU (the loss is printed as it falls), sample tokens and decode them to a WAV.
#   bash examples/lm_corpus/run.sh [AUDIO_DIR] [WORK_DIR] [MINUTES]
set -euo pipefail
AUDIO=${1:-examples/audio}
WORK=${2:-lm_corpus_run}
MINUTES=${3:-3}
rvq tokenize "$AUDIO" -o "$WORK/shards" --format bin --pattern delay --n-q 4 --shard-size 50k --workers 2
python "$(dirname "$0")/train_lm.py" "$WORK/shards" --minutes "$MINUTES" --out "$WORK/sample.wav"
# the same sample through the CLI: any token sequence back to audio
rvq detokenize "$WORK/shards" --tokens "$WORK/sample.npy" -o "$WORK/sample_cli.wav"
rvq info "$WORK/sample_cli.wav"
