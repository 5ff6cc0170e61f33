"""The training side of `tools/demo`: ResNet-18 learns a biased gender task while hndd watches.

    python3 -m hndd_client.demo train --trainset T.h5 --dictionary D.h5 --run-dir DIR --run NAME
        [--epochs E] [--every N] [--layers L ...] [--size PX] [--batch-size B] [--seed S] [--summary F]
    python3 -m hndd_client.demo throughput --trainset T.h5 --dictionary D.h5 --run-dir DIR [--rounds K] ...
    python3 -m hndd_client.demo table --snapshots S.h5 [--layers L ...] [--markdown OUT.md] [--hndd PATH]

``train`` trains a torchvision ResNet-18 (no pretrained weights) on a synthetic training set
(``python3 -m hndd_client synth-trainset``) on the CPU, with ``hndd_client.torch.watch`` sending a
probe pass of the dictionary every N steps (and one before the first step) to ``hndd serve``.

``throughput`` measures what watching costs: two copies of the same model with the same seed,
one watched and one not, train in alternating stretches of N steps (so both see the same load on
a shared machine), and it prints the steps per second of each.

``table`` takes the snapshot file's counts from ``hndd summary --json`` and prints the finding of
the paper's §5 as measured: units paired with eyeglasses (and units localised in the eye region)
at P = 50 against P = 100 per layer over training steps, and units biased toward grayscale per
layer at each P; for runs named ``smile-P<percent>`` (``tools/demo --real``), units biased toward
female and male and units paired with no_beard and rosy_cheeks, and with ``--summary`` the
held-out accuracy that ``train --testset`` measured per smiling × gender cell. Run names follow ``<concept>-P<percent>`` (e.g. ``eyeglasses-P100``), as
``tools/demo`` names them.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import h5py
import numpy as np

from .cli import positive_int

DEFAULT_LAYERS = ("layer2.1.conv1", "layer3.1.conv1", "layer4.1.conv1")
#: Input normalisation of the demo's model (the synthetic images are roughly centred on grey).
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
RUN_NAME = re.compile(r"^(?P<concept>[A-Za-z_]+)-P(?P<percent>\d+(?:\.\d+)?)$")


class DemoError(ValueError):
    """Bad demo input (a file, a run name, an option); the message says what and where."""


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------

def read_trainset(path: str):
    """(pixels [N, H, W, 3] uint8, labels [N] int64, attributes) of a synth-trainset file."""
    if not os.path.isfile(path):
        raise DemoError(f"training set {path!r} does not exist")
    with h5py.File(path, "r") as file:
        if file.attrs.get("format") != "hndd-trainset":
            raise DemoError(f"{path} is not a training set from synth-trainset (attribute format = "
                            f"{file.attrs.get('format')!r})")
        for name in ("images/pixels", "labels"):
            if name not in file:
                raise DemoError(f"{path} has no /{name}")
        pixels, labels = file["images/pixels"][()], file["labels"][()].astype(np.int64)
        attributes = {key: file.attrs[key] for key in file.attrs}
    if len(pixels) != len(labels) or len(labels) == 0:
        raise DemoError(f"{path}: {len(pixels)} images but {len(labels)} labels")
    return pixels, labels, attributes


@dataclass
class TrainConfig:
    size: int = 96
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0


class Trainer:
    """One ResNet-18 and its data order: `run_steps(k)` trains k more steps. Two trainers made with
    the same seed train identically (same initial weights, batches and flips)."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, classes: int, config: TrainConfig):
        import torch
        import torchvision

        self.torch = torch
        self.config = config
        torch.manual_seed(config.seed)
        self.model = torchvision.models.resnet18(weights=None, num_classes=classes)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        self.images = prepare_images(torch.from_numpy(pixels), config.size)  # uint8 [N, 3, S, S]
        self.labels = torch.from_numpy(labels)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.order = torch.empty(0, dtype=torch.int64)
        self.position = 0
        self.steps_done = 0
        self.epochs_done = 0
        self.recent_loss: List[float] = []
        self.recent_correct = self.recent_seen = 0

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.labels) // self.config.batch_size)

    def _next_batch(self):
        batch = self.config.batch_size
        if self.position + batch > len(self.order):
            self.order = self.torch.randperm(len(self.labels), generator=self.generator)
            self.position = 0
            self.epochs_done += self.steps_done > 0
        index = self.order[self.position:self.position + batch]
        self.position += batch
        images = normalise(self.images[index])
        flip = self.torch.rand(len(index), generator=self.generator) < 0.5
        images[flip] = images[flip].flip(-1)
        return images, self.labels[index]

    def run_steps(self, count: int) -> None:
        functional = self.torch.nn.functional
        self.model.train()
        for _ in range(count):
            images, labels = self._next_batch()
            logits = self.model(images)
            loss = functional.cross_entropy(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.steps_done += 1
            self.recent_loss.append(float(loss.detach()))
            self.recent_correct += int((logits.detach().argmax(1) == labels).sum())
            self.recent_seen += len(labels)

    def take_recent(self):
        """(mean loss, accuracy) over the steps since the last call."""
        loss = float(np.mean(self.recent_loss)) if self.recent_loss else float("nan")
        accuracy = self.recent_correct / self.recent_seen if self.recent_seen else float("nan")
        self.recent_loss, self.recent_correct, self.recent_seen = [], 0, 0
        return loss, accuracy


def prepare_images(pixels, size: int):
    """uint8 [N, H, W, 3] -> uint8 [N, 3, size, size] (resized once, not per step)."""
    import torch

    images = pixels.permute(0, 3, 1, 2).contiguous()
    if images.shape[-1] != size or images.shape[-2] != size:
        resized = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear",
                                                  antialias=True, align_corners=False)
        images = resized.round_().clamp_(0, 255).to(torch.uint8)
    return images


