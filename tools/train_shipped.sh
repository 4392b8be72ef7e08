#!/usr/bin/env bash
# Train and ship the package's models in dependency order (x3/x4 start from x2, the codec
# tier from quality x2), resuming any run that already has a state file and skipping any
# tier/scale whose weights are already shipped.
#
#   bash tools/train_shipped.sh [RUN ...]        # default: every run below, in order
#
# RUN is a config name (configs/RUN.yaml); the tier is the part before "_x". A run folder
# saved in checkpoints/RUN/ (committed to carry a run across machines) is copied to
# runs/RUN/ first when runs/RUN/ holds no state.
#
# A run named TIER_xS_STAGE (quality_x4_mse) continues the run TIER_xS from its weights and
# ships as TIER_xS; a run with such a later stage (a configs/RUN_*.yaml) is not shipped.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=("$@")
if [ ${#runs[@]} -eq 0 ]; then
    runs=(fast_x2 fast_x3 fast_x4 quality_x2 quality_x3 quality_x4 quality_x4_mse codec_x2 codec_x2_mse codec_x4)
fi
for run in "${runs[@]}"; do
    tier=${run%%_x*}
    rest=${run#*_x}
    scale=${rest%%_*}
    if [ -f "src/superres/weights/${tier}_x$scale.safetensors" ]; then
        echo "== $run: shipped already"
        continue
    fi
    if [ ! -f "runs/$run/state.safetensors" ] && [ -f "checkpoints/$run/state.safetensors" ]; then
        mkdir -p runs && cp -r "checkpoints/$run" "runs/$run"
    fi
    echo "== $run: training ($(date -u +%H:%M))"
    superres train --config "configs/$run.yaml" --resume -q
    if compgen -G "configs/${run}_*.yaml" > /dev/null; then
        continue  # a first stage: the later stage ships
    fi
    echo "== $run: shipping ($(date -u +%H:%M))"
    python tools/ship_model.py --run "runs/$run" --name "$tier" --config "configs/$run.yaml"
done
