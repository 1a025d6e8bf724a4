"""The whole graph and the platform around it: CLI, dagster dev, the UI in a browser, faults,
privacy, governance, backup, the code layout."""
