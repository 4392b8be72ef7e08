"""Score the OpenCV dnn_superres peer models with this project's evaluation protocol.

    pip install opencv-contrib-python-headless
    python benchmarks/peers_psnr.py [--peers ../shared/peers/opencv-dnn-superres]
        [--data Set5,Set14,BSD100] [--models ESPCN,FSRCNN] [--scales 2,3,4]

Each HR image is cropped to a multiple of the scale and downscaled with MATLAB bicubic (as
for our models), the peer upscales the 8-bit LR (BGR in, BGR out, as its users call it), and
PSNR/SSIM are measured on the Y channel with ``scale`` border pixels cropped. The peers are
measured, never shipped.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from superres.core.degrade import list_images, load_hr, make_lr_array, modcrop
from superres.core.metrics import psnr, ssim

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data_root = Path(os.environ.get("SUPERRES_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--peers", type=Path, default=REPO.parent / "shared" / "peers"
                        / "opencv-dnn-superres")  # fmt: skip
    parser.add_argument("--data", default="Set5,Set14,BSD100")
    parser.add_argument("--models", default="ESPCN,FSRCNN")
    parser.add_argument("--scales", default="2,3,4")
    args = parser.parse_args()
    try:
        import cv2
    except ImportError:
        raise SystemExit("needs opencv-contrib-python-headless") from None
    print("| peer | scale | " + " | ".join(args.data.split(",")) + " |")
    print("|---|---|" + "---|" * len(args.data.split(",")))
    for name in args.models.split(","):
        for scale in (int(s) for s in args.scales.split(",")):
            path = args.peers / f"{name}_x{scale}.pb"
            if not path.exists():
                continue
            sr = cv2.dnn_superres.DnnSuperResImpl_create()
            sr.readModel(str(path))
            sr.setModel(name.lower(), scale)
            cells = []
            for dataset in args.data.split(","):
                scores = []
                for image in list_images(data_root / dataset):
                    hr = modcrop(load_hr(image), scale)
                    lr = make_lr_array(hr, scale)
                    out = sr.upsample(np.ascontiguousarray(lr[:, :, ::-1]))[:, :, ::-1]
                    scores.append((psnr(out, hr, crop=scale), ssim(out, hr, crop=scale)))
                mean = np.mean(scores, axis=0)
                cells.append(f"{mean[0]:.2f} / {mean[1]:.4f}")
            print(f"| OpenCV {name} | x{scale} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