def normalise(images_uint8):
    import torch

    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (images_uint8.float() / 255.0 - mean) / std


def probe_preprocess(size: int):
    """The probe images get exactly the training preprocessing (resize, normalise)."""
    import torch

    def preprocess(images):  # float [B, 3, H, W] in [0, 1]
        if images.shape[-1] != size or images.shape[-2] != size:
            images = torch.nn.functional.interpolate(images * 255.0, size=(size, size), mode="bilinear",
                                                     antialias=True, align_corners=False).round().clamp(0, 255) / 255.0
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        return (images - mean) / std

    return preprocess


def command_train(options) -> int:
    import torch

    from .client import Client
    from .torch import watch

    torch.set_num_threads(options.threads or torch.get_num_threads())
    pixels, labels, attributes = read_trainset(options.trainset)
    classes = len(attributes.get("classes", [0, 1]))
    config = TrainConfig(options.size, options.batch_size, options.lr, options.seed)
    trainer = Trainer(pixels, labels, classes, config)
    total_steps = options.steps or options.epochs * trainer.steps_per_epoch
    total_steps = max(options.every, total_steps - total_steps % options.every)  # end on a probe pass
    print(f"[{options.run}] ResNet-18 on {len(labels)} images of {options.trainset} "
          f"(bias {attributes.get('bias_concept')} P={attributes.get('bias_percent')}), {options.size} px, "
          f"batch {options.batch_size}, {total_steps} steps, seed {options.seed}; probe pass of "
          f"{', '.join(options.layers)} every {options.every} steps", flush=True)
    client = Client(run_dir=options.run_dir, run=options.run)
    watcher = watch(trainer.model, options.layers, options.dictionary, options.every, client,
                    batch_size=options.probe_batch, preprocess=probe_preprocess(options.size), dtype=options.dtype)
    started = time.perf_counter()
    try:
        watcher.step(0)
        report_pass(options.run, 0, float("nan"), float("nan"), watcher)
        while trainer.steps_done < total_steps:
            trainer.run_steps(options.every)
            loss, accuracy = trainer.take_recent()
            if watcher.step(trainer.steps_done):
                report_pass(options.run, trainer.steps_done, loss, accuracy, watcher)
        elapsed = time.perf_counter() - started
        if not client.flush(timeout=60):
            print(f"[{options.run}] warning: batches still unsent after 60 s", file=sys.stderr)
    finally:
        watcher.close()
        client.close()
    stats = watcher.stats
    test = evaluate(trainer, options.testset) if options.testset else None
    summary = {
        "run": options.run, "steps": trainer.steps_done, "seconds": elapsed, "seed": options.seed,
        "probe_seconds": stats.probe_seconds, "passes_run": stats.passes_run,
        "passes_skipped": stats.passes_skipped, "dropped_batches": client.stats.dropped_batches,
        "probe_share": stats.probe_seconds / elapsed if elapsed else 0.0, "final_train_accuracy": accuracy,
        "load_average": os.getloadavg()[0], "test": test,
    }
    if test:
        print(f"[{options.run}] held-out test accuracy {100 * test['accuracy']:.1f} % on {test['images']} faces; "
              + ", ".join(f"{cell} {100 * value:.1f} %" for cell, value in test["cells"].items()), flush=True)
    print(f"[{options.run}] done: {trainer.steps_done} steps in {elapsed:.0f} s, probe passes "
          f"{stats.passes_run} ({stats.passes_skipped} skipped) took {stats.probe_seconds:.1f} s "
          f"= {100 * summary['probe_share']:.1f} % of the run; load average {summary['load_average']:.1f}",
          flush=True)
    if options.summary:
        with open(options.summary, "a") as out:
            out.write(json.dumps(summary) + "\n")
    return 0


