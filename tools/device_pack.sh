#!/usr/bin/env bash
# Pack what a training run on a device machine (a lent GPU) needs and the working tree does
# not carry: the training and validation images. The BSD sets travel as their compact JPEG
# copies (which decode to exactly the PNGs), T91 and Set5 as they are, into .device/
# (ignored through .git/info/exclude; about 40 MB, so the tree and it stay under the 64 MiB
# a device call carries).
#
#   bash tools/device_pack.sh          # here, before the device call
#   # then, with the CPU run paused and its state carried into checkpoints/RUN:
#   #   run(command="bash tools/device_train.sh 480 quality_x4_long quality_x2_long",
#   #       carry=[".device"], timeout_s=570)
#   # and copy the run folders it returns into runs/ to resume on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${SUPERRES_DATA:-../shared/data}
mkdir -p .git/info
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device
mkdir -p .device/data
cp -r "$data/T91" "$data/Set5" .device/data/
cp -r "$data/BSD200-jpeg" .device/data/BSD200
cp -r "$data/BSD200test-jpeg" .device/data/BSD200test
du -sh .device
