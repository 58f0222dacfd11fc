"""What the OpenAPI document adds to Litestar's: problem+json errors per route, body schemas.

Litestar lists only each route's success status and a 400 in its own error shape, which this
API never sends (errors.py answers 422). `complete_document` gives every operation its real
error responses from what the route is: 401 when it reads a caller (its guard, or a token it
checks when one is sent), 403 when its guard needs a role, 404 when its path names a
resource, 422 when it takes input, 409 for commands, 500 everywhere, all with the one
`Problem` schema. A handler whose own rules answer other statuses says so in its `opt` under
`PROBLEM_STATUSES` (replacing the default 409 of commands). It also adds the components of
the request bodies (msgspec's schemas, see bodies.py), marks optional bodies as such and
drops the `null` Litestar offers for query parameters, which are absent or text.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from litestar import Litestar
from litestar.exceptions import ImproperlyConfiguredException
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.routes import HTTPRoute

from eventhunting.api.auth import BEARER_SCHEME
from eventhunting.api.bodies import StrictJSONBody
from eventhunting.api.errors import PROBLEM_JSON, PROBLEM_TYPE_BASE

PROBLEM_STATUSES = "problem_statuses"
"""Handler `opt` key: statuses the handler's own rules answer besides those of its guard,
path and input; it replaces the 409 every command is given by default."""

PROBLEM_SCHEMA = "Problem"
FIELD_ERROR_SCHEMA = "FieldError"
COMMAND_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

FIELD_ERROR = Schema(
    type=OpenAPIType.OBJECT,
    title=FIELD_ERROR_SCHEMA,
    description="One invalid input: `field` is its path in the body (`items[0].quantity`) or"
    " the parameter's name; empty for the body as a whole.",
    properties={
        "field": Schema(type=OpenAPIType.STRING),
        "message": Schema(type=OpenAPIType.STRING),
    },
    required=["field", "message"],
    additional_properties=False,
)

PROBLEM = Schema(
    type=OpenAPIType.OBJECT,
    title=PROBLEM_SCHEMA,
    description="An RFC 9457 problem. `code` is stable and machine-readable (`sold_out`,"
    " `invalid_input`); `errors` comes with 422. Some codes add fields of their own.",
    properties={
        "type": Schema(
            type=OpenAPIType.STRING,
            format="uri",  # type: ignore[arg-type]
            description=f"{PROBLEM_TYPE_BASE}<code with hyphens>",
        ),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER, minimum=400, maximum=599),
        "detail": Schema(type=OpenAPIType.STRING),
        "code": Schema(type=OpenAPIType.STRING),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            items=Reference(ref=f"#/components/schemas/{FIELD_ERROR_SCHEMA}"),
        ),
    },
    required=["code", "detail", "status", "title", "type"],
)

DESCRIPTIONS: dict[int, str] = {
    401: "Not signed in: no, a malformed, forged or expired token, or a disabled account"
    " (`unauthenticated`, `account_disabled`, ...).",
    403: "The caller may not do this (`forbidden`: lacks the role; or a rule of the resource).",
    404: "No such resource, or one the caller may not see.",
    409: "Conflicts with the current state (`idempotency_key_reused`, ...).",
    422: "Invalid input; `errors` names each field.",
    429: "Too many attempts (`too_many_attempts`); `Retry-After` says when to try again.",
    500: "The server could not complete the request (`internal_error`).",
    503: "A part the request needs is not available (`payments_unavailable`, ...).",
}

HEADERS: dict[int, dict[str, OpenAPIHeader | Reference]] = {
    401: {
        "WWW-Authenticate": OpenAPIHeader(
            schema=Schema(type=OpenAPIType.STRING),
            required=True,
            description='Bearer realm="eventhunting"',
        )
    },
    429: {
        "Retry-After": OpenAPIHeader(
            schema=Schema(type=OpenAPIType.STRING, pattern="^[0-9]+$"),
            required=True,
            description="Seconds to wait before trying again.",
        )
    },
}


def problem_response(status: int) -> OpenAPIResponse:
    schema: Schema | Reference = Reference(ref=f"#/components/schemas/{PROBLEM_SCHEMA}")
    if status == 422:
        schema = Schema(all_of=[schema, Schema(required=["errors"])])
    return OpenAPIResponse(
        description=DESCRIPTIONS[status],
        content={PROBLEM_JSON: OpenAPIMediaType(schema=schema)},
        headers=HEADERS.get(status),
    )


def bearer_roles(operation: Operation) -> list[str] | None:
    """The roles of the operation's bearer requirement; None for a public operation."""
    for requirement in operation.security or []:
        if BEARER_SCHEME in requirement:
            return list(requirement[BEARER_SCHEME])
    return None


