import base64
import hashlib
import hmac

import pytest

from greenlight.errors import EventError, SignatureError
from greenlight.webhook import accept, sign, verify
from tests.conftest import load_event

SECRET = "example-webhook-secret"  # the documented secret the sample events are signed with


def test_sign_matches_hmac_sha256_hex():
    body = b'{"zen":"ok"}'
    assert sign(body, "s") == "sha256=" + hmac.new(b"s", body, hashlib.sha256).hexdigest()


def test_sample_event_verifies_with_its_documented_secret():
    delivery = accept(load_event("github-push.json"), SECRET)
    assert delivery.status == 202 and delivery.push is not None


def test_base64_body_is_decoded_before_verifying():
    event = load_event("github-push.json")
    raw = event["body"].encode()
    event = {**event, "body": base64.b64encode(raw).decode(), "isBase64Encoded": True}
    assert accept(event, SECRET).push is not None


def test_signature_is_over_raw_bytes_not_reserialised_json():
    event = load_event("github-push.json")
    spaced = event["body"].replace(",", ", ", 1)
    with pytest.raises(SignatureError, match="does not match"):
        accept({**event, "body": spaced}, SECRET)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "header missing"),
        ({"x-hub-signature": "sha1=abc"}, "only a SHA-1 signature"),
        ({"x-hub-signature-256": "md5=abc"}, "not of the form"),
        ({"x-hub-signature-256": "sha256=" + "0" * 64}, "does not match"),
    ],
)
def test_bad_signatures_are_refused(headers, message):
    with pytest.raises(SignatureError, match=message):
        verify(headers, b"{}", SECRET)


def test_wrong_secret_is_refused():
    with pytest.raises(SignatureError):
        accept(load_event("github-push.json"), "another-secret")


def test_non_post_and_bad_base64_are_event_errors():
    event = load_event("github-push.json")
    with pytest.raises(EventError, match="only POST"):
        accept({**event, "requestContext": {"http": {"method": "GET"}}}, SECRET)
    with pytest.raises(EventError, match="not base64"):
        accept({**event, "body": "%%%", "isBase64Encoded": True}, SECRET)
