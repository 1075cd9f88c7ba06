"""Greenlight: git commit to production on Kubernetes with zero downtime.

The shared layer. Its modules are named after the domain: ``appconfig`` (which app a commit
belongs to), ``triggers`` (what an event asks for), ``webhook`` (GitHub signatures),
``rollout`` (records, the green Deployment, the hand-off to the gate), ``cluster`` (access to
Kubernetes) and ``aws`` (clients). Handlers under ``functions/`` are thin adapters over them.
"""

__version__ = "0.1.0"
