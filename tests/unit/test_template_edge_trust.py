"""template.yaml's side of what an edge instance trusts, read from the template itself: the
signing key and who may use it, the document's SigningKeyArn on every path, and the bucket
policy that lets only the haproxy function write haproxy/* and only the deployer config/* and
certs/*. A grant widened in the template fails here."""

from __future__ import annotations

import re
from typing import Any

from greenlight_sandbox.fleet import TEMPLATE as TEMPLATE_PATH
from greenlight_sandbox.fleet import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
OBJECT_WRITES = {
    "s3:PutObject",
    "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:RestoreObject",
    "s3:ReplicateObject",
    "s3:ReplicateDelete",
}
KEY_ARN = {"Fn::GetAtt": "EdgeSigningKey.Arn"}


def statements(resource: str, path: tuple[str, ...] = ("KeyPolicy",)) -> dict[str, Any]:
    node: Any = RESOURCES[resource]["Properties"]
    for part in path:
        node = node[part]
    return {s["Sid"]: s for s in node["Statement"]}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_signing_key_is_an_asymmetric_p256_signing_key():
    key = RESOURCES["EdgeSigningKey"]
    assert key["Type"] == "AWS::KMS::Key"
    props = key["Properties"]
    assert (props["KeySpec"], props["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    assert "EnableKeyRotation" not in props  # KMS rotates symmetric keys only


def test_only_the_haproxy_function_signs_and_the_instances_only_verify():
    policy = statements("EdgeSigningKey")
    assert set(policy) == {
        "AccountAdministers",
        "TheHaproxyFunctionSigns",
        "EdgeInstancesVerify",
        "NobodyElseSigns",
    }
    admin = policy["AccountAdministers"]
    assert admin["Effect"] == "Allow"
    assert admin["Principal"] == {
        "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    }
    for action in admin["Action"]:  # administration only: no kms:*, no use of the key
        assert not re.fullmatch(action.replace("*", ".*"), "kms:Sign")
        assert not re.fullmatch(action.replace("*", ".*"), "kms:Verify")
    signs = policy["TheHaproxyFunctionSigns"]
    assert signs["Effect"] == "Allow"
    assert signs["Principal"] == {"AWS": {"Fn::GetAtt": "HaproxyFunctionRole.Arn"}}
    assert set(_list(signs["Action"])) == {"kms:Sign", "kms:Verify"}
    verifies = policy["EdgeInstancesVerify"]
    assert verifies["Principal"] == {"AWS": {"Fn::GetAtt": "EdgeInstanceRole.Arn"}}
    assert _list(verifies["Action"]) == ["kms:Verify"]
    deny = policy["NobodyElseSigns"]
    assert (deny["Effect"], deny["Principal"], _list(deny["Action"])) == ("Deny", "*", ["kms:Sign"])
    assert deny["Condition"] == {
        "ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": "HaproxyFunctionRole.Arn"}}
    }


def test_the_roles_policies_name_the_key_and_nothing_else():
    signing = RESOURCES["HaproxySigningPolicy"]["Properties"]
    assert signing["Roles"] == [{"Ref": "HaproxyFunctionRole"}]
    (sign,) = signing["PolicyDocument"]["Statement"]
    assert (set(sign["Action"]), sign["Resource"]) == ({"kms:Sign", "kms:Verify"}, KEY_ARN)
    verifying = RESOURCES["EdgeInstanceVerifyPolicy"]["Properties"]
    assert verifying["Roles"] == [{"Ref": "EdgeInstanceRole"}]
    (verify,) = verifying["PolicyDocument"]["Statement"]
    assert (_list(verify["Action"]), verify["Resource"]) == (["kms:Verify"], KEY_ARN)
    # No other grant of kms:Sign anywhere in the template.
    text = TEMPLATE_PATH.read_text()
    assert text.count("kms:Sign") == 3  # the key's allow and deny, and HaproxySigningPolicy


def test_the_function_signs_with_the_key_and_every_apply_verifies_with_it():
    variables = RESOURCES["HaproxyFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["GREENLIGHT_EDGE_SIGNING_KEY"] == KEY_ARN
    association = RESOURCES["EdgeBootstrapAssociation"]["Properties"]["Parameters"]
    assert association["SigningKeyArn"] == [KEY_ARN]
    parameter = RESOURCES["EdgeApplyConfigDocument"]["Properties"]["Content"]["parameters"][
        "SigningKeyArn"
    ]
    assert "default" not in parameter  # no run of the document without it
    pattern = re.compile(parameter["allowedPattern"])
    assert pattern.match(
        "arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    )
    for bad in ("", "alias/edge", "arn:aws:kms:eu-west-1:123456789012:key/x'; rm -rf /"):
        assert not pattern.match(bad)


def test_only_the_haproxy_function_writes_haproxy_and_only_the_deployer_the_rest():
    policy = statements("ArtifactBucketPolicy", ("PolicyDocument",))
    assert set(policy) == {
        "DenyInsecureTransport",
        "OnlyTheHaproxyFunctionWritesTheEdgeConfig",
        "OnlyTheDeployerWritesAppsAndCertificates",
        "NobodyWritesAnythingElse",
    }
    tls = policy["DenyInsecureTransport"]
    assert (tls["Effect"], tls["Action"]) == ("Deny", "s3:*")
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    prefix = "${ArtifactBucket.Arn}/"
    edge = policy["OnlyTheHaproxyFunctionWritesTheEdgeConfig"]
    assert (edge["Effect"], edge["Principal"], set(edge["Action"])) == ("Deny", "*", OBJECT_WRITES)
    assert edge["Resource"] == {"Fn::Sub": prefix + "haproxy/*"}
    assert edge["Condition"] == {
        "ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": "HaproxyFunctionRole.Arn"}}
    }
    deployer = policy["OnlyTheDeployerWritesAppsAndCertificates"]
    assert (deployer["Effect"], deployer["Principal"]) == ("Deny", "*")
    assert set(deployer["Action"]) == OBJECT_WRITES
    assert deployer["Resource"] == [
        {"Fn::Sub": prefix + "config/*"},
        {"Fn::Sub": prefix + "certs/*"},
    ]
    assert deployer["Condition"] == {
        "ArnNotEquals": {"aws:PrincipalArn": {"Ref": "DeployerRoleArn"}}
    }
    rest = policy["NobodyWritesAnythingElse"]
    assert (rest["Effect"], rest["Principal"], set(rest["Action"])) == ("Deny", "*", OBJECT_WRITES)
    assert "Condition" not in rest
    assert rest["NotResource"] == [
        {"Fn::Sub": prefix + "haproxy/*"},
        {"Fn::Sub": prefix + "config/*"},
        {"Fn::Sub": prefix + "certs/*"},
    ]


def test_the_deployer_role_parameter_takes_an_iam_role_arn_only():
    parameter = TEMPLATE["Parameters"]["DeployerRoleArn"]
    assert "Default" not in parameter
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.match("arn:aws:iam::123456789012:role/ci/greenlight-deployer")
    for bad in (
        "",
        "arn:aws:iam::123456789012:user/alice",
        "arn:aws:iam::123456789012:root",
        "arn:aws:iam::*:role/x",
        "arn:aws:sts::123456789012:assumed-role/x/y",
    ):
        assert not pattern.match(bad), bad
