"""Query matching, projection, sorting, updates and pipelines, by mongomock-ng's engine."""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

import mongomock_ng
import pymongo.errors
from bson import Decimal128, Int64, ObjectId
from mongomock_ng import aggregate as engine_aggregate
from mongomock_ng import collection as engine_collection
from mongomock_ng import filtering as engine_filtering

from eventhunting.standins.mongo.errors import (
    BAD_VALUE,
    FAILED_TO_PARSE,
    NOT_IMPLEMENTED,
    TYPE_MISMATCH,
    CommandError,
    WriteFailure,
)
from eventhunting.standins.mongo.values import value_key as storage_value_key

Document = dict[str, Any]

UPDATE_OPERATORS = frozenset(
    {
        "$set",
        "$unset",
        "$inc",
        "$mul",
        "$min",
        "$max",
        "$rename",
        "$setOnInsert",
        "$currentDate",
        "$push",
        "$addToSet",
        "$pull",
        "$pullAll",
        "$pop",
        "$bit",
    }
)


def _numeric_result(current: Any, operand: Any, result: Any) -> Any:
    """Keep MongoDB's numeric widening: a long stays a long unless a double is involved."""
    if isinstance(result, float) or isinstance(current, float) or isinstance(operand, float):
        return result
    if isinstance(current, Int64) or isinstance(operand, Int64):
        return Int64(result)
    return result


def _check_number(operator: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal128):
        raise WriteFailure(
            TYPE_MISMATCH, f"Cannot {operator} with non-numeric argument: {{{value!r}}}"
        )


def _arithmetic_updater(
    operator: str, combine: Callable[[Any, Any], Any], absent: Callable[[Any], Any]
) -> Callable[..., None]:
    def updater(doc: Any, field_name: str, value: Any, codec_options: Any = None) -> None:
        _check_number(operator, value)
        if isinstance(doc, MutableMapping):
            if field_name not in doc:
                doc[field_name] = absent(value)
                return
            current = doc[field_name]
            slot: Any = field_name
        elif isinstance(doc, list):
            slot = int(field_name)
            while len(doc) <= slot:
                doc.append(None)
            current = doc[slot]
            if current is None:
                doc[slot] = absent(value)
                return
        else:
            return
        if isinstance(current, bool) or not isinstance(current, int | float | Decimal128):
            raise WriteFailure(
                TYPE_MISMATCH,
                f"Cannot apply {operator} to a value of non-numeric type. "
                f"{{_id: ...}} has the field '{field_name}' of non-numeric type "
                f"{type(current).__name__}",
            )
        if isinstance(current, Decimal128) or isinstance(value, Decimal128):
            left = current.to_decimal() if isinstance(current, Decimal128) else current
            right = value.to_decimal() if isinstance(value, Decimal128) else value
            doc[slot] = Decimal128(combine(decimal.Decimal(left), decimal.Decimal(right)))
            return
        doc[slot] = _numeric_result(current, value, combine(current, value))

    return updater


# mongomock-ng has no $mul and turns a long into an int under $inc; register faithful ones.
engine_collection._updaters["$inc"] = _arithmetic_updater("$inc", lambda a, b: a + b, lambda v: v)
engine_collection._updaters["$mul"] = _arithmetic_updater(
    "$mul", lambda a, b: a * b, lambda v: Decimal128("0") if isinstance(v, Decimal128) else v * 0
)

_ENGINE: Any = mongomock_ng.MongoClient()["standin"]["engine"]
# mongomock-ng's functions are untyped; these names give them a type the rest can rely on.
_filter_applies: Callable[..., bool] = engine_filtering.filter_applies
_resolve_sort_key: Callable[[str, Document], Any] = engine_filtering.resolve_sort_key
_process_pipeline: Callable[..., Iterable[Document]] = engine_aggregate.process_pipeline
_PIPELINE_HANDLERS: dict[str, Any] = engine_aggregate._PIPELINE_HANDLERS


