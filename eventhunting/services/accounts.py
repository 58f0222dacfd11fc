"""Account commands and queries: register, sign in, tokens, roles, staff, disabling."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
from collections.abc import Callable, Sequence
from datetime import datetime

import msgspec
import redis.asyncio as aioredis

from eventhunting.domain import accounts as domain
from eventhunting.domain.accounts import (
    Account,
    AccountNotFound,
    DisabledAccount,
    EmailTaken,
    InvalidCredentials,
)
from eventhunting.domain.errors import Conflict, DomainError, InvalidInput
from eventhunting.domain.events import DomainEvent
from eventhunting.services.login_throttle import LoginThrottle
from eventhunting.services.passwords import Passwords
from eventhunting.settings import Settings
from eventhunting.store import keys
from eventhunting.store.append import (
    AppendRequest,
    Claim,
    CounterChange,
    CounterSet,
    EventStore,
)
from eventhunting.store.envelope import EventMeta
from eventhunting.store.errors import ConcurrencyError, GuardRejected
from eventhunting.tokens.access import AccessTokens, InvalidAccessToken
from eventhunting.tokens.refresh import RefreshTokens

# A concurrent change of the same account is rare; deciding again on fresh state is safe.
MAX_DECISION_ATTEMPTS = 10
RETRY_PAUSE_SECONDS = 0.002
FLAGS_GUARD_CODE = "account_flags"


def flags_counter(account_id: str) -> str:
    """Counter hash of the account's roles, staff grants and disabled flag."""
    return f"account:{account_id}"


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


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    title = "Idempotency key reused with a different request"


def idempotency_id_of(command: str, key: str) -> str:
    return f"{command}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def registration_fingerprint_key(jwt_secret: str) -> bytes:
    """The key of registration fingerprints, derived from the server secret for this use only."""
    return hmac.new(
        jwt_secret.encode(), b"eventhunting registration fingerprint", hashlib.sha256
    ).digest()


def registration_fingerprint(
    key: bytes, *, email: str, full_name: str, roles: Sequence[str], password: str
) -> str:
    """HMAC-SHA256 of the whole registration, password included. It is stored with the
    idempotency record and archived, so it is keyed: without the server secret it cannot be
    used to test guesses of the password; with it, it only tells "same body or not"."""
    canonical = msgspec.json.encode([email, full_name, sorted(roles), password])
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


