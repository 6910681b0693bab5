"""promtool for the deploy tests: required, never skipped (Debian's `prometheus` package ships
it; `make test` installs it first, `tests/deploy/tools.sh`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: `make test` installs it (tests/deploy/tools.sh)")
    return subprocess.run(
        ["promtool", *map(str, args)], capture_output=True, text=True, timeout=300
    )
