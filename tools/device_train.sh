#!/usr/bin/env bash
# Resume training runs on a device machine (a lent GPU) until a deadline, then leave their
# run folders in $OUT for the CPU machine to resume from (issue 13: "run the x4, then x2,
# training there first ... and bring the state back to continue on the CPU").
#
#   bash tools/device_train.sh SECONDS RUN [RUN ...]
#
# Runs in the repository root of the device's copy of the tree, with .device/ carried (made
# by tools/device_pack.sh). The images are unpacked where the configs expect them
# (../shared/data, JPEG copies decoded back to the PNGs), every run carried in checkpoints/
# is restored to runs/, each RUN resumes from runs/RUN (or starts, from its init_from),
# with the same config (so the state stays the CPU run's) and only what a resume may change: more data workers, a state saved every 1,000 iterations
# (CHECKPOINT_EVERY) and the device (auto: the GPU). The runs are trained in turn until
# SECONDS have passed (a run that finishes hands the rest to the next; a later run may start
# from an earlier one, as quality_x2_long starts from quality_x4_rescale); each is then killed
# (its state is at most checkpoint_every iterations old; writes are atomic) and its
# state.safetensors, last.safetensors, log.jsonl and config.yaml are copied to $OUT/RUN.
# With no GPU it runs on the CPU (tests/test_device_train.py runs it on a copy of the tree).
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: device_train.sh SECONDS RUN [RUN ...]}
shift
[ $# -gt 0 ] || { echo "device_train.sh: name at least one run" >&2; exit 2; }
deadline=$(( $(date +%s) + seconds ))
out=${OUT:-/tmp/device_out}
py=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
workers=${WORKERS:-$(( $(nproc) > 4 ? $(nproc) - 2 : 1 ))}

stage_data() {  # the configs read ../shared/data/NAME
    local dest=../shared/data
    if [ -d "$dest/T91" ] && [ -d "$dest/BSD200test" ]; then
        return 0
    fi
    [ -d .device/data ] || { echo "device_train.sh: no .device/data (tools/device_pack.sh)" >&2; exit 2; }
    mkdir -p "$dest"
    cp -r .device/data/Set5 "$dest/"
    "$py" - "$dest" <<'EOF'
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

dest = Path(sys.argv[1])
jobs = []
for name in ("T91", "BSD200", "BSD200test"):  # lossless WebP, JPEG originals
    (dest / name).mkdir(parents=True, exist_ok=True)
    packed = sorted(Path(".device/data", name).glob("*.*"))
    jobs += [(p, dest / name / f"{p.stem}.png") for p in packed if p.suffix in (".jpg", ".webp")]

def decode(job):
    src, png = job
    with Image.open(src) as image:
        image.convert("RGB").save(png, compress_level=1)

with ThreadPoolExecutor(16) as pool:
    list(pool.map(decode, jobs))
print(f"decoded {len(jobs)} packed images into {dest}")
EOF
}

stage_data || exit 2
[ -z "${STAGE_ONLY:-}" ] || exit 0  # tools/device_sprint.py stages the images this way
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
mkdir -p runs
for carried in checkpoints/*/; do  # every carried run: a run may start from another's weights
    name=$(basename "$carried")  # (a stopped run carries only its weights, no state)
    if [ ! -d "runs/$name" ] || { [ ! -f "runs/$name/state.safetensors" ] &&
                                   [ -f "$carried/state.safetensors" ]; }; then
        rm -rf "runs/$name" && cp -r "$carried" "runs/$name"
    fi
done
for run in "$@"; do
    left=$(( deadline - $(date +%s) ))
    if [ "$left" -lt "${MIN_SECONDS:-30}" ]; then  # not worth starting a run
        echo "== $run: no time left"
        break
    fi
    echo "== $run: training for at most ${left} s with $workers data workers ($(date -u +%H:%M:%S))"
    timeout -s KILL "$left" "$py" -m superres train --config "configs/$run.yaml" --resume -q \
        --set "data.workers=$workers" --set "checkpoint_every=${CHECKPOINT_EVERY:-1000}"
    echo "== $run: stopped with status $? ($(date -u +%H:%M:%S))"
    if [ -f "runs/$run/state.safetensors" ]; then
        mkdir -p "$out/$run"
        cp "runs/$run"/{state.safetensors,last.safetensors,log.jsonl,config.yaml} "$out/$run/" 2>/dev/null
        "$py" - "runs/$run/state.safetensors" <<'EOF'
import sys

from safetensors import safe_open

with safe_open(sys.argv[1], "pt") as f:
    print(f"   state at iteration {f.metadata()['iteration']}")
EOF
    fi
done
exit 0
