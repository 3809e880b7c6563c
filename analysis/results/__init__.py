"""The contract layer: everything that crosses a process or package boundary, owned once.

Imports nothing else of pags, and neither torch nor ray (import-linter checks it, pyproject.toml
[tool.importlinter]), so the trial side (trainables), the sweep and the analysis all build on it:

    layout.py   the experiment directory: every file name, every path as a function of a root
    record.py   TrialRecord, the one result of a trial (pags sweep, pags train --json, measure)
    rows.py     the one builder of each table row (trial_row, measure_row, measure_rows)
    columns.py  the documented columns of trials.parquet and measures.parquet
    tables.py   Parquet I/O: coercion, schema version, migration of older tables
    methods.py  the method registry: every fact of a method (symbol, cost, lr rule, ...)
    atomic.py   atomic writes, local or URI
    errors.py   InputError and one_line
"""
