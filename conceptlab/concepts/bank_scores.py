"""TCAV for new inputs from a saved concept bank, without refitting any CAV.

A bank saved with the layer it was fitted on and the model's fingerprint
(``bank.save(path, layer="layer4", model=model_fingerprint(model))``, and ``reduce="mean"`` when its
CAVs live on activations averaged over space; discovered concepts are saved this way) is reloaded and scored against any inputs: per-input directional derivatives along every
CAV, and per-CAV TCAV scores. A model whose weights changed since the bank was fitted is refused
(its activations no longer match the CAVs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from ..info import TaskKind
from .activations import model_fingerprint
from .cav import CAVBank
from .tcav import Objective, check_objective, input_target, layer_gradients, sensitivity_scores


@dataclass(frozen=True)
class BankScores:
    """TCAV of new inputs along a saved bank's CAVs.

    Attributes:
        pairs: The bank's (positive, negative) pair of each CAV.
        layer: The layer the CAVs live on.
        target: The class (label, output) index explained.
        sensitivity: (N, P) directional derivative of each input along each CAV.
        scores: (P,) TCAV score: the share of inputs with a positive derivative (negative for ``loss``).
        magnitude: (P,) the positive share of the derivatives' absolute mass.
    """

    pairs: list[tuple[str, str]]
    layer: str
    target: int
    sensitivity: Tensor
    scores: Tensor
    magnitude: Tensor

    def records(self) -> list[dict]:
        """One dict per CAV: its pair, score and magnitude."""
        return [{"concept": p, "against": n, "layer": self.layer, "class": self.target, "score": float(s), "magnitude": float(m)}
                for (p, n), s, m in zip(self.pairs, self.scores, self.magnitude)]


def tcav_from_bank(
    model: nn.Module,
    bank: CAVBank | str | Path,
    inputs: Tensor,
    *,
    target: int | str,
    layer: str | None = None,
    objective: Objective = "logit",
    batch_size: int = 64,
    task: TaskKind = "multiclass",
    classes: Sequence[str] | None = None,
    integrated_steps: int | None = None,
) -> BankScores:
    """Score ``inputs`` along every CAV of a saved (or fitted) bank.

    Args:
        model: The model the bank was fitted on.
        bank: A fitted ``CAVBank`` or the path of a saved one.
        inputs: (N, ...) inputs to explain.
        target: The class (label, output): an index, or a name of ``classes``.
        layer: The layer of the CAVs; default: the ``layer`` the bank recorded when saved.
        objective: ``logit`` or ``loss``.
        batch_size: Inputs per forward/backward pass.
        task: ``multiclass``, ``multilabel`` or ``regression``.
        classes: One name per class.
        integrated_steps: Integrated gradients from a zero activation (``layer_gradients``).

    Returns:
        The per-input derivatives and per-CAV scores.

    Raises:
        ValueError: No layer known, a layer whose width differs from the CAVs', or a model whose
            fingerprint differs from the one the bank recorded.

    Examples:
        >>> import pathlib, tempfile
        >>> from conceptlab.concepts import CAVBank, capture_activations, tcav_from_bank
        >>> from conceptlab.concepts.activations import model_fingerprint
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> acts = capture_activations(model, ["1"], torch.randn(80, 4) + torch.tensor([2.0, 0, 0, 0]))["1"]
        >>> rand = capture_activations(model, ["1"], torch.randn(80, 4))["1"]
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "bank.pt"
        >>> _ = CAVBank().fit({"x0": acts, "random": rand}, [("x0", "random")]).save(
        ...     path, layer="1", model=model_fingerprint(model))
        >>> tcav_from_bank(model, path, torch.randn(10, 4), target=1).sensitivity.shape
        torch.Size([10, 1])
    """
    check_objective(objective, task)
    if not isinstance(bank, CAVBank):
        bank = CAVBank.load(bank)
    if not hasattr(bank, "directions_"):
        raise ValueError("the bank is not fitted: fit it (or load a saved one) first")
    layer = layer or bank.saved_metadata.get("layer")
    if layer is None:
        raise ValueError("the bank did not record its layer: pass layer=..., or save banks with bank.save(path, layer=...)")
    recorded = bank.saved_metadata.get("model")
    if recorded is not None and recorded != model_fingerprint(model):
        raise ValueError("this model differs from the one the bank was fitted on (its fingerprint changed: other weights "
                         "or layers); refit the bank on this model")
    index = input_target(model, inputs, target, task, classes)
    reduce = bank.saved_metadata.get("reduce", "flatten")
    gradients = layer_gradients(model, layer, inputs[:1], target=index, objective=objective, task=task, reduce=reduce)
    if gradients.shape[1] != bank.directions_.shape[1]:
        raise ValueError(f"layer {layer!r} has {gradients.shape[1]} units but the bank's CAVs have "
                         f"{bank.directions_.shape[1]}: the bank was fitted on another layer or model")
    sensitivity = layer_gradients(model, layer, inputs, target=index, objective=objective, batch_size=batch_size,
                                  directions={layer: bank.directions_}, task=task, integrated_steps=integrated_steps,
                                  reduce=reduce)
    scores, magnitude = sensitivity_scores(sensitivity, objective)
    return BankScores(list(bank.pairs_), layer, index, sensitivity, scores, magnitude)
