"""Accounts: registration, roles, per-event staff and disabling, as events and decisions."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

import msgspec

from eventhunting.domain.actors import Actor
from eventhunting.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from eventhunting.domain.events import Command, DomainEvent, RecordedEvent, registry
from eventhunting.domain.events import fold as fold_history
from eventhunting.domain.payments import clean_invoice_letters

STREAM_KIND = "account"

CUSTOMER = "customer"
ORGANIZER = "organizer"
ADMIN = "admin"
STAFF = "staff"
ASSIGNABLE_ROLES: frozenset[str] = frozenset({CUSTOMER, ORGANIZER, ADMIN})
"""Account-wide roles an admin may grant; `staff` is granted per event instead."""

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
EMAIL_MAX_LENGTH = 254
EMAIL_LOCAL_MAX_LENGTH = 64
FULL_NAME_MAX_LENGTH = 200

# Deliberately simple: one @, no whitespace, a dot in the domain. Deliverability is proven
# by mail, not by a regular expression.
_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s.][^@\s]*\.[^@\s.]+$")


# --- errors -------------------------------------------------------------------------------


class EmailTaken(Conflict):
    code = "email_taken"
    title = "Email already registered"


class AccountNotFound(NotFound):
    code = "not_found"
    title = "Account not found"


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"
    title = "Invalid credentials"


class DisabledAccount(Unauthenticated):
    code = "account_disabled"
    title = "Account disabled"


class InvalidRefreshToken(Unauthenticated):
    code = "invalid_refresh_token"
    title = "Invalid refresh token"


class RefreshTokenReused(Unauthenticated):
    code = "refresh_token_reused"
    title = "Refresh token reused"


class TooManyAttempts(RateLimited):
    code = "too_many_attempts"
    title = "Too many attempts"


# --- events -------------------------------------------------------------------------------


@registry.event("AccountRegistered", stream_kind=STREAM_KIND)
class AccountRegistered(DomainEvent, frozen=True, kw_only=True):
    """An account was created with a unique normalised email and its first roles.

    `password_hash` is an argon2id hash; it never leaves the write side.
    """

    account_id: str
    email: str
    full_name: str
    password_hash: str
    roles: list[str]


@registry.event("AccountRolesChanged", stream_kind=STREAM_KIND)
class AccountRolesChanged(DomainEvent, frozen=True, kw_only=True):
    """An admin set the account-wide roles; `roles` is the complete new set."""

    account_id: str
    roles: list[str]
    granted: list[str]
    revoked: list[str]


@registry.event("AccountDisabled", stream_kind=STREAM_KIND)
class AccountDisabled(DomainEvent, frozen=True, kw_only=True):
    """An admin disabled the account: it can no longer sign in or refresh tokens."""

    account_id: str
    reason: str | None = None


@registry.event("AccountEnabled", stream_kind=STREAM_KIND)
class AccountEnabled(DomainEvent, frozen=True, kw_only=True):
    """An admin enabled a disabled account again."""

    account_id: str


@registry.event("AccountStaffGranted", stream_kind=STREAM_KIND)
class AccountStaffGranted(DomainEvent, frozen=True, kw_only=True):
    """The account may check tickets in at one event."""

    account_id: str
    event_id: str


@registry.event("AccountStaffRevoked", stream_kind=STREAM_KIND)
class AccountStaffRevoked(DomainEvent, frozen=True, kw_only=True):
    """The account may no longer check tickets in at one event."""

    account_id: str
    event_id: str


@registry.event("InvoiceLettersChanged", stream_kind=STREAM_KIND)
class InvoiceLettersChanged(DomainEvent, frozen=True, kw_only=True):
    """The organizer's invoices paid from now on end their symbol with `letters` (1K26T..)."""

    account_id: str
    letters: str


AccountEvent = (
    AccountRegistered
    | AccountRolesChanged
    | AccountDisabled
    | AccountEnabled
    | AccountStaffGranted
    | AccountStaffRevoked
    | InvoiceLettersChanged
)


