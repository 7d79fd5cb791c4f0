"""The explorer's state and answers, free of any web code: what one sample looks like to a model,
under a person's corrections, and what a policy, an intervention curve or a counterfactual says.

Every number comes from the library: the model's ``encode`` / ``decode`` with an
``Intervention`` for predictions, ``next_units`` for policy steps, ``CCE`` for counterfactuals.
The web layer only renders these answers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor

from ..interventions import POLICIES, Policy, check_applies, fit_policy, intervention_curve, next_units, resolve_policy
from ..models import DeepConceptReasoner, Intervention
from ..models.base import ConceptOutput, decode_all, encode_all
from ..models.heads import class_log_probs, predicted_class
from ..runtime import evaluating
from ..training.runs import RunData
from .sources import ExplorerModel, check_bank, load_explorer_data

log = logging.getLogger(__name__)
FILTERS = ("all", "misclassified", "wrong-concepts")
ORDERS = ("index", "confidence", "loss", "wrong-concepts")  # how the sample list can be sorted
ANSWERS_KEPT = 1024


@dataclass(frozen=True)
class Corrections:
    """Concepts a person has set, by index: 1.0 present, 0.0 absent; the rest stay predicted.

    The order of ``values`` is the order the concepts were set in (a concept set again moves to the
    end); ``text`` keeps it, so the address of a page carries the history of its corrections.

    Attributes:
        values: Concept index -> 1.0 (present) or 0.0 (absent), oldest first.
    """

    values: Mapping[int, float]

    @classmethod
    def parse(cls, text: str | None, n_concepts: int) -> Corrections:
        """From ``"3:1,7:0"`` (concept index : value); the empty string means none."""
        values: dict[int, float] = {}
        for item in filter(None, (text or "").split(",")):
            index, _, value = item.partition(":")
            try:
                i, v = int(index), float(value)
            except ValueError:
                raise ValueError(f"a correction is INDEX:VALUE, e.g. 3:1; got {item!r}") from None
            if not 0 <= i < n_concepts or v not in (0.0, 1.0):
                raise ValueError(f"correction {item!r}: the index must lie in [0, {n_concepts - 1}] and the value be 0 or 1")
            values[i] = v
        return cls(values)

    def text(self) -> str:
        """``"3:1,7:0"``, in the order the concepts were set."""
        return ",".join(f"{i}:{v:g}" for i, v in self.values.items())

    def with_value(self, index: int, value: float | None, categorical: Sequence[Sequence[int]] = ()) -> Corrections:
        """These corrections with concept ``index`` set to ``value`` (``None``: back to predicted).

        A value of a categorical concept is set with the rest of its group: present makes it the
        concept's one value (the others absent), predicted returns the whole concept to the model,
        and absent marks that one value absent.

        Args:
            index: The concept.
            value: 1.0 present, 0.0 absent, None predicted.
            categorical: Member indices of each categorical concept of the model's data.
        """
        group = next((list(members) for members in categorical if index in members), None)
        if group is None or value == 0:
            values = {i: v for i, v in self.values.items() if i != index}
        else:
            values = {i: v for i, v in self.values.items() if i not in group}
        if group is not None and value == 1:
            values.update({i: float(i == index) for i in group})
        elif value is not None:
            values[index] = float(value)
        return Corrections(values)

    def intervention(self, n_concepts: int, device: torch.device | str = "cpu") -> Intervention | None:
        """A one-sample ``Intervention`` (1, k) writing these values on ``device``; ``None`` when empty."""
        if not self.values:
            return None
        mask = torch.zeros(1, n_concepts, dtype=torch.bool)
        values = torch.zeros(1, n_concepts)
        for i, v in self.values.items():
            mask[0, i], values[0, i] = True, v
        return Intervention(mask, values).to(device)

    def units_set(self, units: Tensor) -> Tensor:
        """(G,) the share of each unit's (G, k) concepts that are set: 1 for a whole group, between for part of one."""
        mask = torch.zeros(units.shape[1], dtype=torch.bool)
        mask[list(self.values)] = True
        return (units & mask).sum(1) / units.sum(1).clamp_min(1)

    def steps(self, units: Tensor) -> list[tuple[int, list[int]]]:
        """The corrections as steps, oldest first: each a unit (row of ``units`` (G, k)) and the
        concepts of it set in one run (a policy step, a categorical value, or clicks on one group)."""
        steps: list[tuple[int, list[int]]] = []
        for i in self.values:
            unit = int(units[:, i].nonzero()[0, 0])
            if steps and steps[-1][0] == unit:
                steps[-1][1].append(i)
            else:
                steps.append((unit, [i]))
        return steps

    def first(self, n: int) -> Corrections:
        """The ``n`` concepts set first."""
        return Corrections(dict(list(self.values.items())[:n]))

    def units_done(self, units: Tensor) -> Tensor:
        """(G,) which of the units (G, k) have every concept set."""
        mask = torch.zeros(units.shape[1], dtype=torch.bool)
        mask[list(self.values)] = True
        return ~(units & ~mask).any(1)


