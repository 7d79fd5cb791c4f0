"""The published intervention policies: exact look-ahead, every head, what each may read, and the
claims of the papers on a dataset where the order of corrections matters."""

import pytest
import torch

from conceptlab.interventions import (
    POLICIES,
    Policy,
    PolicyState,
    coop_policy,
    fit_policy,
    intervention_curve,
    normalised_auc,
    unit_ranks,
)
from conceptlab.interventions.lookahead import after_each_unit
from conceptlab.models import ConceptModel, Intervention, cbm, cem, intcem
from conceptlab.models.base import encode_all
from conceptlab.training import TrainConfig, fit, seeded

from .noisy_concepts import noisy_concepts

K, GROUPS = 5, torch.tensor([[1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)


def _models(n_classes: int) -> dict[str, ConceptModel]:
    with seeded(0):
        models = {f"cbm-{b}": cbm(in_features=6, n_concepts=K, n_classes=n_classes, bottleneck=b, hidden=(8,)) for b in ("sigmoid", "logit", "bool")}
        models["cbm-hybrid"] = cbm(in_features=6, n_concepts=K, n_classes=n_classes, bottleneck="sigmoid", n_extra=2, hidden=(8,))
        models["cem"] = cem(in_features=6, n_concepts=K, n_classes=n_classes, embedding_size=4, latent_dim=8, hidden=(8,))
        models["intcem"] = intcem(in_features=6, n_concepts=K, n_classes=n_classes, units=GROUPS, embedding_size=4, latent_dim=8, hidden=(8,), policy_hidden=(8,))
    models["cbm-logit"].calibrate_interventions(torch.randn(50, K) * 3)
    for model in models.values():
        model.eval()
    return models


def _some_intervention(batch: int) -> Intervention:
    generator = torch.Generator().manual_seed(1)
    return Intervention(torch.rand(batch, K, generator=generator) < 0.4, (torch.rand(batch, K, generator=generator) < 0.5).float())


@pytest.mark.parametrize("n_classes", [2, 5])
@pytest.mark.parametrize("with_intervention", [False, True])
def test_closed_form_effects_equal_decoding_every_correction(n_classes, with_intervention):
    x = torch.randn(7, 6, generator=torch.Generator().manual_seed(0))
    intervention = _some_intervention(7) if with_intervention else None
    for name, model in _models(n_classes).items():
        with torch.no_grad():
            code = model.encode(x)
            fast = model.concept_effects(code, intervention)
            exact = ConceptModel.concept_effects(model, code, intervention)  # 2k decodes
        for part in ("logits", "to_zero", "to_one"):
            assert torch.allclose(getattr(fast, part), getattr(exact, part), atol=1e-5), (name, part)


class _NotAdditive(ConceptModel):
    """A wrapper that hides a model's additivity, so look-ahead has to decode every unit."""

    def __init__(self, model: ConceptModel):
        super().__init__()
        self.inner, self.n_concepts, self.n_classes, self.head = model, model.n_concepts, model.n_classes, model.head

    def encode(self, x):
        return self.inner.encode(x)

    def decode(self, code, intervention=None):
        return self.inner.decode(code, intervention)


def _state(model, x, intervention=None, units=GROUPS, c=None, y=None):
    code = model.encode(x)
    probs = model.decode(code).concept_probs
    done = torch.zeros(len(x), units.shape[0], dtype=torch.bool)
    return PolicyState(model, code, probs, units, done, intervention, torch.Generator().manual_seed(0), c, y)


def test_group_lookahead_of_additive_models_equals_decoding_each_group():
    x = torch.randn(7, 6, generator=torch.Generator().manual_seed(0))
    values = (torch.rand(7, K, generator=torch.Generator().manual_seed(2)) < 0.5).float()
    for name, model in _models(3).items():
        with torch.no_grad():
            for intervention in (None, _some_intervention(7)):
                fast = after_each_unit(_state(model, x, intervention), values)
                slow = after_each_unit(_state(_NotAdditive(model), x, intervention), values)
                assert fast.shape == (7, 3, 3)
                assert torch.allclose(fast, slow, atol=1e-5), name


def _ready(name: str, model: ConceptModel, data, groups: bool = True) -> Policy:
    return fit_policy(name, model, train=data.train, val=data.val, groups=groups, seed=0)


@pytest.mark.parametrize("groups", [True, False])
def test_every_policy_orders_every_unit_once_on_every_head(noisy, small_models, groups):
    models = small_models
    test = noisy.test
    for model_name, model in models.items():
        full = intervention_curve(model, test, "random", groups=groups, repeats=1)
        for name, policy in POLICIES.items():
            if name.startswith("learned") and (model_name != "intcem" or not groups):
                continue
            if policy.unmet_needs(test.info, model):  # concept-uncertainty: only models that report it
                continue
            curve = intervention_curve(model, test, _ready(name, model, noisy, groups), groups=groups, repeats=1)
            n_units = 4 if groups else 12
            assert len(curve.accuracy_mean) == n_units + 1, (model_name, name)
            assert curve.uses_labels == policy.uses_labels
            assert curve.seconds_per_sample > 0
            # everything corrected: the same accuracy whatever the order
            assert curve.accuracy_mean[-1] == pytest.approx(full.accuracy_mean[-1]), (model_name, name)
            assert curve.accuracy_mean[0] == pytest.approx(full.accuracy_mean[0]), (model_name, name)


def test_policies_work_on_a_single_logit_binary_head():
    data = noisy_concepts(n=900, n_classes=2).test
    with seeded(0):
        model = cbm(in_features=20, n_concepts=12, n_classes=2, hidden=(16,))  # two classes: one logit
    fit(model, noisy_concepts(n=900, n_classes=2), "joint", config=TrainConfig(max_epochs=8, device="cpu", early_stopping_patience=0))
    splits = noisy_concepts(n=900, n_classes=2)
    for name in POLICIES:
        if name.startswith("learned") or POLICIES[name].unmet_needs(data.info, model):
            continue
        curve = intervention_curve(model, data, _ready(name, model, splits, groups=False), groups=False, repeats=1)
        assert curve.accuracy_mean[-1] >= curve.accuracy_mean[0] - 0.02, name
    oracle = intervention_curve(model, data, "oracle", groups=False, repeats=1)
    random = intervention_curve(model, data, "random", groups=False, repeats=3)
    assert oracle.auc > random.auc  # read through the right class: the oracle helps on a binary head too


def _spy(policy: Policy, seen: list) -> Policy:
    def score(state: PolicyState):
        seen.append(state)
        return policy.score(state)

    return Policy(policy.name, score, policy.sequential, policy.uses_labels, policy.stochastic)


def test_label_free_policies_never_see_labels_and_sequential_ones_see_corrections(noisy, small_models):
    models = small_models
    for name in POLICIES:
        if name.startswith("learned") or POLICIES[name].unmet_needs(noisy.info, models["cbm"]):
            continue
        policy = _ready(name, models["cbm"], noisy)
        seen: list[PolicyState] = []
        intervention_curve(models["cbm"], noisy.test, _spy(policy, seen), groups=True, repeats=1, chunk_size=10_000)
        for state in seen:
            assert (state.c is not None) == policy.uses_labels, name
            assert (state.y is not None) == policy.uses_labels, name
        if policy.sequential:
            assert len(seen) == 4  # one call per correction
            corrected = [int(s.done.sum(1).unique().item()) for s in seen]
            assert corrected == [0, 1, 2, 3]
            assert all(s.intervention is not None for s in seen)
        else:
            assert len(seen) == 1


def test_sequential_policy_picks_every_unit_exactly_once(noisy, small_models):
    models = small_models
    seen: list[PolicyState] = []
    intervention_curve(models["cem"], noisy.test, _spy(coop_policy(), seen), groups=False, repeats=1, chunk_size=10_000)
    steps = torch.stack([s.done for s in seen] + [torch.ones_like(seen[0].done)])
    picked = steps[1:] & ~steps[:-1]
    assert torch.equal(picked.sum(0), torch.ones_like(seen[0].done, dtype=torch.long))  # each unit once per sample
    assert torch.equal(picked.sum(2), torch.ones(12, len(noisy.test), dtype=torch.long))  # one unit per step


@pytest.mark.parametrize("bad, message", [
    (lambda s: torch.full(s.done.shape, float("nan")), "NaN priorities"),
    (lambda s: torch.zeros(s.done.shape[0], 3), "expected"),
])
def test_broken_policies_are_refused(noisy, small_models, bad, message):
    models = small_models
    with pytest.raises(ValueError, match=message):
        intervention_curve(models["cbm"], noisy.test, Policy("broken", bad), groups=True, repeats=1)


def test_learned_policy_needs_a_model_that_learned_one_on_the_same_units(noisy, small_models):
    models = small_models
    with pytest.raises(ValueError, match="need a model that learned one"):
        intervention_curve(models["cem"], noisy.test, "learned", repeats=1)
    with pytest.raises(ValueError, match="learned to rank 4 concept groups"):
        intervention_curve(models["intcem"], noisy.test, "learned", groups=False, repeats=1)


def test_coop_costs_push_expensive_concepts_back(noisy, small_models):
    models = small_models
    state = _state(models["cbm"].eval(), noisy.test.x[:50], units=torch.eye(12, dtype=torch.bool))
    with torch.no_grad():
        free = coop_policy()(state)
        costs = torch.zeros(12)
        costs[3] = 100.0
        dear = coop_policy(costs=costs)(state)
    assert (unit_ranks(free)[:, 3] < 11).any()
    assert (unit_ranks(dear)[:, 3] == 11).all()
    with pytest.raises(ValueError, match="2 costs for 12 concepts"):
        coop_policy(costs=torch.ones(2))(state)
    with pytest.raises(ValueError, match="finite 1-D"):
        coop_policy(costs=torch.tensor([float("nan")]))


def test_exact_ties_are_broken_at_random_and_ranks_are_permutations():
    priorities = torch.zeros(2000, 4)
    ranks = unit_ranks(priorities, torch.Generator().manual_seed(0))
    assert torch.equal(ranks.sort(1).values, torch.arange(4).expand(2000, 4))
    first = (ranks == 0).float().mean(0)
    assert torch.allclose(first, torch.full((4,), 0.25), atol=0.04)
    assert torch.equal(unit_ranks(torch.tensor([[0.1, 0.9, 0.5]])), torch.tensor([[2, 0, 1]]))


def test_normalised_auc_is_the_trapezoid_over_the_fraction_corrected():
    assert normalised_auc([0.5, 1.0]) == pytest.approx(0.75)
    assert normalised_auc([0.2, 0.4, 1.0]) == pytest.approx((0.3 + 0.7) / 2)
    assert normalised_auc([0.7, 0.7, 0.7, 0.7]) == pytest.approx(0.7)


@pytest.fixture(scope="module")
def independent_cbm_curves():
    data = noisy_concepts()
    with seeded(0):
        model = cbm(in_features=20, n_concepts=12, n_classes=4, hidden=(32,))
    fit(model, data, "independent", config=TrainConfig(max_epochs=30, device="cpu", batch_size=128))
    codes = encode_all(model, data.test.x)
    return {name: intervention_curve(model, data.test, _ready(name, model, data, groups=False), groups=False, repeats=3,
                                     codes=codes)
            for name in ("random", "uncertainty", "ectp", "eudtp", "cctp", "coop", "lcp", "oracle")}


def test_the_papers_claims_hold_on_the_noisy_fixture(independent_cbm_curves):
    auc = {name: curve.auc for name, curve in independent_cbm_curves.items()}
    assert auc["ectp"] > auc["random"] + 0.03
    assert auc["uncertainty"] > auc["random"] + 0.02
    assert auc["eudtp"] > auc["random"]
    assert all(auc["oracle"] > value for name, value in auc.items() if name != "oracle")


def test_group_lookahead_with_categorical_concepts_equals_decoding_each_group():
    """Correcting a categorical concept writes all its values at once; the closed form must agree."""
    categorical = ((0, 1), (3, 4))
    x = torch.randn(7, 6, generator=torch.Generator().manual_seed(0))
    pick = torch.randint(0, 2, (7, 2), generator=torch.Generator().manual_seed(3))
    values = torch.cat([torch.nn.functional.one_hot(pick[:, 0], 2), torch.randint(0, 2, (7, 1)),
                        torch.nn.functional.one_hot(pick[:, 1], 2)], 1).float()
    with seeded(0):
        models = {f"cbm-{b}": cbm(in_features=6, n_concepts=K, n_classes=3, bottleneck=b, categorical=categorical, hidden=(8,))
                  for b in ("sigmoid", "logit", "bool")}
        models["cem"] = cem(in_features=6, n_concepts=K, n_classes=3, categorical=categorical, embedding_size=4, latent_dim=8,
                            hidden=(8,))
    models["cbm-logit"].calibrate_interventions(torch.randn(50, K) * 3)
    for name, model in models.items():
        model.eval()
        with torch.no_grad():
            fast = after_each_unit(_state(model, x, None), values)
            slow = after_each_unit(_state(_NotAdditive(model), x, None), values)
        assert torch.allclose(fast, slow, atol=1e-5), name
