"""``superres models``: the registered architectures and the shipped weights."""

from __future__ import annotations

import argparse
import json

from superres.apps.cli.common import EXIT_OK

__all__ = ["add_parser", "count_parameters", "run"]

EPILOG = """\
examples:
  superres models
  superres models --json
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    mo = subparsers.add_parser(
        "models", help="list architectures and shipped weights",
        description="List the registered architectures (with their parameter counts at x4, "
                    "or at their largest scale) and the shipped weights with their Set5 PSNR.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    mo.add_argument("--json", action="store_true", help="print JSON")
    mo.set_defaults(func=run)
    return mo


def count_parameters(name: str, scale: int) -> int:
    """Parameters of architecture ``name`` at ``scale``, counted without allocating them.

    The model is built on torch's ``meta`` device: shapes only, no memory and no
    initialisation, so counting EDSR's 43 M parameters costs nothing.
    """
    import torch

    from superres.models import create_model

    with torch.device("meta"):
        module = create_model(name, scale=scale)
    return sum(p.numel() for p in module.parameters())


def run(args: argparse.Namespace) -> int:
    from superres.models import get_model_spec, list_models
    from superres.weights import zoo

    rows = []
    for name in list_models():
        spec = get_model_spec(name)
        scales = list(spec.scales or (2, 3, 4))
        scale = 4 if 4 in scales else scales[-1]
        params = count_parameters(name, scale)
        shown = ",".join(f"x{s}" for s in scales) if spec.scales else "any"
        rows.append((name, shown, params, spec.tiling, spec.description))
    shipped = []
    for weights in zoo.shipped_weights():
        meta = weights.metadata()
        shipped.append(
            {"name": weights.name, "scale": weights.scale, "arch": meta.get("arch"),
             "params": meta.get("num_params"), "metrics": meta.get("metrics", {})}
        )  # fmt: skip
    if args.json:
        keys = ("name", "scales", "params_x4", "tiling", "description")
        print(json.dumps({
            "architectures": [dict(zip(keys, r, strict=True)) for r in rows],
            "shipped": shipped,
            "baselines": [{"name": n, "scales": "any", "params": 0} for n in zoo.PARAMETER_FREE],
            "default": zoo.default_model_name(),
        }, indent=2))  # fmt: skip
        return EXIT_OK
    print("Architectures (create_model / superres train):")
    print(f"  {'name':<16} {'scales':<10} {'params':>10}  {'tiling':<11} description")
    for name, scales, params, tiling, description in rows:
        print(f"  {name:<16} {scales:<10} {params:>10,}  {tiling:<11} {description}")
    print("\nShipped weights (--model NAME):")
    if not shipped:
        print("  (none yet)")
    for item in shipped:
        set5 = item["metrics"].get("Set5", {})
        score = f"Set5 {set5['psnr']:.2f} dB" if "psnr" in set5 else ""
        print(f"  {item['name']:<10} x{item['scale']}  {item['arch']:<16} {score}")
    print(f"  {'bicubic':<10} any scale, parameter-free baseline (MATLAB bicubic)")
    print(f"  {'wiener':<10} any scale, parameter-free baseline (bicubic + Wiener deconvolution)")
    print(f"\nDefault model: {zoo.default_model_name()}")
    return EXIT_OK
