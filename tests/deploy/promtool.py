"""promtool for the deploy tests: required, never skipped (Debian's `prometheus` package ships
it; .ci/run installs it and `make test` stops earlier without it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus (see Makefile check-tools)")
    return subprocess.run(
        ["promtool", *map(str, args)], capture_output=True, text=True, timeout=300
    )
