"""What one rollout state change tells the world: pure, an event's detail in, deliveries out.

Targets (``store.notify.TARGETS``):

- GitHub commit status, context ``greenlight/<app>``: ``pending`` from the move into
  ``deploying`` (accepted) to ``watching``, ``success`` at ``live``, ``failure`` when the
  commit was judged and lost (``failed``, ``rolled_back``), ``error`` when it was stopped
  (``aborted``, ``superseded``); the description says the phase and the reason;
- GitHub deployment (one per rollout, environment ``<environment>/<app>``) and its statuses:
  ``queued``, ``in_progress``, ``success``, ``failure``/``error`` as above; at ``live`` the
  deployment it replaced is marked ``inactive`` (``INACTIVATE_PREVIOUS``);
- CodeCommit: a comment on the commit when the rollout ends (``live``, or an end with its reason);
- SNS: every phase change, a human-readable message and the structured event;
- Slack: the moves people act on (accepted, live, and the ends but ``settled``).

``settled`` (the previous colour retired) changes nothing on GitHub: the commit is already
``success``. A rollout without a commit (a manual rollout of an explicit image) gets SNS and
Slack only. A manual rollout's repository is the app's: ``owner/name`` is GitHub (CodeCommit
names cannot hold ``/``), anything else CodeCommit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..errors import EventError
from ..lifecycle import Phase
from ..store.notify import CODECOMMIT_COMMENT, GITHUB_DEPLOYMENT, GITHUB_STATUS, SLACK, SNS

ROLLOUT_STATE_CHANGE = "Greenlight Rollout State Change"  # the announce job's detail-type
POSTED = "posted"
INACTIVATE_PREVIOUS = "inactive"  # the deployment state of the previous rollout's deployment
DESCRIPTION_MAX = 140  # GitHub's limit for status descriptions
SUBJECT_MAX = 100  # SNS's limit for a subject

P = Phase
_WORDS: Mapping[Phase, str] = {
    P.DEPLOYING: "accepted, deploying",
    P.GATING: "at the health gate",
    P.AWAITING_APPROVAL: "healthy, awaiting a manual promote",
    P.PROMOTING: "promoting",
    P.WATCHING: "promoted, watched",
    P.LIVE: "live",
    P.SETTLED: "settled",
    P.FAILED: "failed",
    P.ROLLED_BACK: "rolled back",
    P.ABORTED: "aborted",
    P.SUPERSEDED: "superseded",
}
_COMMIT_STATE: Mapping[Phase, str] = {
    P.DEPLOYING: "pending",
    P.GATING: "pending",
    P.AWAITING_APPROVAL: "pending",
    P.PROMOTING: "pending",
    P.WATCHING: "pending",
    P.LIVE: "success",
    P.FAILED: "failure",
    P.ROLLED_BACK: "failure",
    P.ABORTED: "error",
    P.SUPERSEDED: "error",
}
_DEPLOYMENT_STATE: Mapping[Phase, str] = {
    P.DEPLOYING: "queued",
    P.GATING: "in_progress",
    P.AWAITING_APPROVAL: "in_progress",
    P.PROMOTING: "in_progress",
    P.WATCHING: "in_progress",
    P.LIVE: "success",
    P.FAILED: "failure",
    P.ROLLED_BACK: "failure",
    P.ABORTED: "error",
    P.SUPERSEDED: "error",
}
# The rollout ended for the commit: a comment on CodeCommit.
_COMMENTED = frozenset({P.LIVE, P.FAILED, P.ROLLED_BACK, P.ABORTED, P.SUPERSEDED})
# What a Slack channel hears.
_SLACKED = frozenset({P.DEPLOYING}) | _COMMENTED


class Delivery(NamedTuple):
    """One thing to send. ``state`` is what is said (a GitHub state, or ``posted``)."""

    target: str
    state: str = POSTED
    description: str = ""  # GitHub: a status's or deployment status's description
    context: str = ""  # GitHub commit status context
    subject: str = ""  # SNS
    text: str = ""  # CodeCommit comment, SNS message, Slack text


class Notice(NamedTuple):
    """A rollout state change and what it sends."""

    event_id: str
    history_index: int  # the history index (the number after "/" in the event id)
    app: str
    rollout_id: str
    phase: Phase
    provider: str | None  # "github", "codecommit" or None (no commit to talk about)
    repository: str | None
    commit: str | None
    environment: str  # the GitHub deployment environment
    deliveries: tuple[Delivery, ...]


def provider_of(source: str | None, repository: str | None, commit: str | None) -> str | None:
    """Where the commit lives: ``github``, ``codecommit``, or None (no commit)."""
    if not commit or not repository:
        return None
    if source in ("github", "codecommit"):
        return source
    return "github" if "/" in repository else "codecommit"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _short(commit: str | None) -> str:
    return commit[:7] if commit else ""


def headline(detail: Mapping[str, Any]) -> str:
    """One line: ``shop 1a2b3c4 rolled back: health check failed``."""
    phase = Phase(detail["to"])
    what = (detail.get("commit") and _short(detail["commit"])) or detail.get("image") or ""
    line = f"{detail['app']} {what} {_WORDS[phase]}".replace("  ", " ")
    reason = str(detail.get("reason") or "").strip()
    return f"{line}: {reason}" if reason else line


def github_description(detail: Mapping[str, Any]) -> str:
    phase = Phase(detail["to"])
    reason = str(detail.get("reason") or "").strip()
    words = _WORDS[phase].capitalize()
    return _clip(f"{words}: {reason}" if reason else words, DESCRIPTION_MAX)


def comment_text(detail: Mapping[str, Any]) -> str:
    phase = Phase(detail["to"])
    lines = [
        f"Greenlight: {detail['app']} is live with this commit."
        if phase is P.LIVE
        else f"Greenlight: the rollout of this commit to {detail['app']} {_WORDS[phase]}.",
    ]
    reason = str(detail.get("reason") or "").strip()
    if reason and phase is not P.LIVE:
        lines.append(f"Reason: {reason}")
    lines.append(f"Rollout {detail['rollout_id']}, image {detail['image']}.")
    return "\n\n".join(lines)


def sns_message(detail: Mapping[str, Any]) -> str:
    lines = [
        headline(detail),
        "",
        f"app: {detail['app']}",
        f"rollout: {detail['rollout_id']}",
        f"phase: {detail.get('from') or '(new)'} -> {detail['to']}",
        f"image: {detail['image']}",
    ]
    if detail.get("repository"):
        lines.append(f"repository: {detail['repository']} {detail.get('branch') or ''}".rstrip())
    if detail.get("commit"):
        lines.append(f"commit: {detail['commit']}")
    lines += [f"at: {detail.get('at', '')}", "", "event:", json.dumps(dict(detail), indent=2)]
    return "\n".join(lines)


def slack_text(detail: Mapping[str, Any]) -> str:
    return f"Greenlight: {headline(detail)} (rollout {detail['rollout_id']})"


def deployment_environment(environment: str, app: str) -> str:
    return f"{environment}/{app}"


def deployment_request(notice: Notice, detail: Mapping[str, Any]) -> dict[str, Any]:
    """The body of ``POST /repos/{owner}/{repo}/deployments`` for the rollout."""
    return {
        "ref": notice.commit,
        "task": "deploy",
        "auto_merge": False,
        # The deployment is a record of what Greenlight does: no status checks to wait for
        # (without this, GitHub refuses it while greenlight/<app> itself is pending).
        "required_contexts": [],
        "environment": notice.environment,
        "description": _clip(
            f"Greenlight rollout {notice.rollout_id} of {detail['image']}", DESCRIPTION_MAX
        ),
        "payload": {"app": notice.app, "rollout_id": notice.rollout_id, "image": detail["image"]},
        "production_environment": True,
        "transient_environment": False,
    }


def index_of(event_id: str) -> int:
    _, sep, tail = event_id.rpartition("/")
    if not sep or not tail.isdigit():
        raise EventError(f"id: expected <rollout_id>/<index>, got {event_id!r}")
    return int(tail)


def _github(detail: Mapping[str, Any], phase: Phase) -> list[Delivery]:
    """The commit status and deployment status of ``phase``; at ``live``, the replaced
    deployment's ``inactive``."""
    out: list[Delivery] = []
    description = github_description(detail)
    if phase in _COMMIT_STATE:
        out.append(
            Delivery(
                GITHUB_STATUS,
                _COMMIT_STATE[phase],
                description=description,
                context=f"greenlight/{detail['app']}",
            )
        )
    if phase in _DEPLOYMENT_STATE:
        out.append(Delivery(GITHUB_DEPLOYMENT, _DEPLOYMENT_STATE[phase], description=description))
    if phase is P.LIVE:
        replaced = f"Replaced by rollout {detail['rollout_id']}"
        out.append(
            Delivery(
                GITHUB_DEPLOYMENT,
                INACTIVATE_PREVIOUS,
                description=_clip(replaced, DESCRIPTION_MAX),
            )
        )
    return out


