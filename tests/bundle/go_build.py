"""Build the Go programs the bundle tests run, once per machine: the Databricks CLI at a pinned version (from
its Go module, as its own release build does) and the local workspace server (keyed by a hash of its sources).

Binaries are cached under ``~/.cache/cqrs-orders`` (``CQRS_CACHE_DIR`` overrides it). A file lock keeps
parallel test runs from building the same binary twice, and each build writes a temporary name that is then
renamed into place, so a reader never sees half a binary. The first CLI build takes minutes on two cores.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

logger = logging.getLogger(__name__)

CLI_MODULE = "github.com/databricks/cli"
CLI_VERSION = "0.298.0"
SERVER_SOURCES = Path(__file__).with_name("workspace_server")


class GoMissing(RuntimeError):
    """No Go toolchain on PATH: the binaries cannot be built here."""


def cache_root() -> Path:
    return Path(os.environ.get("CQRS_CACHE_DIR") or Path.home() / ".cache" / "cqrs-orders")


def databricks_cli() -> Path:
    """The Databricks CLI binary at CLI_VERSION, built from its module unless already cached."""
    target = cache_root() / "databricks-cli" / CLI_VERSION / "databricks"

    def build(output: Path) -> None:
        downloaded = _go(["mod", "download", "-json", f"{CLI_MODULE}@v{CLI_VERSION}"], cwd=output.parent)
        module_dir = json.loads(downloaded)["Dir"]
        ldflags = f"-X {CLI_MODULE}/internal/build.buildVersion={CLI_VERSION}"
        _go(["build", "-ldflags", ldflags, "-o", str(output), "."], cwd=Path(module_dir))

    return _cached(target, build)


def workspace_server() -> Path:
    """The local workspace server (tests/bundle/workspace_server), rebuilt whenever its sources change."""
    digest = hashlib.sha256()
    for name in ("main.go", "go.mod", "go.sum"):
        digest.update(name.encode() + b"\0" + (SERVER_SOURCES / name).read_bytes())
    target = cache_root() / "workspace-server" / digest.hexdigest()[:16] / "workspace_server"

    def build(output: Path) -> None:
        _go(["build", "-o", str(output), "."], cwd=SERVER_SOURCES)

    return _cached(target, build)


def _cached(target: Path, build) -> Path:
    if _usable(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / ".build.lock"):
        if _usable(target):  # another run built it while this one waited for the lock
            return target
        if shutil.which("go") is None:
            raise GoMissing(f"building {target.name} needs the Go toolchain (`go` on PATH)")
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        started = time.monotonic()
        logger.info("building %s (cached afterwards) ...", target)
        try:
            build(temporary)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        logger.info("built %s in %.0f s", target, time.monotonic() - started)
    return target


def _usable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go(args: list[str], cwd: Path) -> str:
    logger.info("go %s (in %s)", " ".join(args), cwd)
    done = subprocess.run(["go", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"go {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout
