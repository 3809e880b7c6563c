"""analysis must import neither torch nor ray (the package depends on nothing of ours and
runs where the training stack is not installed)."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import analysis

ROOT = Path(__file__).resolve().parents[1]


def test_analysis_imports_neither_torch_nor_ray():
    modules = sorted(m.name for m in pkgutil.iter_modules(analysis.__path__, "analysis."))
    assert "analysis.report" in modules and "analysis.schema" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "import analysis\n"
        "for name in analysis.__all__:\n"
        "    getattr(analysis, name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray'))\n"
        "print(' '.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"analysis imported: {done.stdout.strip()}"


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