# --- state --------------------------------------------------------------------------------


class Account(msgspec.Struct, frozen=True, kw_only=True):
    """The current state of one account, folded from its stream."""

    account_id: str
    email: str
    full_name: str
    password_hash: str
    roles: frozenset[str]
    staff_events: frozenset[str] = frozenset()
    disabled: bool = False
    invoice_letters: str | None = None
    """Chosen by an organizer for their invoices' symbols; None: the default setting."""
    version: int = 0


def evolve(state: Account | None, recorded: RecordedEvent) -> Account:
    """The account after one more event of its stream (the first must be AccountRegistered)."""
    return _applied(state, recorded.data, recorded.version)


def fold(history: Iterable[RecordedEvent]) -> Account | None:
    """The account its stream describes, or None for an empty stream."""
    return fold_history(evolve, history)


def after(state: Account | None, events: Sequence[DomainEvent]) -> Account | None:
    """The account once `events`, decided but not yet stored, are appended."""
    version = 0 if state is None else state.version
    for offset, event in enumerate(events, start=1):
        state = _applied(state, event, version + offset)
    return state


def _applied(state: Account | None, event: DomainEvent, version: int) -> Account:
    if isinstance(event, AccountRegistered):
        if state is not None:
            raise ValueError("AccountRegistered must be the first event of an account")
        return Account(
            account_id=event.account_id,
            email=event.email,
            full_name=event.full_name,
            password_hash=event.password_hash,
            roles=frozenset(event.roles) | {CUSTOMER},
            version=version,
        )
    if state is None:
        raise ValueError(f"{type(event).__name__} before AccountRegistered")
    if isinstance(event, AccountRolesChanged):
        return msgspec.structs.replace(
            state, roles=frozenset(event.roles) | {CUSTOMER}, version=version
        )
    if isinstance(event, AccountDisabled):
        return msgspec.structs.replace(state, disabled=True, version=version)
    if isinstance(event, AccountEnabled):
        return msgspec.structs.replace(state, disabled=False, version=version)
    if isinstance(event, AccountStaffGranted):
        return msgspec.structs.replace(
            state, staff_events=state.staff_events | {event.event_id}, version=version
        )
    if isinstance(event, AccountStaffRevoked):
        return msgspec.structs.replace(
            state, staff_events=state.staff_events - {event.event_id}, version=version
        )
    if isinstance(event, InvoiceLettersChanged):
        return msgspec.structs.replace(state, invoice_letters=event.letters, version=version)
    # Events this version does not know still count towards the stream version.
    return msgspec.structs.replace(state, version=version)


# --- input rules --------------------------------------------------------------------------


def normalise_email(raw: str) -> str:
    """Canonical form used for uniqueness and login: NFC, trimmed, lower-case.

    Raises InvalidInput when the address does not look like an email.
    """
    email = unicodedata.normalize("NFC", raw).strip().lower()
    local, _, _ = email.partition("@")
    if (
        len(email) > EMAIL_MAX_LENGTH
        or len(local) > EMAIL_LOCAL_MAX_LENGTH
        or not _EMAIL_SHAPE.match(email)
        or any(unicodedata.category(char).startswith("C") for char in email)
    ):
        raise InvalidInput("This is not a valid email address.", field="email")
    return email


def password_problems(password: str, normalised_email: str) -> list[str]:
    """Why a password is not acceptable (empty when it is)."""
    problems: list[str] = []
    if len(password) < PASSWORD_MIN_LENGTH:
        problems.append(f"must be at least {PASSWORD_MIN_LENGTH} characters")
    if len(password) > PASSWORD_MAX_LENGTH:
        problems.append(f"must be at most {PASSWORD_MAX_LENGTH} characters")
    if unicodedata.normalize("NFC", password).strip().lower() == normalised_email:
        problems.append("must not be the email address")
    return problems


