"""pytest-promptgate: prompt evaluations as pytest items, gated like releases."""
