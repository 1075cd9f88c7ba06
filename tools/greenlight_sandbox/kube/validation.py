"""Semantic validation, as the apiserver does it after decoding and defaulting.

Pure functions over plain JSON objects: :func:`validate_create` and :func:`validate_update`
return the field errors of a write (empty: valid); :mod:`.cluster` turns them into the 422
``Invalid`` Status. Each rule names the Kubernetes source it follows, so a reader can check one
against the other (citation shorthand as in KUBE-API.md: **K/** kubernetes/kubernetes,
**AM/** kubernetes/apimachinery, **AS/** kubernetes/apiserver):

- K/pkg/apis/core/validation/validation.go: ValidateObjectMeta (via AM), ValidatePodSpec,
  validateContainers, validateContainerPorts, ValidateService, validateServicePort,
  ValidatePodUpdate, ValidateServiceUpdate (validateUpgradeDowngradeClusterIPs), ValidateNode,
  ValidateNodeUpdate, validateNodeTaints, ValidateNamespace;
- K/pkg/apis/apps/validation/validation.go: ValidateDeploymentSpec, ValidateDeploymentStrategy,
  ValidateRollingUpdateDeployment, ValidateReplicaSetSpec, ValidatePodTemplateSpecForReplicaSet,
  ValidateDaemonSetSpec; selector immutability in K/pkg/registry/apps/*/strategy.go;
- K/pkg/apis/policy/validation/validation.go: ValidatePodDisruptionBudgetSpec (every spec
  field is mutable since 1.15);
- AM/pkg/util/validation/validation.go: IsQualifiedName, IsValidLabelValue, IsDNS1123Label,
  IsDNS1123Subdomain, IsDNS1035Label, IsValidPortNum, IsValidPortName, IsValidPercent;
- AM/pkg/util/validation/field/errors.go: the messages (``Invalid value: "x": <detail>``,
  ``Required value``, ``Duplicate value: ...``, ``Forbidden: ...``, ``Unsupported value: ...``);
- AM/pkg/apis/meta/v1/validation/validation.go: ValidateLabels, ValidateLabelSelector,
  ValidateDryRun, ValidateFieldValidation (create/update/patch/delete options);
- AS/pkg/endpoints/handlers/rest.go ``fieldValidation``: an absent directive means ``Warn``;
  unknown fields under ``Strict`` are a 400 ``strict decoding error: unknown field "spec.x"``
  (handlers/create.go ``transformDecodeError``, handlers/patch.go), under ``Warn`` a
  ``Warning: 299 - "unknown field \\"spec.x\\""`` header; under either of those or ``Ignore``
  the field is dropped (the typed object has nowhere to keep it).

Go renders a bad value with ``%v``/``%q``/``%#v``: :class:`Go` carries a value already rendered
(``core.ServicePort{...}``, ``[]string{"x"}``); strings print quoted, numbers bare.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# ----------------------------------------------------------------------------- field errors
# AM/pkg/util/validation/field/errors.go: ErrorType -> (String(), CauseType).
_TYPES = {
    "invalid": ("Invalid value", "FieldValueInvalid"),
    "required": ("Required value", "FieldValueRequired"),
    "duplicate": ("Duplicate value", "FieldValueDuplicate"),
    "forbidden": ("Forbidden", "FieldValueForbidden"),
    "notsupported": ("Unsupported value", "FieldValueNotSupported"),
    "toolong": ("Too long", "FieldValueTooLong"),
}
_NO_VALUE = ("required", "forbidden", "toolong")  # ErrorBody prints no value for these


@dataclass(frozen=True)
class Go:
    """A bad value already rendered as Go's ``%#v`` would print it."""

    text: str


@dataclass(frozen=True)
class FieldError:
    type: str  # a key of _TYPES
    field: str
    value: Any = None
    detail: str = ""

    @property
    def reason(self) -> str:
        return _TYPES[self.type][1]

    @property
    def message(self) -> str:
        """``ErrorBody()``: what the Status cause carries (the field is separate)."""
        label = _TYPES[self.type][0]
        text = label if self.type in _NO_VALUE else f"{label}: {go_value(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def cause(self) -> tuple[str, str, str]:
        """(reason, field, message), as :func:`.errors.invalid` takes them."""
        return (self.reason, self.field, self.message)


def go_value(value: Any) -> str:
    if isinstance(value, Go):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # Go %q for the strings seen here
    return go_literal(value)


def go_literal(value: Any, type_name: str = "") -> str:
    """``%#v`` of a JSON map or list (``map[string]string{"a":"b"}``, ``[]string{"x"}``)."""
    if isinstance(value, dict):
        name = type_name or "map[string]string"
        body = ", ".join(
            f"{json.dumps(k)}:{json.dumps(v) if isinstance(v, str) else go_value(v)}"
            for k, v in sorted(value.items())
        )
        return f"{name}{{{body}}}"
    if isinstance(value, list):
        name = type_name or "[]string"
        return f"{name}{{{', '.join(go_value(v) for v in value)}}}"
    return str(value)


def _invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("invalid", path, value, detail)


def _required(path: str, detail: str = "") -> FieldError:
    return FieldError("required", path, None, detail)


def _duplicate(path: str, value: Any) -> FieldError:
    return FieldError("duplicate", path, value)