def check_password(password: str, normalised_email: str) -> None:
    problems = password_problems(password, normalised_email)
    if problems:
        message = "The password " + " and ".join(problems) + "."
        raise InvalidInput(message, field="password")


def clean_full_name(raw: str) -> str:
    full_name = " ".join(raw.split())
    if not full_name:
        raise InvalidInput("The full name must not be empty.", field="full_name")
    if len(full_name) > FULL_NAME_MAX_LENGTH:
        raise InvalidInput(
            f"The full name must be at most {FULL_NAME_MAX_LENGTH} characters.",
            field="full_name",
        )
    return full_name


def clean_roles(requested: Sequence[str]) -> frozenset[str]:
    """The account-wide role set an admin asked for; `customer` is always included."""
    unknown = sorted(set(requested) - ASSIGNABLE_ROLES)
    if unknown:
        allowed = ", ".join(sorted(ASSIGNABLE_ROLES))
        raise InvalidInput(
            f"Unknown role {unknown[0]!r}; roles are {allowed} (staff is granted per event).",
            field="roles",
        )
    return frozenset(requested) | {CUSTOMER}


def check_registration(email: str, password: str) -> str:
    """The normalised email; InvalidInput naming every bad field (email, password) otherwise."""
    errors: list[dict[str, str]] = []
    normalised = ""
    try:
        normalised = normalise_email(email)
    except InvalidInput as error:
        errors.extend(error.extra["errors"])
    problems = password_problems(password, normalised)
    if problems:
        errors.append({"field": "password", "message": "; ".join(problems)})
    if errors:
        raise InvalidInput("The request has invalid fields.", errors=errors)
    return normalised


# --- commands -----------------------------------------------------------------------------
# A command is what its caller asked: the account it addresses, who asks (`by`) and the body
# as sent. What the server supplies (the id it draws, the password's hash) are the
# decision's keyword arguments.


class RegisterAccount(Command, frozen=True, kw_only=True):
    """Create an account; `roles` besides `customer` only when an admin or the bootstrap asks."""

    email: str
    full_name: str
    password: str
    roles: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # Commands end up in logs and tracebacks; the password must not.
        return (
            f"RegisterAccount(email={self.email!r}, full_name={self.full_name!r},"
            f" password='***', roles={self.roles!r})"
        )


class ChangeRoles(Command, frozen=True, kw_only=True):
    """Set the account-wide roles (`customer` is always kept)."""

    account_id: str
    by: Actor
    roles: tuple[str, ...]


class DisableAccount(Command, frozen=True, kw_only=True):
    account_id: str
    by: Actor
    reason: str | None = None


class EnableAccount(Command, frozen=True, kw_only=True):
    account_id: str
    by: Actor


class GrantStaff(Command, frozen=True, kw_only=True):
    """Let the account check tickets in at one event."""

    account_id: str
    event_id: str
    by: Actor


class RevokeStaff(Command, frozen=True, kw_only=True):
    account_id: str
    event_id: str
    by: Actor


class ChooseInvoiceLetters(Command, frozen=True, kw_only=True):
    """An organizer sets the two letters ending their invoices' series symbol."""

    account_id: str
    letters: str
    by: Actor


# --- decisions ----------------------------------------------------------------------------


def require_account(state: Account | None) -> Account:
    if state is None:
        raise AccountNotFound("There is no such account.")
    return state


def decide_register_account(
    state: Account | None, command: RegisterAccount, *, account_id: str, password_hash: str
) -> list[DomainEvent]:
    """A new account under the id the server drew, with the password's hash it computed."""
    if state is not None:
        raise Conflict(f"account {account_id} exists already", code="account_exists")
    email = check_registration(command.email, command.password)
    granted = clean_roles(command.roles)
    return [
        AccountRegistered(
            account_id=account_id,
            email=email,
            full_name=clean_full_name(command.full_name),
            password_hash=password_hash,
            roles=sorted(granted),
        )
    ]