@dataclass(frozen=True)
class ConceptRow:
    index: int
    name: str
    probability: float  # the model's own prediction, before any correction
    true: float | None
    corrected: float | None  # the value a person set, or None


@dataclass(frozen=True)
class SampleView:
    """One sample as one model sees it under some corrections.

    Attributes:
        model: The model's name.
        sample: The sample's index in the test split.
        groups: Concept rows by group.
        classes: The class names.
        class_probs: Class probabilities under the corrections.
        original_probs: Class probabilities without corrections.
        predicted: The class predicted under the corrections.
        original_prediction: The class predicted without them.
        true_class: The sample's true class.
        rule: A Deep Concept Reasoner's rule for its prediction under the corrections (None for
            other models, or where no rule is true).
    """

    model: str
    sample: int
    groups: dict[str, list[ConceptRow]]
    classes: tuple[str, ...]
    class_probs: tuple[float, ...]  # after the corrections
    original_probs: tuple[float, ...]  # before any correction
    predicted: int
    original_prediction: int
    true_class: int
    rule: str | None = None

    @cached_property
    def concept_probs(self) -> dict[int, float]:
        """The model's own probability of each concept, by concept index."""
        return {row.index: row.probability for rows in self.groups.values() for row in rows}

    def to_dict(self) -> dict:
        return {
            "model": self.model, "sample": self.sample, "classes": list(self.classes),
            "class_probs": list(self.class_probs), "original_probs": list(self.original_probs),
            "predicted": self.predicted, "predicted_name": self.classes[self.predicted],
            "original_prediction": self.original_prediction, "true_class": self.true_class, "rule": self.rule,
            "concepts": {g: [row.__dict__ for row in rows] for g, rows in self.groups.items()},
        }


