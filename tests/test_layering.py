"""The layering (pyproject.toml [tool.importlinter]) holds, and breaking it is caught.

`lint-imports` checks the contracts statically (every import, also inside functions, direct or
through other modules); `make lint` and CI run it too. The second test copies the packages,
adds one forbidden import per contract family and checks that lint-imports fails naming it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_the_contracts_hold():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "broken" not in done.stdout.lower().replace("0 broken", "")


@pytest.mark.parametrize(
    "module,line,contract",
    [
        ("analysis/results/rows.py", "import torch", "The contract layer imports nothing"),
        ("analysis/results/layout.py", "from sweep import storage", "The contract layer"),
        ("analysis/noise.py", "import ray", "analysis imports no torch"),
        ("trainables/loop.py", "from analysis import load", "trainables imports only"),
        ("trainables/measure/rho.py", "import ray", "Only the Tune adapter"),
        ("sweep/files/tables.py", "from sweep.tune import launch", "pags measure's modules"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    for name in ("sweep", "trainables", "analysis"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    done = lint(tmp_path)
    assert done.returncode != 0, done.stdout
    broken = [ln for ln in done.stdout.splitlines() if " BROKEN" in ln]
    assert any(ln.startswith(contract) for ln in broken), done.stdout
