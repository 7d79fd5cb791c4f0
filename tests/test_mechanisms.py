"""Every method's defining part runs on every bundled config, not only its output.

An earlier release reported IntCEM numbers on XOR, Trig and Dot for models whose trajectory
objective never ran (one trajectory length per batch, the batch minimum, was always 0). These
tests would have caught it: for every model of every bundled config, each term of its training
objective is non-zero and reaches the parameters it is meant to train; RandInt corrects some
concepts; IntCEM runs trajectories in most steps, and its policy network learns.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch

from conceptlab.bench import load_spec
from conceptlab.bench.run import fit_label_free_run
from conceptlab.bench.spec import bundled_configs
from conceptlab.bench.zoo import LABEL_FREE, MODEL_KEYS
from conceptlab.concepts.bank import bank_from_labels
from conceptlab.datasets import ConceptDataset, load_dataset
from conceptlab.datasets.fashion import FashionMNISTSettings, class_concepts
from conceptlab.datasets.planted import DECOYS
from conceptlab.datasets.registry import CubSettings
from conceptlab.info import ConceptInfo
from conceptlab.training import fit, seeded
from conceptlab.training.intcem import IntCEMLearner
from conceptlab.training.learner import ConceptLearner
from conceptlab.training.posthoc import fit_residual_as_authors
from conceptlab.training.recipes import recipe_stages

CUB_FEATURES = 1280  # EfficientNet-Lite0 features, as the CUB configs read them


def _model_configs() -> list[tuple[str, str]]:
    return [(name, model) for name in bundled_configs() if name != "cce" for model in load_spec(name).models]


def _stand_in_batch(spec, seed: int = 0):
    """A training batch shaped like the config's data: the real generator for synthetic sets, a
    stand-in with Koh et al.'s CUB shape (112 concepts in 28 groups) for CUB, which tests cannot ship."""
    generator = torch.Generator().manual_seed(seed)
    size = spec.train.batch_size
    finetune = isinstance(spec.dataset, CubSettings) and spec.dataset.mode == "finetune"
    if finetune:  # small images through a randomly initialised backbone: the mechanism, not the accuracy
        size = 8
    if isinstance(spec.dataset, FashionMNISTSettings):  # the Debian package may be absent: its shape, its concepts
        info, table = class_concepts()
        y = torch.randint(0, 10, (4 * size,), generator=generator)
        x = torch.rand(4 * size, 784, generator=generator)
        c = torch.as_tensor(table)[y]
        return info, x, x[:size], c[:size], y[:size], c
    if not isinstance(spec.dataset, CubSettings):
        splits = load_dataset(spec.dataset, seed=seed)
        train = splits.train
        return splits.info, train.x, train.x[:size], train.c[:size], train.y[:size], train.c
    info = ConceptInfo([f"c{i}" for i in range(112)], [f"class{j}" for j in range(100)],
                       {f"group{g}": tuple(range(4 * g, 4 * g + 4)) for g in range(28)})
    x = torch.randn(4 * size, *((3, 64, 64) if finetune else (CUB_FEATURES,)), generator=generator)
    c = (torch.rand(4 * size, 112, generator=generator) < 0.3).float()
    y = torch.randint(0, 100, (4 * size,), generator=generator)
    return info, x, x[:size], c[:size], y[:size], c


def _gradient(term: torch.Tensor, params: list[torch.nn.Parameter]) -> float:
    grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    return sum(float(g.abs().sum()) for g in grads if g is not None)


