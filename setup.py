"""The distribution's packages. `conrec` (the CLI and the application) is the one top-level
name, with `conrec_client` (what a ranking service imports); the folders of the architecture
(`store/`, `codebook/`, `model/`, `batch_gen/`, `service/`) install under it as `conrec.store`,
`conrec.codebook`, ..., so that no generic top-level name (`model`, `service`) collides with
another distribution's in a user's environment. An image that copies only some folders (the
service image) installs those it has. (Metadata, dependencies and extras: pyproject.toml.)"""

from pathlib import Path

from setuptools import find_packages, setup

PARTS = ("store", "codebook", "model", "batch_gen", "service")
ROOT = Path(__file__).resolve().parent

packages = find_packages(include=["conrec", "conrec.*", "conrec_client", "conrec_client.*"])
package_dir = {}
for part in PARTS:
    if (ROOT / part / "__init__.py").is_file():
        package_dir[f"conrec.{part}"] = part
        packages += [f"conrec.{part}", *(f"conrec.{part}.{sub}" for sub in find_packages(part))]

setup(packages=packages, package_dir=package_dir)
