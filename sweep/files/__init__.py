"""`pags measure`: measuring model files (run.py: plan and run; tasks.py: in-process or Ray
tasks; tables.py: the tables from the records). Does not import the Tune driver."""
