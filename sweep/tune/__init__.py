"""Running a sweep on Ray Tune: driver, launch, the Optuna search, Tune state backup, progress,
shared artifacts and cluster connection."""