@pytest.mark.parametrize(("config", "key"), _model_configs())
def test_every_objective_term_is_nonzero_and_reaches_its_parameters(config, key):
    spec = load_spec(config)
    if spec.model.backbone:
        spec = replace(spec, model=replace(spec.model, backbone_weights=None))
    model_key = MODEL_KEYS[key]
    if model_key.recipe == LABEL_FREE:  # no gradient terms: the filters ran, the projection learned, the head was solved
        model, splits, report = fit_label_free_run(spec, seed=0)
        assert report.stage_epochs["projection"] > 0 and report.stage_epochs["head"] > 0, report.stage_epochs
        assert 0 < splits.info.n_concepts < spec.dataset.n_concepts + len(DECOYS)  # the filters removed candidates
        assert model.head.weight.abs().sum() > 0 and torch.isfinite(model.projection.weight).all()
        return
    info, all_x, x, c, y, all_c = _stand_in_batch(spec)
    with seeded(0):
        model = model_key.build(x.shape[1] if x.ndim == 2 else 0, info, spec.model)
    if model_key.bank:
        model.set_bank(bank_from_labels(all_x, all_c, info.concept_names, examples=20, alpha=spec.model.bank_alpha, seed=0))
    train = model_key.train_config(replace(spec.train, device="cpu"), spec.model)
    stages = [s for s in recipe_stages(model_key.recipe, train) if s.solver in ("lightning", "fixed-epochs")]
    if model.n_concepts == 0:
        stages = [s for s in stages if s.task_weight > 0]
    if not model.residual_parameters():
        stages = [s for s in stages if s.trainable != "residual"]
    owners = {
        "task": lambda m, s: m.residual_parameters() if s.trainable == "residual" else m.task_parameters(),
        "concept": lambda m, s: m.concept_parameters(),
        "policy": lambda m, s: list(m.policy.parameters()),
        "trajectory_task": lambda m, s: m.task_parameters(),
        "precision": lambda m, s: m.concept_parameters(),  # SCBM's L1 penalty on the concepts' precision
        "prior": lambda m, s: [m.global_embeddings],  # MixCEM's task loss on the true concepts' global embeddings
        "kl": lambda m, s: list(m.log_variance.parameters()),  # ProbCBM's information bottleneck on the variances
        "anchored": lambda m, s: [m.anchors],  # ProbCBM's task loss on the true concepts' anchors
    }
    for stage in stages:
        if stage.solver == "fixed-epochs":  # PCBM-h's residual as its authors train it: its weights move, its loss is real
            trained = copy.deepcopy(model)  # the Lightning check below reads the untrained model
            losses = fit_residual_as_authors(trained, ConceptDataset(x, c, y, info), seed=0)
            assert all(math.isfinite(v) and v > 0 for v in losses), f"{config}/{key}: residual losses {losses}"
            assert losses[-1] < losses[0], f"{config}/{key}: the residual's loss never fell: {losses}"
            assert all(not torch.equal(p.detach(), s.detach()) for p, s in zip(trained.residual_parameters(),
                                                                              model.residual_parameters())), \
                f"{config}/{key}: the residual never moved"
        # the stage's objective through the Lightning learner as well (the same loss terms)
        learner = (IntCEMLearner if stage.trajectories else ConceptLearner)(model, stage, train)
        model.train()
        with seeded(1):
            terms = learner.loss_terms((x, c, y), training=True)
        assert terms, f"{config}/{key} stage {stage.name}: no loss term"
        for name, term in terms.items():
            assert torch.isfinite(term) and term.item() > 0, f"{config}/{key} stage {stage.name}: term {name} is {term.item()}"
            assert _gradient(term, owners[name](model, stage)) > 0, \
                f"{config}/{key} stage {stage.name}: term {name} sends no gradient to its parameters"
        if stage.intervention_prob > 0:  # RandInt corrects some concepts in a training batch
            assert learner._intervention(c, training=True).mask.any(), f"{config}/{key}: RandInt corrected nothing"
        if stage.trajectories:
            lengths = []
            for seed in range(20):
                with seeded(seed):
                    lengths.append(learner.trajectory_terms((x, c, y))[1])
            steps_with_trajectory = sum(bool((t > 0).any()) for t in lengths) / len(lengths)
            assert steps_with_trajectory >= 0.5, f"{config}/{key}: trajectories in {steps_with_trajectory:.0%} of steps"


@pytest.mark.parametrize("randint_per", ["sample", "batch"])
@pytest.mark.parametrize("config", ["xor", "trig", "dot"])
def test_intcem_trains_its_policy_on_the_synthetic_configs(config, randint_per):
    """Ten real epochs with the config's settings: the fraction of steps with a trajectory is in the
    run's history and matches what the sampler promises (per sample: every step; per batch on
    XOR's and Dot's 2 concepts: 56 %, since RandInt leaves the whole batch at most one unit in 44 %
    of steps, where the authors' sampler draws T = 0), and the policy network's weights and batch
    statistics move."""
    spec = load_spec(config)
    spec = replace(spec, model=replace(spec.model, randint_per=randint_per))
    splits = load_dataset(spec.dataset, seed=0)
    key = MODEL_KEYS["intcem"]
    with seeded(0):
        model = key.build(splits.train.x.shape[1], splits.info, spec.model)
    start = {name: p.detach().clone() for name, p in model.policy.named_parameters()}
    report = fit(model, splits, key.recipe,
                 config=key.train_config(replace(spec.train, device="cpu", max_epochs=10, seed=0), spec.model))
    history = report.history["intcem"]
    assert len(history["trajectory_steps"]) == report.epochs
    steps = sum(history["trajectory_steps"]) / len(history["trajectory_steps"])
    # the authors' sampler gives a sample a trajectory when RandInt leaves it >= 2 units
    n_units, p = splits.info.group_matrix().shape[0], spec.model.randint
    at_least_two = 1 - p**n_units - n_units * (1 - p) * p ** (n_units - 1)
    expected = at_least_two if randint_per == "batch" else 1 - (1 - at_least_two) ** spec.train.batch_size
    assert expected >= 0.5
    n_steps = report.epochs * -(-len(splits.train) // spec.train.batch_size)
    assert abs(steps - expected) <= 4 * (expected * (1 - expected) / n_steps) ** 0.5 + 1e-6, (steps, expected)
    assert abs(sum(history["trajectory_samples"]) / report.epochs - at_least_two) < 0.15, history["trajectory_samples"]
    assert all(loss > 0 for loss in history["policy_loss"])
    for name, p in model.policy.named_parameters():
        assert not torch.equal(p.detach(), start[name]), f"policy parameter {name} never moved"
    assert all(int(m.num_batches_tracked) > 0 for m in model.policy.modules() if isinstance(m, torch.nn.BatchNorm1d))
