"""The one check of the scores defined on 0/1 concept labels (CAS, impurity)."""

from __future__ import annotations

from torch import Tensor


def check_binary_labels(c: Tensor, metric: str) -> None:
    """Refuse concept labels other than 0 and 1 (a continuous concept's values, probabilities).

    Args:
        c: (N, k) concept labels.
        metric: The score's name, for the message.

    Raises:
        ValueError: A label that is neither 0 nor 1 (the message says which columns to pass).
    """
    bad = ((c != 0) & (c != 1)).any(0).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"{metric} scores 0/1 concept labels, but concept column(s) {bad[:5]} hold other values (a "
                         "continuous concept, soft or missing labels); pass only the binary and categorical concepts' "
                         "columns of rows with every label known")
