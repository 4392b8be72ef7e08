"""tools/ship_model.py: model cards state every training stage of a shipped file.

A shipped model may be the last of several runs, each continuing the weights of the one
before (the quality x4 tier: its first run, an MSE fine-tune, a long run on 491 images, a
run with scale augmentation). The tool follows ``init_from`` through the weights'
provenance, records the earlier stages in the shipped file (so the chain survives the
shipped file it started from being replaced) and the card lists them all.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from superres.models import create_model
from superres.weights.checkpoint import read_checkpoint_metadata, save_checkpoint
from tests.conftest import load_script

ship_model = load_script("tools/ship_model.py")
HW = {"device": "cpu", "processes": 1, "cpu_count": 2}
GPU = {"device": "cuda", "processes": 1, "cpu_count": 16}


def _weights(path, scale, provenance):
    model = create_model("espcn", scale=scale, n1=8, n2=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"name": "quality", "num_params": 1, "flops_per_output_pixel": 1}
    save_checkpoint(path, model, provenance=provenance, metrics={}, metadata=meta)
    return path


def _run(name, iterations, wall, init, hardware=HW, planned=None):
    return {"iterations": iterations, "wall_time_s": wall, "hardware": hardware,
            "config": {"init_from": init, "iterations": planned or iterations,
                       "data": {"batch": 16, "patch": 48}}}  # fmt: skip


@pytest.fixture
def chain(tmp_path):
    """x2 weights (another scale) -> x4 run a -> shipped x4 (run b, which recorded a as its
    first stage, as files shipped before ``stages`` did) -> run c (from the shipped file,
    stopped at 4,000 of its 8,000 iterations)."""
    x2 = "src/superres/weights/quality_x2.safetensors"
    _weights(tmp_path / x2, 2, {**_run("x2", 500, 60.0, None), "config_file": "configs/x2.yaml"})
    _weights(tmp_path / "runs/a/last.safetensors", 4, _run("a", 1000, 3600.0, x2))
    first = {"config_file": "configs/a.yaml", "iterations": 1000, "wall_time_s": 3600.0,
             "hardware": HW, "init_from": x2}  # fmt: skip
    shipped = "src/superres/weights/quality_x4.safetensors"
    b = {**_run("b", 200, 360.0, "runs/a/last.safetensors"), "config_file": "configs/b.yaml"}
    _weights(tmp_path / shipped, 4, {**b, "first_stage": first})
    _weights(tmp_path / "runs/c/last.safetensors", 4, _run("c", 4000, 7200.0, shipped, GPU, 8000))
    return tmp_path


def test_stages_follow_init_from_within_one_scale(chain):
    stages = ship_model.earlier_stages("runs/c/last.safetensors", 4, root=chain)
    assert [(s["config_file"], s["iterations"], s["wall_time_s"]) for s in stages] == [
        ("configs/a.yaml", 1000, 3600.0),
        ("configs/b.yaml", 200, 360.0),
        ("configs/c.yaml", 4000, 7200.0),
    ]
    assert stages[-1]["hardware"] == GPU and stages[-1]["planned"] == 8000
    assert stages[-1]["init_from"] == "src/superres/weights/quality_x4.safetensors"
    # an initialisation from another scale is not a stage of this model
    assert ship_model.earlier_stages("src/superres/weights/quality_x2.safetensors", 4,
                                     root=chain) == []  # fmt: skip
    assert ship_model.earlier_stages(None, 4, root=chain) == []
    with pytest.raises(SystemExit, match="runs/gone/last.safetensors: the weights this run"):
        ship_model.earlier_stages("runs/gone/last.safetensors", 4, root=chain)


def test_a_shipped_file_replaced_by_its_own_continuation_is_cut_where_the_chain_entered(chain):
    """Run c started from the shipped x4; run d continued c and was shipped as the x4 (its
    stages a, b, c recorded); run e continues d. Walking back from e meets the shipped file
    again (c's init_from), which now holds d: the stages are those before c, not the file's
    whole chain a second time."""
    shipped = chain / "src/superres/weights/quality_x4.safetensors"
    before = ship_model.earlier_stages("runs/c/last.safetensors", 4, root=chain)
    _weights(chain / "runs/d/last.safetensors", 4, _run("d", 500, 900.0, "runs/c/last.safetensors"))
    d = {**_run("d", 500, 900.0, "runs/c/last.safetensors"), "config_file": "configs/d.yaml"}
    _weights(shipped, 4, {**d, "stages": before})
    stages = ship_model.earlier_stages("runs/d/last.safetensors", 4, root=chain,
                                       of="configs/e.yaml")  # fmt: skip
    assert [s["config_file"] for s in stages] == [
        "configs/a.yaml", "configs/b.yaml", "configs/c.yaml", "configs/d.yaml",
    ]  # fmt: skip
    assert [s["iterations"] for s in stages] == [1000, 200, 4000, 500]


def test_a_stage_started_from_a_training_state_is_its_runs_stage(tmp_path):
    """``init_from: runs/RUN/state.safetensors`` (a re-parameterised model continued with its
    training-time branches) is the stage of RUN that ``runs/RUN/last.safetensors`` (the EMA
    weights of the same iteration) records, stopped where the state was."""
    import safetensors.torch
    import torch

    from superres.training.state import STATE_FORMAT

    _weights(tmp_path / "runs/a/last.safetensors", 4, _run("a", 400, 90.0, None, planned=1000))
    state = tmp_path / "runs/a/state.safetensors"
    meta = {"format": STATE_FORMAT, "iteration": "400"}
    safetensors.torch.save_file({"ema.w": torch.zeros(1)}, str(state), metadata=meta)
    stages = ship_model.earlier_stages("runs/a/state.safetensors", 4, root=tmp_path)
    assert [(s["config_file"], s["iterations"], s["planned"]) for s in stages] == [
        ("configs/a.yaml", 400, 1000)
    ]
    # the run went on past its EMA weights file (or the other way round): no stage is guessed
    safetensors.torch.save_file(
        {"ema.w": torch.zeros(1)}, str(state), metadata={**meta, "iteration": "600"}
    )
    with pytest.raises(SystemExit, match="a training state of iteration 600, but .* iteration 400"):
        ship_model.earlier_stages("runs/a/state.safetensors", 4, root=tmp_path)


def test_a_run_of_another_kind_starts_the_chain(tmp_path):
    """The codec tier fine-tuned from a quality run of the same scale (and architecture) has
    its own stages only: the quality run is its init, not its first stage."""

    def cfg(init, codecs):
        return {"model": {"arch": "lafn", "scale": 2}, "data": {"degrade": {"codecs": codecs}},
                "init_from": init, "iterations": 100}  # fmt: skip

    def run(name, init, codecs):
        prov = {"iterations": 100, "wall_time_s": 60.0, "hardware": HW, "config": cfg(init, codecs)}
        _weights(tmp_path / f"runs/{name}/last.safetensors", 2, prov)

    run("quality_x2", None, [])
    run("codec_x2", "runs/quality_x2/last.safetensors", ["jpeg"])
    kind = ship_model._kind(cfg("runs/codec_x2/last.safetensors", ["jpeg", "webp"]))
    stages = ship_model.earlier_stages("runs/codec_x2/last.safetensors", 2, tmp_path, kind)
    assert [s["init_from"] for s in stages] == ["runs/quality_x2/last.safetensors"]
    # without a kind (as for files shipped before it was checked) the chain goes on
    assert len(ship_model.earlier_stages("runs/codec_x2/last.safetensors", 2, tmp_path)) == 2
    assert ship_model._kind(cfg(None, [])) != kind


def test_card_lists_every_stage_and_their_sum(chain, monkeypatch):
    weights = chain / "src/superres/weights"
    (weights / "quality_x2.safetensors").unlink()
    stages = ship_model.earlier_stages("runs/c/last.safetensors", 4, root=chain)
    prov = {**_run("d", 800, 1800.0, "runs/c/last.safetensors"), "config_file": "configs/d.yaml",
            "stages": stages, "train_data": ["T91", "BSD200", "BSD200test"]}  # fmt: skip
    _weights(weights / "quality_x4.safetensors", 4, prov)
    # the shipped file keeps its chain although the file it started from was replaced
    assert (
        read_checkpoint_metadata(weights / "quality_x4.safetensors")["provenance"]["stages"]
        == stages
    )
    # shipping the same run again reuses them (its chain passes through the file it replaces)
    again = {"config_file": "configs/d.yaml", "config": {"init_from": "runs/c/last.safetensors"}}
    assert ship_model._reshipped_stages(weights / "quality_x4.safetensors", again) == stages
    other = {"config_file": "configs/e.yaml", "config": {"init_from": "runs/d/last.safetensors"}}
    assert ship_model._reshipped_stages(weights / "quality_x4.safetensors", other) is None
    monkeypatch.setattr(ship_model, "WEIGHTS", weights)
    card = ship_model.write_card("quality").read_text()
    row = next(line for line in card.splitlines() if line.startswith("| x4 | `quality_x4"))
    assert "| 1,000 + 200 + 4,000 + 800 |" in row and "| 3.6 h |" in row, row
    assert "1x cpu (2 cores) + 1x cuda (16 cores)" in row, row
    assert "`configs/d.yaml` (4 stages, below; init `quality_x2.safetensors`)" in row, row
    assert "T91 + BSD200 + BSD200test (491 images" in card
    heads = tuple(f"| x4 | {i} |" for i in range(1, 5))
    stage_rows = [line for line in card.splitlines() if line.startswith(heads)]
    assert stage_rows == [
        "| x4 | 1 | `configs/a.yaml` | `quality_x2.safetensors` | 1,000 | 1.0 h "
        "| 1x cpu (2 cores) |",
        "| x4 | 2 | `configs/b.yaml` | stage 1 | 200 | 0.1 h | 1x cpu (2 cores) |",
        "| x4 | 3 | `configs/c.yaml` | stage 2 | 4,000 of 8,000 | 2.0 h | 1x cuda (16 cores) |",
        "| x4 | 4 | `configs/d.yaml` | stage 3 | 800 | 0.5 h | 1x cpu (2 cores) |",
    ]
    retrain = card.split("Retrain:")[1]
    assert [line for line in retrain.splitlines() if line.startswith("superres train")] == [
        f"superres train --config configs/{c}.yaml" + (" --stop-at 4000" if c == "c" else "")
        for c in "abcd"
    ]


@pytest.mark.parametrize("card", ["burst", "codec", "fast", "quality"])
def test_card_retrains_every_run_after_the_runs_it_starts_from(card):
    """A card's Retrain block runs in order as given: a config whose ``init_from`` is another
    config's run comes after that config (quality x2 starts from the x4 chain, x3 and x4 from
    the x2 shipped before issue 13, the codec tier from quality x2)."""
    from superres.training.config import load_config

    text = (ship_model.WEIGHTS / f"{card}.md").read_text().split("Retrain:")[1]
    commands = [line.split() for line in text.splitlines() if line.startswith("superres train")]
    configs = [words[words.index("--config") + 1] for words in commands]
    for words in commands:  # a stage stopped before its schedule's end stops there again
        if "--stop-at" in words:
            stop = int(words[words.index("--stop-at") + 1])
            assert 0 < stop < load_config(ship_model.REPO / words[3]).iterations, words
    # every stage stopped early stops there, whichever tier's file records the stop (the
    # codec tier starts from quality runs that were stopped)
    stops = {c: s for c, _, s in ship_model.retrain_plan() if s}
    for words in commands:
        if words[3] in stops:
            assert words[4:] == ["--stop-at", str(stops[words[3]])], words
    assert configs and len(configs) == len(set(configs))
    for i, config in enumerate(configs):
        init = load_config(ship_model.REPO / config).init_from
        assert init is None or not init.startswith("src/"), f"{config}: {init} moves on re-ship"
        if init is not None:
            assert f"configs/{init.split('/')[1]}.yaml" in configs[:i], (config, init)


def test_retrain_plan_trains_every_run_after_its_init_and_ships_every_file():
    """``tools/ship_model.py --plan`` (what ``tools/train_shipped.sh`` runs): every config
    once, each after the run it starts from, and one shipping per shipped file."""
    from superres.training.config import load_config

    plan = ship_model.retrain_plan()
    configs = [c for c, _, _ in plan]
    assert len(configs) == len(set(configs))
    shipped = []
    for i, (config, tier, stop) in enumerate(plan):
        cfg = load_config(ship_model.REPO / config)
        assert stop is None or 0 < stop < cfg.iterations, config
        if cfg.init_from and cfg.init_from.startswith("runs/"):
            assert f"configs/{cfg.init_from.split('/')[1]}.yaml" in configs[:i], config
        if tier:
            shipped.append(f"{tier}_x{cfg.model.scale}.safetensors")
    assert sorted(shipped) == sorted(f.name for f in ship_model.WEIGHTS.glob("*_x*.safetensors"))
    # the x4 stage that the quality x2 (and the shipped x4's last stage) starts from was
    # stopped there: a retrain stops there too
    assert ("configs/quality_x4_rescale.yaml", None, 12200) in plan
    assert ("configs/quality_x4_lumamse.yaml", "quality", None) in plan
    # so does the codec tier's plan alone, whose chain starts there (the stop is the quality
    # tier's record)
    assert ("configs/quality_x4_rescale.yaml", None, 12200) in ship_model.retrain_plan(("codec",))


def test_train_shipped_dry_run_lists_the_plan(tmp_path):
    import shutil
    import subprocess

    def tree(root: Path, checkpoints: bool) -> Path:
        """The scripts, configs and sources (and checkpoints/) in ``root``, with no runs/: what
        a fresh clone has, whatever this checkout's runs/ holds."""
        (root / "tools").mkdir(parents=True)
        for name in ("train_shipped.sh", "ship_model.py"):
            shutil.copy(ship_model.REPO / "tools" / name, root / "tools")
        shutil.copytree(ship_model.REPO / "configs", root / "configs")
        (root / "src").symlink_to(ship_model.REPO / "src")
        if checkpoints:
            (root / "checkpoints").symlink_to(ship_model.REPO / "checkpoints")
        return root / "tools" / "train_shipped.sh"

    script = tree(tmp_path / "clone", checkpoints=True)
    out = subprocess.run(["bash", script, "-n"], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    runs = [line.split()[1] for line in lines if line.startswith("== ")]
    plan = ship_model.retrain_plan()
    assert runs == [c.split("/")[1].removesuffix(".yaml") for c, _, _ in plan]
    # a stopped run carried without its state is over: its final weights start the next runs
    assert "(over: checkpoints/quality_x4_rescale holds its final weights" in out.stdout
    ships = [line for line in lines if "tools/ship_model.py" in line]
    assert len(ships) == len(list(ship_model.WEIGHTS.glob("*_x*.safetensors")))
    # from scratch (no checkpoints/), each stopped run trains to where the shipped files say
    fresh = subprocess.run(["bash", tree(tmp_path / "bare", checkpoints=False), "-n"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    stops = {c: stop for c, _, stop in plan if stop}
    stopped = [line.split() for line in fresh.stdout.splitlines() if "--stop-at" in line]
    assert stopped and all(int(w[-1]) == stops[w[3]] for w in stopped), stopped
    assert (
        "superres train --config configs/quality_x4_rescale.yaml --resume -q --stop-at 12200"
        in fresh.stdout
    )
    bad = subprocess.run(["bash", script, "-n", "no_such_run"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "train_shipped.sh: configs/no_such_run.yaml: no such config"


def test_a_run_from_a_shipped_file_names_the_run_that_made_it():
    """A shipped file is its run's final EMA: a run started from it (and possibly shipped in
    its place) records that run, so its card and retrain plan outlive the file."""
    meta = read_checkpoint_metadata(ship_model.WEIGHTS / "quality_x2.safetensors")
    run = f"runs/{Path(meta['provenance']['config_file']).stem}/last.safetensors"
    assert ship_model._shipped_run("src/superres/weights/quality_x2.safetensors") == run
    assert ship_model._shipped_run("runs/quality_x2_long/last.safetensors") is None
    assert ship_model._shipped_run(None) is None
    # a re-parameterised training form is the kind of the plain network it ships as
    rep, plain = ({"model": {"arch": a}, "data": {}} for a in ("plainsr_rep", "plainsr"))
    assert ship_model._kind(rep) == ship_model._kind(plain)
    assert ship_model._kind(rep) != ship_model._kind({"model": {"arch": "lafn"}, "data": {}})


@pytest.mark.parametrize("tier", sorted(ship_model.TIERS))
def test_card_names_the_training_sets_of_each_scale(tier):
    """A tier whose files were trained on different sets says which scale used which."""
    files = ship_model._tier_files(tier)
    card = (ship_model.WEIGHTS / f"{tier}.md").read_text()
    data = {m["scale"]: " + ".join(m["provenance"]["train_data"]) for _, m in files}
    if len(set(data.values())) == 1:
        assert f"on {next(iter(data.values()))} " in card
    else:
        for scale, sets in data.items():
            named = re.search(rf"{re.escape(sets)} \([^)]*\) at (x\d(?:(?:, | and )x\d)*)", card)
            assert named and f"x{scale}" in re.split(", | and ", named.group(1)), (scale, sets)


def test_scale_lists_read_as_english():
    assert ship_model._scale_list([4]) == "x4"
    assert ship_model._scale_list([2, 4]) == "x2 and x4"
    assert ship_model._scale_list([2, 3, 4]) == "x2, x3 and x4"


@pytest.mark.parametrize("tier", sorted(ship_model.TIERS))
def test_card_names_the_reparameterised_scales_once(tier):
    """Scales trained in one architecture and shipped in another share one sentence."""
    files = ship_model._tier_files(tier)
    card = (ship_model.WEIGHTS / f"{tier}.md").read_text()
    rep = [m["scale"] for _, m in files if m["provenance"]["config"]["model"]["arch"] != m["arch"]]
    assert card.count("weights were trained as") == (1 if rep else 0)
    if rep:
        assert f"The {ship_model._scale_list(rep)} weights were trained as" in card
