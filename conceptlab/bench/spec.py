"""Benchmark specifications: what a YAML config under experiments/configs says, validated.

Every block is parsed into typed settings when the file is read, so a misspelled key, a number
written as text or an out-of-range value fails before any run starts, naming the file and key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, StrictInt

from ..datasets.fashion import FashionMNISTSettings
from ..datasets.files import ImageFolderSettings
from ..datasets.registry import CubSettings, DatasetSettings, dataset_settings, hashed_settings, settings_dict
from ..settings import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, SettingsError, Str, settings, validated
from ..training.config import TrainConfig
from ..training.recipes import NEEDS_EVERY_LABEL
from .evaluation import EvaluationSettings
from .zoo import MODEL_KEYS, ModelSettings


@settings
class QuickSettings:
    """What ``--quick`` changes: fewer seeds and epochs (and ``quick_evaluation``)."""

    seeds: PositiveInt | None = None
    max_epochs: PositiveInt | None = None


@settings
class AshaSettings:
    """ASHA early stopping of a sweep's trials (``search.asha``; Ray Tune, ``--backend ray``).

    Trials of one model (every sweep point and seed) form one bracket: at each rung (``grace_epochs``
    validation epochs, then x ``reduction_factor``) a trial whose validation loss is not in the best
    1 / ``reduction_factor`` of those that reached the rung stops there.
    """

    grace_epochs: PositiveInt = 10
    reduction_factor: Annotated[StrictInt, Field(ge=2)] = 3


@settings
class SearchSettings:
    """How a sweep's points are searched: ``grid`` (every point) or ``random`` (``samples`` of
    them, drawn without replacement with ``seed``, the same for every model and seed); ``asha``
    stops trials that fall behind."""

    method: Literal["grid", "random"] = "grid"
    samples: PositiveInt | None = None
    seed: NonNegativeInt = 0
    asha: AshaSettings | None = None


@settings
class BenchFile:
    """The top level of a benchmark config; each block is validated by its own settings class."""

    dataset: dict[str, Any]
    name: Str | None = None
    models: tuple[Str, ...] | None = None
    seeds: PositiveInt = 5
    model: dict[str, Any] | None = None
    train: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    quick: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None
    sweep: dict[str, list[Any]] | None = None
    search: dict[str, Any] | None = None
    resources: dict[str, Any] | None = None


@settings
class ResourceSettings:
    """What one run asks of a Ray cluster (``--backend ray``); the local pool ignores it."""

    cpus: PositiveFloat = 1.0
    gpus: NonNegativeFloat = 0.0


SWEEPABLE = ("model", "train")
NESTED_TRAIN = ("intcem", "posthoc")  # train blocks of their own: swept as train.intcem.KEY, train.posthoc.KEY

@dataclass(frozen=True)
class BenchSpec:
    """One benchmark: a dataset, models, seeds, settings, and the published numbers to compare with.

    Attributes:
        name: The benchmark's name (the ``dataset`` field of its records).
        dataset: Its data settings.
        models: The model keys it trains.
        seeds: Seeds per model.
        model: Model settings.
        train: Training settings.
        evaluation: Test-time measurements.
        reference: The published numbers shown beside ours.
        sweep: Swept settings and their values.
        point: The sweep values this spec is set to.
        resources: What one run asks of a Ray cluster.
        search: How the sweep is searched (grid, random, ASHA).
    """

    name: str
    dataset: DatasetSettings
    models: tuple[str, ...]
    seeds: int
    model: ModelSettings
    train: TrainConfig
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    reference: dict[str, Any] = field(default_factory=dict)
    sweep: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # ("train.lr", (0.01, 0.001)), ...
    point: tuple[tuple[str, Any], ...] = ()  # the sweep values this spec was set to
    resources: ResourceSettings = field(default_factory=ResourceSettings)
    search: SearchSettings | None = None

    def grid(self) -> list[BenchSpec]:
        """One spec per point of the sweep grid (every combination of the listed values), or itself."""
        if not self.sweep:
            return [self]
        keys = [key for key, _ in self.sweep]
        return [self.at(dict(zip(keys, values))) for values in itertools.product(*(values for _, values in self.sweep))]

    def points(self) -> list[BenchSpec]:
        """The sweep points that run: the whole grid, or a random search's sample of it (in grid order)."""
        grid = self.grid()
        if self.search is None or self.search.method == "grid":
            return grid
        chosen = sorted(random.Random(self.search.seed).sample(range(len(grid)), self.search.samples))
        return [grid[i] for i in chosen]

    def at(self, values: dict[str, Any]) -> BenchSpec:
        """This spec with ``values`` ("block.key", "train.intcem.key" or "train.posthoc.key" -> value)
        set, and recorded as its sweep point."""
        blocks: dict[str, dict[str, Any]] = {"model": {}, "train": {}, **{f"train.{n}": {} for n in NESTED_TRAIN}}
        for key, value in values.items():
            nested = any(key.startswith(f"train.{n}.") for n in NESTED_TRAIN)
            block, name = key.rsplit(".", 1) if nested else key.split(".", 1)
            blocks[block][name] = value
        model = validated(lambda **v: replace(self.model, **v), blocks["model"], "sweep.model")
        nested = {n: validated(lambda n=n, **v: replace(getattr(self.train, n), **v), blocks[f"train.{n}"], f"sweep.train.{n}")
                  for n in NESTED_TRAIN}
        train = validated(lambda **v: replace(self.train, **nested, **v), blocks["train"], "sweep.train")
        return replace(self, model=model, train=train, point=tuple(values.items()))

    def check_ready(self) -> None:
        """Fail before any run starts when the data cannot be found or the device is missing."""
        import torch

        if isinstance(self.dataset, CubSettings):
            from ..datasets.cub import find_cub_root

            if not self.dataset.root:
                raise ValueError(f"{self.name} needs the CUB archive: pass --root PATH (the directory holding CUB_200_2011/)")
            find_cub_root(self.dataset.root)
        if isinstance(self.dataset, FashionMNISTSettings):
            self.dataset.require_files()
        if isinstance(self.dataset, (CubSettings, ImageFolderSettings)):
            from ..models.encoders import require_backbone

            require_backbone(self.dataset.backbone if self.dataset.mode == "frozen" else self.model.backbone or "")
        if self.train.device in ("cuda", "gpu") and not torch.cuda.is_available():
            raise ValueError(f"{self.name} asks for device {self.train.device!r} but torch sees no CUDA GPU here; "
                             "use --device cpu (or auto)")
        if self.train.device == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"{self.name} asks for device 'mps' but this machine has no Apple GPU; use --device cpu")

    def config_dict(self) -> dict[str, Any]:
        """The settings that determine a run's result (not the model list, seeds or references),
        normalised: defaults are filled in, so equal settings always give equal dictionaries."""
        ignored = ("device", "devices", "seed", "num_workers")
        blocks = {
            "dataset": hashed_settings(self.dataset),
            "model": self.model.to_dict(),
            "train": {k: v for k, v in asdict(self.train).items() if k not in ignored},
            "evaluation": self.evaluation.to_dict(),
        }
        return blocks

    def config_hash(self) -> str:
        blob = json.dumps(self.config_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def to_config(self) -> dict[str, Any]:
        """A config mapping that ``parse_spec`` turns back into this spec (overrides included)."""
        train = {k: v for k, v in asdict(self.train).items() if k not in ("intervention_prob", "intervention_per")}
        return {
            "name": self.name, "dataset": settings_dict(self.dataset), "models": list(self.models), "seeds": self.seeds,
            "model": self.model.to_dict(), "train": train, "evaluation": self.evaluation.to_dict(),
            "reference": self.reference, "sweep": {k: list(v) for k, v in self.sweep} or None,
            "search": asdict(self.search) if self.search else None, "resources": asdict(self.resources),
        }

    def with_overrides(
        self,
        *,
        models: list[str] | None = None,
        seeds: int | None = None,
        max_epochs: int | None = None,
        device: str | None = None,
        root: str | None = None,
    ) -> BenchSpec:
        spec = self
        if root is not None:
            if not isinstance(self.dataset, CubSettings):
                raise ValueError(f"--root applies to CUB benchmarks; {self.name} draws its data from a generator")
            spec = replace(spec, dataset=replace(spec.dataset, root=str(root)))
        if models is not None:
            spec = replace(spec, models=check_models(models))
        if seeds is not None:
            if seeds < 1:
                raise ValueError(f"--seeds must be at least 1; got {seeds}")
            spec = replace(spec, seeds=seeds)
        overrides = {k: v for k, v in (("max_epochs", max_epochs), ("device", device)) if v is not None}
        if overrides:
            spec = replace(spec, train=validated(lambda **values: replace(spec.train, **values), overrides, "train"))
        return spec


def check_models(models: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The model keys, each known, at least one."""
    models = [m.strip() for m in models if m.strip()]
    if not models:
        raise ValueError(f"no model keys given; choose from {', '.join(MODEL_KEYS)}")
    unknown = [m for m in models if m not in MODEL_KEYS]
    if unknown:
        raise ValueError(f"unknown model key(s) {unknown}; choose from {', '.join(MODEL_KEYS)}")
    repeated = sorted({m for m in models if models.count(m) > 1})
    if repeated:
        raise ValueError(f"model key(s) {repeated} listed twice: each model runs once per seed and sweep point")
    return tuple(models)


def _config_dir():
    return resources.files("conceptlab") / "configs"


def bundled_configs() -> list[str]:
    """Names of the configs shipped with conceptlab (from experiments/configs).

    Returns:
        The names, sorted.

    Examples:
        >>> from conceptlab.bench import bundled_configs
        >>> "xor" in bundled_configs()
        True
    """
    return sorted(p.name[:-5] for p in _config_dir().iterdir() if p.name.endswith(".yaml"))


DATA_PATH_KEYS = ("path", "folder", "annotations")  # dataset keys that name files of the user's data


def load_config(target: str) -> tuple[dict[str, Any], str]:
    """The raw YAML of a bundled config name ('xor') or a file path, and its default name.

    A YAML syntax error names the file, line and column.
    """
    path = Path(target)
    if target.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"config file {target} does not exist")
        text, source = path.read_text(), str(path)
    else:
        config = _config_dir() / f"{target}.yaml"
        if not config.is_file():
            raise ValueError(f"unknown benchmark {target!r}; choose one of {', '.join(bundled_configs())} or pass a .yaml path")
        text, source = config.read_text(), f"{target}.yaml"
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ValueError(f"{source}{where}: not valid YAML ({problem})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"config {source} must be a YAML mapping of settings")
    dataset = raw.get("dataset")
    if path.is_file() and isinstance(dataset, dict):
        # data files named in a config are read from the config's folder, wherever the bench runs
        located = {key: str((path.parent / Path(dataset[key]).expanduser()).resolve())
                   for key in DATA_PATH_KEYS if isinstance(dataset.get(key), str)}
        raw = {**raw, "dataset": {**dataset, **located}}
    return raw, path.stem


def load_spec(target: str, quick: bool = False) -> BenchSpec:
    """Load a bundled config by name ('xor') or a YAML file by path; ``quick`` applies its quick block.

    Args:
        target: A bundled config name (``xor``, ``cub100``, ...) or a YAML file's path.
        quick: Apply the config's ``quick`` block (fewer seeds and epochs, a lighter evaluation).

    Returns:
        The validated spec.

    Raises:
        ValueError: No bundled config or file of that name, or a bad key (named in the message).

    Examples:
        >>> from conceptlab.bench import load_spec
        >>> spec = load_spec("xor", quick=True)
        >>> spec.name, spec.models[:2]
        ('xor', ('blackbox', 'cbm-bool'))
    """
    raw, name = load_config(target)
    return spec_from_config(raw, name, target, quick)


def spec_from_config(raw: dict[str, Any], name: str, target: str, quick: bool = False) -> BenchSpec:
    """The spec of a config ``load_config(target)`` already read (``raw``, default ``name``); errors
    name ``target``."""
    try:
        return parse_spec(raw, default_name=name, quick=quick)
    except SettingsError as err:
        raise SettingsError(f"{target}: {err}") from None


QUICK_POLICIES = ("random", "uncertainty")


def quick_evaluation(evaluation: EvaluationSettings) -> EvaluationSettings:
    """What a smoke run measures: accuracy, CAS, and the random and uncertainty curves at full
    competence; no impurity scores, no other policies or competences."""
    policies = tuple(p for p in evaluation.intervention_policies if p in QUICK_POLICIES)
    return replace(evaluation, intervention_policies=policies, intervention_competence=(1.0,), purity=False)


def parse_spec(raw: dict[str, Any], default_name: str = "bench", quick: bool = False) -> BenchSpec:
    """A validated ``BenchSpec`` from a config mapping; every problem names its key.

    Args:
        raw: The config as a mapping (a parsed YAML file).
        default_name: The benchmark's name when the config gives none.
        quick: Apply the config's ``quick`` block.

    Returns:
        The validated spec.

    Raises:
        ValueError: A missing or unknown key, or a bad value (the message names the key).

    Examples:
        >>> from conceptlab.bench import parse_spec
        >>> spec = parse_spec({"dataset": {"name": "xor", "size": 200}, "models": ["cem"], "seeds": 1}, "tiny")
        >>> spec.name, spec.models
        ('tiny', ('cem',))
    """
    if "dataset" not in raw:
        raise SettingsError("a benchmark config needs `dataset: {name: ...}`")
    top = validated(BenchFile, raw, "")
    dataset = dataset_settings(top.dataset)
    models = check_models(list(top.models if top.models is not None else MODEL_KEYS))
    if dataset.missing_concept_labels:
        refused = [m for m in models if MODEL_KEYS[m].recipe in NEEDS_EVERY_LABEL]
        if refused:
            raise SettingsError(f"models: {', '.join(refused)} train on every true concept label, but "
                                f"dataset.missing_concept_labels is {dataset.missing_concept_labels}; leave them out "
                                "(the joint and sequential models learn from the known labels)")
    doubled = sorted(set(top.train or {}) & {"intervention_prob", "intervention_per"})
    if doubled:
        raise SettingsError(f"train.{doubled[0]}: a benchmark sets RandInt once, as model.randint (and model.randint_per); "
                            "it applies to the model keys that train with interventions (cem, intcem)")
    train = TrainConfig.from_dict(top.train)
    seeds = top.seeds
    evaluation = EvaluationSettings.from_dict(top.evaluation)
    if quick:
        fast = validated(QuickSettings, top.quick, "quick")
        seeds = fast.seeds or min(seeds, 2)
        train = replace(train, max_epochs=fast.max_epochs or min(train.max_epochs, 30))
        evaluation = quick_evaluation(evaluation)
    if "intcem" in models and "learned" in evaluation.intervention_policies and not evaluation.intervention_groups:
        raise SettingsError("evaluation.intervention_groups: intcem learns to rank concept groups, so its learned "
                            "policy needs intervention_groups: true (or leave 'learned' out of intervention_policies)")
    spec = BenchSpec(
        name=top.name or default_name,
        dataset=dataset,
        models=models,
        seeds=seeds,
        model=ModelSettings.from_dict(top.model),
        train=train,
        evaluation=evaluation,
        reference=dict(top.reference or {}),
        resources=validated(ResourceSettings, top.resources, "resources"),
    )
    spec = replace(spec, sweep=_parse_sweep(top.sweep or {}, spec))
    return replace(spec, search=_parse_search(top.search, spec)) if top.search is not None else spec


def _parse_search(raw: dict[str, Any], spec: BenchSpec) -> SearchSettings:
    """``search: {method: random, samples: 8, asha: {grace_epochs: 10}}``, checked against the sweep."""
    search = validated(SearchSettings, raw, "search")
    if not spec.sweep:
        raise SettingsError("search: a search needs a sweep to search (sweep: {train.lr: [0.01, 0.001], ...})")
    size = len(spec.grid())
    if search.method == "random":
        if search.samples is None:
            raise SettingsError(f"search.samples: a random search needs the number of points to draw (1 to {size})")
        if search.samples > size:
            raise SettingsError(f"search.samples: {search.samples} points asked, but the sweep has {size}; draw at most "
                                f"{size} (or use method: grid)")
    elif search.samples is not None:
        raise SettingsError("search.samples: a grid search runs every point; drop samples or use method: random")
    return search


def _parse_sweep(sweep: dict[str, list[Any]], spec: BenchSpec) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``sweep: {train.lr: [0.01, 0.001], model.embedding_size: [16, 32]}``, every value checked."""
    parsed = []
    for key, values in sweep.items():
        block, _, name = key.partition(".")
        if block not in SWEEPABLE or not name:
            raise SettingsError(f"sweep.{key}: sweep keys are model.KEY, train.KEY, train.intcem.KEY or train.posthoc.KEY (e.g. train.lr)")
        if name in ("intervention_prob", "intervention_per"):
            raise SettingsError(f"sweep.{key}: sweep RandInt as model.randint, its one setting in a benchmark")
        if not isinstance(values, list) or not values:
            raise SettingsError(f"sweep.{key}: give a non-empty list of values, e.g. [0.01, 0.001]; got {values!r}")
        seen: dict[str, int] = {}
        for i, value in enumerate(values):
            point = spec.at({key: value})  # fails with the key and value when one is not a valid setting
            first = seen.setdefault(point.config_hash(), i)
            if first != i:
                same = values[first]
                hint = {"train.seed": "set seeds: N (or --seeds) instead", "train.device": "pass --device instead"}.get(
                    key, "each value must change what is trained")
                raise SettingsError(f"sweep.{key}: {same!r} and {value!r} give the same settings, so the same runs would "
                                    f"train twice; {hint}")
        parsed.append((key, tuple(values)))
    return tuple(parsed)
