"""The RBAC authorizer, as K/plugin/pkg/auth/authorizer/rbac/rbac.go decides, over the Roles,
ClusterRoles and bindings stored in the stand-in.

A request is allowed when some rule of some role bound to the user allows it:
ClusterRoleBindings grant their ClusterRole everywhere; a RoleBinding grants its Role or
ClusterRole inside the binding's namespace only. A rule matches when its verbs, apiGroups and
resources (``pods``, ``pods/eviction``, ``*``, ``*/scale``) and, if given, resourceNames all
match (``*`` is a wildcard in verbs, apiGroups and resources); non-resource requests match
``nonResourceURLs`` (a trailing ``*`` is a prefix). The privileged group ``system:masters`` is
never asked (the apiserver's privileged-groups authorizer comes first). Denials read as the
apiserver writes them (AS/pkg/endpoints/handlers/responsewriters/errors.go ``forbiddenMessage``,
AM/pkg/api/errors ``NewForbidden``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .auth import Identity
from .errors import ApiError

RBAC_GROUP = "rbac.authorization.k8s.io"

# Bootstrap policy every cluster has (K/plugin/pkg/auth/authorizer/rbac/bootstrappolicy):
# system:discovery, system:basic-user and system:public-info-viewer, bound to
# system:authenticated. Reviews of one's own access and discovery are always allowed.
_AUTHENTICATED_RULES: tuple[dict[str, Any], ...] = (
    {
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        "verbs": ["create"],
    },
    {
        "apiGroups": ["authentication.k8s.io"],
        "resources": ["selfsubjectreviews"],
        "verbs": ["create"],
    },
    {
        "nonResourceURLs": [
            "/api",
            "/api/*",
            "/apis",
            "/apis/*",
            "/healthz",
            "/livez",
            "/readyz",
            "/version",
            "/version/",
            "/openapi",
            "/openapi/*",
        ],
        "verbs": ["get"],
    },
)


@dataclass(frozen=True)
class Attributes:
    """What is asked: authorizer.AttributesRecord."""

    verb: str
    resource_request: bool = True
    group: str = ""
    version: str = "v1"
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


def verb_for(method: str, *, named: bool, watch: bool = False) -> str:
    """The authorization verb of an HTTP method (K8s RequestInfoFactory)."""
    if method in ("GET", "HEAD"):
        if watch:
            return "watch"
        return "get" if named else "list"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if named else "deletecollection",
    }.get(method, method.lower())


def _has(values: list[str] | None, wanted: str) -> bool:
    values = values or []
    return "*" in values or wanted in values


def _resource_matches(rule: dict[str, Any], attrs: Attributes) -> bool:
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    for resource in rule.get("resources") or []:
        if resource in ("*", combined):
            return True
        if attrs.subresource and resource == f"*/{attrs.subresource}":
            return True
    return False


def _path_matches(rule: dict[str, Any], path: str) -> bool:
    for pattern in rule.get("nonResourceURLs") or []:
        if pattern in ("*", path):
            return True
        if pattern.endswith("*") and path.startswith(pattern[:-1]):
            return True
    return False


def rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    """rbac.RuleAllows."""
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        return _path_matches(rule, attrs.path)
    names = rule.get("resourceNames") or []
    return (
        _has(rule.get("apiGroups"), attrs.group)
        and _resource_matches(rule, attrs)
        and (not names or attrs.name in names)
    )


def _applies(user: Identity, subject: dict[str, Any], namespace: str) -> bool:
    """rbac.appliesToUser."""
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return bool(user.name == name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        sa_ns = subject.get("namespace") or namespace
        return bool(sa_ns) and user.name == f"system:serviceaccount:{sa_ns}:{name}"
    return False


class Authorizer:
    """RBAC over ``objects`` (the stand-in's store: resource -> {(ns, name): object})."""

    def __init__(self, objects: dict[str, dict[tuple[str, str], dict[str, Any]]]) -> None:
        self.objects = objects

    def _of(self, resource: str) -> list[dict[str, Any]]:
        return list((self.objects.get(resource) or {}).values())

    def _bindings(self, attrs: Attributes) -> Iterator[tuple[str, dict[str, Any]]]:
        for binding in self._of("clusterrolebindings"):
            yield "", binding
        if attrs.namespace:
            for binding in self._of("rolebindings"):
                if binding["metadata"].get("namespace") == attrs.namespace:
                    yield attrs.namespace, binding

    def _role(self, namespace: str, ref: dict[str, Any]) -> dict[str, Any] | None:
        kind, name = ref.get("kind"), ref.get("name", "")
        if kind == "ClusterRole":
            return (self.objects.get("clusterroles") or {}).get(("", name))
        if kind == "Role" and namespace:
            return (self.objects.get("roles") or {}).get((namespace, name))
        return None

    def authorize(self, user: Identity, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason), as the RBAC authorizer (with the privileged group first) says."""
        if user.superuser:
            return True, ""
        if "system:authenticated" in user.groups and any(
            rule_allows(rule, attrs) for rule in _AUTHENTICATED_RULES
        ):
            return True, ""
        errors: list[str] = []
        for namespace, binding in self._bindings(attrs):
            subjects = [s for s in binding.get("subjects") or [] if isinstance(s, dict)]
            if not any(_applies(user, s, namespace) for s in subjects):
                continue
            ref = binding.get("roleRef") or {}
            role = self._role(namespace, ref)
            if role is None:
                kind = "clusterrole" if ref.get("kind") == "ClusterRole" else "role"
                errors.append(f'{kind}.{RBAC_GROUP} "{ref.get("name", "")}" not found')
                continue
            for rule in role.get("rules") or []:
                if rule_allows(rule, attrs):
                    subject = next(s for s in subjects if _applies(user, s, namespace))
                    where = f'RoleBinding "{binding["metadata"]["name"]}"'
                    if not namespace:
                        where = f'ClusterRoleBinding "{binding["metadata"]["name"]}"'
                    else:
                        where += f' in namespace "{namespace}"'
                    return True, (
                        f'RBAC: allowed by {where} of {ref.get("kind")} "{ref.get("name")}" '
                        f'to {subject.get("kind")} "{subject.get("name")}"'
                    )
        if errors:
            joined = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
            return False, f"RBAC: {joined}"
        return False, ""


def forbidden_message(user: Identity, attrs: Attributes) -> str:
    """responsewriters.forbiddenMessage."""
    if not attrs.resource_request:
        return f'User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    if attrs.namespace:
        return (
            f'User "{user.name}" cannot {attrs.verb} resource "{resource}" in API group '
            f'"{attrs.group}" in the namespace "{attrs.namespace}"'
        )
    return (
        f'User "{user.name}" cannot {attrs.verb} resource "{resource}" in API group '
        f'"{attrs.group}" at the cluster scope'
    )


def forbidden(user: Identity, attrs: Attributes, reason: str = "") -> ApiError:
    """The 403 Status: responsewriters.Forbidden -> apierrors.NewForbidden."""
    message = forbidden_message(user, attrs)
    if reason:
        message = f"{message}: {reason}"
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    if not attrs.resource_request:
        text = f"forbidden: {message}"
    elif attrs.name:
        text = f'{qualified} "{attrs.name}" is forbidden: {message}'
    else:
        text = f"{qualified} is forbidden: {message}"
    return ApiError(
        403,
        "Forbidden",
        text,
        {"name": attrs.name, "group": attrs.group, "kind": attrs.resource},
    )