def decide_change_roles(state: Account | None, command: ChangeRoles) -> list[DomainEvent]:
    """Set the account-wide roles; no event when nothing changes."""
    account = require_account(state)
    roles = clean_roles(command.roles)
    if roles == account.roles:
        return []
    return [
        AccountRolesChanged(
            account_id=account.account_id,
            roles=sorted(roles),
            granted=sorted(roles - account.roles),
            revoked=sorted(account.roles - roles),
        )
    ]


def decide_disable_account(state: Account | None, command: DisableAccount) -> list[DomainEvent]:
    """Disable an account (not one's own: an admin would lock themselves out)."""
    account = require_account(state)
    if command.by.account_id == account.account_id:
        raise InvalidInput("Admins cannot disable their own account.", field="disabled")
    if account.disabled:
        return []
    return [AccountDisabled(account_id=account.account_id, reason=command.reason)]


def decide_enable_account(state: Account | None, command: EnableAccount) -> list[DomainEvent]:
    account = require_account(state)
    if not account.disabled:
        return []
    return [AccountEnabled(account_id=account.account_id)]


def decide_grant_staff(state: Account | None, command: GrantStaff) -> list[DomainEvent]:
    account = require_account(state)
    if command.event_id in account.staff_events:
        return []
    return [AccountStaffGranted(account_id=account.account_id, event_id=command.event_id)]


def decide_revoke_staff(state: Account | None, command: RevokeStaff) -> list[DomainEvent]:
    account = require_account(state)
    if command.event_id not in account.staff_events:
        return []
    return [AccountStaffRevoked(account_id=account.account_id, event_id=command.event_id)]


# --- current-state flags kept beside the stream -------------------------------------------

DISABLED_FLAG = "disabled"
STAFF_FLAG_PREFIX = "staff:"


def access_flags(state: Account | None) -> dict[str, int]:
    """What every request needs to know about an account, as integer flags.

    The append keeps these in a write-side counter hash in the same script as the events,
    so an authenticated request reads current roles with one HGETALL.
    """
    if state is None:
        return {}
    flags = {role: int(role in state.roles) for role in ASSIGNABLE_ROLES}
    flags[DISABLED_FLAG] = int(state.disabled)
    for event_id in state.staff_events:
        flags[STAFF_FLAG_PREFIX + event_id] = 1
    return flags


def flag_deltas(before: Account | None, after: Account) -> dict[str, int]:
    """How the flags change from one state to the next (only fields that change)."""
    old, new = access_flags(before), access_flags(after)
    deltas = {name: new.get(name, 0) - old.get(name, 0) for name in old.keys() | new.keys()}
    return {name: delta for name, delta in deltas.items() if delta}


def roles_from_flags(flags: dict[str, int]) -> tuple[frozenset[str], frozenset[str], bool]:
    """(roles, staff event ids, disabled) from the flags hash."""
    roles = {CUSTOMER}
    staff: set[str] = set()
    for name, value in flags.items():
        if value <= 0:
            continue
        if name in ASSIGNABLE_ROLES:
            roles.add(name)
        elif name.startswith(STAFF_FLAG_PREFIX):
            staff.add(name.removeprefix(STAFF_FLAG_PREFIX))
    return frozenset(roles), frozenset(staff), flags.get(DISABLED_FLAG, 0) > 0


def decide_choose_invoice_letters(
    state: Account | None, command: ChooseInvoiceLetters
) -> list[DomainEvent]:
    """An organizer's invoice letters; no event when they are the ones chosen already."""
    account = require_account(state)
    if ORGANIZER not in account.roles:
        raise Forbidden("Only organizers issue invoices.", code="not_an_organizer")
    letters = clean_invoice_letters(command.letters)
    if letters == account.invoice_letters:
        return []
    return [InvoiceLettersChanged(account_id=account.account_id, letters=letters)]
