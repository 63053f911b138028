"""What every architecture's config dataclass shares: one JSON form (tuples as lists) and reading it back
(lists as tuples, unknown keys ignored so an older checkpoint's config still loads)."""
from __future__ import annotations

from dataclasses import asdict, fields


class JsonConfig:
    """Mixin for a frozen config dataclass of a network builder."""

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names})
