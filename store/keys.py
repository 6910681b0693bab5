"""The Redis key schema: the only place that spells the store's keys (see ``store``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_PREFIX = "conrec"


@dataclass(frozen=True)
class KeySchema:
    """The only place that spells keys."""

    prefix: str = DEFAULT_PREFIX

    @property
    def pointer(self) -> str:
        return f"{{{self.prefix}}}:current"

    def run(self, run_id: str) -> str:
        return f"{{{self.prefix}}}:run:{run_id}"

    @property
    def runs(self) -> str:
        return f"{{{self.prefix}}}:runs"

    def user_prefix(self, run_id: str) -> str:
        return f"{self.prefix}:p:{run_id}:"

    def user(self, run_id: str, user_id: str) -> str:
        return f"{self.user_prefix(run_id)}{{{user_id}}}"

    def users(self, run_id: str, user_ids: Sequence[str]) -> list[bytes]:
        """``user`` for many users at once, encoded: the batch job's writes."""
        prefix = self.user_prefix(run_id).encode()
        return [b"%s{%s}" % (prefix, str(user).encode()) for user in user_ids]

    @property
    def forgotten_count(self) -> str:
        return f"{{{self.prefix}}}:forgotten"

    def forgotten(self, n: int) -> str:
        return f"{{{self.prefix}}}:forgotten:{n}"
