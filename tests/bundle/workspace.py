"""A local fake Databricks workspace and the real CLI pointed at it.

``Workspace`` runs the workspace server (the CLI's own ``libs/testserver``) on a loopback port and reads back
its request log. ``Cli`` runs the Databricks CLI against it with a throwaway HOME, one token (one token is
one workspace on that server) and the direct deployment engine, on a copy of the bundle, so deploy state
(``.databricks/``) and built wheels never land in the checkout.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
#: What never belongs in a bundle copy: local state, environments, build output, caches.
NOT_COPIED = shutil.ignore_patterns(
    ".git",
    ".venv*",  # .venv-dbr17 too
    ".databricks",
    "dist",
    "build",
    "warehouse",
    "spark-warehouse",
    "artifacts",  # Spark Connect's local artifact folder
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "*.whl",
)


class Workspace:
    """The server process; ``url`` for DATABRICKS_HOST, ``requests()`` for what clients sent it."""

    def __init__(self, binary: Path, folder: Path):
        self.log = folder / "requests.jsonl"
        self.process = subprocess.Popen(
            [str(binary), "-log", str(self.log)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"the workspace server did not report a loopback URL: {self.url!r}")
        logger.info("fake workspace at %s, requests logged to %s", self.url, self.log)

    def entries(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def requests(self, since: int = 0) -> list[dict]:
        """Requests (method, path, query, body), in order, from the ``since``-th log entry on."""
        return [entry for entry in self.entries()[since:] if "method" in entry]

    def unhandled(self) -> list[str]:
        """Calls no handler answered, and any other error the server reported."""
        return [entry["error"] for entry in self.entries() if "error" in entry]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


class Cli:
    """The Databricks CLI as one identity (``token``) of the fake workspace, in its own bundle copy."""

    def __init__(self, binary: Path, workspace: Workspace, token: str, folder: Path):
        self.binary, self.workspace = binary, workspace
        self.bundle = folder / "bundle"
        shutil.copytree(ROOT, self.bundle, ignore=NOT_COPIED, symlinks=True)
        home = folder / "home"
        home.mkdir()
        python_bin = str(Path(sys.executable).parent)  # the artifact build runs `python -m pip wheel`
        self.env = {
            "PATH": os.pathsep.join([python_bin, os.environ.get("PATH", "/usr/bin:/bin")]),
            "HOME": str(home),
            "DATABRICKS_HOST": workspace.url,
            "DATABRICKS_TOKEN": token,
            "DATABRICKS_CONFIG_FILE": str(home / ".databrickscfg"),  # none: nothing of the caller's leaks in
            "DATABRICKS_BUNDLE_ENGINE": "direct",  # deploys through the API; Terraform is not downloaded
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            # The artifact's `pip wheel` builds with this environment's setuptools (a dev dependency)
            # instead of fetching it into a fresh isolated environment on every deploy. pip reads "0" here
            # as "no isolation" (its inverted boolean for --no-* options).
            "PIP_NO_BUILD_ISOLATION": "0",
        }

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> Result:
        done = subprocess.run(
            [str(self.binary), *args],
            cwd=self.bundle,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        if check and result.code != 0:
            raise AssertionError(
                f"databricks {' '.join(args)} exited {result.code}:\n{done.stdout}\n{done.stderr}"
            )
        return result
