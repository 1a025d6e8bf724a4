"""Governance: erasure of a person, retention, key rotation and the audit log of every such action.

Run as `python -m ml_assets.governance ...` (see `--help`); backups are `python -m ml_assets.backup`.
Clear personal values live only in landing files and their archive and quarantine copies; this
package is what removes them when a person asks, and what keeps the record that it did.
"""
