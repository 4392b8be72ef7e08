#!/usr/bin/env bash
# Pack what a training run on a device machine (a lent GPU) needs and the working tree does
# not carry: the training and validation images. The BSD sets travel as their compact JPEG
# copies (which decode to exactly the PNGs), T91 as lossless WebP, Set5 as it is, into
# .device/ (ignored through .git/info/exclude; about 38 MB: with the tree and one carried
# training state, under the 64 MiB a device call carries). NO_T91=1 leaves T91 out (30 MB): the
# configs of tools/device_sprint.py train on 64x64 LR patches, which at x4 (256 px of HR) skip
# most of T91's small images anyway.
#
#   bash tools/device_pack.sh          # here, before the device call
#   # then, with the CPU run paused and its state carried into checkpoints/RUN:
#   #   run(command="bash tools/device_train.sh 480 quality_x4_rescale quality_x3_long",
#   #       carry=[".device"], timeout_s=570)
#   # and copy the run folders it returns into runs/ to resume on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${SUPERRES_DATA:-../shared/data}
mkdir -p .git/info
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device
mkdir -p .device/data
cp -r "$data/Set5" .device/data/
[ -n "${NO_T91:-}" ] || "${PYTHON:-python3}" - "$data/T91" .device/data/T91 <<'EOF'
import sys
from pathlib import Path

from PIL import Image

src, dest = Path(sys.argv[1]), Path(sys.argv[2])
dest.mkdir(parents=True)
for path in sorted(src.iterdir()):
    with Image.open(path) as image:
        image.save(dest / f"{path.stem}.webp", lossless=True, method=4)
EOF
cp -r "$data/BSD200-jpeg" .device/data/BSD200
cp -r "$data/BSD200test-jpeg" .device/data/BSD200test
du -sh .device
