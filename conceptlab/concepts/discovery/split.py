"""A model seen in two parts at a layer: g (input -> the layer's activations) and h (activations -> logits)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ...models import heads
from ...runtime import evaluating
from ..activations import forward_captures, prepare_batch, resolve_layer


class SplitModel:
    """Any torch model cut at ``layer``.

    ``h`` is ``head`` when given (a callable from the layer's activations to task logits, e.g. a
    linear classifier over pooled features: fast); otherwise the model itself is run on the input with
    the layer's output replaced by the activations given (any architecture, at the cost of the
    layers before it).

    Args:
        model: Any torch model.
        layer: Dotted name of the layer to cut at.
        head: The rest of the model as a callable on the layer's activations, if it has one.
        batch_size: Rows per forward pass.

    Examples:
        >>> from conceptlab.concepts.discovery import SplitModel
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> split = SplitModel(model, "1")
        >>> x = torch.randn(5, 4)
        >>> torch.allclose(split.logits(split.activations(x), x), model(x))
        True
    """

    def __init__(self, model: nn.Module, layer: str, *, head: Callable[[Tensor], Tensor] | None = None, batch_size: int = 64):
        self.model, self.layer, self.head, self.batch_size = model, layer, head, batch_size
        self.module = resolve_layer(model, layer)
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def activations(self, x: Tensor) -> Tensor:
        """(N, ...) the layer's outputs for inputs ``x``, on the CPU."""
        return torch.cat(forward_captures(self.model, {self.layer: self.module}, x, self.batch_size,
                                          lambda out: out.detach().float().cpu())[self.layer])

    @torch.no_grad()
    def logits(self, activations: Tensor, x: Tensor | None = None) -> Tensor:
        """(B, T) task logits from the layer's ``activations``; without a head, ``x`` (one input,
        or one per row) is run with the layer's output replaced."""
        parts = []
        with evaluating(self.model):
            for start in range(0, activations.shape[0], self.batch_size):
                batch = activations[start : start + self.batch_size].to(self.device)
                if self.head is not None:
                    parts.append(heads.output_logits(self.head(batch)).float().cpu())
                    continue
                if x is None:
                    raise ValueError("without a head, the rest of the model needs the inputs the activations came from")
                one_input = len(x) == 1  # the same input under every row of activations
                inputs = x.expand(len(batch), *x.shape[1:]) if one_input else x[start : start + self.batch_size]
                hook = self.module.register_forward_hook(lambda m, a, out, batch=batch: batch.to(out.dtype))
                try:
                    parts.append(heads.output_logits(self.model(prepare_batch(inputs, self.device))).float().cpu())
                finally:
                    hook.remove()
        return torch.cat(parts)
