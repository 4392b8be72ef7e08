#!/usr/bin/env bash
# Retrain the package's models: every config that made the shipped weights, in an order that
# trains each run after the run it starts from (`python tools/ship_model.py --plan`, read
# from the shipped files' provenance), shipping a run when it is the last stage of a tier
# and scale.
#
#   bash tools/train_shipped.sh [-n] [RUN ...]   # default: every run of the plan, in order
#
# RUN is a config name (configs/RUN.yaml). -n prints what would be done and does nothing.
# For each run:
# - runs/RUN/ missing and checkpoints/RUN/ present (a run carried across machines, or the
#   final weights of a run that later runs start from): copied to runs/RUN/ first;
# - runs/RUN/ holding final weights and no training state (carried that way because the
#   run is over, sometimes stopped before the end of its schedule): not trained again;
# - otherwise `superres train --resume` (from its state when there is one), with
#   `--stop-at N` for a run the shipped files record as stopped at N before the end of its
#   schedule (the card's "N of M"), so the runs that start from it start from the same point;
# - a run the plan ships is then shipped with tools/ship_model.py.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0
if [ "${1:-}" = "-n" ]; then
    dry=1
    shift
fi
declare -A ships stops
order=()
while read -r config tier stop; do
    run=$(basename "$config" .yaml)
    order+=("$run")
    ships[$run]=$tier
    stops[$run]=$stop
done < <(python tools/ship_model.py --plan)
runs=("$@")
if [ ${#runs[@]} -eq 0 ]; then
    runs=("${order[@]}")
fi
do_() {
    echo "   $*"
    if [ $dry -eq 0 ]; then "$@"; fi
}
for run in "${runs[@]}"; do
    if [ ! -f "configs/$run.yaml" ]; then
        echo "train_shipped.sh: configs/$run.yaml: no such config" >&2
        exit 2
    fi
    echo "== $run ($(date -u +%H:%M))"
    from=runs
    if [ ! -e "runs/$run" ] && [ -d "checkpoints/$run" ]; then
        do_ mkdir -p runs
        do_ cp -r "checkpoints/$run" "runs/$run"
        if [ $dry -eq 1 ]; then from=checkpoints; fi  # what the copy would have made
    fi
    if [ -f "$from/$run/last.safetensors" ] && [ ! -f "$from/$run/state.safetensors" ]; then
        echo "   (over: $from/$run holds its final weights and no training state)"
    else
        stop_args=()
        if [ "${stops[$run]:--}" != "-" ]; then stop_args=(--stop-at "${stops[$run]}"); fi
        do_ superres train --config "configs/$run.yaml" --resume -q "${stop_args[@]}"
    fi
    tier=${ships[$run]:--}
    if [ "$tier" != "-" ]; then
        do_ python tools/ship_model.py --run "runs/$run" --name "$tier" \
            --config "configs/$run.yaml" --allow-partial
    fi
done
