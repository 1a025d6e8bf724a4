"""Each stage's assets materialized in process on small generated data, with their checks."""
