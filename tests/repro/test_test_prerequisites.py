"""`make test` sets up what the suite needs (scripts/test_prerequisites.sh), or stops at once with one line."""

from __future__ import annotations

import os
import shutil
import subprocess


def _fake_path(tmp_path, uid: str, git_email: str | None) -> str:
    """A PATH with no chromium and no sudo, an `id` that says `uid`, and a `git` with or without an email."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    email = f"echo {git_email}" if git_email else "exit 1"
    (bin_dir / "git").write_text(f"#!/bin/sh\n[ \"$3\" = user.email ] && {{ {email}; exit; }}\necho someone\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return str(bin_dir)


def _run(repo_root, path: str) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(repo_root / "scripts/test_prerequisites.sh")],
                          env={"PATH": path, "HOME": os.environ.get("HOME", "/")}, capture_output=True, text=True)


def test_without_chromium_and_without_root_it_stops_with_one_line(repo_root, tmp_path):
    result = _run(repo_root, _fake_path(tmp_path, "1000", "a@b.c"))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "sudo apt-get install -y chromium" in result.stderr and result.stdout == ""


def test_with_chromium_it_only_supplies_a_missing_git_identity(repo_root, tmp_path):
    path = _fake_path(tmp_path, "1000", None)
    (tmp_path / "bin" / "chromium").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "chromium").chmod(0o755)
    result = _run(repo_root, path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("export GIT_AUTHOR_EMAIL=") and "GIT_AUTHOR_NAME" not in result.stdout
