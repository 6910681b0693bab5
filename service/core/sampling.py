"""Stable per-user draws: which users a surface holds out, whose decisions are logged, and the
pseudonym a decision log carries instead of the user id.

Each is a keyed hash of the user id (HMAC-SHA256 with the deployment's salt,
``CONREC_USER_HASH_SALT``), so a user is held out on every request and every replica, the draws
for different purposes are independent, and a logged pseudonym can be joined with feedback only
by whoever holds the salt (`conrec report --decision-log ... --salt`).
"""

from __future__ import annotations

import hashlib
import hmac

HOLDOUT = b"holdout"
LOG_SAMPLE = b"log"


def _digest(salt: str, purpose: bytes, user_id: str) -> bytes:
    return hmac.new(salt.encode(), purpose + b":" + user_id.encode(), hashlib.sha256).digest()


def user_share(salt: str, purpose: bytes, user_id: str) -> float:
    """The user's draw in [0, 1) for ``purpose``: they are sampled at a share s iff it is < s."""
    return int.from_bytes(_digest(salt, purpose, user_id)[:8], "big") / 2**64


def user_pseudonym(salt: str, user_id: str) -> str:
    """The user's id in decision logs: 16 hex digits, the same for every request."""
    return _digest(salt, b"pseudonym", user_id)[:8].hex()
