"""Deep Concept Reasoner (Barbiero et al., ICML 2023): a task head that is a fuzzy logic rule.

The concepts come from a CEM (a truth value c_i and an embedding e_i per concept). For every class
j two small networks read each concept's embedding: a polarity s_ij in [0, 1] (does the rule want
the concept true or false?) and a relevance r_ij in [0, 1] (does the concept appear in the rule at
all?). The class's truth is a conjunction in Goedel logic,

    y_j = min_i max(1 - r_ij, iff(s_ij, c_i)),   iff(s, c) = min(max(1 - s, c), max(s, 1 - c)),

so a sample's prediction reads as the rule "AND of the relevant concepts, each with its polarity".
Relevance is the authors' soft selection: with a_ij the log-softmax of the relevance scores over the
concepts, r_ij = sigmoid(a_ij - t * mean_i a_ij) for a temperature t (100): a concept drops out of
the rule only when its share of attention is far below the others'. A sample's rule keeps the
literals that make their clause true, those whose agreement iff(s_ij, c_i) exceeds 1 - r_ij, as
the authors read it. The rules are built from the embeddings, so they may differ from one sample
to the next; ``class_rules`` counts them over a dataset (the global explanation). A binary task
has one rule, for class 1; its samples predicted 0 are explained by no rule.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from ..info import ConceptInfo
from .base import ConceptOutput, Intervention, check_sizes
from .cem import ConceptEmbeddingModel
from .encoders import encoder
from .heads import n_classes, predicted_class, task_outputs
from .registry import register_model

RELEVANCE_TEMPERATURE = 100.0  # the authors' default sharpness of the soft selection
TRUTH_EPSILON = 1e-6  # a rule's truth is clamped to [eps, 1 - eps] before it becomes a logit


def _scorer(width: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.LeakyReLU(), nn.Linear(width, outputs))


class ReasonerHead(nn.Module):
    """The rule layer: concept embeddings (B, k, m) and truth values (B, k) -> class truths (B, T),
    with the polarity and relevance (B, k, T) that make each sample's rule.

    Args:
        embedding_size: m.
        n_outputs: T, the rules (one per task output).
        temperature: Sharpness of the relevance's soft selection.
    """

    def __init__(self, embedding_size: int, n_outputs: int, temperature: float = RELEVANCE_TEMPERATURE):
        super().__init__()
        self.polarity = _scorer(embedding_size, n_outputs)
        self.relevance = _scorer(embedding_size, n_outputs)
        self.temperature = temperature

    def roles(self, embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """Polarity and relevance (B, k, T) of every concept in every rule."""
        polarity = torch.sigmoid(self.polarity(embeddings))
        share = torch.log_softmax(self.relevance(embeddings), dim=1)
        relevance = torch.sigmoid(share - self.temperature * share.mean(dim=1, keepdim=True))
        return polarity, relevance

    @staticmethod
    def agreement(polarity: Tensor, truth: Tensor) -> Tensor:
        """iff(s, c) in Goedel logic, (B, k, T): how far each concept agrees with its polarity."""
        values = truth.unsqueeze(-1)
        return torch.minimum(torch.maximum(1 - polarity, values), torch.maximum(polarity, 1 - values))

    @staticmethod
    def conjunction(relevance: Tensor, agreement: Tensor) -> Tensor:
        """Each rule's truth (B, T): min over concepts of max(1 - relevance, agreement)."""
        return torch.maximum(1 - relevance, agreement).amin(dim=1)

    def forward(self, embeddings: Tensor, truth: Tensor) -> Tensor:
        polarity, relevance = self.roles(embeddings)
        return self.conjunction(relevance, self.agreement(polarity, truth))


