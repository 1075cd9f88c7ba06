"""DynamoDB items to and from plain Python values, with boto3's own TypeSerializer and
TypeDeserializer; numbers come back as ``int`` when whole (else ``float``), never ``Decimal``."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef as Attribute
else:
    Attribute = dict  # one DynamoDB attribute value, e.g. {"S": "blue"}
Item = dict[str, "Attribute"]

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def value(raw: Any) -> Attribute:
    """One plain value as a DynamoDB attribute value."""
    serialized: Attribute = _SERIALIZER.serialize(raw)
    return serialized


def item(values: Mapping[str, Any]) -> Item:
    """Plain values as a DynamoDB item (``None`` values are left out)."""
    return {name: value(raw) for name, raw in values.items() if raw is not None}


def plain(raw: Mapping[str, Attribute]) -> dict[str, Any]:
    """A DynamoDB item as plain Python values."""
    return {name: _number(_DESERIALIZER.deserialize(cast(Any, attr))) for name, attr in raw.items()}


def _number(found: Any) -> Any:
    if isinstance(found, Decimal):
        return int(found) if found == found.to_integral_value() else float(found)
    if isinstance(found, list):
        return [_number(v) for v in found]
    if isinstance(found, dict):
        return {k: _number(v) for k, v in found.items()}
    return found


class Update:
    """An UpdateExpression built from named fields: ``SET`` and ``REMOVE`` clauses with their
    placeholders, and values for a condition. (A plain class: a dataclass costs its module
    a few tenths of a millisecond at every cold start.)"""

    def __init__(
        self,
        *,
        sets: dict[str, Any] | None = None,
        removes: list[str] | None = None,
        appends: dict[str, list[Any]] | None = None,  # list_append(field, values)
        condition_values: dict[str, Any] | None = None,
    ) -> None:
        self.sets = sets or {}
        self.removes = removes or []
        self.appends = appends or {}
        self.condition_values = condition_values or {}

    def expression(self) -> str:
        clauses = [f"#{k} = :{k}" for k in self.sets]
        clauses += [f"#{k} = list_append(if_not_exists(#{k}, :empty), :{k})" for k in self.appends]
        text = "SET " + ", ".join(clauses) if clauses else ""
        if self.removes:
            text += " REMOVE " + ", ".join(f"#{k}" for k in self.removes)
        return text.strip()

    def names(self, *extra: str) -> dict[str, str]:
        return {f"#{k}": k for k in [*self.sets, *self.removes, *self.appends, *extra]}

    def values(self) -> dict[str, Attribute]:
        out = {f":{k}": value(v) for k, v in self.sets.items()}
        out |= {f":{k}": value(v) for k, v in self.appends.items()}
        if self.appends:
            out[":empty"] = {"L": []}
        out |= {f":{k}": value(v) for k, v in self.condition_values.items()}
        return out


def condition_failed(exc: Exception) -> bool:
    """Whether a DynamoDB write was refused by its condition (``ConditionalCheckFailed``)."""
    response = getattr(exc, "response", None) or {}
    return bool(response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")