def clone(value: Any) -> Any:
    """A copy of a document deep enough to mutate: dicts and lists copied, scalars shared."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def _translate(error: Exception) -> CommandError:
    if isinstance(error, CommandError):
        return error
    if isinstance(error, pymongo.errors.WriteError):
        return WriteFailure(
            error.code or BAD_VALUE,
            str(error.details.get("errmsg", error)) if error.details else str(error),
        )
    if isinstance(error, pymongo.errors.OperationFailure):
        return CommandError(error.code or BAD_VALUE, str(error))
    if isinstance(error, NotImplementedError):
        return CommandError(NOT_IMPLEMENTED, f"not supported by the stand-in: {error}")
    if isinstance(error, TypeError):
        return CommandError(TYPE_MISMATCH, str(error))
    if isinstance(error, ValueError):
        return CommandError(BAD_VALUE, str(error))
    return CommandError(BAD_VALUE, f"{type(error).__name__}: {error}")


def matches(query: Document, document: Document) -> bool:
    try:
        return bool(_filter_applies(query, document))
    except Exception as error:
        raise _translate(error) from error


_EQUALITY_TYPES = (str, int, float, ObjectId, datetime.datetime, type(None))


def compile_query(query: Document) -> Callable[[Document], bool]:
    """A predicate for the query; plain top-level equalities skip the general engine."""
    if not query:
        return lambda document: True
    equalities = []
    for field_name, wanted in query.items():
        simple = (
            isinstance(wanted, _EQUALITY_TYPES)
            and not field_name.startswith("$")
            and "." not in field_name
        )
        if not simple:
            return lambda document: matches(query, document)
        equalities.append((field_name, storage_value_key(wanted)))

    def predicate(document: Document) -> bool:
        for field_name, wanted_key in equalities:
            value = document.get(field_name, _ABSENT)
            if value is _ABSENT:
                value = None
            elif isinstance(value, list | dict):
                return matches(query, document)
            if storage_value_key(value) != wanted_key:
                return False
        return True

    return predicate


_ABSENT: Any = object()


def validate_query(query: Any) -> None:
    """Raise BadValue for malformed filters even when no document is there to test."""
    if not isinstance(query, dict):
        raise CommandError(BAD_VALUE, "the match filter must be an expression in an object")
    matches(query, {})


def project(document: Document, projection: Document | None, query: Document) -> Document | None:
    if not projection:
        return document
    try:
        projected: Document | None = _ENGINE._copy_only_fields(
            document, dict(projection), dict, filter=query
        )
    except Exception as error:
        raise _translate(error) from error
    return projected


def sort_documents(documents: list[Document], sort: Document | None) -> list[Document]:
    if not sort:
        return documents
    try:
        for field, direction in reversed(list(sort.items())):
            if field == "$natural":
                if direction < 0:
                    documents = list(reversed(documents))
                continue
            if isinstance(direction, dict):
                continue  # {$meta: "textScore"}: no text search here, keep order
            documents = sorted(
                documents,
                key=lambda d, f=field: _resolve_sort_key(f, d),  # type: ignore[misc]
                reverse=direction < 0,
            )
    except Exception as error:
        raise _translate(error) from error
    return documents


def validate_update(update: Any) -> None:
    if isinstance(update, list):
        return
    if not isinstance(update, dict):
        raise CommandError(FAILED_TO_PARSE, "Update argument must be either an object or an array")
    operators = [k for k in update if k.startswith("$")]
    if operators and len(operators) != len(update):
        raise CommandError(
            FAILED_TO_PARSE,
            "Unknown modifier: mixing update operators with plain fields is not allowed",
        )
    for operator in operators:
        if operator not in UPDATE_OPERATORS:
            raise CommandError(
                FAILED_TO_PARSE,
                f"Unknown modifier: {operator}. Expected a valid update modifier or "
                "pipeline-style update specified as an array",
            )
        if not isinstance(update[operator], dict):
            raise CommandError(
                FAILED_TO_PARSE,
                f"Modifiers operate on fields but we found type {type(update[operator]).__name__} "
                f"instead. For example: {{$mod: {{<field>: ...}}}} not {{{operator}: ...}}",
            )


def is_replacement(update: Any) -> bool:
    return isinstance(update, dict) and not any(k.startswith("$") for k in update)


def apply_update(
    document: Document,
    query: Document,
    update: Document | list[Document],
    array_filters: list[Document] | None,
    inserting: bool,
) -> None:
    """Apply update operators, a replacement or a pipeline to a private copy, in place."""
    try:
        if isinstance(update, list):
            [result] = list(_process_pipeline([document], _ENGINE.database, update, None))
            document.clear()
            document.update(result)
            return
        if is_replacement(update):
            identifier = document.get("_id")
            document.clear()
            if identifier is not None or "_id" in update:
                document["_id"] = update.get("_id", identifier)
            document.update({k: clone(v) for k, v in update.items() if k != "_id"})
            return
        if _apply_to_top_level_fields(document, update, inserting):
            return
        _ENGINE._current_array_filters = array_filters or []
        try:
            _ENGINE._apply_update_document(document, query, update, inserting)
        finally:
            _ENGINE._current_array_filters = None
    except Exception as error:
        raise _translate(error) from error


def _set_field(document: Document, name: str, value: Any) -> None:
    document[name] = clone(value)


# What the engine does for these operators on a field named without dots or dollars, done
# without its path, positional and BSON checks (values decoded from BSON need none): the
# projections' updates are these, and the engine took over half the time of a write.
_TOP_LEVEL_UPDATERS: dict[str, Callable[[Document, str, Any], None]] = {
    "$set": _set_field,
    "$setOnInsert": _set_field,
    "$inc": engine_collection._updaters["$inc"],
}


def _apply_to_top_level_fields(document: Document, update: Document, inserting: bool) -> bool:
    """Apply $set, $setOnInsert and $inc of top-level fields; False (having changed nothing)
    when the update has other operators or fields."""
    for operator, fields in update.items():
        if operator not in _TOP_LEVEL_UPDATERS:
            return False
        for name in fields:
            if not name or "." in name or "$" in name or "\x00" in name:
                return False
    for operator, fields in update.items():
        if operator == "$setOnInsert" and not inserting:
            continue
        updater = _TOP_LEVEL_UPDATERS[operator]
        for name, value in fields.items():
            updater(document, name, value)
    return True


def upsert_seed(query: Document) -> Document:
    """The document an upsert starts from: the equality conditions of its filter."""
    try:
        expanded = _ENGINE._expand_dots(query)
        seed, _ = _ENGINE._discard_operators(expanded)
    except Exception as error:
        raise _translate(error) from error
    return _plain(seed) if isinstance(seed, dict) else {}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class _ForeignCollection:
    def __init__(self, documents: Callable[[], Iterable[Document]]) -> None:
        self._documents = documents

    def find(self, query: Document | None = None, *args: Any, **kwargs: Any) -> Iterator[Document]:
        for document in self._documents():
            if not query or _filter_applies(query, document):
                yield clone(document)


class _PipelineDatabase:
    """What mongomock's stages need of a database: a name, and other collections' documents."""

    def __init__(self, name: str, resolve: Callable[[str], Iterable[Document]]) -> None:
        # Stages at any position may read it: $match (past the first stage) records it.
        self.name = name
        self._resolve = resolve

    def get_collection(self, name: str, *args: Any, **kwargs: Any) -> _ForeignCollection:
        return _ForeignCollection(lambda: self._resolve(name))

    __getitem__ = get_collection


UNSUPPORTED_STAGES = frozenset({"$out", "$merge", "$geoNear", "$graphLookup", "$changeStream"})


def run_pipeline(
    documents: Iterable[Document],
    pipeline: list[Document],
    database: str,
    resolve: Callable[[str], Iterable[Document]],
) -> list[Document]:
    for stage in pipeline:
        if not isinstance(stage, dict) or len(stage) != 1:
            raise CommandError(
                40323, "A pipeline stage specification object must contain exactly one field."
            )
        (name,) = stage
        if name in UNSUPPORTED_STAGES:
            raise CommandError(NOT_IMPLEMENTED, f"{name} is not supported by the stand-in")
        if name not in _PIPELINE_HANDLERS:
            raise CommandError(40324, f"Unrecognized pipeline stage name: '{name}'")
    try:
        return [
            _plain(d)
            for d in _process_pipeline(
                [clone(d) for d in documents], _PipelineDatabase(database, resolve), pipeline, None
            )
        ]
    except Exception as error:
        raise _translate(error) from error
