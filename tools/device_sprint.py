"""Train several runs side by side on a lent GPU until a deadline, each on a schedule sized to it.

A lent device machine (issue 13, item 8) gives a session a few minutes of one GPU. The small
networks of this project leave most of the GPU idle and its 16 cores spare, so the runs named
train at once, each with a share of the data workers. A cosine schedule that the deadline cuts
short ends at a high learning rate, so the schedule is sized first: every run trains a short
probe (``--probe`` iterations, all runs together, in ``runs/RUN_probe``), the step rate each
reaches beside the others is read from its log, and each run then starts afresh (from its
``init_from``) with ``iterations`` set to what its rate allows before the deadline (less a
margin), rounded down to hundreds. A run still going at the deadline is killed (its state is at
most ``checkpoint_every`` iterations old; writes are atomic). Each run folder comes back as
``$OUT/RUN.tar`` (state, EMA weights, log, resolved config: the config records the iterations it
ran with), one file a run, within the device tool's 8 files. A second call on a warm machine
(which keeps ``runs/``) moves an earlier ``runs/RUN`` aside rather than refusing or deleting it.

    bash tools/device_pack.sh       # here: the training images into .device/
    # then: run(command="python3 tools/device_sprint.py --seconds 420 quality_x4_gpu fast_x4_gpu",
    #           carry=[".device"], timeout_s=540)
    # here: tar -xf /work/.device/.../RUN.tar -C runs/

Runs in the repository root (the images are staged by ``tools/device_train.sh``); with no GPU it
runs on the CPU (``--set`` passes overrides to every run, for a small trial there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the package, as the runs it starts import it
KEEP = ("state.safetensors", "last.safetensors", "log.jsonl", "config.yaml")


def run_log(path: Path):
    """The training log at ``path`` (``superres.training.curves.read_log``); None if none yet."""
    from superres.errors import ConfigError
    from superres.training.curves import read_log

    try:
        return read_log(path)
    except ConfigError:  # not written yet, or the run failed before its first line
        return None


def step_rate(log: Path) -> float | None:
    """Iterations a second between the first and the last training line of ``log``."""
    entries = run_log(log)
    steps = [r for r in entries.steps if "elapsed" in r] if entries else []
    if len(steps) < 2 or steps[-1]["elapsed"] <= steps[0]["elapsed"]:
        return None
    return (steps[-1]["iteration"] - steps[0]["iteration"]) / (
        steps[-1]["elapsed"] - steps[0]["elapsed"]
    )


def launch(run: str, sets: list[str], out_log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "superres", "train", "--config", f"configs/{run}.yaml", "-q"]
    for s in sets:
        cmd += ["--set", s]
    # its own process group: a kill at the deadline ends the data workers too
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=out_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_all(procs: dict[str, subprocess.Popen], deadline: float) -> dict[str, int | None]:
    while any(p.poll() is None for p in procs.values()) and time.time() < deadline:
        time.sleep(1)
    codes = {}
    for run, p in procs.items():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            codes[run] = None  # killed at the deadline
        else:
            codes[run] = p.returncode
    return codes


def tail(path: Path, n: int = 5) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="config names under configs/")
    ap.add_argument("--seconds", type=float, required=True, help="deadline, from now")
    ap.add_argument("--probe", type=int, default=300, help="iterations of the rate probe")
    ap.add_argument("--probe-seconds", type=float, default=150, help="longest the probe may take")
    ap.add_argument("--margin", type=float, default=25, help="seconds kept for the final save")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="override (all runs)")
    args = ap.parse_args(argv)
    deadline = time.time() + args.seconds
    out = Path(os.environ.get("OUT", "/tmp/device_out"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ["PYTHONPATH"] = f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    os.environ["PYTHONUNBUFFERED"] = "1"
    staged = subprocess.run(
        ["bash", "tools/device_train.sh", "0", "none"],
        cwd=ROOT,
        env={**os.environ, "STAGE_ONLY": "1"},
    )
    if staged.returncode != 0:
        return 2
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"torch {torch.__version__}, {gpu}, {os.cpu_count()} cores", flush=True)
    workers = max(1, ((os.cpu_count() or 2) - 2) // len(args.runs))
    common = [f"data.workers={workers}", *args.sets]
    logs = ROOT / "runs"
    logs.mkdir(exist_ok=True)

    for run in args.runs:  # a warm machine keeps runs/ between calls: start clean, lose nothing
        shutil.rmtree(logs / f"{run}_probe", ignore_errors=True)  # the sprint's own scratch
        if (logs / run).exists():
            aside = logs / f"{run}.before-{time.strftime('%Y%m%d-%H%M%S')}"
            (logs / run).rename(aside)
            print(f"== {run}: an earlier runs/{run} moved to {aside.relative_to(ROOT)}", flush=True)

    # 1. the probe: every run at once, a few hundred iterations, to read its step rate
    probe_deadline = min(deadline, time.time() + args.probe_seconds)
    procs = {}
    for run in args.runs:
        probe = [f"output=runs/{run}_probe", f"iterations={args.probe}", "log_every=50"]
        probe += ["val_every=1000000", "checkpoint_every=1000000", "schedule.warmup=0"]
        sets = probe + common  # common last: a --set of the caller wins
        procs[run] = launch(run, sets, logs / f"{run}_probe.out")
    wait_all(procs, probe_deadline)
    rates = {}
    for run in args.runs:
        rate = step_rate(logs / f"{run}_probe" / "log.jsonl")
        print(f"== {run}: probe {rate and round(rate, 2)} it/s", flush=True)
        if rate is None:
            print(tail(logs / f"{run}_probe.out"), flush=True)
        else:
            rates[run] = rate
    if not rates:
        return 1

    # 2. the runs, each on the schedule its rate fits into the time left
    left = deadline - time.time() - args.margin
    procs, planned = {}, {}
    for run, rate in rates.items():
        planned[run] = int(rate * left * 0.9) // 100 * 100
        if planned[run] < 500:
            print(f"== {run}: {planned[run]} iterations is too short; not run")
            continue
        print(f"== {run}: {planned[run]} iterations in at most {left:.0f} s", flush=True)
        procs[run] = launch(run, [f"iterations={planned[run]}", *common], logs / f"{run}.out")
    codes = wait_all(procs, deadline)

    # 3. what comes back
    for run, code in codes.items():
        folder = logs / run
        log = run_log(folder / "log.jsonl")
        val_set = log.datasets()[0] if log and log.datasets() else "val"
        its, psnrs = log.val_series(val_set) if log else ([], [])
        vals = [(it, round(psnr, 3)) for it, psnr in zip(its, psnrs, strict=True)]
        last = max((r["iteration"] for r in log.steps), default=0) if log else 0
        state = (
            "finished"
            if code == 0
            else "killed at the deadline"
            if code is None
            else f"failed ({code})"
        )
        print(
            f"== {run}: {state} at iteration {last} of {planned[run]}; {val_set} {vals[-12:]}",
            flush=True,
        )
        if code not in (0, None):
            print(tail(logs / f"{run}.out", 15), flush=True)
        if (folder / "state.safetensors").exists() or (folder / "last.safetensors").exists():
            with tarfile.open(out / f"{run}.tar", "w") as tar:
                for name in KEEP:
                    if (folder / name).exists():
                        tar.add(folder / name, arcname=f"{run}/{name}")
            (out / f"{run}.out").write_text(tail(logs / f"{run}.out", 200))
    return 0


if __name__ == "__main__":
    sys.exit(main())
