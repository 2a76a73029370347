"""Token prices, for the cost of a run when the target reports tokens but no cost.

Prices are USD per million tokens (input, output), as the providers publish them.
They change: override them in ini (``promptgate_pricing``, one ``MODEL INPUT
OUTPUT`` per line) or in the eval file (``pricing: {MODEL: {input: .., output: ..}}``).
A model matches the longest name it starts with, so dated snapshots such as
``gpt-4o-mini-2024-07-18`` take the price of ``gpt-4o-mini``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Published list prices, USD per 1M tokens (input, output); checked 2026-11.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "claude-opus-4": (15.00, 75.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
}


def parse_ini(lines: Iterable[str]) -> dict[str, tuple[float, float]]:
    """``MODEL INPUT_USD OUTPUT_USD`` lines (per million tokens) from the ini option."""
    prices = {}
    for line in lines:
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            model, price_in, price_out = parts
            prices[model] = (float(price_in), float(price_out))
        except ValueError:
            raise ValueError(
                f"promptgate_pricing: expected 'MODEL INPUT_USD OUTPUT_USD' per line (USD per million tokens), got {line!r}"
            ) from None
    return prices


def cost_usd(
    model: str | None, input_tokens: int | None, output_tokens: int | None, prices: Mapping[str, tuple[float, float]]
) -> float | None:
    """The cost of a call, or ``None`` when the model or token counts are unknown."""
    if not model or input_tokens is None or output_tokens is None:
        return None
    name = model.rsplit("/", 1)[-1]  # "openai/gpt-4o" as some gateways name it
    matches = [key for key in prices if name == key or name.startswith(key + "-") or name.startswith(key + ":")]
    if not matches:
        return None
    price_in, price_out = prices[max(matches, key=len)]
    return (input_tokens * price_in + output_tokens * price_out) / 1_000_000
