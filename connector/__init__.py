"""On-prem access connector: dials out to a control plane, syncs AWS metadata, runs just-in-time grants."""

__version__ = "0.1.0"
