"""Pure functions of transforms/ (and the spec) on tiny frames: no Dagster, no warehouse."""