class DeepConceptReasoner(ConceptEmbeddingModel):
    """A CEM whose task head is a rule per class (``ReasonerHead``); ``task_logits`` are the logits
    of the rules' truth values (the probability a binary head reads is the class-1 rule's truth).

    Args:
        encoder: The network from inputs to its latent code.
        latent_dim: Width of the latent code h.
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one rule, for class 1).
        embedding_size: m, the size of each concept embedding.
        temperature: Sharpness of the relevance's soft selection.

    Examples:
        >>> from conceptlab.models import DeepConceptReasoner
        >>> model = DeepConceptReasoner(torch.nn.Linear(4, 8), latent_dim=8, n_concepts=3, n_classes=2, embedding_size=4)
        >>> model(torch.randn(2, 4)).task_logits.shape
        torch.Size([2, 1])
    """

    additive_effects = False  # a min over concepts: corrections do not add up

    def __init__(self, encoder: nn.Module, *, latent_dim: int, n_concepts: int, n_classes: int, embedding_size: int = 16,
                 temperature: float = RELEVANCE_TEMPERATURE):
        super().__init__(encoder, latent_dim=latent_dim, n_concepts=n_concepts, n_classes=n_classes,
                         embedding_size=embedding_size, shared_scorer=False)
        self.head = ReasonerHead(embedding_size, task_outputs(n_classes), temperature)

    def decode(self, context: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        logits = self.concept_logits(context)
        probs = torch.sigmoid(logits)
        truth = self.mixture(probs, intervention, context)
        embeddings = self.embed(context, truth)
        rules = self.head(embeddings, truth).clamp(TRUTH_EPSILON, 1 - TRUTH_EPSILON)
        return ConceptOutput(torch.logit(rules), rearrange(embeddings, "b k m -> b (k m)"), logits, probs, embeddings)

    def concept_effects(self, context: Tensor, intervention: Intervention | None = None):
        """The generic 2k decodes (a rule is not linear in the concepts)."""
        return super(ConceptEmbeddingModel, self).concept_effects(context, intervention)

    @torch.no_grad()
    def sample_rules(self, x: Tensor, info: ConceptInfo, *, intervention: Intervention | None = None) -> list[str | None]:
        """Each sample's rule for the class it is predicted: the literals that make their clause true
        (agreement above 1 - relevance), negated where the polarity is below 0.5, joined by "and";
        None where no rule is true (a binary task's class 0, or an empty rule).

        Args:
            x: (N, ...) inputs.
            info: The concept and class names.
            intervention: Corrections applied first.

        Returns:
            One ``"class <- rule"`` (or None) per sample.
        """
        return self.code_rules(self.encode(x), info, intervention=intervention)

    def code_rules(self, context: Tensor, info: ConceptInfo, *, intervention: Intervention | None = None) -> list[str | None]:
        """``sample_rules`` from encoded inputs (``encode``), for callers that hold the codes."""
        truth = self.mixture(torch.sigmoid(self.concept_logits(context)), intervention, context)
        embeddings = self.embed(context, truth)
        polarity, relevance = self.head.roles(embeddings)
        agreement = self.head.agreement(polarity, truth)
        kept = agreement > 1 - relevance  # (B, k, T): the literals that make their clause true
        rules = self.head.conjunction(relevance, agreement)  # the head's output, from the roles read once
        predicted = predicted_class(torch.logit(rules.clamp(TRUTH_EPSILON, 1 - TRUTH_EPSILON)))
        one_rule = n_classes(rules) == 2  # a binary head's one rule is class 1's
        column = torch.zeros_like(predicted) if one_rule else predicted
        out: list[str | None] = []
        for sample, (cls, col) in enumerate(zip(predicted.tolist(), column.tolist())):
            literals = [name if polarity[sample, i, col] >= 0.5 else f"not {name}"
                        for i, name in enumerate(info.concept_names) if kept[sample, i, col]]
            true_rule = rules[sample, col] > 0.5 and literals
            out.append(f"{info.task_names[cls]} <- {' and '.join(literals)}" if true_rule else None)
        return out


def class_rules(model: DeepConceptReasoner, x: Tensor, info: ConceptInfo, *, top: int = 3) -> dict[str, list[tuple[str, int]]]:
    """The global explanation: for every class, its most frequent sample rules and their counts.

    Args:
        model: A trained DCR (in evaluation mode).
        x: (N, ...) inputs (e.g. the test split's).
        info: The concept and class names.
        top: Rules kept per class.

    Returns:
        Class name -> [(rule, samples), ...], most frequent first.

    Examples:
        >>> from conceptlab.datasets import ConceptInfo
        >>> from conceptlab.models import class_rules, dcr
        >>> model = dcr(in_features=2, n_concepts=2, n_classes=2, embedding_size=4, latent_dim=8, hidden=(8,))
        >>> sorted(class_rules(model.eval(), torch.randn(20, 2), ConceptInfo(("a", "b"), ("no", "yes"))))
        ['no', 'yes']
    """
    counts: dict[str, Counter] = {name: Counter() for name in info.task_names}
    for rule in model.sample_rules(x, info):
        if rule is not None:
            name, body = rule.split(" <- ", 1)
            counts[name][body] += 1
    return {name: counter.most_common(top) for name, counter in counts.items()}


@register_model(not_saved=("backbone_weights",))
def dcr(
    *,
    in_features: int,
    n_concepts: int,
    n_classes: int,
    embedding_size: int = 16,
    latent_dim: int = 128,
    hidden: Sequence[int] = (128, 128),
    temperature: float = RELEVANCE_TEMPERATURE,
    backbone: str | None = None,
    backbone_weights: str | None = None,
) -> DeepConceptReasoner:
    """A Deep Concept Reasoner on the CEM encoder.

    Args:
        in_features: Width of the input vectors (ignored with ``backbone``).
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one rule, for class 1).
        embedding_size: m, the size of each concept embedding.
        latent_dim: Width of the latent code the embeddings are computed from.
        hidden: Widths of the MLP encoder's hidden layers.
        temperature: Sharpness of the relevance's soft selection (the authors' 100).
        backbone: An image backbone name under the MLP, for training on images.
        backbone_weights: A local file of the backbone's pretrained weights.

    Returns:
        The untrained model; ``build_spec`` records the call.

    Raises:
        ValueError: A size that is not a whole number >= 1.

    Examples:
        >>> from conceptlab.models import dcr
        >>> dcr(in_features=4, n_concepts=3, n_classes=2, embedding_size=4, latent_dim=8, hidden=(8,))(torch.randn(5, 4)).task_logits.shape
        torch.Size([5, 1])
    """
    check_sizes(n_concepts=n_concepts, n_classes=n_classes, embedding_size=embedding_size)
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number; got {temperature}")
    return DeepConceptReasoner(
        encoder(in_features, latent_dim, hidden, backbone, backbone_weights), latent_dim=latent_dim, n_concepts=n_concepts,
        n_classes=n_classes, embedding_size=embedding_size, temperature=temperature,
    )