def problem_statuses(handler: HTTPRouteHandler, method: str, operation: Operation) -> set[int]:
    statuses = {500}
    roles = bearer_roles(operation)
    if roles is not None or "maybe_principal" in handler.parsed_fn_signature.parameters:
        statuses.add(401)
    if roles:
        statuses.add(403)
    parameters = [p for p in operation.parameters or [] if not isinstance(p, Reference)]
    if any(parameter.param_in == "path" for parameter in parameters):
        statuses.add(404)
    if operation.request_body is not None or any(p.param_in != "path" for p in parameters):
        statuses.add(422)
    own = handler.opt.get(PROBLEM_STATUSES)
    if own is not None:
        statuses.update(own)
    elif method in COMMAND_METHODS:
        statuses.add(409)
    return statuses


def complete_document(app: Litestar) -> None:
    """Build the app's OpenAPI document; add body components and each operation's errors.

    Run after `declare_security`: the statuses follow from each operation's `security`.
    """
    document = app.openapi_schema
    components = document.components.schemas
    assert components is not None
    for name, schema in StrictJSONBody.schema_components().items():
        if name in components:
            raise ImproperlyConfiguredException(f"{name} names a request and a response type")
        components[name] = schema
    components[PROBLEM_SCHEMA] = PROBLEM
    components[FIELD_ERROR_SCHEMA] = FIELD_ERROR
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or document.paths is None:
            continue
        path_item = document.paths.get(route.path_format or "/")
        if path_item is None:
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                operation = getattr(path_item, method.lower(), None)
                if not isinstance(operation, Operation):
                    continue
                responses = operation.responses or {}
                responses.pop("400", None)  # Litestar's; this API answers invalid input with 422
                for status in sorted(problem_statuses(handler, method, operation)):
                    responses[str(status)] = problem_response(status)
                operation.responses = responses
                body, data = operation.request_body, handler.parsed_data_field
                if isinstance(body, RequestBody) and data is not None and data.is_optional:
                    body.required = False
                for parameter in operation.parameters or []:
                    if not isinstance(parameter, Reference) and parameter.param_in != "path":
                        parameter.schema = without_null(parameter.schema)


def without_null(schema: Schema | Reference | None) -> Schema | Reference | None:
    """A parameter's schema without Litestar's `oneOf [X, null]`: a query string or header
    is absent or text, never null, and the parameter's `required` already says it may be left
    out. The constraints Litestar put beside `oneOf` stay."""
    if not isinstance(schema, Schema) or not schema.one_of:
        return schema
    kept = [
        choice
        for choice in schema.one_of
        if not (isinstance(choice, Schema) and choice.type == OpenAPIType.NULL)
    ]
    if len(kept) != 1 or not isinstance(kept[0], Schema) or len(kept) == len(schema.one_of):
        return schema
    return dataclasses.replace(schema, one_of=None, **_set_fields_of(kept[0]))


def _set_fields_of(schema: Schema) -> dict[str, Any]:
    return {
        field.name: getattr(schema, field.name)
        for field in dataclasses.fields(schema)
        if getattr(schema, field.name) is not None
    }
