"""`tools/experiment`: the paper's §5.1 (eyeglasses) and §5.2 (grayscale) bias experiments at full range.

    python3 -m hndd_client.experiment run  --dir DIR [--scale demo|full|paper] [--steps N] [--every N]
        [--images N] [--dictionary-images N] [--size PX] [--percents P ...] [--seeds K]
        [--experiments eyeglasses grayscale] [--parallel 2] [--hndd PATH]
    python3 -m hndd_client.experiment page --dir DIR [--hndd PATH]

``run`` renders the synthetic dictionary once and one gender training set per (experiment, P,
seed), starts one `hndd serve`, trains a ResNet-18 per run (`hndd_client.demo train`, two side by
side, one torch thread each) with probe passes at step 0 and every --every steps, then writes
``experiment.html`` and ``results.md``. It resumes: data files and runs whose last complete pass
is in DIR/snapshots.h5 are kept, the others (re)done. ``touch DIR/STOP`` lets the running runs
finish and starts no more (the page then shows what is done). ``page`` only rewrites the page and tables.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import List, Optional, Sequence

from .cli import positive_int
from .experiment_page import Context, markdown, page
from .experiment_plan import (EXPERIMENTS, PERCENTS, ExperimentError, Run, Setting, dictionary_path, parse_run,
                              plan, settle_setting, setting_with, SCALES)
from .experiment_processes import Children, Interrupted, Job, generate, python, run_jobs, short_run_dir, start_daemon
from .experiment_results import finished, measured, sorted_curves


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def summary_rows(hndd: str, snapshots: str) -> List[dict]:
    """`hndd summary --json` of the snapshot file (none yet: no rows)."""
    if not os.path.isfile(snapshots):
        return []
    result = subprocess.run([hndd, "summary", snapshots, "--json"], capture_output=True, text=True)
    if result.returncode != 0:
        raise ExperimentError(f"hndd summary {snapshots} failed: {result.stderr.strip()}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"


class Folder:
    """The output folder: data/, logs/, runs/ (trainer summaries), snapshots.h5, timing.json, the page."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        for sub in ("data", "logs", "runs"):
            os.makedirs(os.path.join(self.path, sub), exist_ok=True)
        self.data, self.logs, self.runs = (os.path.join(self.path, sub) for sub in ("data", "logs", "runs"))
        self.snapshots = os.path.join(self.path, "snapshots.h5")
        #: `touch DIR/STOP`: no further run starts, those running finish, the page is written.
        self.stop_file = os.path.join(self.path, "STOP")

    def read_json(self, name: str, default):
        path = os.path.join(self.path, name)
        if not os.path.isfile(path):
            return default
        with open(path) as handle:
            return json.load(handle)

    def write_json(self, name: str, value) -> None:
        path = os.path.join(self.path, name)
        with open(path + ".tmp", "w") as handle:
            json.dump(value, handle, indent=1)
        os.replace(path + ".tmp", path)

    def run_seconds(self) -> dict:
        seconds = {}
        for name in sorted(os.listdir(self.runs)):
            if name.endswith(".json"):
                with open(os.path.join(self.runs, name)) as handle:
                    lines = [json.loads(line) for line in handle if line.strip()]
                if lines:
                    seconds[name[:-5]] = float(lines[-1]["seconds"])
        return seconds


def trainset_command(run: Run, setting: Setting) -> List[str]:
    return [python(), "-m", "hndd_client", "synth-trainset", "--task", "gender", "--bias-concept", run.experiment,
            "--bias", str(run.percent), "--images", str(setting.train_images), "--size", str(setting.size),
            "--seed", str(run.set_seed), "--workers", "1"]


def train_command(run: Run, setting: Setting, folder: Folder, dictionary: str, run_dir: str, hndd: str) -> List[str]:
    return [python(), "-u", "-m", "hndd_client.demo", "train", "--trainset", run.trainset_path(folder.data, setting),
            "--dictionary", dictionary, "--run-dir", run_dir, "--run", run.name, "--steps", str(setting.steps),
            "--every", str(setting.every), "--layers", *setting.layers, "--size", str(setting.size),
            "--batch-size", str(setting.batch), "--seed", str(run.train_seed), "--threads", "1",
            "--summary", os.path.join(folder.runs, run.name + ".json"), "--hndd", hndd]


