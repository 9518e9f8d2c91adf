#!/usr/bin/env bash
# The default model's training recipe on one lent H200, for a fixed number of minutes (issue 14).
# Prepare on the CPU machine first (once): .venv/bin/python examples/gpu/prepare.py build/default-model/train
# which writes build/gpu/ (a 38 MiB FLAC subset of the corpus, speech twice as often, and the wheels
# the GPU image lacks). Then, with the device tool: run `bash examples/gpu/train_h200.sh` with
# carry ["build/gpu"], timeout_s 600. It starts from INIT_FROM's weights (default-v2, or any model
# file in the tree), or from a training state given back by an earlier run (put its parts in
# build/gpu/state/), trains adversarially (multi-scale STFT + multi-period discriminators, feature
# matching, balanced losses) under bf16 autocast with large batches, stops after MINUTES with its
# checkpoint written, and leaves in $OUT: the model (fp16) and the state, each split into 15 MiB
# parts (the state only if it fits in the 8 files), and the logs. Back on the CPU: `cat
# default-gpu.safetensors.part-* > default-gpu.safetensors` (and likewise the state into
# RUN/train_state.safetensors: `rvq train ... -o RUN --resume` continues it);
# `examples/evaluate.py` scores the model.
# Arguments are passed on to `rvq train`: `bash examples/gpu/train_h200.sh --decoder-only` keeps the
# encoder and codebooks (so the codes) of INIT_FROM and trains the decoder alone.
# Tested on the CPU with: DEVICE=cpu PY=.venv/bin/python MINUTES=0.5 BATCH=2 bash examples/gpu/train_h200.sh
set -euo pipefail
OUT="${OUT:-build/gpu/out}"
MINUTES="${MINUTES:-7}"          # of the 9-minute limit per run: start-up (data, k-means statistics) and copying take the rest
INIT_FROM="${INIT_FROM:-default-v2}"
DEVICE="${DEVICE:-cuda}"
BATCH="${BATCH:-64}"
STEPS="${STEPS:-60000}"          # a total; the time limit ends the run first
# lr decays per step from step 0 and init-from keeps the model's step count (13,250 for v2):
# 2e-3 x 0.99985^13250 = 2.7e-4 at the start, right for batches of 64
LR="${LR:-2e-3}"
PY="${PY:-python3}"
mkdir -p "$OUT"
source examples/gpu/wheels.sh
install_wheels soundfile soxr
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
RUN="${RUN:-/tmp/rvq-gpu-run}"
rm -rf "$RUN" && mkdir -p "$RUN"
START=(--init-from "$INIT_FROM")
if compgen -G "build/gpu/state/train_state.safetensors.part-*" >/dev/null; then
  cat build/gpu/state/train_state.safetensors.part-* > "$RUN/train_state.safetensors"
  START=(--resume)
fi
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true; } > "$RUN/machine.txt" 2>&1
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" >> "$RUN/machine.txt"
cat "$RUN/machine.txt"
status=0
$PY -m rvqtool.cli train build/gpu/data -o "$RUN" --name default-gpu --steps "$STEPS" "${START[@]}" \
  --device "$DEVICE" --precision bf16 --batch-size "$BATCH" --crop-seconds 1.0 --lr "$LR" \
  --quantizer-dropout 0.3 --time-limit "$MINUTES" --checkpoint-every 1000 --half-weights \
  --adversarial --adversarial-from-step 0 --discriminator-warmup 300 --discriminator-filters 32 \
  --discriminator-periods 2,3,5,7,11 --discriminator-lr 1e-3 --balance --balance-norm 100 \
  --weight-mel 1 --weight-stft 12 --weight-waveform 0.001 --weight-adversarial 1 --weight-feature 2 \
  -v "$@" > "$RUN/train.txt" 2>&1 || status=$?
tail -5 "$RUN/train.txt"
# at most 8 files of 16 MiB come back: the model (in 15 MiB parts: default-v3's is 19.8 MB), one
# archive of the logs, and the state in parts if they fit in what is left. An istft-decoder state
# (~126 MB with --decoder-only) does not: then only the model comes back, and the next run starts
# from it (INIT_FROM=the joined model: a fresh optimiser and discriminator), as train.txt says.
parts() { echo $(( ($(stat -c %s "$1") + 15 * 1048576 - 1) / (15 * 1048576) )); }
left=7
if [ -f "$RUN/default-gpu.safetensors" ]; then
  split -b 15M -d "$RUN/default-gpu.safetensors" "$OUT/default-gpu.safetensors.part-"
  left=$(( left - $(parts "$RUN/default-gpu.safetensors") ))
fi
if [ -f "$RUN/train_state.safetensors" ]; then
  if [ "$(parts "$RUN/train_state.safetensors")" -le "$left" ]; then
    split -b 15M -d "$RUN/train_state.safetensors" "$OUT/train_state.safetensors.part-"
  else
    echo "the state ($(( $(stat -c %s "$RUN/train_state.safetensors") / 1048576 )) MiB) does not fit in the $left files left: not returned; continue from the model (INIT_FROM)" | tee -a "$RUN/train.txt"
  fi
fi
tar czf "$OUT/logs.tgz" -C "$RUN" machine.txt train.txt $(cd "$RUN" && ls train_log.jsonl default-gpu.json 2>/dev/null)
ls -la "$OUT"
exit $status
