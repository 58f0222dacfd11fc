"""Account commands and queries: register, sign in, tokens, roles, staff, disabling."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from pymongo.asynchronous.database import AsyncDatabase

from eventhunting.domain import accounts as domain
from eventhunting.domain.accounts import (
    Account,
    ChangeRoles,
    ChooseInvoiceLetters,
    DisableAccount,
    DisabledAccount,
    EmailTaken,
    EnableAccount,
    GrantStaff,
    InvalidCredentials,
    RegisterAccount,
    RevokeStaff,
)
from eventhunting.domain.actors import Actor
from eventhunting.domain.errors import InvalidInput
from eventhunting.domain.events import DomainEvent
from eventhunting.domain.payments import DEFAULT_INVOICE_LETTERS, invoice_symbol
from eventhunting.projections.accounts import AccountQuery, ListedAccount, search_accounts
from eventhunting.projections.query_page import QueryPage
from eventhunting.services.login_throttle import LoginThrottle
from eventhunting.services.passwords import Passwords
from eventhunting.services.repository import (
    Effects,
    Idempotency,
    Repository,
    Saved,
    StreamKind,
    claim_request_body,
)
from eventhunting.settings import Settings
from eventhunting.store import keys
from eventhunting.store.append import Claim, CounterChange, CounterSet, EventStore, utc_now
from eventhunting.store.claims import email_claim
from eventhunting.store.counters import account_flags_counter
from eventhunting.store.errors import GuardRejected
from eventhunting.store.redis_client import RedisClient
from eventhunting.tokens.access import AccessClaims, AccessTokens, InvalidAccessToken
from eventhunting.tokens.refresh import RefreshTokens

ACCOUNTS = StreamKind(domain.STREAM_KIND, domain.evolve)
"""Account streams, `account-<id>`."""

FLAGS_GUARD_CODE = "account_flags"
BOOTSTRAP_ACTOR = Actor("bootstrap", is_admin=True)

EventManagement = Callable[[Actor, str], Awaitable[None]]
"""Raises unless the actor may manage the catalog event (`CatalogService.ensure_manages_event`)."""


class TokenPair(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 (the OAuth token type, not a secret)
    expires_in: int


class AccessState(msgspec.Struct, frozen=True, kw_only=True):
    """Who a valid access token belongs to and what that account may do right now."""

    account_id: str
    email: str
    roles: frozenset[str]
    staff_events: frozenset[str]


def idempotency_id_of(command: str, key: str) -> str:
    return f"{command}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def registration_fingerprint_key(jwt_secret: str) -> bytes:
    """The key of registration fingerprints, derived from the server secret for this use only."""
    return hmac.new(
        jwt_secret.encode(), b"eventhunting registration fingerprint", hashlib.sha256
    ).digest()


def registration_fingerprint(key: bytes, command: RegisterAccount) -> str:
    """HMAC-SHA256 of the whole registration (email normalised, name cleaned), password
    included. It is stored with the idempotency record and archived, so it is keyed: without
    the server secret it cannot be used to test guesses of the password; with it, it only
    tells "same body or not"."""
    email = domain.normalise_email(command.email)
    full_name = domain.clean_full_name(command.full_name)
    canonical = msgspec.json.encode([email, full_name, sorted(command.roles), command.password])
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def flag_effects(before: Account | None, events: Sequence[DomainEvent]) -> Effects:
    """The account's flags counter moves with its events, in the same append: set when it
    is registered (with the unique email claim), changed field by field afterwards."""
    after = domain.after(before, events)
    assert after is not None
    counter = account_flags_counter(after.account_id)
    if before is None:
        return Effects(
            claims=[Claim(email_claim(after.email), owner=after.account_id, code=EmailTaken.code)],
            counters=[CounterSet(counter, domain.access_flags(after))],
        )
    deltas = domain.flag_deltas(before, after)
    return Effects(
        counters=[CounterChange(counter, deltas, code=FLAGS_GUARD_CODE)] if deltas else []
    )


@dataclass(frozen=True, slots=True)
class InvoiceSeriesChoice:
    """An organizer's invoice letters (`chosen`: by them; otherwise the default setting) and
    the symbol they give invoices paid now."""

    letters: str
    symbol: str
    chosen: bool


class AccountService:
    """Everything that reads or writes accounts, on the event store and Redis."""

    def __init__(
        self,
        *,
        store: EventStore,
        redis: RedisClient,
        database: AsyncDatabase[dict[str, Any]],
        passwords: Passwords,
        access_tokens: AccessTokens,
        refresh_tokens: RefreshTokens,
        throttle: LoginThrottle,
        partitions: int,
        fingerprint_key: bytes,
        ensure_manages_event: EventManagement,
        invoice_letters: str = DEFAULT_INVOICE_LETTERS,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.invoice_letters = invoice_letters
        self.clock = clock
        self.store = store
        self.redis = redis
        self.database = database
        self.passwords = passwords
        self.access_tokens = access_tokens
        self.refresh_tokens = refresh_tokens
        self.throttle = throttle
        self.partitions = partitions
        self.fingerprint_key = fingerprint_key
        self.ensure_manages_event = ensure_manages_event
        self.accounts = Repository(store, ACCOUNTS)

    # --- reading ------------------------------------------------------------------------

    def partition_of_account(self, account_id: str) -> int:
        return keys.partition_of(account_id, self.partitions)

    async def find(self, account_id: str) -> Account | None:
        """The current state folded from the account's stream (read-your-writes)."""
        if not account_id or "{" in account_id or "}" in account_id:
            return None
        return await self.accounts.find(account_id)

    async def get(self, account_id: str) -> Account:
        return domain.require_account(await self.find(account_id))

    async def find_by_email(self, normalised_email: str) -> Account | None:
        partition = keys.partition_of(normalised_email, self.partitions)
        owner = await self.store.read_claim(partition, email_claim(normalised_email))
        return None if owner is None else await self.find(owner)

    async def search(self, query: AccountQuery) -> QueryPage[ListedAccount]:
        """Accounts from the read model (it may lag a moment behind the streams)."""
        return await search_accounts(self.database, query)

    # --- registering ----------------------------------------------------------------------

    async def register(
        self,
        command: RegisterAccount,
        *,
        actor: str | None = None,
        idempotency_key: str | None = None,
    ) -> Account:
        """Create an account; exactly one of concurrent registrations of one email wins."""
        normalised = domain.check_registration(command.email, command.password)
        fingerprint = registration_fingerprint(self.fingerprint_key, command)
        idempotency = None
        if idempotency_key is not None:
            idempotency = Idempotency(idempotency_id_of("register", idempotency_key), fingerprint)
            # The append's own record lives in the email's partition: tie the key to its
            # body in the key's partition first, so a repeat with another email is seen too.
            await claim_request_body(
                self.redis,
                keys.partition_of(idempotency.id, self.partitions),
                idempotency.id,
                fingerprint,
            )
        # The account id lives in the email's partition, so the claim and the stream share
        # one slot and the append can check both atomically.
        partition = keys.partition_of(normalised, self.partitions)
        account_id = keys.new_id_in_partition(partition, self.partitions)
        password_hash = await self.passwords.hash(command.password)
        try:
            saved = await self.accounts.decide_and_append(
                account_id,
                lambda state: domain.decide_register_account(
                    state, command, account_id=account_id, password_hash=password_hash
                ),
                effects=flag_effects,
                idempotency=idempotency,
                actor=actor or account_id,
            )
        except GuardRejected as rejected:
            if rejected.code == EmailTaken.code:
                raise EmailTaken("An account with this email already exists.") from None
            raise
        assert saved is not None, "registering always decides an event"
        if saved.repeated:
            return await self.get(saved.state.account_id)
        return saved.state

    async def ensure_admin(self, email: str, password: str) -> Account:
        """The bootstrap admin: register it, or grant `admin` to the existing account."""
        normalised = domain.normalise_email(email)
        existing = await self.find_by_email(normalised)
        if existing is None:
            command = RegisterAccount(
                email=normalised,
                password=password,
                full_name="Administrator",
                roles=(domain.ADMIN,),
            )
            try:
                return await self.register(command, actor=BOOTSTRAP_ACTOR.account_id)
            except EmailTaken:
                # Another process created it a moment ago.
                existing = await self.find_by_email(normalised)
                if existing is None:
                    raise
        if domain.ADMIN in existing.roles:
            return existing
        roles = tuple(sorted(existing.roles | {domain.ADMIN}))
        return await self.change_roles(
            ChangeRoles(account_id=existing.account_id, by=BOOTSTRAP_ACTOR, roles=roles)
        )

    # --- signing in -------------------------------------------------------------------------

    async def login(self, *, email: str, password: str, client_address: str) -> TokenPair:
        """A token pair for the right password; the same 401 for every wrong guess."""
        try:
            normalised = domain.normalise_email(email)
        except InvalidInput:
            normalised = email.strip().lower()
        # The slot is taken before the costly verification, so concurrent guesses cannot
        # all get past the limit; a wrong password (or an error) keeps it.
        await self.throttle.reserve(normalised, client_address)
        account = await self.find_by_email(normalised)
        # An unknown email still spends one hash verification: timing tells nothing.
        matches = await self.passwords.verify(
            account.password_hash if account is not None else None, password
        )
        if account is None or not matches:
            raise InvalidCredentials("The email or password is incorrect.")
        await self.throttle.give_back(normalised, client_address)
        if account.disabled:
            raise DisabledAccount("This account is disabled.")
        return await self.issue_tokens(account)

    async def issue_tokens(self, account: Account) -> TokenPair:
        access = self.access_tokens.issue(account.account_id, account.email)
        refresh = await self.refresh_tokens.start_family(account.account_id)
        return TokenPair(
            access_token=access.token,
            refresh_token=refresh.token,
            expires_in=access.expires_in,
        )

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Spend a refresh token for a new pair; a second use revokes its whole family."""
        rotated = await self.refresh_tokens.rotate(refresh_token)
        account = await self.find(rotated.account_id)
        if account is None or account.disabled:
            await self.refresh_tokens.revoke(rotated.issued.token, rotated.account_id)
            raise DisabledAccount("This account is disabled.")
        access = self.access_tokens.issue(account.account_id, account.email)
        return TokenPair(
            access_token=access.token,
            refresh_token=rotated.issued.token,
            expires_in=access.expires_in,
        )

    async def logout(self, *, account_id: str, refresh_token: str) -> None:
        """Revoke the sign-in the refresh token belongs to (only the caller's own)."""
        await self.refresh_tokens.revoke(refresh_token, account_id)

    async def access_state(self, access_token: str) -> AccessState:
        """Verify an access token and read the account's current roles (one HGETALL)."""
        claims = self.verify_access_token(access_token)
        account_id = claims.account_id
        partition = self.partition_of_account(account_id)
        raw = await self.redis.hgetall(
            keys.counter_key(partition, account_flags_counter(account_id))
        )
        if raw:
            flags = {_text(name): int(value) for name, value in raw.items()}
            roles, staff_events, disabled = domain.roles_from_flags(flags)
        else:
            # The flags are missing only if Redis lost them; the stream still knows.
            account = await self.find(account_id)
            if account is None:
                raise InvalidAccessToken("The account of this token does not exist.")
            roles, staff_events, disabled = (
                account.roles,
                account.staff_events,
                account.disabled,
            )
        if disabled:
            raise DisabledAccount("This account is disabled.")
        return AccessState(
            account_id=account_id, email=claims.email, roles=roles, staff_events=staff_events
        )

    def verify_access_token(self, access_token: str) -> AccessClaims:
        """The claims of a valid access token (signature, key id, expiry); no Redis read."""
        return self.access_tokens.verify(access_token)

    # --- admin commands ---------------------------------------------------------------------

    async def change_roles(self, command: ChangeRoles) -> Account:
        return await self.decided(
            command.account_id, lambda state: domain.decide_change_roles(state, command), command.by
        )

    async def disable(self, command: DisableAccount) -> Account:
        return await self.decided(
            command.account_id,
            lambda state: domain.decide_disable_account(state, command),
            command.by,
        )

    async def enable(self, command: EnableAccount) -> Account:
        return await self.decided(
            command.account_id,
            lambda state: domain.decide_enable_account(state, command),
            command.by,
        )

    async def grant_staff(self, command: GrantStaff) -> Account:
        """Only the event's organizer or an admin grants staff at an event."""
        await self.ensure_manages_event(command.by, command.event_id)
        return await self.decided(
            command.account_id, lambda state: domain.decide_grant_staff(state, command), command.by
        )

    async def revoke_staff(self, command: RevokeStaff) -> Account:
        await self.ensure_manages_event(command.by, command.event_id)
        return await self.decided(
            command.account_id, lambda state: domain.decide_revoke_staff(state, command), command.by
        )

    # --- an organizer's settings ---------------------------------------------------------------

    async def choose_invoice_letters(self, command: ChooseInvoiceLetters) -> InvoiceSeriesChoice:
        """Set the letters ending the symbol of the organizer's invoices paid from now on."""
        account = await self.decided(
            command.account_id,
            lambda state: domain.decide_choose_invoice_letters(state, command),
            command.by,
        )
        return self.invoice_series_of(account)

    async def invoice_series(self, account_id: str) -> InvoiceSeriesChoice:
        return self.invoice_series_of(await self.get(account_id))

    def invoice_series_of(self, account: Account) -> InvoiceSeriesChoice:
        letters = account.invoice_letters or self.invoice_letters
        return InvoiceSeriesChoice(
            letters=letters,
            symbol=invoice_symbol(self.clock(), letters),
            chosen=account.invoice_letters is not None,
        )

    async def decided(
        self,
        account_id: str,
        decide: Callable[[Account | None], list[DomainEvent]],
        by: Actor,
    ) -> Account:
        """The account after a decision on it (as it was when there was nothing to do)."""
        saved: Saved[Account] | None = await self.accounts.decide_and_append(
            account_id, decide, effects=flag_effects, actor=by.account_id
        )
        return saved.state if saved is not None else await self.get(account_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def build_account_service(
    settings: Settings,
    redis: RedisClient,
    clock: Callable[[], datetime],
    *,
    store: EventStore,
    database: AsyncDatabase[dict[str, Any]],
    ensure_manages_event: EventManagement,
) -> AccountService:
    """The account service with its token, password and throttle parts, from settings."""
    auth = settings.auth
    return AccountService(
        store=store,
        redis=redis,
        database=database,
        passwords=Passwords(auth.password_hash_profile),
        access_tokens=AccessTokens(auth.jwt_secret, auth.access_token_seconds, clock=clock),
        refresh_tokens=RefreshTokens(redis, auth.refresh_token_seconds, clock=clock),
        throttle=LoginThrottle(
            redis,
            per_account=auth.login_failures_per_account,
            per_address=auth.login_failures_per_address,
            slowdown_after=auth.login_failures_before_slowdown,
            window_seconds=auth.login_failure_window_seconds,
        ),
        partitions=settings.sales.partitions,
        fingerprint_key=registration_fingerprint_key(auth.jwt_secret),
        ensure_manages_event=ensure_manages_event,
        invoice_letters=settings.invoice_letters,
        clock=clock,
    )