class Explorer:
    """Loaded models and their test data; answers questions about one sample at a time.

    Models whose checkpoints record the same dataset settings and seed share one test split, so
    they can be compared side by side with the same corrections. ``data_root`` replaces a CUB
    archive's recorded location; ``seed`` draws the random policy's order (sample ``i`` uses
    ``seed + i``, so its order is the same at every step and every visit).

    Args:
        models: The loaded checkpoints (``load_explorer_model``).
        data_root: Where a CUB archive is now, when results moved.
        seed: Draws the random policy's orders.

    Examples:
        >>> explorer = Explorer([load_explorer_model(path) for path in find_checkpoints("results/xor")])  # doctest: +SKIP
    """

    def __init__(self, models: list[ExplorerModel], data_root: str | Path | None = None, seed: int = 0):
        if not models:
            raise ValueError("the explorer needs at least one model")
        self.models = {m.name: m for m in models}
        self.seed = seed
        self._data: dict[str, RunData] = {}
        self._base: dict[str, tuple[Tensor, Tensor]] = {}  # name -> (concept probs (N, k), task logits (N, T))
        self._data_root = data_root
        self._answers: dict[tuple, object] = {}  # curves and counterfactuals: they depend on (model, sample, policy) only

    def _remembered(self, key: tuple, compute):
        """``compute()``, kept for the next click on the same sample (corrections do not change it)."""
        if key not in self._answers:
            if len(self._answers) >= ANSWERS_KEPT:
                self._answers.clear()
            self._answers[key] = compute()
        return self._answers[key]

    # --- loading -----------------------------------------------------------------------------
    def model(self, name: str) -> ExplorerModel:
        if name not in self.models:
            raise KeyError(f"no model named {name!r}; choose one of {', '.join(self.models)}")
        return self.models[name]

    def data(self, name: str) -> RunData:
        model = self.model(name)
        if model.data_key not in self._data:
            self._data[model.data_key] = load_explorer_data(model, self._data_root)
        return self._data[model.data_key]

    def prepare(self, name: str) -> None:
        """Load the model's data and predict every test sample once (checks the bank too)."""
        if name in self._base:
            return
        model, data = self.model(name), self.data(name)
        if model.bank is not None:
            check_bank(model, data.test.features)
        log.info("predicting the %d test samples of %s with %s", len(data.test), data.name, name)
        output = decode_all(model.model, encode_all(model.model, data.test.inputs))
        self._base[name] = (output.concept_probs.cpu(), output.task_logits.cpu())

    def comparable(self, name: str) -> list[str]:
        """Other models tested on the same samples with the same concepts."""
        model = self.model(name)
        return [n for n, m in self.models.items()
                if n != name and m.data_key == model.data_key and m.info.to_dict() == model.info.to_dict()]

    def threshold(self, name: str) -> float:
        return float(self.model(name).metadata.get("evaluation", {}).get("binary_threshold", 0.0))

    def n_samples(self, name: str) -> int:
        return len(self.data(name).test)

    def _check_sample(self, name: str, sample: int) -> None:
        n = self.n_samples(name)
        if not 0 <= sample < n:
            raise ValueError(f"sample {sample} does not exist: the test split has samples 0 to {n - 1}")

    # --- one sample --------------------------------------------------------------------------
    def output(self, name: str, sample: int, corrections: Corrections) -> ConceptOutput:
        """The model's output for one sample with ``corrections`` applied by the model itself."""
        return self._decode(name, self.code(name, sample), corrections)

    def _decode(self, name: str, code: Tensor, corrections: Corrections) -> ConceptOutput:
        model = self.model(name).model
        with evaluating(model), torch.no_grad():
            return model.decode(code, corrections.intervention(model.n_concepts, code.device))

    def code(self, name: str, sample: int) -> Tensor:
        """``model.encode`` of the one sample, so its numbers equal ``model(x[sample:sample + 1], ...)`` bit for bit."""
        self.prepare(name)
        self._check_sample(name, sample)
        model, test = self.model(name).model, self.data(name).test
        x = test[sample][0].unsqueeze(0)
        with evaluating(model), torch.no_grad():
            return model.encode(x.to(next(model.parameters()).device))

    def view(self, name: str, sample: int, corrections: Corrections) -> SampleView:
        """Predicted and true concepts by group, and the task prediction before and after ``corrections``."""
        code = self.code(name, sample)
        output = self._decode(name, code, corrections)
        logits = output.task_logits
        model, data = self.model(name), self.data(name)
        p = output.concept_probs[0].tolist()
        c = data.test.c[sample].tolist()
        groups = {
            group: [ConceptRow(i, model.info.concept_names[i], p[i], c[i], corrections.values.get(i)) for i in members]
            for group, members in model.info.concept_groups.items()
        }
        threshold = self.threshold(name)
        base = self._decode(name, code, Corrections({})).task_logits if corrections.values else logits
        rule = None
        if isinstance(model.model, DeepConceptReasoner):
            with evaluating(model.model), torch.no_grad():
                (rule,) = model.model.code_rules(code, model.info,
                                                 intervention=corrections.intervention(model.model.n_concepts, code.device))
        return SampleView(
            name, sample, groups, model.info.task_names,
            tuple(class_log_probs(logits)[0].exp().tolist()),
            tuple(class_log_probs(base)[0].exp().tolist()),
            int(predicted_class(logits, threshold)[0]), int(predicted_class(base, threshold)[0]),
            int(data.test.y[sample]), rule,
        )

    def history(self, name: str, sample: int, corrections: Corrections) -> list[dict]:
        """The corrections step by step (``Corrections.steps``), oldest first, and after each the
        probability of the true class and the predicted class; step 0 is the model uncorrected.

        Args:
            name: The model.
            sample: The test sample.
            corrections: The corrections made, in the order they were made.

        Returns:
            One dict per step: ``step``, ``unit`` (group name; None at step 0), ``set`` ((concept,
            value) pairs), ``true_probability``, ``predicted`` (class name).
        """
        code, info = self.code(name, sample), self.model(name).info
        group_names, units = self.units(name)
        true_class, threshold = int(self.data(name).test.y[sample]), self.threshold(name)
        steps, done, history = corrections.steps(units), 0, []
        for n in range(len(steps) + 1):
            if n:
                done += len(steps[n - 1][1])
            logits = self._decode(name, code, corrections.first(done)).task_logits
            unit, members = steps[n - 1] if n else (None, [])
            history.append({"step": n, "unit": None if unit is None else group_names[unit],
                            "set": [(info.concept_names[i], corrections.values[i]) for i in members],
                            "true_probability": float(class_log_probs(logits)[0, true_class].exp()),
                            "predicted": info.task_names[int(predicted_class(logits, threshold)[0])]})
        return history

    def units(self, name: str) -> tuple[tuple[str, ...], Tensor]:
        """The intervention units: concept groups (names and (G, k) membership)."""
        info = self.model(name).info
        return info.group_names, info.group_matrix()

    def next_step(self, name: str, sample: int, corrections: Corrections, *, policy: str) -> tuple[str, Corrections]:
        """The unit ``policy`` corrects next (to the true values) and the corrections after it."""
        return self._next_step(name, sample, self.code(name, sample), corrections, policy)

    def _next_step(self, name: str, sample: int, code: Tensor, corrections: Corrections, policy: str) -> tuple[str, Corrections]:
        names, units = self.units(name)
        done = corrections.units_done(units)[None]
        if done.all():
            raise ValueError("every concept group of this sample is corrected already")
        model, data = self.model(name).model, self.data(name)
        c, y = data.test.c[sample : sample + 1], data.test.y[sample : sample + 1]
        unit = int(next_units(model, code, units, done=done, intervention=corrections.intervention(model.n_concepts, code.device),
                              policy=self.policy(name, policy),
                              c=c.to(code.device), y=y.to(code.device), seed=self.seed + sample)[0])
        members = units[unit].nonzero().flatten().tolist()
        values = {i: v for i, v in corrections.values.items() if i not in members}
        values.update({i: float(c[0, i]) for i in members})
        return names[unit], Corrections(values)

    def policies(self, name: str) -> dict[str, Policy]:
        """The named policies that apply to the model and its data (``Policy.unmet_needs``), in registry order."""
        loaded = self.model(name)
        return {key: rule for key, rule in POLICIES.items() if not rule.unmet_needs(loaded.info, loaded.model)}

    def policy(self, name: str, policy: str) -> Policy:
        """``policy`` ready for the model (fitted once on its training and validation splits if it learns from data).

        Raises:
            ValueError: An unknown policy, or one that does not apply to this model or its data.
        """
        loaded = self.model(name)
        check_applies(resolve_policy(policy), loaded.info, loaded.model)
        data = self.data(name)
        return self._remembered(("policy", name, policy), lambda: fit_policy(
            policy, self.model(name).model, train=data.train, val=data.val, groups=True, seed=self.seed))

    def curve(self, name: str, sample: int, policy: str) -> list[dict]:
        """The sample's intervention curve: after correcting 0, 1, ..., G groups in ``policy``'s order
        (true values), the probability of the true class and the predicted class."""
        resolve_policy(policy)
        self._check_sample(name, sample)
        return self._remembered(("curve", name, sample, policy), lambda: self._curve(name, sample, policy))

    def _curve(self, name: str, sample: int, policy: str) -> list[dict]:
        code, corrections = self.code(name, sample), Corrections({})  # encoded once for every step
        true_class, n_units = int(self.data(name).test.y[sample]), len(self.units(name)[0])
        points, unit = [], None
        for n in range(n_units + 1):
            logits = self._decode(name, code, corrections).task_logits
            predicted = int(predicted_class(logits, self.threshold(name))[0])
            points.append({"n": n, "unit": unit, "true_probability": float(class_log_probs(logits)[0, true_class].exp()),
                           "predicted": predicted, "correct": predicted == true_class})
            if n < n_units:
                unit, corrections = self._next_step(name, sample, code, corrections, policy)
        return points

    # --- many samples ------------------------------------------------------------------------
    def samples(self, name: str, which: str = "all", class_name: str | None = None) -> list[int]:
        """Test samples matching a filter: ``all``, ``misclassified``, ``wrong-concepts`` (a concept
        predicted on the wrong side of 0.5), and optionally of one true class."""
        if which not in FILTERS:
            raise ValueError(f"unknown filter {which!r}; choose one of {', '.join(FILTERS)}")
        self.prepare(name)
        data, (probs, logits) = self.data(name), self._base[name]
        keep = torch.ones(len(data.test), dtype=torch.bool)
        if which == "misclassified":
            keep &= predicted_class(logits, self.threshold(name)).cpu() != data.test.y
        elif which == "wrong-concepts":
            keep &= ((probs.cpu() > 0.5) != (data.test.c > 0.5)).any(1)
        if class_name:
            classes = self.model(name).info.task_names
            if class_name not in classes:
                raise ValueError(f"unknown class {class_name!r}")
            keep &= data.test.y == classes.index(class_name)
        return keep.nonzero().flatten().tolist()

    def ordered(self, name: str, samples: list[int], order: str = "index") -> list[int]:
        """``samples`` sorted: by index, by confidence (least confident first), by the loss of the true
        class (highest first) or by the number of concepts predicted on the wrong side of 0.5 (most first)."""
        if order not in ORDERS:
            raise ValueError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}")
        if order == "index" or not samples:
            return list(samples)
        self.prepare(name)
        data, (probs, logits) = self.data(name), self._base[name]
        log_probs = class_log_probs(logits)
        rows = torch.tensor(samples)
        if order == "confidence":
            key = log_probs[rows].max(1).values
        elif order == "loss":
            key = log_probs[rows, data.test.y[rows]]
        else:
            key = -((probs[rows] > 0.5) != (data.test.c[rows] > 0.5)).sum(1).float()
        return rows[torch.argsort(key, stable=True)].tolist()

    def bulk_accuracy(self, name: str, concepts: Sequence[int], class_name: str | None = None) -> dict:
        """Task accuracy over the test split (or one true class) before and after correcting
        ``concepts`` to every sample's own true values.

        Args:
            name: The model.
            concepts: Concept indices to correct (e.g. the ones set by hand on the sample shown).
            class_name: Restrict to the samples of this true class.

        Returns:
            ``samples``, ``before`` and ``after`` accuracy, and ``changed`` (predictions that moved).
        """
        rows = torch.tensor(self.samples(name, "all", class_name), dtype=torch.long)
        data = self.data(name)
        if not len(rows):
            raise ValueError("no test sample in this scope")
        model = self.model(name).model
        codes = encode_all(model, data.test.subset(rows).inputs)
        mask = torch.zeros(len(rows), model.n_concepts, dtype=torch.bool)
        mask[:, list(concepts)] = True
        values = data.test.c[rows].nan_to_num(0.0)
        mask &= ~data.test.c[rows].isnan()
        threshold = self.threshold(name)
        before = predicted_class(self._base[name][1][rows], threshold)
        after = predicted_class(decode_all(model, codes, Intervention(mask, values)).task_logits.cpu(), threshold)
        truth = data.test.y[rows]
        return {"samples": len(rows), "before": float((before == truth).float().mean()),
                "after": float((after == truth).float().mean()), "changed": int((before != after).sum())}

    def bulk_policy_accuracy(self, name: str, policy: str, steps: int, *, class_name: str | None = None) -> dict:
        """Task accuracy over the test split (or one true class) before and after ``policy``
        corrects its first ``steps`` concept groups of every sample (true values): the point at
        ``steps`` of ``intervention_curve`` on those samples (one order per sample, seeded by the
        explorer's seed), so it equals what ``conceptlab bench --curves`` reports for the split.

        Args:
            name: The model.
            policy: A policy that applies to the model (``policies``).
            steps: Concept groups each sample gets corrected, 1 to the number of groups.
            class_name: Restrict to the samples of this true class.

        Returns:
            ``samples``, ``before`` and ``after`` accuracy, and ``steps``.
        """
        n_units = len(self.units(name)[0])
        if not 1 <= steps <= n_units:
            raise ValueError(f"steps must lie in [1, {n_units}] (this model's concept groups); got {steps}")
        rows = torch.tensor(self.samples(name, "all", class_name), dtype=torch.long)
        if not len(rows):
            raise ValueError("no test sample in this scope")
        rule, model, data = self.policy(name, policy), self.model(name).model, self.data(name)
        curve = self._remembered(("bulk", name, policy, class_name), lambda: intervention_curve(
            model, data.test.subset(rows), rule, repeats=1, seed=self.seed, binary_threshold=self.threshold(name)))
        return {"samples": len(rows), "before": curve.accuracy_mean[0], "after": curve.accuracy_mean[steps], "steps": steps}

    def concept_examples(self, name: str, concept: int, k: int = 8) -> dict[str, list[int]]:
        """Test samples that show one concept, by the model's own probability of it: ``clearest``
        (labelled present, highest probability first), ``missed`` (labelled present, lowest first)
        and ``false_alarms`` (labelled absent, highest first); at most ``k`` of each.

        Args:
            name: The model.
            concept: The concept's index.
            k: Samples per list.
        """
        info = self.model(name).info
        if not 0 <= concept < info.n_concepts:
            raise ValueError(f"concept {concept} does not exist: {name} has concepts 0 to {info.n_concepts - 1}")
        p, truth = self.concept_probs(name)[:, concept], self.data(name).test.c[:, concept]
        present, absent = (truth > 0.5).nonzero().flatten(), (truth <= 0.5).nonzero().flatten()

        def first_k(rows: Tensor, highest: bool) -> list[int]:
            return rows[torch.argsort(p[rows], descending=highest, stable=True)][:k].tolist()

        return {"clearest": first_k(present, True), "missed": first_k(present, False), "false_alarms": first_k(absent, True)}

    def concept_probs(self, name: str) -> Tensor:
        """(N, k) the model's own concept probabilities for every test sample, uncorrected."""
        self.prepare(name)
        return self._base[name][0]

    def mistakes(self, name: str) -> set[int]:
        """The test samples the model misclassifies."""
        return set(self.samples(name, "misclassified"))

    def accuracy(self, name: str) -> float:
        """Task accuracy on the test split: the share of samples the misclassified filter leaves out."""
        return 1.0 - len(self.samples(name, "misclassified")) / self.n_samples(name)

    # --- counterfactuals ---------------------------------------------------------------------
    def counterfactual(self, name: str, sample: int, top: int = 5) -> dict | None:
        """For a model with a concept bank on its inputs: the CCE explanation of how to reach the
        true class (concepts to add and to remove); ``None`` without a bank."""
        model = self.model(name)
        if model.bank is None:
            return None
        self.prepare(name)
        self._check_sample(name, sample)
        return self._remembered(("cce", name, sample, top), lambda: self._counterfactual(model, sample, top))

    def _counterfactual(self, model: ExplorerModel, sample: int, top: int) -> dict:
        from ..concepts.cce import CCE

        data = self.data(model.name)
        target = int(data.test.y[sample])
        result = CCE(model.bank, model.model).explain(data.test.x[sample : sample + 1], target)
        return {"target": model.info.task_names[target], "success": bool(result.success[0]),
                "target_probability": float(result.target_probability[0]), **result.explanation(0, top)}
