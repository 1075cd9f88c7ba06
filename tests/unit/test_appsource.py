"""The functions' apps-file reader: the stack's namespace allow-list and the size cap, on S3."""

from __future__ import annotations

import pytest

from greenlight.appconfig import MAX_APPS_FILE_BYTES
from greenlight.appsource import AppsSource
from greenlight.errors import ConfigError
from tests.unit.test_appconfig import SANDBOX_APPS


@pytest.fixture
def s3(aws):
    client = aws.client("s3")
    client.create_bucket(
        Bucket="apps", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return client


def test_the_allow_list_applies_to_what_the_functions_load(s3):
    s3.put_object(Bucket="apps", Key="config/apps.yaml", Body=SANDBOX_APPS.encode())
    apps = AppsSource(s3, "apps", "config/apps.yaml", ("shop", "blog")).load()
    assert [app.name for app in apps.apps] == ["shop", "blog"]
    with pytest.raises(ConfigError) as caught:
        AppsSource(s3, "apps", "config/apps.yaml", ("blog",)).load()
    assert str(caught.value).startswith("s3://apps/config/apps.yaml is invalid: ")
    assert "apps.shop.namespace: got 'shop'" in str(caught.value)


def test_an_empty_allow_list_allows_nothing(s3):
    s3.put_object(Bucket="apps", Key="config/apps.yaml", Body=SANDBOX_APPS.encode())
    with pytest.raises(
        ConfigError, match=r"apps\.shop\.namespace.*GREENLIGHT_APP_NAMESPACES: none"
    ):
        AppsSource(s3, "apps", "config/apps.yaml", ()).load()


def test_an_object_over_the_cap_is_refused_before_it_is_read(s3):
    body = SANDBOX_APPS.encode() + b"#" * MAX_APPS_FILE_BYTES
    s3.put_object(Bucket="apps", Key="config/apps.yaml", Body=body)
    with pytest.raises(ConfigError) as caught:
        AppsSource(s3, "apps", "config/apps.yaml", ("shop", "blog")).load()
    assert str(caught.value) == (
        f"s3://apps/config/apps.yaml is invalid: more than {MAX_APPS_FILE_BYTES} bytes (the limit)"
    )


def test_a_file_that_is_not_utf8_is_refused_as_check_apps_refuses_it(s3):
    body = SANDBOX_APPS.encode().replace(b"shop-web", b"shop-w\xffb", 1)
    s3.put_object(Bucket="apps", Key="config/apps.yaml", Body=body)
    with pytest.raises(ConfigError) as caught:
        AppsSource(s3, "apps", "config/apps.yaml", ("shop", "blog")).load()
    where = body.index(b"\xff") + 1
    assert str(caught.value) == (
        f"s3://apps/config/apps.yaml is invalid: not UTF-8 text (byte {where})"
    )
