"""The ``wiener`` pseudo-model: bicubic upsampling, then Fourier-domain deconvolution of the
bicubic degradation's point-spread function. No learned parameters.

    x -> imresize(x, s) -> wiener_deconvolve(., degradation_psf(s), strength[s])

The classical answer to "undo a blur", and the baseline every learned method should beat
(it does not restore what aliasing destroyed; it only re-amplifies the frequencies that the
two cubic kernels attenuated). ``strength`` (the weight of the gradient prior) per scale was
chosen on training images (T91 + BSD200 + BSD200test, never a benchmark) by
``python tools/calibrate_wiener.py``; the figures are in ``STRENGTH_CALIBRATION``.
``method="richardson_lucy"`` runs Richardson-Lucy iterations on the kernel's positive part
instead.
"""

from __future__ import annotations

from torch import Tensor, nn

from superres.core.deconvolution import degradation_psf, richardson_lucy, wiener_deconvolve
from superres.core.resize import imresize
from superres.models.registry import register_model

#: Gradient-prior weight per scale, chosen on training images (tools/calibrate_wiener.py).
STRENGTH: dict[int, float] = {2: 0.015, 3: 0.04, 4: 0.07}

#: How STRENGTH was chosen (mean PSNR-Y on the calibration images at the chosen value).
STRENGTH_CALIBRATION = (
    "tools/calibrate_wiener.py --images 60 (60 training images, 13-point grid): "
    "x2 31.366 dB at 0.015 (bicubic 30.327), x3 28.381 at 0.04 (27.753), "
    "x4 26.867 at 0.07 (26.349)"
)

METHODS = ("wiener", "richardson_lucy")


def default_strength(scale: int) -> float:
    """The calibrated strength of ``scale`` (the nearest calibrated scale's otherwise)."""
    nearest = min(STRENGTH, key=lambda s: (abs(s - scale), s))
    return STRENGTH[nearest]


@register_model(
    "wiener",
    description="bicubic + Wiener deconvolution of the bicubic PSF (no learned parameters)",
    scales=None,
    tiling="approximate",
)
class Wiener(nn.Module):
    """Bicubic upsampling followed by deconvolution of :func:`degradation_psf` (``scale``).

    Args:
        scale: Upscaling factor.
        strength: Gradient-prior weight; None uses the value calibrated for ``scale``.
        method: ``"wiener"`` (one FFT filter) or ``"richardson_lucy"``.
        iterations: Richardson-Lucy iterations (3 is best on Set5: more amplify noise).
    """

    def __init__(
        self,
        scale: int = 4,
        strength: float | None = None,
        method: str = "wiener",
        iterations: int = 3,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.scale = scale
        self.strength = default_strength(scale) if strength is None else float(strength)
        self.method, self.iterations = method, int(iterations)
        # The inverse filter decays within a few LR pixels (tests compare tiled and whole).
        self.receptive_field = 8

    @property
    def psf(self) -> Tensor:
        """The 1-D kernel deconvolved (:func:`degradation_psf` of ``scale``, cached)."""
        return degradation_psf(self.scale)

    def forward(self, x: Tensor) -> Tensor:
        up = imresize(x, self.scale)
        if self.scale == 1:
            return up
        if self.method == "richardson_lucy":
            return richardson_lucy(up, self.psf, self.iterations)
        return wiener_deconvolve(up, self.psf, self.strength)
