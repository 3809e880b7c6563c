"""Compatibility names for code written against `analysis.schema` (before the contract layer).

The owners are analysis/results/ (layout, columns, tables, methods) and analysis/report_tables.py;
import from there. This module only re-exports, so that older scripts keep running.
"""

from __future__ import annotations

from analysis.report_tables import *  # noqa: F403
from analysis.results.columns import *  # noqa: F403
from analysis.results.columns import ABSENT, MEASURES, MEASURES_COLUMNS, TABLES, TRIALS_COLUMNS  # noqa: F401
from analysis.results.layout import *  # noqa: F403
from analysis.results.methods import METHODS, STRENGTH_SYMBOL  # noqa: F401
from analysis.results.tables import (  # noqa: F401
    METADATA_KEY,
    SCHEMA_VERSION,
    coerce,
    describe,
    empty,
    table_metadata,
    to_arrow,
)
from analysis.results.tables import write_table as write_parquet  # noqa: F401
