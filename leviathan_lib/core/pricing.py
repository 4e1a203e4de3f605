"""Model prices, so a cost cap and a daily budget mean the same dollars whatever the provider.

USD per million tokens, input and output, keyed by ``provider:model`` as pydantic-ai names models. The
figures are the providers' public list prices when this table was last checked (2026-12); a target
overrides them with ``llm_input_usd_per_mtok`` / ``llm_output_usd_per_mtok`` (negotiated rates, a
self-hosted model at 0, a model missing here). A model that is neither here nor priced by its target is
refused (``llm_price_unknown``): an attempt whose cost cannot be counted cannot be bounded.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Price(NamedTuple):
    input_usd_per_mtok: float
    output_usd_per_mtok: float


#: The providers the LLM executor builds a model for (pydantic-ai's prefixes).
PROVIDERS = ("anthropic", "openai", "azure", "bedrock")

PRICES: dict[str, Price] = {
    "anthropic:claude-opus-4-1": Price(15.0, 75.0),
    "anthropic:claude-opus-4-5": Price(5.0, 25.0),
    "anthropic:claude-sonnet-4-5": Price(3.0, 15.0),
    "anthropic:claude-sonnet-4-0": Price(3.0, 15.0),
    "anthropic:claude-haiku-4-5": Price(1.0, 5.0),
    "openai:gpt-5": Price(1.25, 10.0),
    "openai:gpt-5-mini": Price(0.25, 2.0),
    "openai:gpt-4.1": Price(2.0, 8.0),
    "openai:gpt-4.1-mini": Price(0.4, 1.6),
    "openai:gpt-4o": Price(2.5, 10.0),
    "openai:gpt-4o-mini": Price(0.15, 0.6),
    "bedrock:us.anthropic.claude-sonnet-4-5-20250929-v1:0": Price(3.0, 15.0),
    "bedrock:anthropic.claude-sonnet-4-5-20250929-v1:0": Price(3.0, 15.0),
    "bedrock:us.anthropic.claude-haiku-4-5-20251001-v1:0": Price(1.0, 5.0),
}

#: A dated snapshot (``claude-sonnet-4-5-20250929``, ``gpt-4o-2024-08-06``) costs what its alias costs.
_DATED = re.compile(r"-(20\d{6}|20\d{2}-\d{2}-\d{2})$")
_PREFIX = re.compile(r"^[a-z][a-z0-9-]*$")


def split_model(model: str) -> tuple[str | None, str]:
    """``("openai", "gpt-4o")`` for ``openai:gpt-4o``; ``(None, name)`` for a bare (legacy) name.

    Only a lowercase slug before the first ``:`` is a provider: Bedrock's own ids end in ``:0``.
    """
    prefix, sep, rest = model.partition(":")
    if sep and rest and _PREFIX.match(prefix):
        return prefix, rest
    return None, model


def qualified(model: str) -> str:
    """The ``provider:model`` name; a bare name is the Anthropic model it always meant."""
    provider, name = split_model(model)
    return model if provider else f"anthropic:{name}"


def price_of(model: str) -> Price | None:
    """The table's price of ``model`` (qualified or bare), or None when the table does not know it."""
    key = qualified(model)
    return PRICES.get(key) or PRICES.get(_DATED.sub("", key))


def cost_usd(price: Price, input_tokens: int, output_tokens: int) -> float:
    return round((input_tokens * price.input_usd_per_mtok + output_tokens * price.output_usd_per_mtok) / 1e6, 6)
