"""Under CI=true a skip for a missing CI requirement fails the run; other skips stay skips."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = '''
import pytest

def test_needs_prometheus():
    pytest.skip("no Prometheus binary at /nowhere/prometheus")

@pytest.mark.skipif(True, reason="real sample not available: ../shared/data/x.csv")
def test_needs_data():
    pass

def test_optional():
    pytest.skip("only on big-endian machines")
'''
MODULE_SKIP = '''
import pytest
pytest.importorskip("no_such_module_here", reason="hftbacktest (dev extra) is not installed")

def test_never_runs():
    pass
'''


def _pytest(tmp_path: Path, ci: str | None, *files: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           "-q", "-rA", *files], check=False, capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)


def test_required_skips_fail_only_under_ci(tmp_path: Path) -> None:
    (tmp_path / "test_cases.py").write_text(CASES)
    quiet = _pytest(tmp_path, None, "test_cases.py")
    assert quiet.returncode == 0, quiet.stdout
    assert "3 skipped" in quiet.stdout
    ci = _pytest(tmp_path, "true", "test_cases.py")
    assert ci.returncode == 1, ci.stdout
    assert "CI=true, so this test may not skip: no Prometheus binary" in ci.stdout
    assert "CI=true, so this test may not skip: real sample not available" in ci.stdout
    assert "1 failed" in ci.stdout and "1 skipped" in ci.stdout and "1 error" in ci.stdout  # skipif is setup
    assert "only on big-endian machines" in ci.stdout  # an unrelated skip stays a skip
    assert _pytest(tmp_path, "false", "test_cases.py").returncode == 0


def test_module_skipped_at_import_fails_under_ci(tmp_path: Path) -> None:
    (tmp_path / "test_module.py").write_text(MODULE_SKIP)
    (tmp_path / "test_other.py").write_text("def test_other():\n    pass\n")
    assert _pytest(tmp_path, None, "test_module.py", "test_other.py").returncode == 0
    ci = _pytest(tmp_path, "true", "test_module.py", "test_other.py")
    assert ci.returncode == 1, ci.stdout
    assert "module may not skip" in ci.stdout and "hftbacktest" in ci.stdout
