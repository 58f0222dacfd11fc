"""The accounts domain: email and password rules, decisions, folding and access flags."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from eventhunting.domain import accounts
from eventhunting.domain.accounts import (
    AccountDisabled,
    AccountEnabled,
    AccountRegistered,
    AccountRolesChanged,
    AccountStaffGranted,
    AccountStaffRevoked,
    ChangeRoles,
    ChooseInvoiceLetters,
    DisableAccount,
    EnableAccount,
    GrantStaff,
    InvoiceLettersChanged,
    RegisterAccount,
    RevokeStaff,
)
from eventhunting.domain.actors import Actor
from eventhunting.domain.errors import Forbidden, InvalidInput
from eventhunting.domain.events import DomainEvent, registry

ADMIN = Actor("admin-1", is_admin=True)
NOW = datetime(2030, 1, 1, tzinfo=UTC)
PASSWORD = "a fine password"


@dataclass(frozen=True)
class Recorded:
    data: DomainEvent
    version: int
    occurred_at: datetime


def register(
    *, account_id: str, email: str, full_name: str, password_hash: str, roles: tuple[str, ...]
) -> list[DomainEvent]:
    command = RegisterAccount(email=email, full_name=full_name, password=PASSWORD, roles=roles)
    return accounts.decide_register_account(
        None, command, account_id=account_id, password_hash=password_hash
    )


def evolve(state: accounts.Account, event: DomainEvent) -> accounts.Account:
    return accounts.evolve(state, Recorded(event, state.version + 1, NOW))


def change_roles(state: accounts.Account, roles: list[str]) -> list[DomainEvent]:
    command = ChangeRoles(account_id=state.account_id, by=ADMIN, roles=tuple(roles))
    return accounts.decide_change_roles(state, command)


def disable(state: accounts.Account, reason: str | None = None) -> list[DomainEvent]:
    command = DisableAccount(account_id=state.account_id, by=ADMIN, reason=reason)
    return accounts.decide_disable_account(state, command)


def enable(state: accounts.Account) -> list[DomainEvent]:
    return accounts.decide_enable_account(
        state, EnableAccount(account_id=state.account_id, by=ADMIN)
    )


def grant_staff(state: accounts.Account, event_id: str) -> list[DomainEvent]:
    command = GrantStaff(account_id=state.account_id, event_id=event_id, by=ADMIN)
    return accounts.decide_grant_staff(state, command)


def revoke_staff(state: accounts.Account, event_id: str) -> list[DomainEvent]:
    command = RevokeStaff(account_id=state.account_id, event_id=event_id, by=ADMIN)
    return accounts.decide_revoke_staff(state, command)


def registered(roles: tuple[str, ...] = ()) -> accounts.Account:
    events = register(
        account_id="01ACCOUNT",
        email="ana@example.com",
        full_name="Ana",
        password_hash="$argon2id$hash",
        roles=roles,
    )
    state = accounts.fold(Recorded(event, 1, NOW) for event in events)
    assert state is not None
    return state


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Ana@Example.COM", "ana@example.com"),
        ("  ana@example.com\t", "ana@example.com"),
        ("ÁNA@example.com", "ána@example.com"),
        ("A\u0301na@example.com", "\u00e1na@example.com"),
    ],
)
def test_email_is_normalised_to_trimmed_lower_case_nfc(raw: str, normalised: str) -> None:
    assert accounts.normalise_email(raw) == normalised


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "ana",
        "ana@",
        "@example.com",
        "ana@example",
        "ana@@example.com",
        "an a@example.com",
        "ana@.com",
        "ana@example.",
        "ana\x00@example.com",
        "a" * 65 + "@example.com",
        "ana@" + "e" * 250 + ".com",
    ],
)
def test_malformed_email_is_invalid_input_on_the_email_field(raw: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        accounts.normalise_email(raw)
    assert raised.value.extra["errors"][0]["field"] == "email"


@pytest.mark.parametrize("length", [8, 64, 128])
def test_password_of_8_to_128_characters_is_accepted(length: int) -> None:
    assert accounts.password_problems("p" * length, "ana@example.com") == []


@pytest.mark.parametrize("length", [0, 7, 129, 1000])
def test_password_outside_8_to_128_characters_is_refused(length: int) -> None:
    with pytest.raises(InvalidInput) as raised:
        accounts.check_password("p" * length, "ana@example.com")
    assert raised.value.extra["errors"][0]["field"] == "password"


@pytest.mark.parametrize("password", ["ana@example.com", "ANA@Example.com", " ana@example.com "])
def test_password_equal_to_the_email_is_refused(password: str) -> None:
    assert accounts.password_problems(password, "ana@example.com") == [
        "must not be the email address"
    ]


def test_full_name_is_trimmed_and_inner_whitespace_collapsed() -> None:
    assert accounts.clean_full_name("  Nguyễn   Văn\tAn ") == "Nguyễn Văn An"


@pytest.mark.parametrize("raw", ["", "   ", "x" * 201])
def test_empty_or_overlong_full_name_is_refused(raw: str) -> None:
    with pytest.raises(InvalidInput):
        accounts.clean_full_name(raw)


def test_new_account_is_a_customer_at_version_one() -> None:
    state = registered()
    assert state.roles == {"customer"}
    assert state.version == 1
    assert not state.disabled


def test_registered_event_lists_customer_among_its_roles() -> None:
    [event] = register(
        account_id="a", email="a@example.com", full_name="A", password_hash="h", roles=("admin",)
    )
    assert isinstance(event, AccountRegistered)
    assert event.roles == ["admin", "customer"]


def test_changing_roles_records_what_was_granted_and_revoked() -> None:
    state = registered(roles=("admin",))
    [event] = change_roles(state, ["organizer"])
    assert isinstance(event, AccountRolesChanged)
    assert event.roles == ["customer", "organizer"]
    assert event.granted == ["organizer"]
    assert event.revoked == ["admin"]
    assert evolve(state, event).roles == {"customer", "organizer"}


def test_customer_role_cannot_be_taken_away() -> None:
    state = registered(roles=("organizer",))
    [event] = change_roles(state, [])
    assert evolve(state, event).roles == {"customer"}


def test_setting_the_same_roles_again_records_nothing() -> None:
    state = registered(roles=("organizer",))
    assert change_roles(state, ["organizer", "customer"]) == []


@pytest.mark.parametrize("role", ["staff", "root", "Admin", ""])
def test_unknown_or_per_event_role_cannot_be_granted_account_wide(role: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        change_roles(registered(), [role])
    assert raised.value.extra["errors"][0]["field"] == "roles"


def test_disable_and_enable_are_recorded_once() -> None:
    state = registered()
    [disabled] = disable(state, "fraud")
    assert isinstance(disabled, AccountDisabled)
    state = evolve(state, disabled)
    assert state.disabled
    assert disable(state) == []
    [enabled] = enable(state)
    assert isinstance(enabled, AccountEnabled)
    assert not evolve(state, enabled).disabled


def test_staff_is_granted_and_revoked_per_event() -> None:
    state = registered()
    [granted] = grant_staff(state, "EVENT1")
    assert isinstance(granted, AccountStaffGranted)
    state = evolve(state, granted)
    assert state.staff_events == {"EVENT1"}
    assert grant_staff(state, "EVENT1") == []
    [revoked] = revoke_staff(state, "EVENT1")
    assert isinstance(revoked, AccountStaffRevoked)
    assert evolve(state, revoked).staff_events == frozenset()


def test_events_before_registration_cannot_be_folded() -> None:
    with pytest.raises(ValueError, match="before AccountRegistered"):
        accounts.fold([Recorded(AccountEnabled(account_id="a"), 1, NOW)])


def test_access_flags_round_trip_to_roles_staff_and_disabled() -> None:
    state = registered(roles=("organizer",))
    state = evolve(state, AccountStaffGranted(account_id="a", event_id="E1"))
    state = evolve(state, AccountDisabled(account_id="a"))
    roles, staff, disabled = accounts.roles_from_flags(accounts.access_flags(state))
    assert roles == {"customer", "organizer"}
    assert staff == {"E1"}
    assert disabled


def test_flag_deltas_name_only_the_fields_that_change() -> None:
    before = registered(roles=("organizer",))
    [event] = change_roles(before, ["admin"])
    after = evolve(before, event)
    assert accounts.flag_deltas(before, after) == {"admin": 1, "organizer": -1}


def test_account_events_are_registered_on_account_streams() -> None:
    for name in (
        "AccountRegistered",
        "AccountRolesChanged",
        "AccountDisabled",
        "AccountEnabled",
        "AccountStaffGranted",
        "AccountStaffRevoked",
    ):
        assert registry.by_name[name].stream_kind == "account"


def test_an_admin_cannot_disable_their_own_account() -> None:
    state = registered(roles=("admin",))
    command = DisableAccount(account_id=state.account_id, by=Actor(state.account_id, is_admin=True))
    with pytest.raises(InvalidInput) as raised:
        accounts.decide_disable_account(state, command)
    assert raised.value.extra["errors"][0]["field"] == "disabled"


def test_commands_on_a_missing_account_are_not_found() -> None:
    with pytest.raises(accounts.AccountNotFound):
        accounts.decide_enable_account(None, EnableAccount(account_id="nobody", by=ADMIN))


def test_a_registration_command_never_shows_its_password() -> None:
    command = RegisterAccount(email="ana@example.com", full_name="Ana", password=PASSWORD)
    assert PASSWORD not in repr(command)
    assert PASSWORD not in str(command)


def choose_letters(state: accounts.Account, letters: str) -> list[DomainEvent]:
    command = ChooseInvoiceLetters(
        account_id=state.account_id, letters=letters, by=Actor(state.account_id)
    )
    return accounts.decide_choose_invoice_letters(state, command)


def test_an_organizer_chooses_invoice_letters_once_and_again_changes_nothing() -> None:
    organizer = registered(roles=("organizer",))
    assert organizer.invoice_letters is None
    events = choose_letters(organizer, "AB")
    assert events == [InvoiceLettersChanged(account_id=organizer.account_id, letters="AB")]
    chosen = evolve(organizer, events[0])
    assert chosen.invoice_letters == "AB"
    assert choose_letters(chosen, "AB") == []
    assert choose_letters(chosen, "CD") == [
        InvoiceLettersChanged(account_id=organizer.account_id, letters="CD")
    ]


@pytest.mark.parametrize("letters", ["ab", "A", "ABC", "A1", "ĐA", "", "A B"])
def test_invoice_letters_other_than_two_capital_letters_are_refused(letters: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        choose_letters(registered(roles=("organizer",)), letters)
    assert refused.value.code == "invalid_invoice_letters"


def test_only_an_organizer_chooses_invoice_letters() -> None:
    with pytest.raises(Forbidden) as refused:
        choose_letters(registered(), "AB")
    assert refused.value.code == "not_an_organizer"
