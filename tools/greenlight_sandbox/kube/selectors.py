"""Label and field selectors, as apimachinery parses and matches them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ApiError, bad_request

LabelReq = Callable[[Mapping[str, str]], bool]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VAL = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _check(pattern: str, value: str, what: str, text: str) -> str:
    if not re.fullmatch(pattern, value):
        raise bad_request(f"unable to parse requirement: invalid {what} {value!r} in {text!r}")
    return value


def parse_labels(text: str | None) -> LabelReq:
    """Parse a labelSelector; raises a 400 ApiError on a syntax error."""
    if not text:
        return lambda labels: True
    reqs: list[LabelReq] = []
    for part in _split_top(text):
        match = re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", part)
        if match:
            key = _check(_KEY, match.group(1), "key", text)
            values = {_check(_VAL, v.strip(), "value", text) for v in match.group(3).split(",")}
            if match.group(2) == "in":
                reqs.append(lambda lb, k=key, vs=values: k in lb and lb[k] in vs)
            else:
                reqs.append(lambda lb, k=key, vs=values: k not in lb or lb[k] not in vs)
            continue
        match = re.fullmatch(r"(\S+?)\s*(==|!=|=)\s*(\S*)", part)
        if match:
            key = _check(_KEY, match.group(1), "key", text)
            value = _check(_VAL, match.group(3), "value", text)
            if match.group(2) == "!=":
                reqs.append(lambda lb, k=key, v=value: lb.get(k) != v)
            else:
                reqs.append(lambda lb, k=key, v=value: k in lb and lb[k] == v)
            continue
        match = re.fullmatch(r"(\S+)\s+(gt|lt)\s+(-?\d+)", part)
        if match:
            key = _check(_KEY, match.group(1), "key", text)
            bound = int(match.group(3))
            op = match.group(2)

            def cmp(lb: Mapping[str, str], k: str = key, b: int = bound, o: str = op) -> bool:
                try:
                    n = int(lb[k])
                except (KeyError, ValueError):
                    return False
                return n > b if o == "gt" else n < b

            reqs.append(cmp)
            continue
        if part.startswith("!"):
            key = _check(_KEY, part[1:].strip(), "key", text)
            reqs.append(lambda lb, k=key: k not in lb)
            continue
        key = _check(_KEY, part, "key", text)
        reqs.append(lambda lb, k=key: k in lb)
    return lambda labels: all(req(labels) for req in reqs)


def match_label_selector(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector object (matchLabels + matchExpressions). None matches nothing."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], set(expr.get("values") or [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(op)
        if not ok:
            return False
    return True


FIELDS: dict[str, dict[str, Callable[[dict[str, Any]], str]]] = {
    "pods": {
        "metadata.name": lambda o: o["metadata"]["name"],
        "metadata.namespace": lambda o: o["metadata"].get("namespace", ""),
        "spec.nodeName": lambda o: o["spec"].get("nodeName", ""),
        "spec.host": lambda o: o["spec"].get("nodeName", ""),
        "spec.restartPolicy": lambda o: o["spec"].get("restartPolicy", ""),
        "spec.schedulerName": lambda o: o["spec"].get("schedulerName", ""),
        "spec.serviceAccountName": lambda o: o["spec"].get("serviceAccountName", ""),
        "spec.hostNetwork": lambda o: str(bool(o["spec"].get("hostNetwork"))).lower(),
        "status.phase": lambda o: o.get("status", {}).get("phase", ""),
        "status.podIP": lambda o: o.get("status", {}).get("podIP", ""),
        "status.podIPs": lambda o: o.get("status", {}).get("podIP", ""),
        "status.nominatedNodeName": lambda o: o.get("status", {}).get("nominatedNodeName", ""),
    },
    "nodes": {
        "metadata.name": lambda o: o["metadata"]["name"],
        "spec.unschedulable": lambda o: str(bool(o["spec"].get("unschedulable"))).lower(),
    },
    "services": {
        "metadata.name": lambda o: o["metadata"]["name"],
        "metadata.namespace": lambda o: o["metadata"].get("namespace", ""),
        "spec.clusterIP": lambda o: o["spec"].get("clusterIP", ""),
        "spec.type": lambda o: o["spec"].get("type", ""),
    },
}
_DEFAULT_FIELDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "metadata.name": lambda o: o["metadata"]["name"],
    "metadata.namespace": lambda o: o["metadata"].get("namespace", ""),
}


def parse_fields(text: str | None, resource: str) -> Callable[[dict[str, Any]], bool]:
    if not text:
        return lambda obj: True
    known = FIELDS.get(resource, _DEFAULT_FIELDS)
    reqs: list[Callable[[dict[str, Any]], bool]] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        match = re.fullmatch(r"([^=!]+?)\s*(==|!=|=)\s*(.*)", part)
        if not match:
            raise bad_request(f"invalid selector: {text!r}; can't understand {part!r}")
        field, op, value = match.group(1), match.group(2), match.group(3)
        if field not in known:
            raise bad_request(f"field label not supported: {field}")
        get = known[field]
        if op == "!=":
            reqs.append(lambda o, g=get, v=value: g(o) != v)
        else:
            reqs.append(lambda o, g=get, v=value: g(o) == v)
    return lambda obj: all(req(obj) for req in reqs)


__all__ = ["ApiError", "match_label_selector", "parse_fields", "parse_labels"]