class AccountService:
    """Everything that reads or writes accounts, on the event store and Redis."""

    def __init__(
        self,
        *,
        store: EventStore,
        redis: aioredis.Redis,
        passwords: Passwords,
        access_tokens: AccessTokens,
        refresh_tokens: RefreshTokens,
        throttle: LoginThrottle,
        partitions: int,
        fingerprint_key: bytes,
    ) -> None:
        self.store = store
        self.redis = redis
        self.passwords = passwords
        self.access_tokens = access_tokens
        self.refresh_tokens = refresh_tokens
        self.throttle = throttle
        self.partitions = partitions
        self.fingerprint_key = fingerprint_key

    # --- reading ------------------------------------------------------------------------

    def partition_of_account(self, account_id: str) -> int:
        return keys.partition_of(account_id, self.partitions)

    async def find(self, account_id: str) -> Account | None:
        """The current state folded from the account's stream (read-your-writes)."""
        if not account_id or "{" in account_id or "}" in account_id:
            return None
        envelopes = await self.store.read_stream(
            self.partition_of_account(account_id), domain.stream_of(account_id)
        )
        return domain.fold(envelope.data for envelope in envelopes)

    async def get(self, account_id: str) -> Account:
        account = await self.find(account_id)
        if account is None:
            raise AccountNotFound("There is no such account.")
        return account

    async def find_by_email(self, normalised_email: str) -> Account | None:
        partition = keys.partition_of(normalised_email, self.partitions)
        owner = await self.store.read_claim(partition, domain.email_claim(normalised_email))
        return None if owner is None else await self.find(owner)

    # --- registering ----------------------------------------------------------------------

    async def register(
        self,
        *,
        email: str,
        password: str,
        full_name: str,
        roles: Sequence[str] = (),
        actor: str | None = None,
        idempotency_key: str | None = None,
    ) -> Account:
        """Create an account; exactly one of concurrent registrations of one email wins."""
        normalised = self.validate_registration(email, password)
        name = domain.clean_full_name(full_name)
        fingerprint = registration_fingerprint(
            self.fingerprint_key, email=normalised, full_name=name, roles=roles, password=password
        )
        idempotency_id = idempotency_id_of("register", idempotency_key) if idempotency_key else None
        if idempotency_id is not None:
            await self.claim_registration_key(idempotency_id, fingerprint)
        partition = keys.partition_of(normalised, self.partitions)
        # The account id lives in the email's partition, so the claim and the stream share
        # one slot and the append can check both atomically.
        account_id = keys.new_id_in_partition(partition, self.partitions)
        events = domain.register(
            account_id=account_id,
            email=normalised,
            full_name=name,
            password_hash=await self.passwords.hash(password),
            roles=roles,
        )
        created = domain.fold(events)
        assert created is not None
        request = AppendRequest(
            partition=partition,
            stream=domain.stream_of(account_id),
            events=events,
            expected_version=0,
            meta=EventMeta(actor=actor or account_id),
            claims=[Claim(domain.email_claim(normalised), owner=account_id, code=EmailTaken.code)],
            counters=[CounterSet(flags_counter(account_id), domain.access_flags(created))],
            idempotency_id=idempotency_id,
            fingerprint=fingerprint,
        )
        try:
            result = await self.store.append(request)
        except GuardRejected as rejected:
            if rejected.code == EmailTaken.code:
                raise EmailTaken("An account with this email already exists.") from None
            raise
        if result.duplicate:
            if not hmac.compare_digest(result.fingerprint or "", fingerprint):
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used for a different registration."
                )
            return await self.get(keys.aggregate_id_of(result.stream))
        return created

    async def claim_registration_key(self, idempotency_id: str, fingerprint: str) -> None:
        """Tie an Idempotency-Key to its registration body before appending.

        The append's own idempotency record lives in the email's partition, so it cannot see
        the same key used earlier with another email; this record, in the key's partition,
        can. IdempotencyKeyReused when the key came with another body before.
        """
        record = keys.idempotency_key(
            keys.partition_of(idempotency_id, self.partitions), f"body:{idempotency_id}"
        )
        earlier = await self.redis.set(record, fingerprint, nx=True, get=True)
        if isinstance(earlier, bytes | str) and not hmac.compare_digest(
            _text(earlier), fingerprint
        ):
            raise IdempotencyKeyReused(
                "This Idempotency-Key was used for a different registration."
            )

    def validate_registration(self, email: str, password: str) -> str:
        """The normalised email; InvalidInput naming every bad field otherwise."""
        errors: list[dict[str, str]] = []
        normalised = ""
        try:
            normalised = domain.normalise_email(email)
        except InvalidInput as error:
            errors.extend(error.extra["errors"])
        problems = domain.password_problems(password, normalised)
        if problems:
            errors.append({"field": "password", "message": "; ".join(problems)})
        if errors:
            raise InvalidInput("The request has invalid fields.", errors=errors)
        return normalised

    async def ensure_admin(self, email: str, password: str) -> Account:
        """The bootstrap admin: register it, or grant `admin` to the existing account."""
        normalised = domain.normalise_email(email)
        for _ in range(MAX_DECISION_ATTEMPTS):
            existing = await self.find_by_email(normalised)
            if existing is None:
                try:
                    return await self.register(
                        email=normalised,
                        password=password,
                        full_name="Administrator",
                        roles=[domain.ADMIN],
                        actor="bootstrap",
                    )
                except EmailTaken:
                    continue  # another process created it a moment ago
            if domain.ADMIN in existing.roles:
                return existing
            return await self.set_roles(
                existing.account_id, sorted(existing.roles | {domain.ADMIN}), actor="bootstrap"
            )
        raise RuntimeError("could not create the bootstrap admin")

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
        claims = self.access_tokens.verify(access_token)
        account_id = claims.account_id
        partition = self.partition_of_account(account_id)
        raw = await self.redis.hgetall(keys.counter_key(partition, flags_counter(account_id)))
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

    # --- admin commands ---------------------------------------------------------------------

    async def set_roles(self, account_id: str, roles: Sequence[str], *, actor: str) -> Account:
        return await self.decide(account_id, lambda state: domain.change_roles(state, roles), actor)

    async def set_disabled(
        self, account_id: str, disabled: bool, *, actor: str, reason: str | None = None
    ) -> Account:
        if disabled:
            return await self.decide(account_id, lambda state: domain.disable(state, reason), actor)
        return await self.decide(account_id, domain.enable, actor)

    async def set_staff(
        self, account_id: str, event_id: str, granted: bool, *, actor: str
    ) -> Account:
        def decision(state: Account) -> list[DomainEvent]:
            if granted:
                return domain.grant_staff(state, event_id)
            return domain.revoke_staff(state, event_id)

        return await self.decide(account_id, decision, actor)

    async def decide(
        self,
        account_id: str,
        decision: Callable[[Account], list[DomainEvent]],
        actor: str,
    ) -> Account:
        """Load, decide, append with the version read; decide again if someone was faster."""
        for attempt in range(MAX_DECISION_ATTEMPTS):
            state = await self.get(account_id)
            events = decision(state)
            if not events:
                return state
            after = state
            for event in events:
                after = domain.evolve(after, event)
            deltas = domain.flag_deltas(state, after)
            try:
                await self.store.append(
                    AppendRequest(
                        partition=self.partition_of_account(account_id),
                        stream=domain.stream_of(account_id),
                        events=events,
                        expected_version=state.version,
                        meta=EventMeta(actor=actor),
                        counters=(
                            [
                                CounterChange(
                                    flags_counter(account_id), deltas, code=FLAGS_GUARD_CODE
                                )
                            ]
                            if deltas
                            else []
                        ),
                    )
                )
            except ConcurrencyError:
                # A random pause spreads out writers that keep colliding.
                await asyncio.sleep(random.uniform(0, RETRY_PAUSE_SECONDS * (attempt + 1)))
                continue
            return after
        raise DomainError(
            "The account is being changed by someone else; try again.",
            code="concurrent_modification",
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def build_account_service(
    settings: Settings,
    redis: aioredis.Redis,
    clock: Callable[[], datetime],
    *,
    store: EventStore | None = None,
) -> AccountService:
    """The account service with its token, password and throttle parts, from settings."""
    auth = settings.auth
    return AccountService(
        store=store or EventStore(redis, settings.sales.partitions, clock=clock),
        redis=redis,
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
    )
