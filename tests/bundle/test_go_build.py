"""The binary cache behind the bundle tests: built once, renamed into place whole, rebuilt only when missing,
and a clear reason (not a crash) when Go is not installed."""

from __future__ import annotations

import os
import threading

import pytest


def fake_build(calls: list, started: threading.Event | None = None):
    def build(output):
        calls.append(output)
        assert not output.exists() and output.name.startswith(".")  # a temporary name, never the target
        output.write_text("#!/bin/sh\n")
        os.chmod(output, 0o755)

    return build


def test_a_binary_is_built_once_and_renamed_into_place(go_build_module, tmp_path, monkeypatch):
    monkeypatch.setattr(go_build_module.shutil, "which", lambda name: "/usr/bin/go")
    target, calls = tmp_path / "tool" / "1.0" / "tool", []
    assert go_build_module._cached(target, fake_build(calls)) == target
    assert go_build_module._cached(target, fake_build(calls)) == target
    assert len(calls) == 1 and os.access(target, os.X_OK)
    assert sorted(p.name for p in target.parent.iterdir()) == [".build.lock", "tool"]  # no temporary left


def test_parallel_runs_build_once(go_build_module, tmp_path, monkeypatch):
    monkeypatch.setattr(go_build_module.shutil, "which", lambda name: "/usr/bin/go")
    target, calls = tmp_path / "tool", []
    threads = [
        threading.Thread(target=go_build_module._cached, args=(target, fake_build(calls))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1


def test_a_failed_build_leaves_nothing_behind(go_build_module, tmp_path, monkeypatch):
    monkeypatch.setattr(go_build_module.shutil, "which", lambda name: "/usr/bin/go")

    def broken(output):
        output.write_text("half a binary")
        raise RuntimeError("go build failed")

    target = tmp_path / "tool"
    with pytest.raises(RuntimeError, match="go build failed"):
        go_build_module._cached(target, broken)
    assert [p.name for p in tmp_path.iterdir()] == [".build.lock"]


def test_without_go_the_reason_is_given(go_build_module, tmp_path, monkeypatch):
    monkeypatch.setattr(go_build_module.shutil, "which", lambda name: None)
    with pytest.raises(go_build_module.GoMissing, match="needs the Go toolchain"):
        go_build_module._cached(tmp_path / "tool", fake_build([]))
    monkeypatch.setenv("CQRS_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(go_build_module.GoMissing):
        go_build_module.databricks_cli()
