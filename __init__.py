"""Playbook: guardrails for humans running operations runbooks."""

__version__ = "2.0.0"
