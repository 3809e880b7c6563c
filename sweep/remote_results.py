"""`pags analyze s3://...`: the report of an experiment on object storage, read from there.

The analysis reads local files (analysis/ knows no storage), so the files it reads, and only
those (the two tables, the gradient maps, `sweep_config.json`, `search_best.json`; never the
trial checkpoints under tune/), are read through pyarrow into a temporary directory that is
removed afterwards. The report goes to `--out`, or by default beside the experiment as on
local disk: `<experiment>/report/`, uploaded there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import pyarrow.fs as pafs

from analysis import ResultsError
from analysis.results.errors import one_line
from analysis.results.layout import (
    MAPS_DIR,
    MEASURES_FILE,
    SEARCH_BEST_FILE,
    SWEEP_FILE,
    TRIALS_FILE,
)
from sweep import storage

READ = (TRIALS_FILE, MEASURES_FILE, SWEEP_FILE, SEARCH_BEST_FILE)
REPORT_DIR = "report"


def stage(uri: str, dest: str) -> str:
    """Copy what the analysis reads of experiment `uri` into a new folder under `dest`."""
    local = tempfile.mkdtemp(prefix=os.path.basename(uri.rstrip("/")) + "-", dir=dest)
    fs, root = storage.filesystem(uri)
    try:
        if fs.get_file_info(f"{root}/{TRIALS_FILE}").type != pafs.FileType.File:
            raise ResultsError(f"{uri}: no {TRIALS_FILE} there (not a pags results directory)")
        for name in READ:
            if fs.get_file_info(f"{root}/{name}").type == pafs.FileType.File:
                storage.copy_file(fs, f"{root}/{name}", os.path.join(local, name))
        maps = pafs.FileSelector(f"{root}/{MAPS_DIR}", allow_not_found=True)
        for info in fs.get_file_info(maps):
            if info.type == pafs.FileType.File:
                storage.copy_file(fs, info.path, os.path.join(local, MAPS_DIR, info.base_name))
    except OSError as err:  # unreachable endpoint, no credentials, no permission
        raise ResultsError(f"{uri}: not readable ({one_line(err)})") from None
    return local


def analyze(dirs: list[str], out: str | None, write: Callable) -> dict:
    """`write(local_dirs, out_dir)` (analysis.report.write_report) with every URI in `dirs`
    staged locally; the report's paths, URIs where it was uploaded."""
    with tempfile.TemporaryDirectory(prefix="pags-analyze-") as tmp:
        local = [stage(d, tmp) if storage.is_uri(d) else d for d in dirs]
        target = out or storage.join(dirs[0], REPORT_DIR)
        if not storage.is_uri(target):
            return write(local if len(local) > 1 else local[0], target)
        report = os.path.join(tmp, REPORT_DIR)
        paths = write(local if len(local) > 1 else local[0], report)
        fs, inner = storage.filesystem(target)
        pafs.copy_files(report, inner, destination_filesystem=fs)
        return {k: storage.join(target, os.path.relpath(str(p), report)) for k, p in paths.items()}