def _forbidden(path: str, detail: str) -> FieldError:
    return FieldError("forbidden", path, None, detail)


def _not_supported(path: str, value: Any, supported: Iterable[str]) -> FieldError:
    quoted = ", ".join(json.dumps(v) for v in supported)
    return FieldError("notsupported", path, value, f"supported values: {quoted}" if quoted else "")


# ----------------------------------------------------------------------------- names and values
# AM/pkg/util/validation/validation.go.
def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
LABEL_VALUE_FMT = f"({QUALIFIED_NAME_FMT})?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)
DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character"
)
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character"
)
PERCENT_FMT = "[0-9]+%"


def _full(fmt: str) -> re.Pattern[str]:
    return re.compile(f"^{fmt}$")


_QUALIFIED_RE = _full(QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = _full(LABEL_VALUE_FMT)
_DNS1123_LABEL_RE = _full(DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = _full(DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL_RE = _full(DNS1035_LABEL_FMT)
_PERCENT_RE = _full(PERCENT_FMT)


def is_dns1123_label(value: str) -> list[str]:
    errs = [_max_len(63)] if len(value) > 63 else []
    if not _DNS1123_LABEL_RE.match(value):
        errs.append(_regex_error(_DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = [_max_len(253)] if len(value) > 253 else []
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = [_max_len(63)] if len(value) > 63 else []
    if not _DNS1035_LABEL_RE.match(value):
        errs.append(_regex_error(_DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        errs: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs = ["prefix part must be non-empty"]
        else:
            errs = [f"prefix part {m}" for m in is_dns1123_subdomain(prefix)]
    else:
        return [
            "a qualified name "
            + _regex_error(_QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + _max_len(63))
    if not _QUALIFIED_RE.match(name):
        errs.append(
            "name part "
            + _regex_error(_QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def is_valid_label_value(value: str) -> list[str]:
    errs = [_max_len(63)] if len(value) > 63 else []
    if not _LABEL_VALUE_RE.match(value):
        errs.append(_regex_error(_LABEL_VALUE_MSG, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_valid_port_num(port: Any) -> list[str]:
    if isinstance(port, int) and 1 <= port <= 65535:
        return []
    return ["must be between 1 and 65535, inclusive"]


def is_valid_port_name(port: str) -> list[str]:
    errs = [_max_len(15)] if len(port) > 15 else []
    if not re.match(r"^[-a-z0-9]+$", port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    elif not re.search(r"[a-z]", port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


# ----------------------------------------------------------------------------- metadata
NameFn = Callable[[str], list[str]]
TOTAL_ANNOTATION_SIZE = 256 * 1024


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    """AM/pkg/apis/meta/v1/validation ValidateLabels: errors carry the map's path, not the key."""
    errs: list[FieldError] = []
    for key, value in sorted((labels or {}).items()):
        errs += [_invalid(path, key, m) for m in is_qualified_name(key)]
        if isinstance(value, str):
            errs += [_invalid(path, value, m) for m in is_valid_label_value(value)]
    return errs


def _validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    """AM/pkg/api/validation/objectmeta.go ValidateAnnotations."""
    errs: list[FieldError] = []
    size = 0
    for key, value in sorted((annotations or {}).items()):
        errs += [_invalid(path, key, m) for m in is_qualified_name(key.lower())]
        size += len(key) + len(value or "")
    if size > TOTAL_ANNOTATION_SIZE:
        errs.append(FieldError("toolong", path, None, ""))
    return errs


def validate_object_meta(meta: Mapping[str, Any], name_fn: NameFn) -> list[FieldError]:
    """AM/pkg/api/validation/objectmeta.go ValidateObjectMetaAccessor (create)."""
    errs: list[FieldError] = []
    generate = meta.get("generateName") or ""
    if generate:
        # the generated name is checked with a trailing fragment allowed (prefix=true)
        errs += [
            _invalid("metadata.generateName", generate, m) for m in name_fn(_mask_prefix(generate))
        ]
    name = meta.get("name") or ""
    if not name:
        errs.append(_required("metadata.name", "name or generateName is required"))
    else:
        errs += [_invalid("metadata.name", name, m) for m in name_fn(name)]
    if isinstance(meta.get("generation"), int) and meta["generation"] < 0:
        errs.append(_invalid("metadata.generation", meta["generation"], _NEGATIVE))
    errs += validate_labels(meta.get("labels"), "metadata.labels")
    errs += _validate_annotations(meta.get("annotations"), "metadata.annotations")
    return errs


def _mask_prefix(name: str) -> str:
    """AM/pkg/api/validation/generic.go maskTrailingDash: a generateName may end with '-'."""
    return name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name


def validate_label_selector(selector: Any, path: str) -> list[FieldError]:
    """AM/pkg/apis/meta/v1/validation ValidateLabelSelector (invalid values not allowed)."""
    if not isinstance(selector, dict):
        return []
    errs = validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    for i, req in enumerate(selector.get("matchExpressions") or []):
        where = f"{path}.matchExpressions[{i}]"
        op, values = req.get("operator"), req.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                errs.append(
                    _required(
                        f"{where}.values", "must be specified when `operator` is 'In' or 'NotIn'"
                    )
                )
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(
                    _forbidden(
                        f"{where}.values",
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            errs.append(_invalid(f"{where}.operator", op, "not a valid selector operator"))
        key = req.get("key") or ""
        errs += [_invalid(f"{where}.key", key, m) for m in is_qualified_name(key)]
        for j, value in enumerate(values):
            errs += [
                _invalid(f"{where}.values[{j}]", value, m) for m in is_valid_label_value(value)
            ]
    return errs


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    from .selectors import match_label_selector

    return match_label_selector(selector, labels)


def _go_strings(values: Any) -> str:
    return "[]string(nil)" if values is None else go_literal(values)


def label_selector_go(selector: Any) -> Go:
    """``%#v`` of a ``*metav1.LabelSelector`` (the pointer dereferenced by field.Error)."""
    selector = selector or {}
    labels = selector.get("matchLabels")
    exprs = selector.get("matchExpressions")
    shown_labels = "map[string]string(nil)" if labels is None else go_literal(labels)
    shown_exprs = (
        "[]v1.LabelSelectorRequirement(nil)"
        if exprs is None
        else "[]v1.LabelSelectorRequirement{"
        + ", ".join(
            f"v1.LabelSelectorRequirement{{Key:{json.dumps(e.get('key', ''))}, "
            f"Operator:{json.dumps(e.get('operator', ''))}, "
            f"Values:{_go_strings(e.get('values'))}}}"
            for e in exprs
        )
        + "}"
    )
    return Go(f"v1.LabelSelector{{MatchLabels:{shown_labels}, MatchExpressions:{shown_exprs}}}")


# ----------------------------------------------------------------------------- pods
_NEGATIVE = "must be greater than or equal to 0"
_PROTOCOLS = ("SCTP", "TCP", "UDP")
_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def _validate_container_ports(ports: list[Any], path: str) -> list[FieldError]:
    """K/pkg/apis/core/validation/validation.go validateContainerPorts."""
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        where = f"{path}[{i}]"
        name = port.get("name") or ""
        if name:
            msgs = is_valid_port_name(name)
            if msgs:
                errs += [_invalid(f"{where}.name", name, m) for m in msgs]
            elif name in names:
                errs.append(_duplicate(f"{where}.name", name))
            else:
                names.add(name)
        container_port = port.get("containerPort") or 0
        if container_port == 0:
            errs.append(_required(f"{where}.containerPort"))
        else:
            errs += [
                _invalid(f"{where}.containerPort", container_port, m)
                for m in is_valid_port_num(container_port)
            ]
        if port.get("hostPort"):
            errs += [
                _invalid(f"{where}.hostPort", port["hostPort"], m)
                for m in is_valid_port_num(port["hostPort"])
            ]
        protocol = port.get("protocol") or ""
        if not protocol:
            errs.append(_required(f"{where}.protocol"))
        elif protocol not in _PROTOCOLS:
            errs.append(_not_supported(f"{where}.protocol", protocol, _PROTOCOLS))
    return errs


def _validate_container(ctr: Mapping[str, Any], path: str) -> list[FieldError]:
    """validateContainerCommon: name (DNS-1123 label), image, ports, env, pull policy."""
    errs: list[FieldError] = []
    name = ctr.get("name") or ""
    if not name:
        errs.append(_required(f"{path}.name"))
    else:
        errs += [_invalid(f"{path}.name", name, m) for m in is_dns1123_label(name)]
    if not ctr.get("image"):
        errs.append(_required(f"{path}.image"))
    errs += _validate_container_ports(ctr.get("ports") or [], f"{path}.ports")
    for i, env in enumerate(ctr.get("env") or []):
        if not env.get("name"):
            errs.append(_required(f"{path}.env[{i}].name"))
    policy = ctr.get("imagePullPolicy")
    if policy is not None and policy not in _PULL_POLICIES:
        errs.append(_not_supported(f"{path}.imagePullPolicy", policy, _PULL_POLICIES))
    return errs


def validate_pod_spec(spec: Any, path: str) -> list[FieldError]:
    """K/pkg/apis/core/validation/validation.go ValidatePodSpec (the parts a pod here uses)."""
    if not isinstance(spec, dict):
        return [_required(path)]
    errs: list[FieldError] = []
    volumes: set[str] = set()
    for i, vol in enumerate(spec.get("volumes") or []):
        name = vol.get("name") or ""
        if not name:
            errs.append(_required(f"{path}.volumes[{i}].name"))
        elif name in volumes:
            errs.append(_duplicate(f"{path}.volumes[{i}].name", name))
        else:
            errs += [_invalid(f"{path}.volumes[{i}].name", name, m) for m in is_dns1123_label(name)]
            volumes.add(name)
    containers = spec.get("containers") or []
    if not containers:  # validateContainers
        errs.append(_required(f"{path}.containers"))
    names: set[str] = set()
    for i, ctr in enumerate(containers):
        errs += _validate_container(ctr, f"{path}.containers[{i}]")
        if ctr.get("name") in names:
            errs.append(_duplicate(f"{path}.containers[{i}].name", ctr.get("name")))
        names.add(ctr.get("name"))
    for i, ctr in enumerate(spec.get("initContainers") or []):  # validateInitContainers
        errs += _validate_container(ctr, f"{path}.initContainers[{i}]")
        if ctr.get("name") in names:
            errs.append(_duplicate(f"{path}.initContainers[{i}].name", ctr.get("name")))
        names.add(ctr.get("name"))
    restart = spec.get("restartPolicy")
    if restart is not None and restart not in _RESTART_POLICIES:
        errs.append(_not_supported(f"{path}.restartPolicy", restart, _RESTART_POLICIES))
    dns = spec.get("dnsPolicy")
    if dns is not None and dns not in _DNS_POLICIES:
        errs.append(_not_supported(f"{path}.dnsPolicy", dns, _DNS_POLICIES))
    errs += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    grace = spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace < 0:
        errs.append(_invalid(f"{path}.terminationGracePeriodSeconds", grace, _NEGATIVE))
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and not 1 <= deadline <= 2**31 - 1:
        errs.append(
            _invalid(
                f"{path}.activeDeadlineSeconds",
                deadline,
                "must be between 1 and 2147483647, inclusive",
            )
        )
    errs += _validate_tolerations(spec.get("tolerations") or [], f"{path}.tolerations")
    return errs


def _validate_tolerations(tolerations: list[Any], path: str) -> list[FieldError]:
    """validateTolerations: key a qualified name; operator Exists/Equal; effect supported."""
    errs: list[FieldError] = []
    for i, tol in enumerate(tolerations):
        where = f"{path}[{i}]"
        key = tol.get("key") or ""
        if key:
            errs += [_invalid(f"{where}.key", key, m) for m in is_qualified_name(key)]
        operator = tol.get("operator") or "Equal"
        if not key and operator != "Exists":
            errs.append(
                _invalid(
                    f"{where}.operator",
                    operator,
                    'operator must be Exists when `key` is empty, which means "match all values '
                    'and all keys"',
                )
            )
        if operator == "Exists" and tol.get("value"):
            errs.append(
                _invalid(
                    f"{where}.operator",
                    tol["value"],
                    "value must be empty when `operator` is 'Exists'",
                )
            )
        elif operator not in ("Equal", "Exists"):
            errs.append(_not_supported(f"{where}.operator", operator, ("Equal", "Exists")))
        effect = tol.get("effect") or ""
        if effect and effect not in _TAINT_EFFECTS:
            errs.append(_not_supported(f"{where}.effect", effect, _TAINT_EFFECTS))
    return errs


def _validate_template(
    template: Any, selector: Any, path: str, *, replicas: bool = True
) -> list[FieldError]:
    """K/pkg/apis/apps/validation ValidatePodTemplateSpecForReplicaSet (and for DaemonSets)."""
    if not isinstance(template, dict):
        return [_required(path)]
    meta = template.get("metadata") or {}
    labels = meta.get("labels") or {}
    errs: list[FieldError] = []
    has_selector = isinstance(selector, dict) and bool(
        selector.get("matchLabels") or selector.get("matchExpressions")
    )
    if has_selector and not selector_matches(selector, labels):
        errs.append(
            _invalid(
                f"{path}.metadata.labels",
                Go(go_literal(labels)),
                "`selector` does not match template `labels`",
            )
        )
    errs += validate_labels(meta.get("labels"), f"{path}.metadata.labels")
    errs += _validate_annotations(meta.get("annotations"), f"{path}.metadata.annotations")
    errs += validate_pod_spec(template.get("spec"), f"{path}.spec")
    spec = template.get("spec") or {}
    restart = spec.get("restartPolicy", "Always")
    if restart != "Always" and restart in _RESTART_POLICIES:
        errs.append(_not_supported(f"{path}.spec.restartPolicy", restart, ("Always",)))
    if spec.get("activeDeadlineSeconds") is not None:
        detail = "activeDeadlineSeconds in ReplicaSet is not Supported"
        if not replicas:
            detail = "activeDeadlineSeconds in DaemonSet is not Supported"
        errs.append(
            _invalid(f"{path}.spec.activeDeadlineSeconds", spec["activeDeadlineSeconds"], detail)
        )
    return errs


# ----------------------------------------------------------------------------- apps
def _int_or_percent(value: Any) -> tuple[int | None, bool]:
    """(value, is_percent); None when the string is not a valid percent."""
    if isinstance(value, str):
        return (int(value[:-1]), True) if _PERCENT_RE.match(value) else (None, True)
    return (value if isinstance(value, int) else None), False


def _int_or_percent_go(value: Any) -> Go:
    """An IntOrString prints through its String(): the bare int or the string."""
    return Go(str(value))


def validate_positive_int_or_percent(value: Any, path: str) -> list[FieldError]:
    """K/pkg/apis/apps/validation ValidatePositiveIntOrPercent (+ IsValidPercent)."""
    number, percent = _int_or_percent(value)
    if percent and number is None:
        msg = _regex_error(
            "a valid percent string must be a numeric string followed by an ending '%'",
            PERCENT_FMT,
            "1%",
            "93%",
        )
        return [_invalid(path, _int_or_percent_go(value), msg)]
    if not percent and number is not None and number < 0:
        return [_invalid(path, number, _NEGATIVE)]
    return []


def _not_more_than_100_percent(value: Any, path: str) -> list[FieldError]:
    number, percent = _int_or_percent(value)
    if percent and number is not None and number > 100:
        return [_invalid(path, _int_or_percent_go(value), "must not be greater than 100%")]
    return []


def _validate_deployment_strategy(strategy: Any, path: str) -> list[FieldError]:
    """ValidateDeploymentStrategy and ValidateRollingUpdateDeployment."""
    strategy = strategy or {}
    kind = strategy.get("type")
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            return [
                _forbidden(
                    f"{path}.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                )
            ]
        return []
    if kind != "RollingUpdate":
        return [_not_supported(f"{path}.type", kind, ("Recreate", "RollingUpdate"))]
    if rolling is None:
        return [_required(f"{path}.rollingUpdate", "this should be defaulted and never be nil")]
    where = f"{path}.rollingUpdate"
    unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    errs = validate_positive_int_or_percent(unavailable, f"{where}.maxUnavailable")
    errs += validate_positive_int_or_percent(surge, f"{where}.maxSurge")
    if _int_or_percent(unavailable)[0] == 0 and _int_or_percent(surge)[0] == 0:
        errs.append(
            _invalid(
                f"{where}.maxUnavailable",
                _int_or_percent_go(unavailable),
                "may not be 0 when `maxSurge` is 0",
            )
        )
    errs += _not_more_than_100_percent(unavailable, f"{where}.maxUnavailable")
    return errs


def _validate_selector_required(spec: Mapping[str, Any], path: str, what: str) -> list[FieldError]:
    selector = spec.get("selector")
    if selector is None:
        return [_required(f"{path}.selector")]
    errs = validate_label_selector(selector, f"{path}.selector")
    if not (selector.get("matchLabels") or selector.get("matchExpressions")):
        errs.append(
            _invalid(
                f"{path}.selector",
                label_selector_go(selector),
                f"empty selector is invalid for {what}",
            )
        )
    return errs


def _nonnegative(spec: Mapping[str, Any], key: str, path: str) -> list[FieldError]:
    value = spec.get(key)
    if isinstance(value, int) and value < 0:
        return [_invalid(f"{path}.{key}", value, _NEGATIVE)]
    return []


def validate_deployment_spec(spec: Any) -> list[FieldError]:
    """K/pkg/apis/apps/validation/validation.go ValidateDeploymentSpec."""
    spec = spec or {}
    errs = _nonnegative(spec, "replicas", "spec")
    errs += _validate_selector_required(spec, "spec", "deployment")
    errs += _validate_template(spec.get("template"), spec.get("selector"), "spec.template")
    errs += _validate_deployment_strategy(spec.get("strategy"), "spec.strategy")
    errs += _nonnegative(spec, "minReadySeconds", "spec")
    errs += _nonnegative(spec, "revisionHistoryLimit", "spec")
    deadline = spec.get("progressDeadlineSeconds")
    if isinstance(deadline, int):
        errs += _nonnegative(spec, "progressDeadlineSeconds", "spec")
        if deadline <= (spec.get("minReadySeconds") or 0):
            errs.append(
                _invalid(
                    "spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"
                )
            )
    return errs


def validate_replica_set_spec(spec: Any) -> list[FieldError]:
    """K/pkg/apis/apps/validation/validation.go ValidateReplicaSetSpec."""
    spec = spec or {}
    errs = _nonnegative(spec, "replicas", "spec")
    errs += _nonnegative(spec, "minReadySeconds", "spec")
    errs += _validate_selector_required(spec, "spec", "deployment")
    errs += _validate_template(spec.get("template"), spec.get("selector"), "spec.template")
    return errs


def validate_daemon_set_spec(spec: Any) -> list[FieldError]:
    """K/pkg/apis/apps/validation/validation.go ValidateDaemonSetSpec (its template rules)."""
    spec = spec or {}
    errs = _validate_selector_required(spec, "spec", "daemonset")
    errs += _validate_template(
        spec.get("template"), spec.get("selector"), "spec.template", replicas=False
    )
    errs += _nonnegative(spec, "minReadySeconds", "spec")
    return errs


# ----------------------------------------------------------------------------- services
_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def _service_port_go(port: Mapping[str, Any]) -> Go:
    """``%#v`` of the ``core.ServicePort`` key ValidateService uses for duplicate ports."""
    return Go(
        f'core.ServicePort{{Name:"", Protocol:{json.dumps(port.get("protocol", ""))}, '
        f"AppProtocol:(*string)(nil), Port:{port.get('port', 0)}, "
        'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'
    )


def validate_service(svc: Mapping[str, Any]) -> list[FieldError]:
    """K/pkg/apis/core/validation/validation.go ValidateService and validateServicePort."""
    spec = svc.get("spec") or {}
    kind = spec.get("type") or ""
    headless = spec.get("clusterIP") == "None"
    ports = spec.get("ports") or []
    errs: list[FieldError] = []
    if not ports and not headless and kind != "ExternalName":
        errs.append(_required("spec.ports"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        where = f"spec.ports[{i}]"
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            errs.append(_required(f"{where}.name"))
        elif name:
            errs += [_invalid(f"{where}.name", name, m) for m in is_dns1123_label(name)]
            if name in names:
                errs.append(_duplicate(f"{where}.name", name))
            else:
                names.add(name)
        errs += [
            _invalid(f"{where}.port", port.get("port", 0), m)
            for m in is_valid_port_num(port.get("port"))
        ]
        protocol = port.get("protocol") or ""
        if not protocol:
            errs.append(_required(f"{where}.protocol"))
        elif protocol not in _PROTOCOLS:
            errs.append(_not_supported(f"{where}.protocol", protocol, _PROTOCOLS))
        target = port.get("targetPort")  # ValidatePortNumOrName
        if isinstance(target, int):
            errs += [_invalid(f"{where}.targetPort", target, m) for m in is_valid_port_num(target)]
        elif isinstance(target, str):
            errs += [_invalid(f"{where}.targetPort", target, m) for m in is_valid_port_name(target)]
    if spec.get("selector") is not None:
        errs += validate_labels(spec["selector"], "spec.selector")
    affinity = spec.get("sessionAffinity")
    if affinity is not None and affinity not in ("ClientIP", "None"):
        errs.append(_not_supported("spec.sessionAffinity", affinity, ("ClientIP", "None")))
    if not kind:
        errs.append(_required("spec.type"))
    elif kind not in _SERVICE_TYPES:
        errs.append(_not_supported("spec.type", kind, _SERVICE_TYPES))
    if kind == "ClusterIP":
        for i, port in enumerate(ports):
            if port.get("nodePort"):
                errs.append(
                    _forbidden(
                        f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"
                    )
                )
    seen_node: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        if not port.get("nodePort"):
            continue
        key = (port.get("protocol"), port["nodePort"])
        if key in seen_node:
            errs.append(_duplicate(f"spec.ports[{i}].nodePort", port["nodePort"]))
        seen_node.add(key)
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        key = (port.get("protocol"), port.get("port"))
        if key in seen:
            errs.append(_duplicate(f"spec.ports[{i}]", _service_port_go(port)))
        seen.add(key)
    policy = spec.get("externalTrafficPolicy")
    if (
        policy is not None
        and kind in ("NodePort", "LoadBalancer")
        and policy not in ("Cluster", "Local")
    ):
        errs.append(_not_supported("spec.externalTrafficPolicy", policy, ("Cluster", "Local")))
    return errs


def _validate_service_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    """validateUpgradeDowngradeClusterIPs: an allocated clusterIP may not change. The registry
    (K/pkg/registry/core/service/storage/storage.go patchAllocatedValues, normalizeClusterIPs)
    first copies the old clusterIP(s) into a body that leaves them out."""
    old_spec, spec = old.get("spec") or {}, new.get("spec") or {}
    if "ExternalName" in (old_spec.get("type"), spec.get("type")):
        return []
    old_ips = old_spec.get("clusterIPs") or (
        [old_spec["clusterIP"]] if old_spec.get("clusterIP") else []
    )
    ip = spec.get("clusterIP") or ""
    ips = list(spec.get("clusterIPs") or [])
    if not ip and not ips:
        return []
    if not ips or (ip and ips == old_ips):
        ips = [ip, *old_ips[1:]] if ip else old_ips
    errs: list[FieldError] = []
    if len(ips) == len(old_ips):
        for i, old_ip in enumerate(old_ips):
            if ips[i] != old_ip:
                errs.append(
                    _invalid(
                        f"spec.clusterIPs[{i}]", Go(go_literal(ips)), "may not change once set"
                    )
                )
    elif not ips:
        errs.append(
            _invalid(
                "spec.clusterIPs[0]", Go("[]string(nil)"), "primary clusterIP can not be unset"
            )
        )
    elif ips[0] != old_ips[0]:
        errs.append(_invalid("spec.clusterIPs[0]", Go(go_literal(ips)), "may not change once set"))
    return errs


# ----------------------------------------------------------------------------- policy
_EVICTION_POLICIES = ("AlwaysAllow", "IfHealthyBudget")


def validate_pdb_spec(spec: Any) -> list[FieldError]:
    """K/pkg/apis/policy/validation/validation.go ValidatePodDisruptionBudgetSpec."""
    spec = spec or {}
    errs: list[FieldError] = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        shown = Go(
            "policy.PodDisruptionBudgetSpec{MinAvailable:(*intstr.IntOrString)(...), "
            "Selector:(*v1.LabelSelector)(...), MaxUnavailable:(*intstr.IntOrString)(...), "
            "UnhealthyPodEvictionPolicy:(*policy.UnhealthyPodEvictionPolicyType)(...)}"
        )
        errs.append(_invalid("spec", shown, "minAvailable and maxUnavailable cannot be both set"))
    for key in ("minAvailable", "maxUnavailable"):
        if spec.get(key) is not None:
            errs += validate_positive_int_or_percent(spec[key], f"spec.{key}")
            errs += _not_more_than_100_percent(spec[key], f"spec.{key}")
    errs += validate_label_selector(spec.get("selector"), "spec.selector")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in _EVICTION_POLICIES:
        errs.append(_not_supported("spec.unhealthyPodEvictionPolicy", policy, _EVICTION_POLICIES))
    return errs


# ----------------------------------------------------------------------------- nodes
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _validate_node_taints(taints: list[Any]) -> list[FieldError]:
    """validateNodeTaints. ValidateNode passes ``metadata.taints`` as the path (sic): a real
    apiserver reports a bad node taint under ``metadata.taints[i]``."""
    errs: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(taints):
        where = f"metadata.taints[{i}]"
        key = taint.get("key") or ""
        errs += [_invalid(f"{where}.key", key, m) for m in is_qualified_name(key)]
        value = taint.get("value") or ""
        msgs = is_valid_label_value(value)
        if msgs:
            errs.append(_invalid(f"{where}.value", value, ";".join(msgs)))
        effect = taint.get("effect") or ""
        if not effect:
            errs.append(_required(f"{where}.effect"))
        elif effect not in _TAINT_EFFECTS:
            errs.append(_not_supported(f"{where}.effect", effect, _TAINT_EFFECTS))
        if (key, effect) in seen:
            shown = Go(
                f"core.Taint{{Key:{json.dumps(key)}, Value:{json.dumps(value)}, "
                f"Effect:{json.dumps(effect)}, TimeAdded:<nil>}}"
            )
            errs.append(
                FieldError(
                    "duplicate", where, shown, "taints must be unique by key and effect pair"
                )
            )
        seen.add((key, effect))
    return errs


def _validate_node_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    """ValidateNodeUpdate: podCIDR(s) and providerID may only go from unset to set."""
    old_spec, spec = old.get("spec") or {}, new.get("spec") or {}
    errs: list[FieldError] = []
    old_cidrs = old_spec.get("podCIDRs") or (
        [old_spec["podCIDR"]] if old_spec.get("podCIDR") else []
    )
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    if old_cidrs and cidrs != old_cidrs:
        errs.append(
            _forbidden(
                "spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid'
            )
        )
    if old_spec.get("providerID") and old_spec.get("providerID") != spec.get("providerID"):
        errs.append(
            _forbidden(
                "spec.providerID", 'node updates may not change providerID except from "" to valid'
            )
        )
    return errs


# ----------------------------------------------------------------------------- pods (update)
_POD_UPDATE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set "
    "to 1 if it was previously negative)"
)


def _validate_pod_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    """K/pkg/apis/core/validation/validation.go ValidatePodUpdate: images, a lower
    activeDeadlineSeconds and added tolerations may change; nothing else in the spec."""
    old_spec, spec = old.get("spec") or {}, new.get("spec") or {}
    errs: list[FieldError] = []
    for field_name in ("containers", "initContainers"):  # ValidateContainerUpdates
        before, after = old_spec.get(field_name) or [], spec.get(field_name) or []
        if len(before) != len(after):
            return [
                _forbidden(f"spec.{field_name}", "pod updates may not add or remove containers")
            ]
        for i, ctr in enumerate(after):
            image = ctr.get("image") or ""
            if not image:
                errs.append(_required(f"spec.{field_name}[{i}].image"))
            elif image.strip() != image:
                errs.append(
                    _invalid(
                        f"spec.{field_name}[{i}].image",
                        image,
                        "must not have leading or trailing whitespace",
                    )
                )
    new_deadline, old_deadline = (
        spec.get("activeDeadlineSeconds"),
        old_spec.get("activeDeadlineSeconds"),
    )
    if new_deadline is not None:
        if old_deadline is not None and old_deadline < new_deadline:
            return [
                *errs,
                _invalid(
                    "spec.activeDeadlineSeconds",
                    new_deadline,
                    "must be less than or equal to previous value",
                ),
            ]
    elif old_deadline is not None:
        errs.append(
            _invalid(
                "spec.activeDeadlineSeconds",
                None,
                "must not update from a positive integer to nil value",
            )
        )
    old_tols = old_spec.get("tolerations") or []
    for i, tol in enumerate(old_tols):  # validateOnlyAddedTolerations
        if tol not in (spec.get("tolerations") or []):
            errs.append(
                _forbidden(
                    f"spec.tolerations[{i}]",
                    "existing toleration can not be modified except its tolerationSeconds",
                )
            )
    if spec == old_spec:
        return errs
    munged = json.loads(json.dumps(spec))
    for field_name in ("containers", "initContainers"):
        for ctr, before in zip(
            munged.get(field_name) or [], old_spec.get(field_name) or [], strict=False
        ):
            ctr["image"] = before.get("image")
            if "resources" in before or "resources" in ctr:  # InPlacePodVerticalScaling: resize
                ctr["resources"] = before.get("resources")
    for key in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        munged.pop(key, None)
        if key in old_spec:
            munged[key] = old_spec[key]
    if munged != old_spec:
        changed = sorted(k for k in set(munged) | set(old_spec) if munged.get(k) != old_spec.get(k))
        diff = "\n".join(
            f"  spec.{k}: {json.dumps(old_spec.get(k))} -> {json.dumps(munged.get(k))}"
            for k in changed
        )
        errs.append(_forbidden("spec", f"{_POD_UPDATE}\n{diff}"))
    return errs


# ----------------------------------------------------------------------------- entry points
_NAME_FNS: dict[str, NameFn] = {
    "Service": is_dns1035_label,  # ValidateServiceName
    "Namespace": is_dns1123_label,  # ValidateNamespaceName
}


def validate_create(kind: str, obj: Mapping[str, Any]) -> list[FieldError]:
    """The field errors of creating ``obj`` (a ``kind``: ``Deployment``, ``Service``...)."""
    meta = obj.get("metadata") or {}
    errs = validate_object_meta(meta, _NAME_FNS.get(kind, is_dns1123_subdomain))
    spec = obj.get("spec")
    if kind == "Deployment":
        errs += validate_deployment_spec(spec)
    elif kind == "ReplicaSet":
        errs += validate_replica_set_spec(spec)
    elif kind == "DaemonSet":
        errs += validate_daemon_set_spec(spec)
    elif kind == "Pod":
        errs += validate_pod_spec(spec, "spec")
    elif kind == "Service":
        errs += validate_service(obj)
    elif kind == "PodDisruptionBudget":
        errs += validate_pdb_spec(spec)
    elif kind == "Node":
        errs += _validate_node_taints((spec or {}).get("taints") or [])
    return errs


def validate_update(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    """The field errors of replacing ``old`` by ``new`` (both defaulted, full objects)."""
    errs: list[FieldError] = []
    old_meta, meta = old.get("metadata") or {}, new.get("metadata") or {}
    for key in ("name", "namespace"):  # ValidateObjectMetaUpdate
        if old_meta.get(key, "") != meta.get(key, ""):
            errs.append(_invalid(f"metadata.{key}", meta.get(key, ""), "field is immutable"))
    if kind == "Service":
        errs += _validate_service_update(old, new)
    if kind == "Pod":
        # ValidatePodUpdate checks metadata and spec in place of the create-time rules
        errs += validate_object_meta(meta, is_dns1123_subdomain)
        errs += validate_pod_spec(new.get("spec"), "spec")  # validatePodMetadataAndSpec
        errs += _validate_pod_update(old, new)
        return errs
    if kind == "Node":
        errs += _validate_node_update(old, new)
    errs += validate_create(kind, new)
    if kind in ("Deployment", "ReplicaSet", "DaemonSet"):
        # apps/v1 strategy.go ValidateUpdate: ValidateImmutableField on spec.selector
        old_selector = (old.get("spec") or {}).get("selector")
        selector = (new.get("spec") or {}).get("selector")
        if old_selector != selector:
            errs.append(
                _invalid("spec.selector", label_selector_go(selector), "field is immutable")
            )
    return errs


# ----------------------------------------------------------------------------- request options
FIELD_VALIDATION = ("", "Ignore", "Strict", "Warn")


@dataclass
class WriteOptions:
    """``dryRun`` and ``fieldValidation`` of a write, and the warnings it collects."""

    dry_run: bool = False
    field_validation: str = "Warn"  # AS/pkg/endpoints/handlers/rest.go: absent means Warn
    warnings: list[str] | None = None

    def warn(self, text: str) -> None:
        if self.warnings is not None:
            self.warnings.append(text)


def option_errors(query: Mapping[str, Any], *, field_validation: bool = True) -> list[FieldError]:
    """AM/pkg/apis/meta/v1/validation ValidateCreateOptions / ...Update / ...Patch /
    ValidateDeleteOptions: ``dryRun`` must be ``All``; ``fieldValidation`` one of three."""
    errs: list[FieldError] = []
    dry = query.get("dryRun")
    if dry is not None:
        values = dry if isinstance(dry, list) else [dry]
        if any(v != "All" for v in values):
            errs.append(_not_supported("dryRun", Go(go_literal(values)), ("All",)))
    directive = query.get("fieldValidation")
    if field_validation and directive is not None and directive not in FIELD_VALIDATION:
        errs.append(_not_supported("fieldValidation", directive, FIELD_VALIDATION))
    return errs


# ----------------------------------------------------------------------------- unknown fields
K8S_VERSION = "1.37"


@functools.lru_cache(maxsize=32)
def _schema_validator(api_version: str, kind: str) -> Any:
    """The strict (additionalProperties: false) schema validator of one kind, built once."""
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    version = [v for v in utils.all_versions() if utils.major_minor(v) <= K8S_VERSION][-1]
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group}.json", K8S_VERSION)
    definitions = utils.schema_contents(f"{folder}/_definitions.json", K8S_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def _path_text(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def schema_errors(body: Mapping[str, Any]) -> tuple[list[Any], list[tuple[list[Any], str]]]:
    """(type and required errors, unknown fields as (path parts, key)) of ``body``."""
    validator = _schema_validator(body["apiVersion"], body["kind"])
    others: list[Any] = []
    unknown: list[tuple[list[Any], str]] = []
    for err in validator.iter_errors(body):
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = set((err.schema.get("properties") or {}).keys())
            for key in err.instance:
                if key not in known:
                    unknown.append((list(err.absolute_path), key))
        else:
            others.append(err)
    unknown.sort(key=lambda u: _path_text([*u[0], u[1]]))
    return sorted(others, key=lambda e: list(map(str, e.absolute_path))), unknown


def drop_unknown(body: dict[str, Any], unknown: list[tuple[list[Any], str]]) -> None:
    for parts, key in unknown:
        node: Any = body
        for part in parts:
            node = node[part]
        node.pop(key, None)


def unknown_field_text(parts: list[Any], key: str) -> str:
    return f'unknown field "{_path_text([*parts, key])}"'
