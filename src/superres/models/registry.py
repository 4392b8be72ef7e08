"""Model registry: ``@register_model``, ``create_model``, ``list_models``, ``get_model_spec``.

timm-style: each registered name is a class or a factory function whose keyword arguments
*are* the hyperparameters (all with defaults, ``scale`` among them). ``create_model`` binds
the overrides to that signature, so an unknown hyperparameter is an error, and attaches the
descriptor attributes the rest of the package relies on (see ``docs/CONTRACTS.md``)::

    @register_model(description="EDSR-baseline (Lim et al. 2017)", scales=(2, 3, 4, 8))
    def edsr_baseline(scale: int = 4, n_feats: int = 64, n_blocks: int = 16) -> EDSR: ...

    net = create_model("edsr_baseline", scale=2, n_blocks=4)
    net.arch, net.scale, net.hparams, net.tiling, net.receptive_field
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from torch import nn

__all__ = ["ModelSpec", "create_model", "get_model_spec", "list_models", "register_model"]

TILINGS = ("exact", "approximate")
_REGISTRY: dict[str, ModelSpec] = {}
Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one name, before building anything.

    Attributes:
        name: Registered name (``create_model``'s first argument).
        builder: The class or factory that builds the module from the hyperparameters.
        description: One line: the paper and the configuration.
        scales: Supported integer scales, or None for any integer >= 1.
        defaults: Every hyperparameter with its default, ``scale`` included (read-only).
        tiling: ``"exact"`` or ``"approximate"`` for the default configuration.
    """

    name: str
    builder: Callable[..., nn.Module]
    description: str
    scales: tuple[int, ...] | None
    defaults: Mapping[str, Any]
    tiling: str

    def supports(self, scale: int) -> bool:
        """Whether ``scale`` can be built."""
        return scale >= 1 if self.scales is None else scale in self.scales


def register_model(
    name: str | None = None,
    *,
    description: str = "",
    scales: tuple[int, ...] | None = (2, 3, 4),
    tiling: str = "exact",
) -> Callable[[Builder], Builder]:
    """Register a model class or factory under ``name`` (default: its lowercased name).

    Args:
        name: Registry name; defaults to the function name or the lowercased class name.
        description: One-line summary shown by ``list`` commands.
        scales: Supported scales; None means any integer >= 1.
        tiling: ``"exact"`` if the output is a local function of the input. A built module
            that contains a global operation (see ``is_global_op``) is reported as
            ``"approximate"`` whatever this says.

    Raises:
        ValueError: duplicate name or bad ``tiling``.
        TypeError: the builder has a hyperparameter without default, ``*args``/``**kwargs``
            or no ``scale`` parameter.
    """
    if tiling not in TILINGS:
        raise ValueError(f"tiling must be one of {TILINGS}, got {tiling!r}")

    def decorator(builder: Builder) -> Builder:
        key = name or (builder.__name__.lower() if inspect.isclass(builder) else builder.__name__)
        if key in _REGISTRY:
            raise ValueError(f"model '{key}' is already registered")
        defaults = {}
        for param in inspect.signature(builder).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                raise TypeError(f"{key}: hyperparameters must be plain keyword arguments")
            if param.default is param.empty:
                raise TypeError(f"{key}: hyperparameter '{param.name}' has no default")
            defaults[param.name] = param.default
        if "scale" not in defaults:
            raise TypeError(f"{key}: the builder must take a 'scale' argument")
        _REGISTRY[key] = ModelSpec(
            name=key,
            builder=builder,
            description=description or (inspect.getdoc(builder) or "").split("\n")[0],
            scales=None if scales is None else tuple(sorted(scales)),
            defaults=MappingProxyType(defaults),
            tiling=tiling,
        )
        return builder

    return decorator


def list_models() -> list[str]:
    """Registered names, sorted."""
    return sorted(_REGISTRY)


def get_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``.

    Raises:
        ValueError: unknown name (the message lists the available ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model '{name}'; available: {', '.join(list_models())}") from None


def is_global_op(module: nn.Module) -> bool:
    """Whether ``module`` mixes information across the whole image (global pooling)."""
    return bool(getattr(module, "is_global", False)) or isinstance(
        module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    )


def create_model(name: str, scale: int = 4, **overrides: Any) -> nn.Module:
    """Build a registered model with its defaults, ``scale`` and ``overrides``.

    Returns:
        The module (in training mode, default initialisation) carrying ``arch``, ``scale``,
        ``hparams`` (complete and JSON-serialisable: ``create_model(arch, **hparams)``
        rebuilds it), ``tiling`` and ``receptive_field`` (LR pixels).

    Raises:
        ValueError: unknown model name, unsupported scale, or a hyperparameter value that is
            not JSON-serialisable.
        TypeError: unknown hyperparameter.
    """
    spec = get_model_spec(name)
    if isinstance(scale, bool) or int(scale) != scale:
        raise ValueError(f"{name}: scale must be an integer, got {scale!r}")
    scale = int(scale)
    if not spec.supports(scale):
        have = "any integer >= 1" if spec.scales is None else ", ".join(map(str, spec.scales))
        raise ValueError(f"{name}: unsupported scale {scale} (supported: {have})")
    unknown = sorted(set(overrides) - set(spec.defaults))
    if unknown:
        raise TypeError(
            f"{name}: unknown hyperparameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; valid: {', '.join(sorted(spec.defaults))}"
        )
    hparams = {**spec.defaults, **overrides, "scale": scale}
    try:  # normalise (tuples -> lists, ...) so that a checkpoint reloads to equal hparams
        hparams = json.loads(json.dumps(hparams, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: hyperparameters must be JSON-serialisable: {exc}") from None
    module = spec.builder(**hparams)
    receptive_field = getattr(module, "receptive_field", None)
    if not isinstance(receptive_field, int):
        raise TypeError(f"{name}: the built module must set an int 'receptive_field'")
    module.arch = name
    module.scale = scale
    module.hparams = hparams
    module.tiling = "approximate" if any(map(is_global_op, module.modules())) else spec.tiling
    return module
