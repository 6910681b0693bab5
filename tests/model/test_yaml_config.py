"""The one YAML loader: nested dataclasses and lists of them, paths from the file's folder, and
clear errors for what does not fit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from conrec.model.train_config import CurriculumConfig, load_config
from conrec.model.yaml_config import ConfigError, from_dict, load_yaml

CONFIGS = Path(__file__).resolve().parents[2] / "model" / "configs"


@dataclass
class Inner:
    rate: float = field(default=0.5, metadata={"help": "A share.", "min": 0.0, "max": 1.0})
    kind: Literal["a", "b"] = field(default="a", metadata={"help": "A choice."})


@dataclass
class Outer:
    name: str = field(metadata={"help": "Required."})
    source: str | None = field(default=None, metadata={"help": "A file.", "path": True})
    inner: Inner = field(default_factory=Inner)
    stages: list[Inner] = field(default_factory=list)


def test_nested_mappings_and_lists_become_dataclasses(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "name: x\nsource: data.csv\ninner: {rate: 0.25}\nstages: [{kind: b}, {rate: 1.0}]\n"
    )
    cfg = load_yaml(Outer, tmp_path / "c.yaml")
    assert cfg == Outer(
        "x", str(tmp_path / "data.csv"), Inner(0.25), [Inner(kind="b"), Inner(rate=1.0)]
    )


def test_overrides_win_and_absolute_paths_stay(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("name: x\nsource: /abs/data.csv\n")
    assert load_yaml(Outer, tmp_path / "c.yaml", name="y", source=None) == Outer(
        "y", "/abs/data.csv"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "x", "colour": 1}, "unknown Outer keys ['colour']; known:"),
        ({}, "Outer needs name (Required.)"),
        ({"name": "x", "inner": {"rate": 2.0}}, "inner: rate: 2.0 is outside [0.0, 1.0]"),
        ({"name": "x", "stages": [{"kind": "c"}]}, "stages[0]: kind: 'c' is not one of"),
        ({"name": "x", "inner": {"speed": 1}}, "inner: unknown Inner keys ['speed']"),
    ],
)
def test_what_does_not_fit_says_where(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, raw, where="c.yaml")
    assert str(err.value).startswith("c.yaml")
    assert message in str(err.value)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="a config file is a mapping"):
        load_yaml(Outer, tmp_path / "c.yaml")


def test_the_shipped_curricula_load_with_their_grpo_stages() -> None:
    # GRPO stages are a list of dataclasses: no special case in the loader.
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = load_config(path)
        assert isinstance(cfg, CurriculumConfig)
        assert all(type(stage).__name__ == "GRPOStageConfig" for stage in cfg.grpo), path


def test_a_prompt_cannot_show_more_trending_items_than_a_window_keeps(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("prompt: {trending: 21}\n")
    with pytest.raises(ConfigError, match="prompt: trending: 21 is outside \\[0, 20\\]"):
        load_config(tmp_path / "c.yaml")
