"""MongoDB error codes and the exceptions that carry them to the client."""

from __future__ import annotations

from typing import Any

CODE_NAMES: dict[int, str] = {
    1: "InternalError",
    2: "BadValue",
    6: "HostUnreachable",
    7: "HostNotFound",
    9: "FailedToParse",
    11: "UserNotFound",
    13: "Unauthorized",
    14: "TypeMismatch",
    20: "IllegalOperation",
    24: "LockTimeout",
    26: "NamespaceNotFound",
    27: "IndexNotFound",
    28: "PathNotViable",
    40: "ConflictingUpdateOperators",
    43: "CursorNotFound",
    48: "NamespaceExists",
    50: "MaxTimeMSExpired",
    52: "DollarPrefixedFieldName",
    59: "CommandNotFound",
    64: "WriteConcernTimeout",
    66: "ImmutableField",
    67: "CannotCreateIndex",
    72: "InvalidOptions",
    73: "InvalidNamespace",
    79: "UnknownReplWriteConcern",
    85: "IndexOptionsConflict",
    86: "IndexKeySpecsConflict",
    89: "NetworkTimeout",
    91: "ShutdownInProgress",
    100: "UnsatisfiableWriteConcern",
    112: "WriteConflict",
    115: "CommandNotSupported",
    134: "ReadConcernMajorityNotAvailableYet",
    150: "StaleEpoch",
    189: "PrimarySteppedDown",
    225: "TransactionTooOld",
    238: "NotImplemented",
    239: "SnapshotTooOld",
    246: "SnapshotUnavailable",
    249: "StaleDbVersion",
    250: "StaleChunkHistory",
    251: "NoSuchTransaction",
    256: "TransactionCommitted",
    262: "ExceededTimeLimit",
    263: "OperationNotSupportedInTransaction",
    267: "PreparedTransactionInProgress",
    272: "MigrationConflict",
    290: "TransactionExceededLifetimeLimitSeconds",
    9001: "SocketException",
    10107: "NotWritablePrimary",
    11000: "DuplicateKey",
    11600: "InterruptedAtShutdown",
    11601: "Interrupted",
    11602: "InterruptedDueToReplStateChange",
    13388: "StaleConfig",
    13435: "NotPrimaryNoSecondaryOk",
    13436: "NotPrimaryOrSecondary",
}

BAD_VALUE = 2
FAILED_TO_PARSE = 9
TYPE_MISMATCH = 14
ILLEGAL_OPERATION = 20
NAMESPACE_NOT_FOUND = 26
INDEX_NOT_FOUND = 27
CURSOR_NOT_FOUND = 43
NAMESPACE_EXISTS = 48
MAX_TIME_MS_EXPIRED = 50
COMMAND_NOT_FOUND = 59
IMMUTABLE_FIELD = 66
CANNOT_CREATE_INDEX = 67
INVALID_OPTIONS = 72
INVALID_NAMESPACE = 73
INDEX_OPTIONS_CONFLICT = 85
INDEX_KEY_SPECS_CONFLICT = 86
WRITE_CONFLICT = 112
TRANSACTION_TOO_OLD = 225
NOT_IMPLEMENTED = 238
NO_SUCH_TRANSACTION = 251
TRANSACTION_COMMITTED = 256
OPERATION_NOT_SUPPORTED_IN_TRANSACTION = 263
DUPLICATE_KEY = 11000
UNKNOWN_REPL_WRITE_CONCERN = 79
UNSATISFIABLE_WRITE_CONCERN = 100


def code_name(code: int) -> str:
    return CODE_NAMES.get(code, f"Location{code}")


class CommandError(Exception):
    """A command failed as a whole: answered as {ok: 0, errmsg, code, codeName}.

    Error labels are not chosen here: the server adds them by MongoDB's rules (error_labels).
    """

    def __init__(self, code: int, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra or {}

    def reply(self) -> dict[str, Any]:
        reply: dict[str, Any] = {
            "ok": 0.0,
            "errmsg": self.message,
            "code": self.code,
            "codeName": code_name(self.code),
        }
        reply.update(self.extra)
        return reply


class WriteFailure(CommandError):
    """One write statement failed: reported in writeErrors (or as the error of findAndModify)."""

    def write_error(self, index: int) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": index, "code": self.code, "errmsg": self.message}
        entry.update(self.extra)
        return entry


def duplicate_key(
    namespace: str, index_name: str, key_pattern: dict[str, Any], key_value: dict[str, Any]
) -> WriteFailure:
    shown = ", ".join(f"{field}: {value!r}" for field, value in key_value.items())
    return WriteFailure(
        DUPLICATE_KEY,
        f"E11000 duplicate key error collection: {namespace} index: {index_name} "
        f"dup key: {{ {shown} }}",
        extra={"keyPattern": key_pattern, "keyValue": key_value},
    )


def write_conflict() -> CommandError:
    return CommandError(
        WRITE_CONFLICT,
        "Write conflict during plan execution and yielding is disabled. :: Please retry your "
        "operation or multi-document transaction.",
    )
