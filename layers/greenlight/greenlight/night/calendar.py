"""When the cluster shrinks and when it comes back: the night's calendar rules.

EventBridge Scheduler fires the evening shrink and the morning restore at local times in the
cluster's time zone (daylight saving is the scheduler's business). What this module decides is
whether a firing should act, on the local date of the instant it fires:

- ``pause_until``: no shrink before that date (a manual ``pause``); restores still run;
- ``skip``: tonight's shrink is skipped (a manual ``skip``, for one local date);
- ``no_shrink_dates``: dates on which the cluster must not shrink (a sale, a launch);
- ``weekends_small``: the cluster may stay small from Friday night to Monday morning, so the
  Saturday and Sunday morning restores do nothing;
- ``small_dates``: dates on which the cluster may stay small all day (public holidays): that
  morning's restore does nothing.

A restore is never skipped for any other reason: when in doubt the cluster comes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SATURDAY, SUNDAY = 5, 6


@dataclass(frozen=True)
class NightCalendar:
    time_zone: str
    weekends_small: bool = True
    small_dates: frozenset[date] = field(default_factory=frozenset)
    no_shrink_dates: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"time_zone: {self.time_zone!r} is not an IANA time zone (e.g. Europe/Amsterdam)"
            ) from None
        both = self.small_dates & self.no_shrink_dates
        if both:
            raise ValueError(
                f"dates both in small_dates and no_shrink_dates: {sorted(map(str, both))}"
            )

    def local_date(self, instant: datetime) -> date:
        if instant.tzinfo is None:
            raise ValueError("instant: expected an aware datetime")
        return instant.astimezone(ZoneInfo(self.time_zone)).date()


@dataclass(frozen=True)
class Decision:
    act: bool
    why: str


def shrink_tonight(
    calendar: NightCalendar,
    instant: datetime,
    *,
    pause_until: date | None = None,
    skip: date | None = None,
) -> Decision:
    """Whether the evening shrink firing at ``instant`` should shrink."""
    today = calendar.local_date(instant)
    if pause_until is not None and today < pause_until:
        return Decision(False, f"paused until {pause_until.isoformat()}")
    if skip == today:
        return Decision(False, f"skipped for {today.isoformat()} by hand")
    if today in calendar.no_shrink_dates:
        return Decision(False, f"{today.isoformat()} is a no-shrink date")
    return Decision(True, f"{today.isoformat()}: shrink")


def restore_this_morning(calendar: NightCalendar, instant: datetime) -> Decision:
    """Whether the morning restore firing at ``instant`` should restore."""
    today = calendar.local_date(instant)
    if today in calendar.small_dates:
        return Decision(False, f"{today.isoformat()} may stay small")
    if calendar.weekends_small and today.weekday() in (SATURDAY, SUNDAY):
        return Decision(False, f"{today.strftime('%A')}: the cluster stays small at weekends")
    return Decision(True, f"{today.isoformat()}: restore")
