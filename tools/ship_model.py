"""Ship a trained run as package weights, with measured metrics and a regenerated model card.

    python tools/ship_model.py --run runs/quality_x2 --name quality --config configs/quality_x2.yaml

Takes ``<run>/last.safetensors`` (the final EMA weights; never the Set5-selected "best"),
evaluates it with the same evaluator as ``superres eval`` on Set5, Set14 and BSD100 at its
scale, and writes ``src/superres/weights/<name>_x<scale>.safetensors`` whose metadata
holds the architecture, hyperparameters, training provenance (config, data, iterations,
wall time, hardware) and the measured PSNR/SSIM. Then rewrites the tier's model card
``src/superres/weights/<name>.md`` from the metadata of all of its files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "src" / "superres" / "weights"
BENCHMARKS = ("Set5", "Set14", "BSD100")
TIERS = {
    "fast": "the fast tier: a plain convolutional network for CPUs, at most 100 K parameters",
    "quality": "the quality tier (the default model): residual blocks with local spatial "
    "attention, at most 1.5 M parameters",
    "codec": "the codec-aware tier: restores images that `superres compress` stored "
    "downscaled with JPEG, WebP or AVIF",
    "burst": "the burst network: learned multi-image SR (`superres burst --method learned`), "
    "at most 0.5 M parameters; on one image, a single-image model",
}
#: Burst protocol points the burst network's card reports (README's table has every N).
BURST_DATASETS = ("Set5", "Set14")
BURST_FRAMES = (1, 8)
#: How a card names the usual training sets.
TRAINING_SETS = {
    frozenset({"T91", "BSD200"}): "the classic 291-image training set",
    frozenset({"T91", "BSD200", "BSD200test"}): "491 images; BSD200test is BSDS500's test split",
}
#: Codec qualities at which the codec tier's card compares it with Lanczos on Kodak24.
CODEC_POINTS = {"jpeg": (20, 50, 80), "webp": (30, 60, 90), "avif": (40, 60, 80)}


def codec_gains(model) -> dict:
    """PSNR-RGB on Kodak24 of Lanczos and of ``model`` on decoded LR, per codec and quality."""
    import numpy as np

    from superres.codec import downscale, get_codec, rd, restore
    from superres.core.metrics import psnr_rgb

    images = rd.load_images(data_root() / "Kodak24")
    s = model.scale
    sums: dict = {}
    for _, hr in images:
        h, w = hr.shape[:2]
        lr = downscale(hr, s)
        for codec_name, qualities in CODEC_POINTS.items():
            codec = get_codec(codec_name)
            for q in qualities:
                payload = codec.encode(lr, q)
                decoded = codec.decode(payload, lr.shape[:2], channels=3)
                lanczos = restore(decoded, s, (h, w), None)
                restored = restore(decoded, s, (h, w), model)
                row = sums.setdefault(codec_name, {}).setdefault(str(q), np.zeros(3))
                row += (len(payload) * 8 / (h * w), psnr_rgb(lanczos, hr), psnr_rgb(restored, hr))
    return {
        c: {q: {"payload_bpp": round(v[0] / len(images), 4),
                "lanczos": round(v[1] / len(images), 3), "model": round(v[2] / len(images), 3)}
            for q, v in rows.items()}
        for c, rows in sums.items()
    }  # fmt: skip


def burst_scores(model) -> dict:
    """Mean PSNR-Y of ``superres.upscale_burst(method="learned")`` with ``model`` on the
    protocol's bursts (:mod:`superres.core.burst`, seed = image index, 16-pixel border):
    ``{downscaler: {dataset: {N: dB}}}``."""
    import numpy as np
    import torch

    import superres
    from superres.core.burst import make_burst, score_burst
    from superres.core.degrade import list_images, load_hr

    out: dict = {}
    for downscaler in ("area", "bicubic"):
        for name in BURST_DATASETS:
            sums = dict.fromkeys(BURST_FRAMES, 0.0)
            paths = list_images(data_root() / name)
            for i, path in enumerate(paths):
                hr = torch.from_numpy(load_hr(path).transpose(2, 0, 1).copy()).float() / 255
                burst = make_burst(hr, model.scale, max(BURST_FRAMES), downscaler=downscaler,
                                   seed=i)  # fmt: skip
                frames = [(f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                          for f in burst.frames]  # fmt: skip
                for n in BURST_FRAMES:
                    sr = superres.upscale_burst(frames[:n], model.scale, method="learned",
                                                model=model, degradation=downscaler)  # fmt: skip
                    sr_t = torch.from_numpy(sr).permute(2, 0, 1).float() / 255
                    sums[n] += score_burst(sr_t, burst.reference_hr)
            out.setdefault(downscaler, {})[name] = {
                str(n): round(v / len(paths), 3) for n, v in sums.items()
            }
    return out


def data_root() -> Path:
    return Path(os.environ.get("SUPERRES_DATA", REPO.parent / "shared" / "data"))


def ship(run: Path, name: str, config: Path, allow_partial: bool = False) -> Path:
    from superres.evaluation import evaluate
    from superres.models import flops_per_output_pixel
    from superres.weights.checkpoint import (
        load_checkpoint,
        save_checkpoint,
    )

    model = load_checkpoint(run / "last.safetensors")
    prov = dict(model.metadata.get("provenance", {}))
    cfg = prov.get("config", {})
    planned = cfg.get("iterations")
    if prov.get("iterations") != planned and not allow_partial:
        sys.exit(f"{run}: training stopped at {prov.get('iterations')} of {planned} iterations")
    if prov.get("weights") != "ema":
        print(
            f"warning: {run}/last.safetensors holds {prov.get('weights')} weights", file=sys.stderr
        )
    prov["config_file"] = config.relative_to(REPO).as_posix()
    prov["train_data"] = [Path(p).name for p in prov.get("train_data", [])]
    out = WEIGHTS / f"{name}_x{model.scale}.safetensors"
    # the stages first: a missing earlier stage stops here, before minutes of evaluation
    stages = _reshipped_stages(out, prov) if out.is_file() else None
    if stages is None:  # the chain may pass through ``out`` itself: read it before replacing it
        stages = earlier_stages(
            cfg.get("init_from"), model.scale, kind=_kind(cfg), of=prov["config_file"]
        )
    if stages:  # later stages of one model: record every earlier one (the card states them all)
        prov["stages"] = stages
    run_of = _shipped_run(cfg.get("init_from"))
    if run_of:  # a shipped file is its run's final EMA: name the run, which outlives the file
        prov["config"] = {**cfg, "init_from": run_of}
        prov["init_from_shipped"] = cfg["init_from"]
    folders = [data_root() / b for b in BENCHMARKS]
    result = evaluate(model.eval(), folders, model.scale)
    metrics = {
        ds: {"images": r.images, "psnr": round(r.psnr, 4), "ssim": round(r.ssim, 5)}
        for ds, r in result.datasets.items()
    }
    if name == "codec":
        metrics["Kodak24_decoded"] = codec_gains(model.eval())
    if name == "burst":
        metrics["bursts"] = burst_scores(model.eval())
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        out,
        model,
        provenance=prov,
        metrics=metrics,
        metadata={
            "name": name,
            "num_params": model.num_params,
            "flops_per_output_pixel": flops_per_output_pixel(model),
        },
    )
    print(result.table())
    write_card(name)
    return out


def _shipped_run(weights: str | None) -> str | None:
    """``runs/RUN/last.safetensors`` for a shipped weights file (``src/superres/weights/...``)
    that records ``configs/RUN.yaml`` as its config: the same tensors, named by the run, so a
    card and a retrain still find them once the file is replaced (a run that started from
    the shipped ``fast_x4.safetensors`` and now ships as it). None for anything else."""
    if not weights or Path(weights).parent != WEIGHTS.relative_to(REPO):
        return None
    from superres.weights.checkpoint import read_checkpoint_metadata

    path = REPO / weights
    config = read_checkpoint_metadata(path).get("provenance", {}).get("config_file") if (
        path.is_file()) else None  # fmt: skip
    return f"runs/{Path(config).stem}/last.safetensors" if config else None


def _run_config(weights: str) -> str | None:
    """``configs/RUN.yaml`` for weights in a run folder ``runs/RUN/...`` (the configs test
    keeps a config's output at ``runs/<its name>``), else None."""
    return f"configs/{Path(weights).parts[1]}.yaml" if weights.startswith("runs/") else None


def _stage(prov: dict, config_file: str | None) -> dict:
    """One training stage as cards state it, from the provenance of its weights."""
    cfg = prov.get("config", {})
    return {
        "config_file": config_file,
        "iterations": prov.get("iterations"),
        "planned": cfg.get("iterations"),
        "wall_time_s": prov.get("wall_time_s"),
        "hardware": prov.get("hardware"),
        "init_from": cfg.get("init_from"),
    }


def _recorded_stages(prov: dict) -> list[dict] | None:
    """The earlier stages shipped weights record (``stages``, or ``first_stage`` in files
    shipped before there could be more than two); None when they record none."""
    if "stages" in prov:
        return list(prov["stages"])
    return [prov["first_stage"]] if "first_stage" in prov else None


def _reshipped_stages(out: Path, prov: dict) -> list[dict] | None:
    """The stages ``out`` records when it holds an earlier shipping of the same run (the
    same config, started from the same weights), which its chain passed through: walking
    again would find the file's own stages. None for weights of another run."""
    from superres.weights.checkpoint import read_checkpoint_metadata

    old = read_checkpoint_metadata(out).get("provenance", {})
    same = old.get("config_file") == prov["config_file"] and old.get("config", {}).get(
        "init_from"
    ) == prov.get("config", {}).get("init_from")
    return list(old.get("stages", [])) if same else None


def _kind(cfg: dict) -> tuple:
    """What a run trains, as far as stages go: its architecture and whether its LR went
    through a codec. A run of another kind (the codec tier from the quality tier, the burst
    network from a single-image network) starts a chain, as another scale does."""
    arch = cfg.get("model", {}).get("arch") or ""
    return (
        arch.removesuffix("_rep"),  # a re-parameterised training form ships as its plain arch
        bool(cfg.get("data", {}).get("degrade", {}).get("codecs")),
    )


def earlier_stages(
    init_from: str | None,
    scale: int,
    root: Path = REPO,
    kind: tuple | None = None,
    of: str | None = None,
) -> list[dict]:
    """The training stages before a run that starts from ``init_from``, oldest first.

    Follows ``init_from`` through the weights' provenance while the scale stays the same
    (a continuation of the same model; an initialisation from another scale, or with
    ``kind``, from a run of another kind (:func:`_kind`), starts the chain, and the card names
    it as the first stage's init). Each stage gives its config file, iterations, wall time,
    hardware and ``init_from``. Shipped weights carry
    their own stages (``stages``, or ``first_stage`` in files shipped before there could be
    more than two), so a chain survives the shipped file it started from being replaced.

    ``of`` is the config of the run that started from ``init_from``. When ``init_from`` is a
    shipped file that has since been replaced by a later stage of that very run's chain (a
    run started from the shipped x4, and its continuation shipped as the x4), the file
    records ``of`` among its stages: the stages before it are the ones that made the weights
    the run started from.
    """
    from superres.weights.checkpoint import read_checkpoint_metadata

    if not init_from:
        return []
    path = root / init_from
    if not path.is_file():
        sys.exit(f"{init_from}: the weights this run started from are missing (restore them)")
    weights = _state_weights(path)
    if weights is not None:  # a run's training state: its EMA weights file records the stage
        init_from = weights.relative_to(root).as_posix()
        path = weights
    meta = read_checkpoint_metadata(path)
    prov = meta.get("provenance", {})
    if meta.get("scale") != scale or "iterations" not in prov:
        return []
    if kind is not None and _kind(prov.get("config", {})) != kind:
        return []
    before = _recorded_stages(prov)
    own = _stage(prov, prov.get("config_file") or _run_config(init_from))
    if before is not None and of is not None:
        names = [stage.get("config_file") for stage in (*before, own)]
        if of in names:  # replaced by a later stage of the run walked from: cut it there
            return [*before, own][: names.index(of)]
    if before is None:
        init = prov.get("config", {}).get("init_from")
        before = earlier_stages(init, scale, root, kind, of=own["config_file"])
    return [*before, own]


def _state_weights(path: Path) -> Path | None:
    """For a training state (``runs/RUN/state.safetensors``, which ``init_from`` may name to
    keep a re-parameterised model's extra branches), the run's EMA weights of the same
    iteration (``runs/RUN/last.safetensors``, whose provenance the cards read); None for
    weights. Exits when the two files are of different iterations (the run went on)."""
    import safetensors

    from superres.training.state import STATE_FORMAT

    with safetensors.safe_open(str(path), framework="pt") as file:
        meta = file.metadata() or {}
    if meta.get("format") != STATE_FORMAT:
        return None
    from superres.weights.checkpoint import read_checkpoint_metadata

    weights = path.with_name("last.safetensors")
    state_iteration = int(meta.get("iteration", -1))
    done = (
        read_checkpoint_metadata(weights).get("provenance", {}).get("iterations")
        if weights.is_file()
        else None
    )
    if done != state_iteration:
        sys.exit(
            f"{path}: a training state of iteration {state_iteration}, but {weights} "
            f"holds {'no weights' if done is None else f'iteration {done}'}"
        )
    return weights


def _config_init(config: Path) -> str | None:
    """The ``init_from`` of a config file (None if it has none or is missing)."""
    if not config.is_file():
        return None
    from superres.training.config import load_config

    return load_config(config).init_from


def _stages_of(prov: dict) -> list[dict]:
    """Every training stage of shipped weights, oldest first, the last being their own run."""
    return [*(_recorded_stages(prov) or []), _stage(prov, prov.get("config_file"))]


def _iterations(stage: dict) -> str:
    done, planned = stage.get("iterations") or 0, stage.get("planned")
    return f"{done:,}" + (f" of {planned:,}" if planned and planned != done else "")


def _hardware(hw: dict | None) -> str:
    hw = hw or {}
    return f"{hw.get('processes', 1)}x {hw.get('device', '?')} ({hw.get('cpu_count', '?')} cores)"


def _init_name(init: str | None) -> str | None:
    """How a card names the weights a stage started from."""
    if not init:
        return None
    config = _run_config(init)
    return f"the run of `{config}`" if config else f"`{Path(init).name}`"


def _first_init(stage: dict) -> str | None:
    if "init_from" in stage:
        return stage["init_from"]
    return _config_init(REPO / stage["config_file"]) if stage.get("config_file") else None


def _retrain_commands(metas: list[dict]) -> list[str]:
    """``superres train`` for every stage of the files, each after the run it starts from
    (:func:`_retrain_configs`), with ``--stop-at`` where a stage was stopped before the end
    of its schedule (:func:`_stops`)."""
    stops = _stops(metas)
    return [
        f"superres train --config {c}" + (f" --stop-at {stops[c]}" if c in stops else "")
        for c in _retrain_configs(metas)
    ]


def _stops(metas: list[dict]) -> dict[str, int]:
    """``{config: iteration}`` for the stages stopped before their schedule's end, as the files
    ``metas`` or any tier's shipped files record them (a chain may start from another tier's
    run, stopped where that tier's card says)."""
    stops = {}
    for m in [*metas, *(m for name in TIERS for _, m in _tier_files(name))]:
        for stage in _stages_of(m.get("provenance", {})):
            done, planned = stage.get("iterations"), stage.get("planned")
            if done and planned and done < planned:
                stops[stage["config_file"]] = done
    return stops


def retrain_plan(
    names: tuple[str, ...] = tuple(TIERS),
) -> list[tuple[str, str | None, int | None]]:
    """Every config that makes the shipped weights of the tiers ``names``, in an order that
    trains each after the run it starts from: ``(config, tier, stop)``, with the tier it
    ships as (None: an earlier stage, or a run that another tier's chain starts from) and
    the iteration its run was stopped at before the end of its schedule, as the shipped
    files record it (:func:`_stops`; None: it ran to the end). What
    ``tools/train_shipped.sh`` runs."""
    metas, ships = [], {}
    for name in names:
        for _, meta in _tier_files(name):
            metas.append(meta)
            ships[meta.get("provenance", {}).get("config_file")] = name
    stops = _stops(metas)
    return [(c, ships.get(c), stops.get(c)) for c in _retrain_configs(metas)]


def _tier_files(name: str) -> list[tuple[Path, dict]]:
    """The tier's shipped files with their metadata, by file name (x2, x3, x4)."""
    from superres.weights.checkpoint import read_checkpoint_metadata

    files = sorted(WEIGHTS.glob(f"{name}_x*.safetensors"))
    return [(f, read_checkpoint_metadata(f)) for f in files]


def _retrain_configs(metas: list[dict]) -> list[str]:
    """The config of every stage of the files, each after the run it starts from.

    A stage starts from what its config's ``init_from`` names now (what the command will do;
    the recorded one when the config is not in the repository); when that is another config's
    run (``runs/RUN/...``), that config is trained first. (Configs name runs, not shipped
    files, which change meaning when they are replaced: a test keeps them so.)
    """
    configs: list[str] = []

    def need(config: str | None, init: str | None, seen: frozenset = frozenset()) -> None:
        if not config or config in configs or config in seen:
            return
        if (REPO / config).is_file():
            init = _config_init(REPO / config)
        if init and _run_config(init):
            need(_run_config(init), None, seen | {config})
        configs.append(config)

    for m in metas:
        for stage in _stages_of(m.get("provenance", {})):
            need(stage["config_file"], stage.get("init_from"))
    return configs


def _scale_list(scales: list[int]) -> str:
    """``[2, 3, 4]`` -> ``"x2, x3 and x4"``."""
    names = [f"x{x}" for x in scales]
    return " and ".join(filter(None, (", ".join(names[:-1]), names[-1])))


def write_card(name: str) -> Path:
    from superres.models import get_model_spec

    shipped = _tier_files(name)
    files, metas = [f for f, _ in shipped], [m for _, m in shipped]
    if not metas:
        raise SystemExit(f"no weights named {name}")
    first = metas[0]
    spec = get_model_spec(first["arch"])
    source = spec.builder.__module__.replace(".", "/")

    def named(sets: list[str]) -> str:
        known = TRAINING_SETS.get(frozenset(sets))
        return " + ".join(sets) + (f" ({known})" if known else "")

    by_data: dict[tuple[str, ...], list[int]] = {}  # the training sets -> the scales on them
    for m in metas:
        sets = tuple(dict.fromkeys(m.get("provenance", {}).get("train_data", [])))
        by_data.setdefault(sets, []).append(m["scale"])
    if len(by_data) == 1:
        data = named(list(next(iter(by_data))))
    else:  # the scales of a tier trained on different sets: each named with its scales
        data = " and ".join(
            f"{named(list(sets))} at {_scale_list(scales)}" for sets, scales in by_data.items()
        )
    reparameterised: dict[tuple[str, str], list[int]] = {}  # (trained, deployed) -> scales
    for m in metas:
        trained = m.get("provenance", {}).get("config", {}).get("model", {}).get("arch")
        if trained and trained != m["arch"]:
            reparameterised.setdefault((trained, m["arch"]), []).append(m["scale"])
    lines = [
        f"# `{name}`: {TIERS.get(name, first['arch'])}",
        "",
        f"Architecture `{first['arch']}` ({spec.description}); source "
        f"`src/{source}.py`. Trained by this project with "
        "`superres train`, from scratch or initialised from other weights as the config says, "
        f"on {data} only; no benchmark image was trained on. "
        + (
            "Set5 was used only to monitor training; the shipped weights are the final EMA "
            "weights, not a Set5-selected checkpoint."
            if any(
                m.get("provenance", {}).get("config", {}).get("data", {}).get("val") for m in metas
            )
            else "No validation set was used; the shipped weights are the final EMA weights."
        )
        + "".join(
            f" The {_scale_list(scales)} weights were trained as `{trained}` "
            f"({get_model_spec(trained).description}) and exported in their deployed "
            f"`{deployed}` form: the same inference cost."
            for (trained, deployed), scales in reparameterised.items()
        ),
        "",
        "| scale | file | params | FLOPs / output px | iterations | batch x LR patch | "
        "wall time | hardware | config |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    staged = []
    for f, m in zip(files, metas, strict=True):
        p = m.get("provenance", {})
        cfg = p.get("config", {})
        stages = _stages_of(p)
        hardware = " + ".join(dict.fromkeys(_hardware(st.get("hardware")) for st in stages))
        config = f"`{p.get('config_file', '?')}`"
        iterations = " + ".join(f"{st.get('iterations') or 0:,}" for st in stages)
        wall = sum(st.get("wall_time_s") or 0 for st in stages)
        init = _init_name(_first_init(stages[0]))
        if len(stages) > 1:
            config += f" ({len(stages)} stages, below" + (f"; init {init})" if init else ")")
            staged.append((m, stages))
        elif init:
            config += f" (init {init})"
        lines.append(
            f"| x{m['scale']} | `{f.name}` | {m.get('num_params', 0):,} | "
            f"{m.get('flops_per_output_pixel', 0) / 1e3:.1f} K | {iterations} | "
            f"{cfg.get('data', {}).get('batch', '?')} x {cfg.get('data', {}).get('patch', '?')}² | "
            f"{wall / 3600:.1f} h | {hardware} | {config} |"
        )
    if staged:
        lines += [
            "",
            "Training stages (each continues the weights of the one before; the shipped file is "
            'the last stage\'s final EMA; "of N": the stage was stopped there, before the end '
            "of its N-iteration schedule, and the next started from its EMA weights; a stage "
            "that will resume has its state in `checkpoints/`):",
            "",
            "| scale | stage | config | starts from | iterations | wall time | hardware |",
            "|---|---|---|---|---|---|---|",
        ]
        for m, stages in staged:
            for i, st in enumerate(stages, 1):
                start = _init_name(_first_init(st)) if i == 1 else "stage " + str(i - 1)
                hours = (st.get("wall_time_s") or 0) / 3600
                lines.append(
                    f"| x{m['scale']} | {i} | `{st.get('config_file')}` | {start or 'scratch'} | "
                    f"{_iterations(st)} | {hours:.1f} h | "
                    f"{_hardware(st.get('hardware'))} |"
                )
    lines += [
        "",
        "Measured with the project's evaluator (MATLAB-bicubic LR, Y-channel PSNR/SSIM, "
        "`scale` border pixels cropped):",
        "",
        "| scale | " + " | ".join(f"{b} PSNR / SSIM" for b in BENCHMARKS) + " |",
        "|---|" + "---|" * len(BENCHMARKS),
    ]
    for m in metas:
        cells = []
        for b in BENCHMARKS:
            r = m.get("metrics", {}).get(b)
            cells.append(f"{r['psnr']:.2f} / {r['ssim']:.4f}" if r else "-")
        lines.append(f"| x{m['scale']} | " + " | ".join(cells) + " |")
    gains = [m for m in metas if "Kodak24_decoded" in m.get("metrics", {})]
    if gains:
        lines += [
            "",
            "Restoring decoded images (what `superres decompress` does): PSNR-RGB on Kodak24 "
            "(24 images), the original downscaled by MATLAB bicubic, coded, decoded, then "
            "upscaled by Lanczos or by this model; payload bpp per original pixel (measured "
            "by `tools/ship_model.py` when the weights ship):",
            "",
            "| scale | codec | quality | payload bpp | Lanczos dB | this model dB | gain dB |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in gains:
            for codec_name, rows in m["metrics"]["Kodak24_decoded"].items():
                for q, r in rows.items():
                    lines.append(
                        f"| x{m['scale']} | {codec_name} | {q} | {r['payload_bpp']:.3f} | "
                        f"{r['lanczos']:.2f} | {r['model']:.2f} | "
                        f"{r['model'] - r['lanczos']:+.2f} |"
                    )
    bursts = [m for m in metas if "bursts" in m.get("metrics", {})]
    if bursts:
        lines += [
            "",
            "Multi-image SR (`superres burst --method learned`, registration included): mean "
            "PSNR-Y by the burst protocol of `superres.core.burst` (frame k shifted by a "
            "random whole HR pixel shift, downscaled by `area` or `bicubic`, seed = image "
            "index, 16-pixel border), measured by `tools/ship_model.py` when the weights ship; "
            "README's burst table (`python benchmarks/burst_table.py`) has every N:",
            "",
            "| scale | protocol | dataset | " + " | ".join(f"N={n}" for n in BURST_FRAMES) + " |",
            "|---|---|---|" + "---|" * len(BURST_FRAMES),
        ]
        for m in bursts:
            for downscaler, rows in m["metrics"]["bursts"].items():
                for ds, row in rows.items():
                    cells = " | ".join(f"{row[str(n)]:.2f}" for n in BURST_FRAMES)
                    lines.append(f"| x{m['scale']} | {downscaler} | {ds} | {cells} |")
    lines += [
        "",
        "Reproduce the table:",
        "",
        "```bash",
        *(
            f"superres eval --model {name} --scale {m['scale']} "
            + " ".join(f"--data ../shared/data/{b}" for b in BENCHMARKS)
            for m in metas
        ),
        "```",
        "",
        "Retrain:",
        "",
        "```bash",
        *_retrain_commands(metas),
        "```",
        "",
    ]
    card = WEIGHTS / f"{name}.md"
    card.write_text("\n".join(lines))
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path)
    parser.add_argument("--name", choices=sorted(TIERS))
    parser.add_argument("--config", type=Path)
    parser.add_argument("--allow-partial", action="store_true")
    parser.add_argument(
        "--plan", action="store_true",
        help="print every config that makes the shipped weights, in training order, each "
        "with the tier it ships as ('-': an earlier stage) and the iteration its run was "
        "stopped at ('-': the end of its schedule), and exit",
    )  # fmt: skip
    args = parser.parse_args()
    if args.plan:
        for config, tier, stop in retrain_plan():
            print(config, tier or "-", stop or "-")
        return
    if not (args.run and args.name and args.config):
        parser.error("--run, --name and --config are required (or --plan)")
    out = ship(args.run, args.name, args.config.resolve(), args.allow_partial)
    print(json.dumps({"shipped": str(out)}))


if __name__ == "__main__":
    main()
