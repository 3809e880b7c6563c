"""Importing the analysis leaves a notebook's matplotlib backend alone. (That analysis imports
neither torch nor ray is an import-linter contract: tests/test_layering.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_figure_modules_keeps_the_users_backend():
    """A notebook's backend (here MPLBACKEND=svg) survives importing plots, report and gallery:
    they used to force Agg, which made figures vanish from notebooks."""
    code = (
        "import analysis.plots, analysis.report, analysis.gallery\n"
        "import matplotlib\n"
        "print(matplotlib.get_backend())\n"
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "svg"