def job_for(run: Run, setting: Setting, folder: Folder, dictionary: str, run_dir: str, hndd: str) -> Job:
    """Generate the training set (unless there), then train; the partial file is renamed on success."""
    trainset = run.trainset_path(folder.data, setting)
    steps = []
    if not os.path.isfile(trainset):
        partial = trainset + ".partial.h5"
        steps.append(trainset_command(run, setting) + ["--out", partial])
        steps.append([python(), "-c", "import os, sys; os.replace(sys.argv[1], sys.argv[2])", partial, trainset])
    steps.append(train_command(run, setting, folder, dictionary, run_dir, hndd))
    summary = os.path.join(folder.runs, run.name + ".json")
    if os.path.exists(summary):
        os.remove(summary)
    return Job(run.name, steps, os.path.join(folder.logs, run.name + ".log"))


def command_run(options) -> int:
    setting = setting_with(options.scale, steps=options.steps, every=options.every, train_images=options.images,
                           dictionary_images=options.dictionary_images, size=options.size)
    runs = plan(options.experiments, options.percents, options.seeds)
    folder = Folder(options.dir)
    settle_setting(folder.path, setting)
    if os.path.exists(folder.stop_file):
        os.remove(folder.stop_file)
        say(f"removed {folder.stop_file} (left by a stopped invocation)")
    started = time.time()
    say(f"{len(runs)} runs ({', '.join(options.experiments)} × P = {', '.join(map(str, options.percents))} × "
        f"{options.seeds} seeds) in {folder.path}; setting {json.dumps(setting.to_json())}")
    dictionary = dictionary_path(folder.data, setting)
    if generate(dictionary, [python(), "-m", "hndd_client", "synth-dictionary", "--images",
                             str(setting.dictionary_images), "--size", str(setting.size), "--seed",
                             str(setting.dictionary_seed), "--grayscale-fraction", str(setting.grayscale_fraction)],
                os.path.join(folder.logs, "dictionary.log")):
        say(f"dictionary written: {dictionary}")
    check = subprocess.run([options.hndd, "dictionary", "check", dictionary], capture_output=True, text=True)
    if check.returncode != 0:
        raise ExperimentError(f"{dictionary} fails hndd dictionary check: {(check.stderr or check.stdout).strip()}")
    done = finished(summary_rows(options.hndd, folder.snapshots), setting.layers, setting.steps)
    todo = [run for run in runs if run.name not in done]
    say(f"{len(runs) - len(todo)} runs already finished (kept), {len(todo)} to run")
    timing = folder.read_json("timing.json", {"invocations": []})
    invocation = {"started_unix": started, "seconds": 0.0, "runs": []}
    timing["invocations"].append(invocation)
    try:
        if todo:
            train_all(options, setting, folder, dictionary, todo, invocation, timing, started)
    finally:
        invocation["seconds"] = time.time() - started
        folder.write_json("timing.json", timing)
    return write_results(options, folder, setting, runs)


def train_all(options, setting, folder, dictionary, todo, invocation, timing, started) -> None:
    run_dir = short_run_dir(folder.path)
    count = {"done": 0}

    def on_done(job: Job) -> None:
        count["done"] += 1
        invocation["runs"].append(job.name)
        invocation["seconds"] = time.time() - started
        folder.write_json("timing.json", timing)
        elapsed = time.time() - started
        left = elapsed / count["done"] * (len(todo) - count["done"])
        say(f"{job.name} done in {time.time() - job.started:.0f} s ({count['done']}/{len(todo)}; "
            f"{elapsed:.0f} s so far, about {left:.0f} s to go; load average {os.getloadavg()[0]:.1f})")

    with Children() as children:
        daemon = start_daemon(children, options.hndd, dictionary, run_dir, folder.snapshots,
                              os.path.join(folder.logs, "serve.log"))
        say(f"hndd serve (pid {daemon.pid}) at {run_dir}; {options.parallel} trainers side by side")
        jobs = [job_for(run, setting, folder, dictionary, run_dir, options.hndd) for run in todo]
        ran = run_jobs(children, jobs, options.parallel, on_done, lambda: os.path.exists(folder.stop_file))
        if ran < len(jobs):
            say(f"{folder.stop_file} exists: stopped after {ran} of {len(jobs)} runs (run again to go on)")
        status = children.stop(daemon, grace=300)  # SIGTERM: writes what is owed, closes the file
        if status != 0:
            raise ExperimentError(f"hndd serve exited with {status}; see {folder.logs}/serve.log")