def evaluate(trainer: "Trainer", path: str) -> dict:
    """Accuracy of the trained model on a held-out set, overall and per (class, bias) cell: for
    ``real-trainset`` files the cells are smiling / not smiling × female / male."""
    torch = trainer.torch
    pixels, labels, attributes = read_trainset(path)
    with h5py.File(path, "r") as file:
        bias = file["bias"][()].astype(bool) if "bias" in file else np.zeros(len(labels), dtype=bool)
    images = prepare_images(torch.from_numpy(pixels), trainer.config.size)
    trainer.model.eval()
    predictions = []
    with torch.no_grad():
        for start in range(0, len(labels), 100):
            predictions.append(trainer.model(normalise(images[start:start + 100])).argmax(1).numpy())
    trainer.model.train()
    correct = np.concatenate(predictions) == labels
    classes = [str(c) for c in attributes.get("classes", range(int(labels.max()) + 1))]
    concept = str(attributes.get("bias_concept", "bias"))
    cells = {}
    for k, name in enumerate(classes):
        for flag in (True, False):
            members = (labels == k) & (bias == flag)
            if members.any():
                cells[f"{name}, {concept if flag else 'not ' + concept}"] = float(correct[members].mean())
    return {"accuracy": float(correct.mean()), "images": int(len(labels)), "cells": cells}


def report_pass(run, step, loss, accuracy, watcher) -> None:
    stats = watcher.stats
    training = "" if np.isnan(loss) else f"train loss {loss:.3f}, accuracy {100 * accuracy:.0f} %; "
    print(f"[{run}] step {step:5d}: {training}probe pass {stats.last_pass_seconds:.1f} s, "
          f"{stats.last_pass_bytes / 2**20:.1f} MiB queued for hndd", flush=True)


