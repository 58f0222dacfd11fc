"""JSON request bodies decoded strictly, straight into the handler's `data` type.

Litestar converts a body together with the query string, leniently: `"1"` became an
integer and a number a date-time (Unix time). A body is JSON, so its types are meant as
sent: `StrictJSONBody`, set as the app's DTO, decodes the raw bytes with msgspec in strict
mode (no string-to-number, no number-to-date-time; date-times are RFC 3339, and naive
ones are refused where the type asks for an offset). The OpenAPI schema of a body is
msgspec's JSON Schema of the same type, so it states exactly the bounds the decoding checks
(`maxLength` of list items, `minimum: 0`, `additionalProperties: false` for Structs that
forbid unknown fields, which Litestar's own rendering leaves out).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
from litestar.dto import AbstractDTO
from litestar.exceptions import ClientException, ImproperlyConfiguredException, ValidationException
from litestar.openapi.spec import Reference, Schema

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.dto import DTOFieldDefinition
    from litestar.dto._backend import DTOBackend
    from litestar.typing import FieldDefinition

COMPONENTS = "#/components/schemas/{name}"


class StrictJSONBody(AbstractDTO[Any]):
    """Decode each handler's JSON body strictly into its `data` annotation (no return DTO)."""

    _body_types: ClassVar[dict[str, Any]] = {}
    """The `data` annotation of every handler that reads a body, by handler id."""
    _components: ClassVar[dict[str, dict[str, Any]]] = {}
    """JSON Schemas of the Structs that bodies name, by name, for the document's components."""

    @classmethod
    def create_for_field_definition(
        cls,
        field_definition: FieldDefinition,
        handler_id: str,
        backend_cls: type[DTOBackend] | None = None,
    ) -> None:
        cls._body_types[handler_id] = field_definition.annotation

    def decode_bytes(self, value: bytes) -> Any:
        body_type = self._body_types[self.asgi_connection.route_handler.handler_id]
        try:
            return msgspec.json.decode(value, type=body_type, strict=True)
        except msgspec.ValidationError:
            pass  # maybe only an integer written as 2.0; see decode_builtins
        except msgspec.DecodeError as error:
            raise ClientException(detail=str(error)) from None
        try:
            decoded = msgspec.json.decode(value)
        except msgspec.DecodeError as error:
            # Typed decoding stops at the first wrong type; the rest may not even be JSON.
            raise ClientException(detail=str(error)) from None
        return self.decode_builtins(decoded)

    def decode_builtins(self, value: Any) -> Any:
        """Convert decoded JSON strictly, taking a number without a fractional part (`2.0`)
        for an integer: JSON has one kind of number, and JSON Schema counts 2.0 as an integer."""
        body_type = self._body_types[self.asgi_connection.route_handler.handler_id]
        try:
            return msgspec.convert(integral_numbers_as_ints(value), type=body_type, strict=True)
        except msgspec.ValidationError as error:
            raise ValidationException(
                detail="The request has invalid fields.", extra=[{"message": str(error)}]
            ) from None

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        (schema,), components = msgspec.json.schema_components(
            [field_definition.annotation], ref_template=COMPONENTS
        )
        for name, component in components.items():
            if cls._components.setdefault(name, component) != component:
                raise ImproperlyConfiguredException(f"two request body types are named {name}")
        return schema_from_json(schema)

    @classmethod
    def schema_components(cls) -> dict[str, Schema]:
        """The Structs of every body `create_openapi_schema` rendered, for `components`."""
        components: dict[str, Schema] = {}
        for name, schema in cls._components.items():
            component = schema_from_json(schema)
            assert isinstance(component, Schema)
            components[name] = component
        return components

    @classmethod
    def generate_field_definitions(
        cls, model_type: type[Any]
    ) -> Generator[DTOFieldDefinition, None, None]:
        raise NotImplementedError("StrictJSONBody decodes the data type itself; it has no fields")

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False


def integral_numbers_as_ints(value: Any) -> Any:
    """`value` with every float that has no fractional part (2.0, 1e3) made an int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: integral_numbers_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integral_numbers_as_ints(item) for item in value]
    return value


def _json_keys() -> dict[str, str]:
    """JSON Schema keyword -> attribute of Litestar's `Schema` (its own `to_schema` mapping)."""
    keys: dict[str, str] = {}
    for field in dataclasses.fields(Schema):
        alias = field.metadata.get("alias") if field.metadata else None
        if isinstance(alias, str):
            keys[alias] = field.name
            continue
        name = field.name
        if name.startswith("schema_"):
            keys[name.split("_")[1]] = name
        else:
            head, *rest = name.split("_")
            keys[head + "".join(part.title() for part in rest)] = name
    return keys


_SCHEMA_ATTRIBUTES = _json_keys()
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties"})
_SCHEMA_VALUES = frozenset({"items", "not", "additionalProperties", "contains"})


def schema_from_json(schema: Mapping[str, Any]) -> Schema | Reference:
    """Litestar's spec object for a JSON Schema (as msgspec writes one)."""
    if "$ref" in schema:
        return Reference(ref=schema["$ref"])
    attributes: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_LISTS:
            value = [schema_from_json(item) for item in value]
        elif key in _SCHEMA_MAPS:
            value = {name: schema_from_json(item) for name, item in value.items()}
        elif key in _SCHEMA_VALUES and isinstance(value, Mapping):
            value = schema_from_json(value)
        attributes[_SCHEMA_ATTRIBUTES[key]] = value
    return Schema(**attributes)
