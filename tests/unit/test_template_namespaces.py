"""The stack's app-namespace allow-list: a required parameter every apps-file reader gets."""

from __future__ import annotations

import re

import pytest

from greenlight.errors import SettingsError
from greenlight.settings import ENV_APP_NAMESPACES, app_namespaces
from greenlight_sandbox import resources
from greenlight_sandbox.fleet import load_template

TEMPLATE = load_template()
# The functions that load the apps file (AppsSource): each must have the allow-list.
APPS_READERS = ("RolloutFunction", "GateFunction", "HaproxyFunction", "NightFunction")


def test_the_parameter_has_no_default_and_a_pattern():
    parameter = TEMPLATE["Parameters"]["AppNamespaces"]
    assert parameter["Type"] == "String"
    assert "Default" not in parameter  # no value that allows every namespace


@pytest.mark.parametrize(
    ("value", "allowed", "settings_refuse"),
    [
        ("shop", True, False),
        ("shop,blog", True, False),
        ("default", True, False),
        ("kube", True, False),
        ("", False, True),
        ("*", False, True),
        ("shop,", False, False),  # the functions ignore empty entries
        ("shop, blog", False, False),  # ... and spaces around names
        ("kube-system", False, True),
        ("shop,kube-public", False, True),
        ("Shop", False, True),
        ("-shop", False, True),
        ("a" * 64, False, True),
    ],
)
def test_the_parameter_pattern_agrees_with_the_functions(value, allowed, settings_refuse):
    pattern = TEMPLATE["Parameters"]["AppNamespaces"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is allowed
    if settings_refuse:
        with pytest.raises(SettingsError):
            app_namespaces({ENV_APP_NAMESPACES: value})
    else:
        names = tuple(name.strip() for name in value.split(",") if name.strip())
        assert app_namespaces({ENV_APP_NAMESPACES: value}) == names


@pytest.mark.parametrize("function", APPS_READERS)
def test_every_function_that_reads_the_apps_file_gets_the_list(function):
    variables = TEMPLATE["Resources"][function]["Properties"]["Environment"]["Variables"]
    assert variables["GREENLIGHT_APP_NAMESPACES"] == {"Ref": "AppNamespaces"}


def test_only_those_functions_get_it():
    getting = {
        name
        for name, resource in TEMPLATE["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::Function"
        and "GREENLIGHT_APP_NAMESPACES"
        in resource["Properties"].get("Environment", {}).get("Variables", {})
    }
    assert getting == set(APPS_READERS)


def test_the_sandbox_passes_shop_and_blog():
    assert resources.APP_NAMESPACES == ("shop", "blog")