def command_throughput(options) -> int:
    """A baseline model and its watched twin (same seed) train step by step in turn; the watched
    one also runs its probe pass every `every` steps. Each side's time is summed. Wall-clock
    rates are what a user sees; CPU seconds of this process (training thread, client threads)
    barely depend on what else the machine runs, so they show the cost on a busy machine too."""
    import torch

    from .client import Client
    from .torch import watch

    torch.set_num_threads(options.threads or torch.get_num_threads())
    pixels, labels, attributes = read_trainset(options.trainset)
    classes = len(attributes.get("classes", [0, 1]))
    config = TrainConfig(options.size, options.batch_size, options.lr, options.seed)
    baseline = Trainer(pixels, labels, classes, config)
    watched = Trainer(pixels, labels, classes, config)
    client = Client(run_dir=options.run_dir, run=options.run)
    watcher = watch(watched.model, options.layers, options.dictionary, options.every, client,
                    batch_size=options.probe_batch, preprocess=probe_preprocess(options.size), dtype=options.dtype)
    # Warm-up outside the timing: first steps allocate, the probe builds its cache.
    baseline.run_steps(2)
    watched.run_steps(2)
    watcher.probe_now(0)
    wall = {"baseline": 0.0, "watched": 0.0}
    cpu = {"baseline": 0.0, "watched": 0.0}
    daemon_cpu = 0.0
    loads = []

    def settle():
        # Training resumes once the daemon has finished the pass: its work (in its own process,
        # reported as CPU seconds per pass) then never lands inside either side's steps.
        client.flush(timeout=60)
        wait_until_idle(options.hndd, options.run_dir, options.run)

    try:
        settle()
        for _ in range(options.rounds):
            # Step by step in turn, so bursts of other work on the machine hit both models alike.
            for _ in range(options.every):
                for name, trainer in (("baseline", baseline), ("watched", watched)):
                    wall_start, cpu_start = time.perf_counter(), time.process_time()
                    trainer.run_steps(1)
                    wall[name] += time.perf_counter() - wall_start
                    cpu[name] += time.process_time() - cpu_start
            daemon_before = process_cpu_seconds(options.daemon_pid)
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            watcher.probe_now(watched.steps_done)
            wall["watched"] += time.perf_counter() - wall_start
            cpu["watched"] += time.process_time() - cpu_start
            settle()
            daemon_cpu += process_cpu_seconds(options.daemon_pid) - daemon_before
            loads.append(os.getloadavg()[0])
    finally:
        watcher.close()
        client.close()
    steps = options.rounds * options.every
    rate = {name: steps / value for name, value in wall.items()}
    loss = 1.0 - rate["watched"] / rate["baseline"]
    cpu_extra = cpu["watched"] / cpu["baseline"] - 1.0
    same = all(torch.equal(a, b) for a, b in zip(baseline.model.state_dict().values(),
                                                  watched.model.state_dict().values()))
    result = {"steps": steps, "every": options.every, "batch_size": options.batch_size, "size": options.size,
              "layers": options.layers, "seed": options.seed, "threads": torch.get_num_threads(),
              "baseline_steps_per_s": rate["baseline"], "watched_steps_per_s": rate["watched"],
              "throughput_loss": loss, "baseline_cpu_s_per_step": cpu["baseline"] / steps,
              "watched_cpu_s_per_step": cpu["watched"] / steps, "cpu_extra": cpu_extra,
              "daemon_cpu_s_per_pass": daemon_cpu / options.rounds if options.daemon_pid else None,
              "load_average": float(np.mean(loads)), "identical_weights": same}
    print(f"throughput: {rate['baseline']:.2f} steps/s without watch, {rate['watched']:.2f} steps/s with watch "
          f"(probe pass of {', '.join(options.layers)} every {options.every} steps, {steps} steps each, "
          f"{torch.get_num_threads()} torch thread(s), seed {options.seed}): "
          f"{100 * loss:.1f} % slower; load average {result['load_average']:.1f}; "
          f"same weights after training: {'yes' if same else 'no'}", flush=True)
    daemon = (f"; hndd serve used {result['daemon_cpu_s_per_pass']:.1f} CPU s per pass (in its own process)"
              if options.daemon_pid else "")
    print(f"throughput in CPU time of the training process: {result['baseline_cpu_s_per_step']:.3f} s per step "
          f"without watch, {result['watched_cpu_s_per_step']:.3f} s with watch: {100 * cpu_extra:.1f} % more{daemon}",
          flush=True)
    if options.summary:
        with open(options.summary, "a") as out:
            out.write(json.dumps({"throughput": result}) + "\n")
    return 0


