"""`conrec thresholds check FILE`: a file validated before it ships, without loading torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from conrec.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_a_good_file_prints_what_the_service_would_apply(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(
        "version: r7\ndefault: 0.9\nholdout: 0.05\nsurfaces:\n  home: 0.85\n"
        "  search: {threshold: 0.95, mode: shadow}\n"
        "  feed: {score: calibrated, threshold: 0.6, max_drop_share: 0.5}\n"
        "override_range: {min: 0.8, max: 0.99}\n"
    )
    result = runner.invoke(app, ["thresholds", "check", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = [" ".join(line.strip("│┃ ").split()) for line in result.stdout.splitlines()]
    assert "version r7" in result.stdout
    assert "home │ max_cosine │ 0.85 │ enforce │ 1 │ 0.05 │ 0" in rows
    assert "search │ max_cosine │ 0.95 │ shadow │ 1 │ 0.05 │ 0" in rows
    assert "feed │ calibrated │ 0.6 │ enforce │ 0.5 │ 0.05 │ 0" in rows
    assert "other (any other, or none) │ max_cosine │ 0.9 │ enforce │ 1 │ 0.05 │ 0" in rows
    assert "on a max_cosine surface must lie in [0.8, 0.99]" in result.stdout
    assert "on a calibrated surface must lie in [0, 1]" in result.stdout


def test_the_deployed_file_passes() -> None:
    result = runner.invoke(app, ["thresholds", "check", str(ROOT / "deploy" / "thresholds.yaml")])
    assert result.exit_code == 0, result.output


def test_a_bad_file_is_exit_2_and_one_line_saying_why(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("default: 0.9\nsurfaces:\n  other: 0.8\n  search: {threshold: 1.5}\n")
    result = runner.invoke(app, ["thresholds", "check", str(path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    message = result.stderr.strip()
    assert "\n" not in message, message
    assert message.startswith(f"error: {path}: ")
    assert "surfaces.other (the name): 'other' is reserved" in message
    assert "surfaces.search.threshold: Input should be less than or equal to 1" in message


def test_a_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["thresholds", "check", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2
    assert "cannot read it: No such file or directory" in result.stderr


def test_the_check_imports_no_ml_framework(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("default: 0.9\n")
    # -X importtime lists every module the process imports, on stderr.
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "conrec", "thresholds", "check", str(path)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "conrec.service.core.thresholds" in imported  # the service's own parser
    assert not imported & {"torch", "transformers", "vllm", "fastapi"}