def write_results(options, folder: Folder, setting: Setting, runs: Sequence[Run]) -> int:
    rows = summary_rows(options.hndd, folder.snapshots)
    done = finished(rows, setting.layers, setting.steps)
    entries = [e for e in measured(rows) if e.run.name in done]
    planned = {run.name for run in runs}
    missing = sorted(planned - done)
    finished_runs = [parse_run(name) for name in sorted(done) if parse_run(name)]
    curves = {layer: sorted_curves(folder.snapshots, finished_runs, layer, setting.steps, hndd=options.hndd)
              for layer in setting.layers} if finished_runs else {}
    timing = folder.read_json("timing.json", {"invocations": []})
    context = Context(setting, cpu_model(), sum(i["seconds"] for i in timing["invocations"]),
                      len(planned & done), len(planned), options.experiments, options.percents, options.seeds,
                      folder.run_seconds(), " ".join(f"{x:.1f}" for x in os.getloadavg()))
    with open(os.path.join(folder.path, "results.md"), "w") as out:
        out.write(markdown(entries, context))
    with open(os.path.join(folder.path, "experiment.html"), "w") as out:
        out.write(page(entries, curves, context))
    say(f"wrote {folder.path}/experiment.html and results.md ({len(planned & done)} of {len(planned)} runs)")
    if missing:
        print(f"experiment: {len(missing)} runs have no complete last pass: {', '.join(missing[:6])}"
              f"{' …' if len(missing) > 6 else ''}", file=sys.stderr)
        return 1
    return 0


def command_page(options) -> int:
    folder = Folder(options.dir)
    held = folder.read_json("setting.json", None)
    if held is None:
        raise ExperimentError(f"{folder.path} holds no experiment (no setting.json); run `tools/experiment` first")
    return write_results(options, folder, Setting.from_json(held), plan(options.experiments, options.percents,
                                                                         options.seeds))


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="tools/experiment", description=__doc__.split("\n\n")[0])
    commands = main_parser.add_subparsers(dest="command", required=True)
    for name in ("run", "page"):
        sub = commands.add_parser(name)
        sub.add_argument("--dir", default="hndd-experiment", help="output folder (default ./hndd-experiment)")
        sub.add_argument("--hndd", default=os.environ.get("HNDD_BIN", "hndd"), help="the hndd binary")
        sub.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS)
        sub.add_argument("--percents", nargs="+", type=int, default=list(PERCENTS), help="bias P values (%%)")
        sub.add_argument("--seeds", type=positive_int, default=3, help="seeds per (experiment, P)")
        if name == "run":
            sub.add_argument("--scale", default="full", choices=sorted(SCALES), help="named setting (see README)")
            for option, what in (("steps", "training steps per run"), ("every", "steps between probe passes"),
                                 ("images", "training images per set"), ("dictionary-images", "dictionary faces"),
                                 ("size", "image side in pixels")):
                sub.add_argument("--" + option, type=positive_int, help=what + " (default: the scale's)")
            sub.add_argument("--parallel", type=positive_int, default=2, help="trainers side by side")
    return main_parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    options = parser().parse_args(argv)
    try:
        return {"run": command_run, "page": command_page}[options.command](options)
    except (ExperimentError, OSError) as error:
        print(f"experiment {options.command}: {error}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        print(f"experiment: {stop}; finished runs are kept, run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
