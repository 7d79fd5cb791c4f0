"""Benchmark specifications: what a YAML config under experiments/configs says, validated."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..settings import reject_unknown_keys
from ..training.config import TrainConfig
from .evaluation import EvaluationSettings
from .zoo import MODEL_KEYS, ModelSettings

_TOP_LEVEL_KEYS = {"name", "dataset", "models", "seeds", "model", "train", "quick", "reference", "evaluation"}
_QUICK_KEYS = {"seeds", "max_epochs"}


@dataclass(frozen=True)
class BenchSpec:
    """One benchmark: a dataset, models, seeds, settings, and the published numbers to compare with."""

    name: str
    dataset: dict[str, Any]
    models: tuple[str, ...]
    seeds: int
    model: ModelSettings
    train: TrainConfig
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    reference: dict[str, Any] = field(default_factory=dict)

    def check_ready(self) -> None:
        """Fail before any run starts when the data cannot be found."""
        if self.dataset.get("name") == "cub":
            from ..datasets.cub import find_cub_root

            if not self.dataset.get("root"):
                raise ValueError(f"{self.name} needs the CUB archive: pass --root PATH (the directory holding CUB_200_2011/)")
            find_cub_root(self.dataset["root"])

    def config_dict(self) -> dict[str, Any]:
        """The settings that determine a run's result (not the model list, seeds or references)."""
        return {
            "dataset": self.dataset,
            "model": self.model.to_dict(),
            "train": {k: v for k, v in vars(self.train).items() if k not in ("device", "devices", "seed", "checkpoint_dir", "num_workers")},
            "evaluation": self.evaluation.to_dict(),
        }

    def config_hash(self) -> str:
        blob = json.dumps(self.config_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def with_overrides(
        self,
        models: list[str] | None = None,
        seeds: int | None = None,
        max_epochs: int | None = None,
        device: str | None = None,
        root: str | None = None,
    ) -> BenchSpec:
        spec = self
        if root is not None:
            if self.dataset.get("name") != "cub":
                raise ValueError(f"--root applies to CUB benchmarks; {self.name} draws its data from a generator")
            spec = replace(spec, dataset={**spec.dataset, "root": str(root)})
        if models:
            spec = replace(spec, models=tuple(_check_models(models)))
        if seeds is not None:
            if seeds < 1:
                raise ValueError(f"--seeds must be at least 1; got {seeds}")
            spec = replace(spec, seeds=seeds)
        train = spec.train
        if max_epochs is not None:
            train = replace(train, max_epochs=max_epochs)
        if device is not None:
            train = replace(train, device=device)
        return replace(spec, train=train)


def _check_models(models: list[str]) -> list[str]:
    unknown = [m for m in models if m not in MODEL_KEYS]
    if unknown:
        raise ValueError(f"unknown model key(s) {unknown}; choose from {', '.join(MODEL_KEYS)}")
    return list(models)


def _config_dir():
    return resources.files("conceptlab") / "configs"


def bundled_configs() -> list[str]:
    """Names of the configs shipped with conceptlab (from experiments/configs)."""
    return sorted(p.name[:-5] for p in _config_dir().iterdir() if p.name.endswith(".yaml"))


def load_config(target: str) -> tuple[dict[str, Any], str]:
    """The raw YAML of a bundled config name ('xor') or a file path, and its default name."""
    path = Path(target)
    if target.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"config file {target} does not exist")
        text = path.read_text()
    else:
        config = _config_dir() / f"{target}.yaml"
        if not config.is_file():
            raise ValueError(f"unknown benchmark {target!r}; choose one of {', '.join(bundled_configs())} or pass a .yaml path")
        text = config.read_text()
    raw = yaml.safe_load(text) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"config {target} must be a YAML mapping of settings")
    return raw, path.stem


def load_spec(target: str, quick: bool = False) -> BenchSpec:
    """Load a bundled config by name ('xor') or a YAML file by path; ``quick`` applies its quick block."""
    raw, name = load_config(target)
    return parse_spec(raw, default_name=name, quick=quick)


def parse_spec(raw: dict[str, Any], default_name: str = "bench", quick: bool = False) -> BenchSpec:
    reject_unknown_keys(raw, _TOP_LEVEL_KEYS, "config key(s)")
    if "dataset" not in raw or "name" not in raw["dataset"]:
        raise ValueError("a benchmark config needs `dataset: {name: ...}`")
    models = _check_models(list(raw.get("models") or MODEL_KEYS))
    train = TrainConfig.from_dict(dict(raw.get("train") or {}))
    seeds = int(raw.get("seeds", 5))
    if quick:
        quick_cfg = dict(raw.get("quick") or {})
        reject_unknown_keys(quick_cfg, _QUICK_KEYS, "quick key(s)")
        seeds = int(quick_cfg.get("seeds", min(seeds, 2)))
        train = replace(train, max_epochs=int(quick_cfg.get("max_epochs", min(train.max_epochs, 30))))
    return BenchSpec(
        name=str(raw.get("name", default_name)),
        dataset=dict(raw["dataset"]),
        models=tuple(models),
        seeds=seeds,
        model=ModelSettings.from_dict(dict(raw.get("model") or {})),
        train=train,
        evaluation=EvaluationSettings.from_dict(dict(raw.get("evaluation") or {})),
        reference=dict(raw.get("reference") or {}),
    )
