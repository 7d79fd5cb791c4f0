"""TCAV: how often a class's prediction increases along a concept's activation vector (Kim et al., 2018).

Gradients of the class logit (or of the model's training loss, as tensorflow/tcav does) with
respect to a layer are computed once per (layer, class) in mini-batches, then scored against
every CAV of a ``CAVBank`` with one matrix product.

Heads of every shape are explained through the class asked for: a multiclass head through that
class's logit (loss: cross-entropy); a single-logit binary head (every binary conceptlab model)
through +logit for class 1 and -logit for class 0 (loss: binary cross-entropy with that label).
Other targets (``task``): a multi-label head through the label's own logit (loss: binary
cross-entropy with the label present), a regression head through the output itself (there is no
loss without a target value, so only ``logit`` applies).

With ``integrated_steps``, the gradient at each input is replaced by its average along the straight
path from a baseline activation to the input's activation at the layer (integrated gradients in
activation space, the conceptual sensitivity of Schrouff et al., 2021): saturated units whose local
gradient is 0 still count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..info import TaskKind
from ..models import heads
from ..plotting import pyplot, save_figure
from ..runtime import evaluating
from .activations import Reduce, capture_activations, prepare_batch, resolve_layer
from .cav import CAVBank, Solver

Objective = Literal["logit", "loss"]
# TCAV's CAV estimator, chosen on development scenarios of benchmarks/tcav_causal.py (the best
# balance of power and false positives against measured causal effects) and reported on held-out ones
TCAV_ESTIMATOR: Solver = "logistic"


def resolve_class(target: int | str, n_classes: int, classes: Sequence[str] | None = None) -> int:
    """Class index of ``target`` (an index or a class name), checked against the head's classes
    (labels or outputs of a multi-label or regression head)."""
    names = list(classes or [])
    listing = ", ".join(f"{i}={name}" for i, name in enumerate(names)) if names else f"0..{n_classes - 1}"
    if isinstance(target, str):
        if target in names:
            index = names.index(target)
        elif target.lstrip("-").isdigit():
            index = int(target)
        else:
            raise ValueError(f"unknown target class {target!r}; the model's classes are {listing}")
    else:
        index = int(target)
    if not 0 <= index < n_classes:
        raise ValueError(f"target class {index} is out of range: the model's head distinguishes {n_classes} classes ({listing})")
    if names and len(names) != n_classes:
        raise ValueError(f"{len(names)} class names were given but the model's head distinguishes {n_classes} classes")
    return index


def target_count(logits: Tensor, task: TaskKind) -> int:
    """What a target indexes in (B, T) task logits: classes (a single logit is 2) or, for a
    multi-label or regression head, its T labels or outputs."""
    return heads.n_classes(logits) if task == "multiclass" else logits.shape[1]


def check_objective(objective: Objective, task: TaskKind) -> None:
    """Refuse an unknown objective or task, and the loss of a regression head (it has no target value)."""
    if objective not in ("logit", "loss"):
        raise ValueError(f"objective must be 'logit' or 'loss'; got {objective!r}")
    if task not in ("multiclass", "multilabel", "regression"):
        raise ValueError(f"task must be 'multiclass', 'multilabel' or 'regression'; got {task!r}")
    if task == "regression" and objective == "loss":
        raise ValueError("a regression head has no loss without a target value: use objective='logit' (the output itself)")


def input_target(model: nn.Module, inputs: Tensor, target: int | str, task: TaskKind,
                 classes: Sequence[str] | None = None) -> int:
    """The index of ``target`` among the head's classes (labels, outputs), found by running the model
    on the first input; refuses empty inputs and inputs the model cannot run on."""
    if inputs.shape[0] == 0:
        raise ValueError("inputs is empty: give examples of the target class to explain")
    try:
        with torch.no_grad(), evaluating(model):
            probe = heads.output_logits(model(prepare_batch(inputs[:1], next(model.parameters()).device)))
    except RuntimeError as err:
        raise ValueError(f"the model cannot run on inputs of shape {tuple(inputs.shape[1:])} "
                         f"({str(err).splitlines()[0][:160]})") from None
    return resolve_class(target, target_count(probe, task), classes)


def objective_value(logits: Tensor, target: int, objective: Objective, task: TaskKind = "multiclass") -> Tensor:
    """Summed class logit (single logit: signed by the class) or summed training loss for ``target``
    (``models.heads.gradient_safe_loss``: the model's training loss in a form whose gradient never
    rounds to 0 for confident inputs). Multi-label: the label's logit, or its binary cross-entropy
    with the label present; regression: the output."""
    if task != "multiclass":
        column = logits[:, target].double()
        return (column if objective == "logit" else torch.nn.functional.softplus(-column)).sum()
    if objective == "logit":
        return heads.true_class_logit(logits, torch.full((len(logits),), target, device=logits.device)).sum()
    return heads.gradient_safe_loss(logits, target).sum()


def layer_gradients(
    model: nn.Module,
    layers: str | list[str],
    inputs: Tensor,
    *,
    target: int,
    objective: Objective = "logit",
    batch_size: int = 32,
    directions: Mapping[str, Tensor] | None = None,
    task: TaskKind = "multiclass",
    integrated_steps: int | None = None,
    baselines: Mapping[str, Tensor] | None = None,
    reduce: Reduce = "flatten",
) -> Tensor | dict[str, Tensor]:
    """(N, D) gradients of class ``target``'s logit (or of the training loss for ``target``) w.r.t. a layer.

    A single-logit binary head is differentiated through +logit for class 1 and -logit for
    class 0; its loss is binary cross-entropy (multiclass heads: cross-entropy). ``target``
    must be a class of the head (``task``: a label of a multi-label head, an output of a
    regression head). With a list of layers, all are differentiated in the same
    forward/backward passes and a dict layer -> gradients is returned. With ``directions``
    (layer -> (P, D) unit CAVs), each batch's gradients are projected at once and the (N, P)
    directional derivatives are returned instead, so memory is bounded by ``batch_size`` and
    the number of CAVs, not by the number of inputs.

    Args:
        model: Any torch model.
        layers: A layer's dotted name, or several.
        inputs: (N, ...) inputs.
        target: The class (label, output) whose logit (or loss) is differentiated.
        objective: ``logit`` or ``loss``.
        batch_size: Inputs per forward/backward pass.
        directions: Layer -> (P, D) unit CAVs: return directional derivatives instead of gradients.
        task: ``multiclass`` (default), ``multilabel`` or ``regression``: what ``target`` indexes.
        integrated_steps: Average the gradient over this many points of the straight path from the
            baseline activation to each input's activation (midpoint rule); None: the plain gradient.
        baselines: Layer -> the baseline: one activation of the layer, in its shape or flattened (e.g.
            the mean activation of random examples); default zeros. Only with ``integrated_steps``.
        reduce: ``flatten`` (one derivative per unit and position) or ``mean``: for CAVs fitted on
            activations averaged over space (``capture_activations(..., reduce="mean")``), the derivative
            along a direction added at every position, i.e. the gradient summed over positions.

    Returns:
        (N, D) gradients, or per layer name when ``layers`` is a list.

    Examples:
        >>> from conceptlab.concepts import layer_gradients
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> layer_gradients(model, "1", torch.randn(5, 4), target=2).shape
        torch.Size([5, 8])
        >>> layer_gradients(model, "1", torch.randn(5, 4), target=2, integrated_steps=16).shape
        torch.Size([5, 8])
    """
    check_objective(objective, task)
    if reduce not in ("flatten", "mean"):
        raise ValueError(f"reduce must be 'flatten' or 'mean'; got {reduce!r}")
    if integrated_steps is not None and integrated_steps < 1:
        raise ValueError(f"integrated_steps must be a positive number of path points (or None); got {integrated_steps}")
    if baselines is not None and integrated_steps is None:
        raise ValueError("baselines are the start of the integration path: give integrated_steps as well")
    names = [layers] if isinstance(layers, str) else list(layers)
    modules = [resolve_layer(model, name) for name in names]
    device = next(model.parameters()).device
    parts: dict[str, list[Tensor]] = {name: [] for name in names}
    with evaluating(model):
        for start in range(0, inputs.shape[0], batch_size):
            x = prepare_batch(inputs[start : start + batch_size], device)
            if integrated_steps is None:
                grads = _plain_gradients(model, names, modules, x, target, objective, task, check=start == 0)
            else:
                grads = {name: _integrated_gradient(model, module, x, target, objective, task, integrated_steps,
                                                    None if baselines is None else baselines.get(name), check=start == 0)
                         for name, module in zip(names, modules)}
            for name in names:
                grad = grads[name].detach()
                grad = grad.flatten(2).sum(2) if reduce == "mean" and grad.ndim > 2 else grad.flatten(1)
                if directions is not None:
                    grad = grad.float() @ directions[name].to(grad.device).T
                parts[name].append(grad.cpu())
    result = {name: torch.cat(chunks) for name, chunks in parts.items()}
    return result[names[0]] if isinstance(layers, str) else result


def _differentiate(model: nn.Module, x: Tensor, wrt: Callable[[], list[Tensor]], target: int, objective: Objective,
                   task: TaskKind, check: bool) -> tuple[Tensor, ...]:
    """Gradients of the objective for one forward pass w.r.t. the tensors ``wrt()`` names once it has run."""
    logits = heads.output_logits(model(x))
    if check:
        resolve_class(target, target_count(logits, task))
    return torch.autograd.grad(objective_value(logits, target, objective, task), wrt())


def _plain_gradients(model: nn.Module, names: list[str], modules: list[nn.Module], x: Tensor, target: int,
                     objective: Objective, task: TaskKind, *, check: bool) -> dict[str, Tensor]:
    captured: dict[str, Tensor] = {}
    hooks = [module.register_forward_hook(lambda m, a, output, name=name: captured.__setitem__(name, output))
             for name, module in zip(names, modules)]
    try:
        grads = _differentiate(model, x, lambda: [captured[n] for n in names], target, objective, task, check)
    finally:
        for hook in hooks:
            hook.remove()
    return dict(zip(names, grads))


def _integrated_gradient(model: nn.Module, module: nn.Module, x: Tensor, target: int, objective: Objective,
                         task: TaskKind, steps: int, baseline: Tensor | None, *, check: bool) -> Tensor:
    """The layer gradient averaged over ``steps`` midpoints of the path baseline -> activation."""
    captured: dict[str, Tensor] = {}
    hook = module.register_forward_hook(lambda m, a, output: captured.__setitem__("a", output.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        hook.remove()
    activation = captured["a"]
    if baseline is not None and baseline.numel() != activation[0].numel():
        raise ValueError(f"the baseline holds {baseline.numel()} values but one activation of the layer holds "
                         f"{activation[0].numel()}: give one activation (e.g. the mean of random examples' activations)")
    start = torch.zeros_like(activation) if baseline is None else baseline.to(activation).reshape(activation.shape[1:]).expand_as(activation)
    total = torch.zeros_like(activation)
    for step in range(steps):
        point = (start + (step + 0.5) / steps * (activation - start)).requires_grad_(True)
        hook = module.register_forward_hook(lambda m, a, output, point=point: point)
        try:
            total += _differentiate(model, x, lambda point=point: [point], target, objective, task, check and step == 0)[0]
        finally:
            hook.remove()
    return total / steps


def tcav_scores(gradients: Tensor, bank: CAVBank, objective: Objective = "logit") -> tuple[Tensor, Tensor]:
    """TCAV score and magnitude per CAV of ``bank``.

    Score: the fraction of inputs whose directional derivative S = grad . v is positive (negative
    for the loss objective, whose gradient points the other way). Magnitude: the positive part of
    S's mass over its total absolute mass, in [0, 1].

    Args:
        gradients: (N, D) gradients, or (N, P) directional derivatives, from ``layer_gradients``.
        bank: The fitted CAVs.
        objective: The objective the gradients came from (``loss`` flips the sign).

    Returns:
        (scores, magnitudes), one per CAV.

    Examples:
        >>> from conceptlab.concepts import concept_bank, tcav_scores
        >>> bank = concept_bank({"bright": (torch.randn(40, 3) + 2.0, torch.randn(40, 3))})
        >>> scores, magnitudes = tcav_scores(torch.randn(10, 3), bank)
        >>> scores.shape
        torch.Size([1])
    """
    return sensitivity_scores(gradients.float() @ bank.directions_.T, objective)


def sensitivity_scores(sensitivity: Tensor, objective: Objective = "logit") -> tuple[Tensor, Tensor]:
    """TCAV score and magnitude per CAV from directional derivatives (N, P), as ``tcav_scores``."""
    if objective == "loss":
        sensitivity = -sensitivity
    scores = (sensitivity > 0).float().mean(0)
    magnitude = sensitivity.clamp_min(0).sum(0) / sensitivity.abs().sum(0).clamp_min(1e-12)
    return scores, magnitude


def significance(
    concept_scores: Tensor | np.ndarray,
    random_scores: Tensor | np.ndarray | None = None,
    *,
    n_tests: int = 1,
    alpha: float = 0.05,
) -> dict[str, float | bool | None]:
    """Both published significance tests of TCAV scores over R random sets.

    ``p_paper``: two-sided one-sample t-test of the concept's R scores against 0.5, Bonferroni
    corrected for ``n_tests`` tests (Kim et al., 2018). ``p_reference``: two-sample t-test of the
    concept's scores against random-vs-random scores (tensorflow/tcav). ``significant`` uses the
    paper's test; ``significant_reference`` the reference code's.

    Args:
        concept_scores: The concept's TCAV scores, one per random set.
        random_scores: Random-vs-random scores, for the reference code's test.
        n_tests: Tests run together (Bonferroni).
        alpha: The significance level.

    Returns:
        The p-values of both tests, whether each passes at ``alpha`` / ``n_tests``, and the means.

    Examples:
        >>> from conceptlab.concepts import significance
        >>> result = significance(torch.tensor([0.9, 0.95, 0.92, 0.9]), torch.tensor([0.5, 0.45, 0.55, 0.5]))
        >>> bool(result["significant"])
        True
    """
    _check_level(alpha)
    scores = np.asarray(concept_scores, dtype=float)
    if scores.size < 2:
        raise ValueError("significance needs the scores of at least 2 random sets")
    p_paper = min(1.0, _t_test_p(scores, 0.5) * n_tests)
    result: dict[str, float | bool | None] = {"p_paper": p_paper, "significant": p_paper <= alpha,
                                              "p_reference": None, "significant_reference": None}
    if random_scores is not None:
        p_ref = _t_test_p(scores, np.asarray(random_scores, dtype=float))
        result["p_reference"] = p_ref
        result["significant_reference"] = bool(p_ref <= alpha)
    return result


def _check_level(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"the significance level alpha must lie in (0, 1), e.g. 0.05; got {alpha}")


def _t_test_p(scores: np.ndarray, other: float | np.ndarray) -> float:
    """Two-sided p-value of a one-sample t-test against a number, or a two-sample one against
    other scores; without any spread the test is undefined and the p-value is 0 (means differ) or 1."""
    import warnings

    from scipy import stats

    values = np.atleast_1d(other)
    if np.all(scores == scores[0]) and np.all(values == values[0]):
        return 0.0 if scores[0] != values[0] else 1.0
    with warnings.catch_warnings():  # near-constant scores: scipy warns of precision loss; p stays usable
        warnings.simplefilter("ignore", RuntimeWarning)
        if np.ndim(other) == 0:
            return float(stats.ttest_1samp(scores, float(other)).pvalue)
        return float(stats.ttest_ind(scores, values).pvalue)


def tcav_record(concept: str, layer: str, index: int, classes: Sequence[str] | None, scores: Tensor, magnitude: Tensor,
                test: dict, accuracy: Tensor, **extra) -> dict:
    """One TCAV result row (the fields every TCAV variant reports, then ``extra``).

    Args:
        concept: The concept's name.
        layer: The layer its CAVs live in.
        index: The class (or output) explained.
        classes: Class names, if known.
        scores: (runs,) TCAV scores of the concept's CAVs.
        magnitude: (runs,) their signed magnitudes.
        test: ``significance``'s answer for these scores.
        accuracy: (runs,) the CAVs' held-out accuracies.
        extra: Further fields of a variant (relative TCAV's ``against``).
    """
    return {"concept": concept, "layer": layer, "class": index, "class_name": classes[index] if classes else str(index),
            "score_mean": float(scores.mean()), "score_std": float(scores.std()), "magnitude": float(magnitude.mean()),
            **test, "cav_accuracy": float(accuracy.mean()), **extra}


def run_tcav(
    model: nn.Module,
    layers: list[str],
    concepts: dict[str, Tensor],
    *,
    randoms: dict[str, Tensor],
    inputs: Tensor,
    target: int | str,
    objective: Objective = "logit",
    solver: Solver = TCAV_ESTIMATOR,
    batch_size: int = 64,
    alpha: float = 0.05,
    cache_dir: str | None = None,
    classes: Sequence[str] | None = None,
    task: TaskKind = "multiclass",
    integrated_steps: int | None = None,
) -> list[dict]:
    """TCAV of every concept against every random set, on every layer, with significance.

    ``target`` is a class index or, with ``classes`` (one name per class), a class name; it is
    checked against the model's head before any work. ``solver`` is the CAV estimator (``CAVBank``'s
    ``solver``; default ``TCAV_ESTIMATOR``, logistic regression: the best of four against measured
    causal effects in ``benchmarks/tcav_causal.py``). Random-vs-random CAVs (each random set
    against the next) give the reference test's null scores.

    Args:
        model: Any torch model.
        layers: Dotted names of the layers to test.
        concepts: Concept name -> (n, ...) example inputs.
        randoms: Random set name -> (n, ...) example inputs (at least 2 sets).
        inputs: (N, ...) inputs of the class explained.
        target: The class: an index, or a name of ``classes``.
        objective: ``logit`` or ``loss``.
        solver: The CAV estimator (``CAVBank``'s ``solver``).
        batch_size: Inputs per forward/backward pass.
        alpha: The significance level.
        cache_dir: Keep activations and CAVs on disk.
        classes: One name per class (label, output).
        task: ``multiclass``, ``multilabel`` (``target`` is a label) or ``regression`` (an output).
        integrated_steps: Score integrated gradients along the activation path from the random
            examples' mean activation (``layer_gradients``) instead of plain gradients.

    Returns:
        One record per (concept, layer): score mean and std over the random sets, magnitude, the
        paper's and the reference code's p-values and flags, and the mean held-out CAV accuracy.

    Raises:
        ValueError: Fewer than 2 random sets, an unknown layer or class, or too few examples.

    Examples:
        >>> from conceptlab.concepts import run_tcav
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> randoms = {f"random{i}": torch.randn(30, 4) for i in range(3)}
        >>> records = run_tcav(model, ["1"], {"bright": torch.randn(30, 4) + 1}, randoms=randoms,
        ...                    inputs=torch.randn(20, 4), target=1)
        >>> sorted(records[0])[:4]
        ['cav_accuracy', 'class', 'class_name', 'concept']
    """
    if len(randoms) < 2:
        raise ValueError("TCAV needs at least 2 random sets for its significance tests")
    check_objective(objective, task)
    _check_level(alpha)  # before any work, not when the first test runs
    overlap = sorted(set(concepts) & set(randoms))
    if overlap:
        raise ValueError(f"concept and random set names must differ; both have {overlap}")
    if inputs.shape[0] == 0:
        raise ValueError("inputs is empty: give examples of the target class to explain")
    shape = tuple(inputs.shape[1:])
    odd = {name: tuple(x.shape[1:]) for name, x in {**concepts, **randoms}.items() if tuple(x.shape[1:]) != shape}
    if odd:
        name, other = next(iter(odd.items()))
        raise ValueError(f"example set {name!r} holds examples of shape {other}, the inputs {shape}: every concept and "
                         "random set must be examples of the kind the model takes")
    index = input_target(model, inputs, target, task, classes)
    sets = {**concepts, **randoms}
    names = list(sets)
    random_names = list(randoms)
    pairs = [(c, r) for c in concepts for r in random_names]
    pairs += [(r, random_names[(i + 1) % len(random_names)]) for i, r in enumerate(random_names)]
    sizes = [sets[n].shape[0] for n in names]
    activations = capture_activations(model, layers, torch.cat([sets[n] for n in names]), batch_size=batch_size, cache_dir=cache_dir)
    split = {layer: dict(zip(names, torch.split(activations.pop(layer), sizes))) for layer in layers}
    banks = {layer: CAVBank(solver, cache_dir=cache_dir).fit(split[layer], pairs) for layer in layers}
    baselines = None
    if integrated_steps is not None:
        baselines = {layer: torch.cat([split[layer][r] for r in random_names]).mean(0) for layer in layers}
    derivatives = layer_gradients(model, list(layers), inputs, target=index, objective=objective, batch_size=batch_size,
                                  directions={layer: bank.directions_ for layer, bank in banks.items()}, task=task,
                                  integrated_steps=integrated_steps, baselines=baselines)
    n_tests = len(concepts) * len(layers)
    records = []
    for layer in layers:
        bank = banks[layer]
        if not derivatives[layer].any():
            raise ValueError(f"the {objective} of class {index} does not depend on layer {layer!r} for these inputs "
                             "(every directional derivative is 0): pick a layer before the head, or another objective")
        scores, magnitude = sensitivity_scores(derivatives[layer], objective)
        null = scores[len(concepts) * len(random_names) :]
        for i, concept in enumerate(concepts):
            part = slice(i * len(random_names), (i + 1) * len(random_names))
            test = significance(scores[part], null, n_tests=n_tests, alpha=alpha)
            records.append(tcav_record(concept, layer, index, classes, scores[part], magnitude[part], test,
                                       bank.accuracy_[part]))
    return records


def write_tcav_csv(records: list[dict], path: str | Path) -> None:
    """The records as CSV, written atomically.

    Args:
        records: ``run_tcav``'s records.
        path: The CSV file to write.

    Examples:
        >>> import pathlib, tempfile
        >>> from conceptlab.concepts import write_tcav_csv
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "tcav.csv"
        >>> write_tcav_csv([{"concept": "stripes", "layer": "layer4", "score_mean": 0.8}], path)
        >>> path.read_text().splitlines()[0]
        'concept,layer,score_mean'
    """
    import csv
    import io

    from ..atomic import write_atomic

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows(records)
    write_atomic(path, out.getvalue())


def tcav_plot(records: list[dict], path: str | Path, title: str = "TCAV") -> None:
    """Bars of mean score per concept and layer with std error bars; non-significant bars hatched and pale.

    Args:
        records: ``run_tcav``'s records.
        path: The image file to write.
        title: The figure's title.

    Examples:
        >>> import pathlib, tempfile
        >>> from conceptlab.concepts import run_tcav, tcav_plot
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> randoms = {f"random{i}": torch.randn(30, 4) for i in range(3)}
        >>> records = run_tcav(model, ["1"], {"bright": torch.randn(30, 4) + 1}, randoms=randoms,
        ...                    inputs=torch.randn(20, 4), target=1)
        >>> tcav_plot(records, pathlib.Path(tempfile.mkdtemp()) / "tcav.png", title="class 1")
    """
    plt = pyplot()
    concepts = list(dict.fromkeys(r["concept"] for r in records))
    layers = list(dict.fromkeys(r["layer"] for r in records))
    width = 0.8 / len(layers)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(concepts) * len(layers) ** 0.5), 3.8))
    colours = plt.get_cmap("tab10")
    for j, layer in enumerate(layers):
        for i, concept in enumerate(concepts):
            r = next(x for x in records if x["concept"] == concept and x["layer"] == layer)
            ax.bar(i + j * width, r["score_mean"], width, yerr=r["score_std"], capsize=2, color=colours(j),
                   alpha=1.0 if r["significant"] else 0.35, hatch=None if r["significant"] else "//",
                   label=layer if i == 0 else None)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks([i + width * (len(layers) - 1) / 2 for i in range(len(concepts))], concepts, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("TCAV score")
    ax.set_title(f"{title} (hatched: not significant)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
