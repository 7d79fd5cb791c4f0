"""Every named intervention policy, and ``resolve_policy`` to look one up."""

from __future__ import annotations

import inspect

from .criteria import CRITERIA
from .fitted import FITTED
from .policies import Policy, PriorityFunction, from_function, random_policy
from .sequential import SEQUENTIAL

POLICIES: dict[str, Policy] = {
    p.name: p
    for p in [
        Policy("random", from_function(random_policy), stochastic=True, source="uniformly random order"),
        *CRITERIA,
        *SEQUENTIAL,
        *FITTED,
    ]
}
"""The built-in intervention policies by name (``intervention_curve(policy=name)``)."""
ALIASES = {"ucp": "uncertainty", "oracle-greedy": "oracle"}


def resolve_policy(policy: str | Policy | PriorityFunction) -> Policy:
    """A ``Policy`` by name (a key of ``POLICIES``, or ``ucp``), a ``Policy`` itself, or a plain
    function ``(probs, units, generator) -> (B, G)`` wrapped as a static, stochastic policy.

    Args:
        policy: A name, a ``Policy`` or a plain priority function.

    Returns:
        The ``Policy``.

    Raises:
        ValueError: An unknown name (the message lists the built-in ones).

    Examples:
        >>> from conceptlab.interventions import resolve_policy
        >>> resolve_policy("ucp").name
        'uncertainty'
    """
    if isinstance(policy, Policy):
        return policy
    if callable(policy):
        if len(inspect.signature(policy).parameters) != 3:
            raise ValueError("a policy function takes (probs, units, generator) and returns (B, G) priorities; "
                             "for anything else build a conceptlab.interventions.Policy")
        return Policy(getattr(policy, "__name__", "custom"), from_function(policy), stochastic=True, source="custom")
    name = ALIASES.get(policy, policy)
    if name not in POLICIES:
        raise ValueError(f"unknown intervention policy {policy!r}; choose one of {', '.join(POLICIES)} "
                         "or pass a Policy")
    return POLICIES[name]
