"""Examples of the /filter bodies for the OpenAPI document, as OpenAPI Example Objects by name:
shown by the docs UI, replayed by the fuzz test, and checked against the structs in the tests.

They assume a thresholds file like deploy/thresholds.yaml with ``search`` in shadow mode::

    default: 0.9
    surfaces: {home: 0.88, search: {threshold: 0.95, mode: shadow}}
"""

from __future__ import annotations

from typing import Any

_CANDIDATES = [{"item_id": "sku-1"}, {"item_id": "sku-2", "sid": [12, 3, 7]}]
_COMMON = {
    "prediction_version": "20261126T020000Z",
    "config_version": "2026-11-25.1",
    "unscored": [],
}

REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "enforce": {
        "summary": "A surface in enforce mode",
        "value": {"user_id": "u-1029", "surface": "home", "candidates": _CANDIDATES},
    },
    "shadow": {
        "summary": "A surface in shadow mode, by item id only",
        "value": {
            "user_id": "u-1029",
            "surface": "search",
            "candidates": [{"item_id": "sku-1"}, {"item_id": "sku-2"}],
        },
    },
    "override": {
        "summary": "No surface (the defaults apply), the request's own threshold",
        "value": {"user_id": "u-1029", "threshold": 0.85, "candidates": _CANDIDATES},
    },
}

RESPONSE_EXAMPLES: dict[str, dict[str, Any]] = {
    "enforce": {
        "summary": "Enforce mode: a candidate dropped",
        "value": {
            **_COMMON,
            "kept": ["sku-1"],
            "dropped": [{"item_id": "sku-2", "score": 0.97}],
            "threshold": 0.88,
            "fail_open": False,
            "fail_open_reason": None,
            "codebook_version": "a41c0f5e9b7d",
            "surface": "home",
            "mode": "enforce",
            "would_drop": [],
        },
    },
    "shadow": {
        "summary": "Shadow mode: everything kept, the would-be drop reported",
        "value": {
            **_COMMON,
            "kept": ["sku-1", "sku-2"],
            "dropped": [],
            "threshold": 0.95,
            "fail_open": False,
            "fail_open_reason": None,
            "codebook_version": "a41c0f5e9b7d",
            "surface": "search",
            "mode": "shadow",
            "would_drop": [{"item_id": "sku-2", "score": 0.97}],
        },
    },
    "fail_open": {
        "summary": "An unlisted surface (counted as other), no prediction for the user",
        "value": {
            **_COMMON,
            "kept": ["sku-1", "sku-2"],
            "dropped": [],
            "threshold": 0.9,
            "prediction_version": None,
            "fail_open": True,
            "fail_open_reason": "no_prediction",
            "codebook_version": None,
            "surface": "other",
            "mode": "enforce",
            "would_drop": [],
        },
    },
}
