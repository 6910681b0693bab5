"""The client is tested against the real service: its fixtures are the service tests' own."""

from tests.service.conftest import (
    artifact_dir,
    codebook_version,
    enforce_file,
    make_settings,
    prefix,
    server,
    shared_store,
)

__all__ = [
    "artifact_dir",
    "codebook_version",
    "enforce_file",
    "make_settings",
    "prefix",
    "server",
    "shared_store",
]
