"""The night's calendar rules on fixed instants, across daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from greenlight.night.calendar import NightCalendar, restore_this_morning, shrink_tonight

AMS = NightCalendar(
    "Europe/Amsterdam",
    small_dates=frozenset({date(2026, 12, 25)}),
    no_shrink_dates=frozenset({date(2026, 11, 27)}),  # Black Friday
)


WEEKEND = "the cluster stays small at weekends"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rule", "instant", "act", "why"),
    [
        (shrink_tonight, utc(2026, 11, 26, 19, 0), True, "2026-11-26: shrink"),  # 20:00 CET
        (shrink_tonight, utc(2026, 11, 27, 19, 0), False, "2026-11-27 is a no-shrink date"),
        # 23:30 UTC on the 26th is already the 27th in Amsterdam: the local date decides.
        (shrink_tonight, utc(2026, 11, 26, 23, 30), False, "2026-11-27 is a no-shrink date"),
        # The spring change (2026-03-29): 20:00 CEST is 18:00 UTC, a Sunday.
        (shrink_tonight, utc(2026, 3, 29, 18, 0), True, "2026-03-29: shrink"),
        (restore_this_morning, utc(2026, 11, 30, 6, 0), True, "2026-11-30: restore"),  # Monday
        (restore_this_morning, utc(2026, 11, 28, 6, 0), False, f"Saturday: {WEEKEND}"),
        (restore_this_morning, utc(2026, 11, 29, 6, 0), False, f"Sunday: {WEEKEND}"),
        (restore_this_morning, utc(2026, 12, 25, 6, 0), False, "2026-12-25 may stay small"),
        # The autumn change (2026-10-25 is a Sunday): Monday 07:00 CET is 06:00 UTC.
        (restore_this_morning, utc(2026, 10, 26, 6, 0), True, "2026-10-26: restore"),
        # Sunday 23:30 UTC is Monday 00:30 in Amsterdam: a restore then runs.
        (restore_this_morning, utc(2026, 11, 29, 23, 30), True, "2026-11-30: restore"),
    ],
)
def test_the_calendar_decides_on_the_local_date(rule, instant, act, why):
    decision = rule(AMS, instant)
    assert (decision.act, decision.why) == (act, why)


def test_weekends_can_be_restored_too():
    weekdays_only = NightCalendar("Europe/Amsterdam", weekends_small=False)
    assert restore_this_morning(weekdays_only, utc(2026, 11, 28, 6, 0)).act


def test_pause_and_skip():
    thursday = utc(2026, 11, 26, 19, 0)
    paused = shrink_tonight(AMS, thursday, pause_until=date(2026, 12, 1))
    assert (paused.act, paused.why) == (False, "paused until 2026-12-01")
    assert shrink_tonight(AMS, thursday, pause_until=date(2026, 11, 26)).act  # ends that day
    skipped = shrink_tonight(AMS, thursday, skip=date(2026, 11, 26))
    assert (skipped.act, skipped.why) == (False, "skipped for 2026-11-26 by hand")
    assert shrink_tonight(AMS, utc(2026, 11, 30, 19, 0), skip=date(2026, 11, 26)).act


def test_bad_settings_and_instants_are_refused():
    with pytest.raises(ValueError, match="not an IANA time zone"):
        NightCalendar("Europe/Atlantis")
    with pytest.raises(ValueError, match="both in small_dates and no_shrink_dates"):
        NightCalendar(
            "UTC",
            small_dates=frozenset({date(2026, 1, 1)}),
            no_shrink_dates=frozenset({date(2026, 1, 1)}),
        )
    with pytest.raises(ValueError, match="aware datetime"):
        AMS.local_date(datetime(2026, 11, 26, 19, 0))
