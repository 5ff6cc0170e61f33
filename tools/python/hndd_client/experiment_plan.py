"""What `tools/experiment` runs: the setting (sizes, steps, seeds) and the list of runs.

The paper's §5.1 (eyeglasses) and §5.2 (grayscale) experiments: for each bias P and seed, a
gender training set in which P % of the men (and 100 − P % of the women) show the concept, and a
ResNet-18 trained on it while `hndd serve` dissects probe passes of the (fixed) synthetic
dictionary. Per seed both the training set's seed and the training seed change.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Optional, Tuple

EXPERIMENTS = ("eyeglasses", "grayscale")
PERCENTS = (50, 60, 70, 80, 90, 100)
LAYERS = ("layer2.1.conv1", "layer3.1.conv1", "layer4.1.conv1")
#: Seeds of the training sets: a block per experiment, then 10·P + seed (all distinct, printed).
SET_SEED_BASE = {"eyeglasses": 11000, "grayscale": 21000}
RUN_NAME = re.compile(r"^(?P<experiment>[a-z_]+)-P(?P<percent>\d+)-seed(?P<seed>\d+)$")


class ExperimentError(ValueError):
    """A bad option, file or run of the experiment; the message says which and why."""


@dataclass(frozen=True)
class Setting:
    """Everything that decides a run's result. A folder holds runs of one setting only."""

    dictionary_images: int
    train_images: int
    steps: int
    every: int
    size: int = 96
    batch: int = 32
    dictionary_seed: int = 1
    grayscale_fraction: float = 0.3
    layers: Tuple[str, ...] = LAYERS

    def check(self) -> None:
        for name in ("dictionary_images", "train_images", "steps", "every", "size", "batch"):
            if getattr(self, name) < 1:
                raise ExperimentError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.every > self.steps:
            raise ExperimentError(f"--every ({self.every}) must not exceed --steps ({self.steps})")
        if self.steps % self.every:
            raise ExperimentError(f"--steps ({self.steps}) must be a multiple of --every ({self.every}): "
                                  "the last step must have a probe pass")
        if self.size < 32:
            raise ExperimentError(f"--size {self.size}: the synthetic faces need at least 32 px")

    def to_json(self) -> dict:
        return {**asdict(self), "layers": list(self.layers)}

    @staticmethod
    def from_json(data: dict) -> "Setting":
        return Setting(**{**data, "layers": tuple(data["layers"])})


#: Named settings. `full` is calibrated to take about 40 minutes on 2 cores (README, Experiments);
#: `paper` is for a larger machine (not run here): the paper's dictionary has 1,000 images a subgroup.
SCALES: Dict[str, Setting] = {
    "demo": Setting(dictionary_images=128, train_images=512, steps=30, every=30),
    "full": Setting(dictionary_images=300, train_images=640, steps=100, every=50, size=64),
    "paper": Setting(dictionary_images=2000, train_images=8000, steps=2000, every=500, size=128),
}


@dataclass(frozen=True)
class Run:
    experiment: str
    percent: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.experiment}-P{self.percent}-seed{self.seed}"

    @property
    def set_seed(self) -> int:
        return SET_SEED_BASE[self.experiment] + 10 * self.percent + self.seed

    @property
    def train_seed(self) -> int:
        return self.seed

    def trainset_path(self, data_dir: str, setting: Setting) -> str:
        return os.path.join(data_dir, f"gender-{self.experiment}-P{self.percent}-n{setting.train_images}-"
                                      f"{setting.size}px-seed{self.set_seed}.h5")


def parse_run(name: str) -> Optional[Run]:
    """The run a name stands for, or None for names `tools/experiment` does not write."""
    match = RUN_NAME.match(name)
    if not match or match.group("experiment") not in EXPERIMENTS:
        return None
    return Run(match.group("experiment"), int(match.group("percent")), int(match.group("seed")))


def plan(experiments, percents, seeds: int) -> List[Run]:
    """The runs in the order that leaves the most to read if the experiment is stopped early: the
    ends of the range (every seed) first, then the middle P values seed by seed."""
    for experiment in experiments:
        if experiment not in EXPERIMENTS:
            raise ExperimentError(f"unknown experiment {experiment!r}; choose from {', '.join(EXPERIMENTS)}")
    for percent in percents:
        if not 0 <= percent <= 100:
            raise ExperimentError(f"bias P = {percent} is not a percentage (0–100)")
    if seeds < 1:
        raise ExperimentError(f"--seeds must be at least 1, not {seeds}")
    ends = [p for p in percents if p in (min(percents), max(percents))]
    middle = [p for p in percents if p not in ends]
    return ([Run(e, p, s) for p in ends for s in range(seeds) for e in experiments]
            + [Run(e, p, s) for s in range(seeds) for p in middle for e in experiments])


def dictionary_path(data_dir: str, setting: Setting) -> str:
    return os.path.join(data_dir, f"dictionary-n{setting.dictionary_images}-{setting.size}px-"
                                  f"seed{setting.dictionary_seed}-gray{setting.grayscale_fraction:g}.h5")


def settle_setting(folder: str, setting: Setting) -> None:
    """Writes the folder's setting, or refuses one that differs from the setting it already holds."""
    path = os.path.join(folder, "setting.json")
    if os.path.isfile(path):
        with open(path) as handle:
            held = Setting.from_json(json.load(handle))
        if held != setting:
            changed = ", ".join(f"{k} {v} (folder: {held.to_json()[k]})" for k, v in setting.to_json().items()
                                if held.to_json()[k] != v)
            raise ExperimentError(f"{folder} holds runs of another setting ({changed}); give another --dir "
                                  "or the same options")
        return
    with open(path, "w") as handle:
        json.dump(setting.to_json(), handle, indent=1)


def setting_with(scale: str, **overrides) -> Setting:
    """A named scale with explicit options (None: keep the scale's value)."""
    if scale not in SCALES:
        raise ExperimentError(f"unknown --scale {scale!r}; choose from {', '.join(SCALES)}")
    chosen = {k: v for k, v in overrides.items() if v is not None}
    setting = replace(SCALES[scale], **chosen)
    if "steps" in chosen and "every" not in chosen:  # probe passes at 0, the middle and the end
        setting = replace(setting, every=setting.steps // 2 if setting.steps % 2 == 0 else setting.steps)
    setting.check()
    return setting