def plan(
    detail: Mapping[str, Any],
    *,
    environment: str = "production",
    github: bool = True,
    slack: bool = False,
) -> Notice:
    """What the state change ``detail`` sends (``github``: GitHub is configured; ``slack``: a
    Slack webhook is)."""
    try:
        phase = Phase(detail["to"])
        app, rollout_id, event_id = str(detail["app"]), str(detail["rollout_id"]), detail["id"]
    except (KeyError, ValueError) as exc:
        raise EventError(f"not a rollout state change: {exc}") from None
    commit = detail.get("commit") or None
    repository = detail.get("repository") or None
    provider = provider_of(detail.get("source"), repository, commit)
    out = _github(detail, phase) if provider == "github" and github else []
    if provider == "codecommit" and phase in _COMMENTED:
        out.append(Delivery(CODECOMMIT_COMMENT, text=comment_text(detail)))
    out.append(
        Delivery(
            SNS,
            subject=_clip(f"Greenlight: {headline(detail)}", SUBJECT_MAX)
            .encode("ascii", "replace")
            .decode(),  # SNS takes ASCII subjects only
            text=sns_message(detail),
        )
    )
    if slack and phase in _SLACKED:
        out.append(Delivery(SLACK, text=slack_text(detail)))
    return Notice(
        event_id=str(event_id),
        history_index=index_of(str(event_id)),
        app=app,
        rollout_id=rollout_id,
        phase=phase,
        provider=provider,
        repository=repository,
        commit=commit,
        environment=deployment_environment(environment, app),
        deliveries=tuple(out),
    )
