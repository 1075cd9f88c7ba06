"""HAProxy's app backends: their names, their health checks, and how quickly they admit a
gated candidate.

Kept free of imports so that the gate can read the admission grace and name the backends whose
counters it reads without loading the renderer (jinja2) or the snapshot models (pydantic).
"""

from __future__ import annotations

RISE = 2  # consecutive passes before HAProxy routes to a server
FALL = 3  # consecutive failures before it stops
# While an app's rollout is gated, its candidate's backend is checked this often whenever a
# server is down or changing state (HAProxy's ``downinter`` and ``fastinter``), instead of every
# ``health.interval_seconds``: the preview route is pushed before the candidate is ready, and
# its servers come up within about ``FAST_CHECK_MS * RISE`` of the pods being ready.
FAST_CHECK_MS = 250
# The gate does not count a failed probe through the preview host within this long of first
# seeing the candidate ready: HAProxy may not have admitted the servers yet. It is the
# admission time above with room for a check's own round trip and a busy instance.
ADMISSION_GRACE_SECONDS = 2.0


def backend_name(app: str, colour: str) -> str:
    """A colour's own backend (``colour``: ``"blue"``, ``"green"`` or a ``Colour``): its servers,
    health-checked; the preview host's route, and the live hosts' while nothing is warm."""
    return f"{app}-{colour}"


def live_backend_name(app: str, colour: str) -> str:
    """The live hosts' backend while ``colour`` is live and the other colour is warm behind it:
    ``colour``'s servers, then the other's as backups, each tracking its colour backend's server
    (docs/edge.md, "The live route and its backup")."""
    return f"{app}-live-{colour}"