def process_cpu_seconds(pid: Optional[int]) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc); 0 without a pid."""
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError as error:
        raise DemoError(f"cannot read the CPU time of process {pid} (--daemon-pid): {error}") from None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(hndd: str, run_dir: str, run: str, timeout: float = 120.0) -> None:
    """Waits until `hndd status` shows an empty ingest queue and no open pass of `run`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = subprocess.run([hndd, "status", "--run-dir", run_dir], capture_output=True, text=True,
                                    timeout=30)
        except FileNotFoundError:
            raise DemoError(f"cannot run {hndd!r} (give --hndd PATH or set HNDD_BIN)") from None
        if result.returncode != 0:
            raise DemoError(f"hndd status --run-dir {run_dir} failed: {result.stderr.strip()}")
        status = json.loads(result.stdout)
        busy = status.get("queue_depth", 0) > 0 or any(
            p.get("open") and p.get("run") == run for layer in status.get("layers", []) for p in layer.get("passes", []))
        if not busy:
            return
        time.sleep(0.2)
    raise DemoError(f"the daemon at {run_dir} did not finish the passes of run {run} within {timeout:.0f} s")


# --------------------------------------------------------------------------------------------
# the measured finding
# --------------------------------------------------------------------------------------------

@dataclass
class LayerSeries:
    """Complete passes of one (run, layer), by step, with the counts `hndd summary` gives."""

    steps: np.ndarray
    paired_with: Dict[str, np.ndarray]  # local concept -> units paired, per step (absent: none paired)
    in_region: Dict[str, np.ndarray]  # region -> units localised there, per step
    biased_toward: Dict[str, np.ndarray]  # global subgroup -> units biased, per step
    interpretable: np.ndarray
    units: int
    # The same counts with only significant pairings (BH-adjusted p <= q; `hndd summary --json`'s
    # "significant"); -1 at a step whose pass holds no tests.
    significant_paired_with: Dict[str, np.ndarray] = field(default_factory=dict)
    significant_biased_toward: Dict[str, np.ndarray] = field(default_factory=dict)
    tested: Optional[np.ndarray] = None  # per step: the pass holds the significance tests
    # Units biased beyond the untrained network (`hndd summary --json`'s "beyond_untrained",
    # tested against the run's first complete pass) per subgroup; -1 at a step without the test.
    beyond_biased_toward: Dict[str, np.ndarray] = field(default_factory=dict)


