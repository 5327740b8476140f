"""`mtl housebrain <verb>`: generate-data, split, merge, design, validate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def commands() -> dict[str, Callable[..., Any]]:
    return {}
