"""The command-line tools: each module has a `main()` and runs as `python -m ml_assets.cli.<name>`."""