def summary_rows(hndd: str, path: str) -> List[dict]:
    """Every row of a snapshot file as `hndd summary --json` counts it (JSON Lines)."""
    if not os.path.isfile(path):
        raise DemoError(f"snapshot file {path!r} does not exist")
    try:
        result = subprocess.run([hndd, "summary", path, "--json"], capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise DemoError(f"cannot run {hndd!r} (give --hndd PATH or set HNDD_BIN)") from None
    if result.returncode != 0:
        raise DemoError(f"hndd summary {path} failed: {result.stderr.strip()}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def read_series(path: str, hndd: str) -> Dict[str, Dict[str, LayerSeries]]:
    """run -> layer -> LayerSeries of the complete passes in a snapshot file; a step written twice
    keeps its last row. The counts are hndd's own (`hndd summary --json`), not recomputed here."""
    latest: Dict[tuple, Dict[int, dict]] = {}
    for row in summary_rows(hndd, path):
        if row["complete"]:
            latest.setdefault((row["run"], row["layer"]), {})[int(row["step"])] = row
    series: Dict[str, Dict[str, LayerSeries]] = {}
    for (run, layer), by_step in sorted(latest.items()):
        rows = [by_step[step] for step in sorted(by_step)]

        def per_step(key: str) -> Dict[str, np.ndarray]:
            names = sorted({name for row in rows for name in row[key]})
            return {name: np.array([row[key].get(name, 0) for row in rows]) for name in names}

        def significant(key: str) -> Dict[str, np.ndarray]:
            tested = [row.get("significant") for row in rows]
            names = sorted({name for t in tested if t for name in t[key]})
            return {name: np.array([t[key].get(name, 0) if t else -1 for t in tested]) for name in names}

        def beyond(key: str) -> Dict[str, np.ndarray]:
            tested = [row.get("beyond_untrained") for row in rows]
            names = sorted({name for t in tested if t for name in t[key]})
            return {name: np.array([t[key].get(name, 0) if t else -1 for t in tested]) for name in names}

        series.setdefault(run, {})[layer] = LayerSeries(
            steps=np.array(sorted(by_step)),
            paired_with=per_step("units_per_concept"),
            in_region=per_step("units_per_region"), biased_toward=per_step("units_per_subgroup"),
            interpretable=np.array([row["interpretable_units"] for row in rows]), units=int(rows[0]["units"]),
            significant_paired_with=significant("units_per_concept"),
            significant_biased_toward=significant("units_per_subgroup"),
            tested=np.array([row.get("significant") is not None for row in rows]),
            beyond_biased_toward=beyond("units_per_subgroup"))
    return series


def experiments(series, concept: str) -> List[tuple]:
    """[(percent, run)] of the runs named <concept>-P<percent>, by percent."""
    found = []
    for run in series:
        match = RUN_NAME.match(run)
        if match and match.group("concept") == concept:
            found.append((float(match.group("percent")), run))
    return sorted(found)


def _at(values: np.ndarray, steps: np.ndarray, step: int) -> str:
    where = np.flatnonzero(steps == step)
    if not len(where):
        return "–"
    return str(int(values[where[0]])) if values[where[0]] >= 0 else "n/a"


def _significant(counts: Dict[str, np.ndarray], name: str, tested: np.ndarray) -> np.ndarray:
    """A significant count per step: 0 where the tests ran and found none, -1 where none ran."""
    return counts[name] if name in counts else np.where(tested, 0, -1)


def _beyond(series: LayerSeries, subgroup: str) -> np.ndarray:
    """Units biased beyond the untrained network toward `subgroup` per step, -1 where untested
    (hndd's summary lists every subgroup of a tested pass, zeros included)."""
    return series.beyond_biased_toward.get(subgroup, np.full(len(series.steps), -1))


def finding_tables(series, layers: Sequence[str]) -> List[str]:
    """Markdown lines of both experiments' tables, from what the snapshot file holds."""
    lines: List[str] = []
    glasses = experiments(series, "eyeglasses")
    if glasses:
        lines.append("Eyeglasses bias (paper §5.1): units paired with `eyeglasses` / units localised in the `eye` "
                     "region · of those, significantly paired, per layer and training step")
        lines.append("")
        lines.extend(_table(series, glasses, layers,
                            lambda s: (s.paired_with.get("eyeglasses", 0 * s.steps), s.in_region.get("eye"),
                                       _significant(s.significant_paired_with, "eyeglasses", s.tested)), "{}/{} · {}"))
        lines.append("")
    gray = experiments(series, "grayscale")
    if gray:
        lines.append("Grayscale bias (paper §5.2): units biased toward `grayscale` (colour-scheme category) · of those, "
                     "significantly biased, per layer and training step")
        lines.append("")
        lines.extend(_table(series, gray, layers,
                            lambda s: (s.biased_toward.get("grayscale"),
                                       _significant(s.significant_biased_toward, "grayscale", s.tested)), "{} · {}",
                            beyond=lambda s: ("`grayscale`", _beyond(s, "grayscale"))))
        lines.append("")
    smile = experiments(series, "smile")
    if smile:
        lines.extend(smile_tables(series, smile, layers))
    if not lines:
        lines.append("(no complete passes of runs named eyeglasses-P<percent>, grayscale-P<percent> or smile-P<percent>)")
    return lines


def smile_tables(series, runs, layers) -> List[str]:
    """The paper's §4 SMILE finding on real faces: gender-biased units, and units paired with the
    cues the paper names (no_beard, rosy_cheeks), per layer and step, P = 50 against P = 90."""
    lines = ["Smile classifier on real CelebA faces, gender-skewed (paper §4): units biased toward `female` / "
             "toward `male`, per layer and training step", ""]
    lines.extend(_table(series, runs, layers, lambda s: (s.biased_toward.get("female", 0 * s.steps),
                                                        s.biased_toward.get("male", 0 * s.steps)), "{}/{}"))
    lines += ["", "Units paired with `no_beard` / with `rosy_cheeks`, per layer and training step", ""]
    lines.extend(_table(series, runs, layers, lambda s: (s.paired_with.get("no_beard", 0 * s.steps),
                                                        s.paired_with.get("rosy_cheeks", 0 * s.steps)), "{}/{}"))
    lines.append("")
    return lines


def accuracy_table(summary_path: str) -> List[str]:
    """Markdown lines: each run's held-out accuracy, overall and per cell (from train --summary)."""
    runs = []
    with open(summary_path) as handle:
        for line in handle:
            row = json.loads(line) if line.strip() else {}
            if row.get("test"):
                runs.append(row)
    if not runs:
        return []
    cells = list(runs[0]["test"]["cells"])
    lines = ["Held-out accuracy (balanced test set, never trained on, not in the dictionary)", "",
             "| run | steps | all | " + " | ".join(cells) + " |", "|" + "---|" * (3 + len(cells))]
    for row in runs:
        test = row["test"]
        lines.append(f"| {row['run']} | {row['steps']} | {100 * test['accuracy']:.1f} % | "
                     + " | ".join(f"{100 * test['cells'].get(cell, float('nan')):.1f} %" for cell in cells) + " |")
    lines.append("")
    return lines


def _table(series, runs, layers, pick, cell_format, beyond=None) -> List[str]:
    """`beyond`: a LayerSeries -> (what, per-step count of units biased beyond the untrained
    network, -1 where untested), taken from hndd's summary, never recomputed here."""
    header = ["step"]
    columns = []
    units_by_layer = {}
    for layer in layers:
        for percent, run in runs:
            if layer in series[run]:
                header.append(f"{layer} P={percent:g}")
                columns.append(series[run][layer])
                units_by_layer[layer] = series[run][layer].units
    if not columns:
        return ["(no complete passes of these layers)"]
    steps = sorted(set(int(s) for column in columns for s in column.steps))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for step in steps:
        cells = [str(step)]
        for column in columns:
            values = pick(column)
            if any(v is None for v in values):
                cells.append("n/a")
            else:
                cells.append(cell_format.format(*(_at(v, column.steps, step) for v in values)))
        lines.append("| " + " | ".join(cells) + " |")
    found, what = [], ""
    for name, column in zip(header[1:], columns) if beyond else ():
        what, counts = beyond(column)
        if len(counts) and counts[-1] >= 0:
            found.append(f"{name}: {int(counts[-1])} (step {int(column.steps[-1])})")
    units = ", ".join(f"{layer}: {count}" for layer, count in units_by_layer.items())
    lines.append("")
    if found:
        lines.append(f"Units biased beyond the untrained network toward {what} at the last pass (P rose since the run's "
                     "first complete pass, tested per unit, Benjamini–Hochberg q = 0.05): " + "; ".join(found) + ".")
    lines.append(f"Units per layer — {units}. '·': the paper's count · those significant (Benjamini–Hochberg "
                 f"q = 0.05 under the permutation null; 'n/a' where the pass has no tests). '–': no complete pass at that step.")
    return lines


def command_table(options) -> int:
    series = read_series(options.snapshots, options.hndd)
    layers = options.layers or sorted({layer for run in series.values() for layer in run})
    lines = finding_tables(series, layers)
    if options.summary:
        lines += accuracy_table(options.summary)
    text = "\n".join(lines)
    print(text, flush=True)
    if options.markdown:
        with open(options.markdown, "w") as out:
            out.write(text + "\n")
    return 0


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

def _training_options(parser) -> None:
    parser.add_argument("--trainset", required=True, help="training set from synth-trainset (.h5)")
    parser.add_argument("--dictionary", required=True, help="the Face Dictionary hndd serve uses (.h5)")
    parser.add_argument("--run-dir", required=True, help="hndd serve's run directory")
    parser.add_argument("--run", help="run name sent with every batch (default: from the training set)")
    parser.add_argument("--layers", nargs="+", default=list(DEFAULT_LAYERS), help="module names to watch")
    parser.add_argument("--every", type=positive_int, default=40, help="training steps between probe passes")
    parser.add_argument("--size", type=positive_int, default=96, help="input side in pixels")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--probe-batch", type=positive_int, default=100, help="probe images per forward pass")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float16", choices=["float32", "float16", "bfloat16"],
                        help="activations on the wire")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--hndd", default=os.environ.get("HNDD_BIN", "hndd"), help="the hndd binary (for status)")
    parser.add_argument("--summary", help="append a JSON line with the measured figures to this file")
    parser.add_argument("--testset", help="held-out set (same format) to measure accuracy on at the end")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m hndd_client.demo", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train ResNet-18 on a biased set while hndd watches")
    _training_options(train)
    train.add_argument("--epochs", type=positive_int, default=3)
    train.add_argument("--steps", type=positive_int, help="training steps (instead of --epochs)")
    throughput = commands.add_parser("throughput", help="steps/s with and without watch, same seed")
    _training_options(throughput)
    throughput.add_argument("--rounds", type=positive_int, default=2, help="alternating stretches of --every steps")
    throughput.add_argument("--daemon-pid", type=positive_int, help="hndd serve's process id, to report its CPU time")
    table = commands.add_parser("table", help="print the measured bias tables from a snapshot file")
    table.add_argument("--snapshots", required=True)
    table.add_argument("--layers", nargs="+")
    table.add_argument("--markdown", help="also write the tables to this Markdown file")
    table.add_argument("--summary", help="train --summary file: adds the held-out accuracy table")
    table.add_argument("--hndd", default=os.environ.get("HNDD_BIN", "hndd"), help="the hndd binary (for its summary)")
    options = parser.parse_args(argv)
    try:
        if getattr(options, "run", "") is None:
            options.run = "throughput" if options.command == "throughput" else default_run_name(options.trainset)
        return {"train": command_train, "throughput": command_throughput, "table": command_table}[options.command](options)
    except (DemoError, OSError, ValueError) as error:
        print(f"demo {options.command}: {error}", file=sys.stderr)
        return 1


def default_run_name(trainset: str) -> str:
    """<bias concept>-P<percent> from the training set's attributes, as `table` expects."""
    if not os.path.isfile(trainset):
        raise DemoError(f"training set {trainset!r} does not exist")
    with h5py.File(trainset, "r") as file:
        concept, percent = file.attrs.get("bias_concept"), file.attrs.get("bias_percent")
    if concept is None or percent is None:
        raise DemoError(f"{trainset} has no bias_concept/bias_percent attributes; give --run")
    return f"{concept}-P{float(percent):g}"


if __name__ == "__main__":
    sys.exit(main())
