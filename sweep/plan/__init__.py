"""Planning a sweep: presets and the sweep config (which trials, which settings). No Ray."""
