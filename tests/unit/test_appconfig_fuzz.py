"""Fuzzing the apps loader: any text, and any mutation of the sandbox's apps file, is parsed or
refused with a ConfigError; no other error escapes."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from greenlight.appconfig import parse_apps
from greenlight.errors import ConfigError
from tests.mutations import mutate, paths

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = yaml.safe_load((ROOT / "config/sandbox-apps.yaml").read_text())
LOADER = settings(max_examples=150, deadline=None)

VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=16)
    | st.dates(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


PATHS = paths(SANDBOX)


def _parses_or_config_error(text: str) -> None:
    try:
        parse_apps(text, origin="fuzz")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz"), exc


@LOADER
@given(text=st.text(max_size=300) | st.text(alphabet=":-[]{}&*!|>'\"#%@`,? \n\t0aZ", max_size=200))
def test_any_text_is_parsed_or_refused_with_a_config_error(text):
    _parses_or_config_error(text)


@LOADER
@given(
    changes=st.lists(
        st.tuples(st.sampled_from(PATHS), st.booleans(), VALUES), min_size=1, max_size=3
    )
)
def test_any_mutation_of_the_sandbox_apps_file_is_parsed_or_refused_with_a_config_error(changes):
    _parses_or_config_error(yaml.safe_dump(mutate(SANDBOX, changes), allow_unicode=True))
