"""What of the retrieved chunks reaches the prompt, and in which order.

Contract: :func:`fit_budget` keeps the best-ranked hits whose estimated tokens fit ``budget`` (0 = no budget;
the best hit is always kept, so a small budget never leaves the generator with no context); :data:`ORDERS`
maps an order name to a function that reorders the kept hits for the prompt. Metrics read the kept hits in
rank order; only the prompt sees the reordering.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ragsweep.pipelines.base.registry import Registry

T = TypeVar("T")
CHARS_PER_TOKEN = 4  # an estimate that needs no tokenizer; close for English text and Llama-family vocabularies

ORDERS: Registry[Callable[[Sequence[Any]], list[Any]]] = Registry("context order")


def estimated_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def fit_budget(texts: Sequence[str], budget: int) -> int:
    """How many of ``texts`` (best first) fit ``budget`` estimated tokens together: at least 1, all when 0."""
    if budget <= 0:
        return len(texts)
    used, n = 0, 0
    for text in texts:
        used += estimated_tokens(text)
        if used > budget and n:
            break
        n += 1
    return n


@ORDERS.register("retrieved", "best chunk first, as ranked")
def as_retrieved(items: Sequence[T]) -> list[T]:
    return list(items)


@ORDERS.register(
    "ends",
    "best chunks at both ends of the context, the weakest in the middle (models read the "
    "middle of a long context least: Liu et al. 2023, 'Lost in the Middle')",
)
def best_at_ends(items: Sequence[T]) -> list[T]:
    """Ranks 1, 3, 5, ... from the front, then ..., 4, 2 back to the end: ranks 1 and 2 are first and last."""
    return list(items[0::2]) + list(items[1::2])[::-1]
