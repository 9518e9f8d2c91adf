#!/usr/bin/env bash
# Rebuild the shipped default model from scratch, offline (Debian packages only), then score it
# on the held-out set beside Opus. Needs root for apt-get. Run from the repository root:
#   bash examples/train_default.sh [WORKDIR]       (default WORKDIR: build/default-model)
# The shipped model is the checkpoint at STEPS below (about 1 h 45 min on 2 CPU cores; on a GPU
# add --device cuda). Training resumes if interrupted: run the same command again.
set -euo pipefail
WORK="${1:-build/default-model}"
STEPS="${STEPS:-5500}"
RVQ=.venv/bin/rvq
make -s setup
[ -f "$WORK/train/manifest.csv" ] || bash examples/corpus/make_corpus.sh "$WORK/train"
[ -f "$WORK/heldout/manifest.csv" ] || bash examples/corpus/make_heldout.sh "$WORK/heldout"
RESUME=""
[ -f "$WORK/run/train_state.safetensors" ] && RESUME="--resume"
$RVQ train "$WORK/train" -o "$WORK/run" --name default --steps "$STEPS" $RESUME \
  --batch-size 8 --crop-seconds 0.8 --lr 5e-4 --quantizer-dropout 0.3 --quantizer-warmup 300 \
  --checkpoint-every 250 --threads 2 --half-weights
.venv/bin/python examples/opus_baseline.py "$WORK/heldout" --out "$WORK/opus.json"
.venv/bin/python examples/evaluate.py "$WORK/heldout" --model "$WORK/run/default" --opus "$WORK/opus.json" \
  --out "$WORK/eval.json"
echo "to ship it: cp $WORK/run/default.safetensors $WORK/run/default.json rvqtool/models/"
