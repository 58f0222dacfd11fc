"""Typed settings from EVENTHUNTING_* environment variables, validated once at start-up."""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar, overload
from urllib.parse import urlsplit

import msgspec

PREFIX = "EVENTHUNTING_"


def setting(env: str, description: str, **constraints: Any) -> msgspec.Meta:
    """Field metadata: the environment variable (without prefix) and what it means."""
    return msgspec.Meta(description=description, extra={"env": PREFIX + env}, **constraints)


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


class RedisSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where the event store lives."""

    url: Annotated[
        str,
        setting(
            "REDIS_URL",
            "Redis URL (redis:// or rediss://), or Redis Cluster seed nodes"
            " (redis+cluster://host1:7000,host2:7001 or rediss+cluster://).",
        ),
    ]

    def __post_init__(self) -> None:
        from eventhunting.store.redis_client import parse_cluster_url

        try:
            parse_cluster_url(self.url)
        except ValueError as error:
            raise ValueError(f"{PREFIX}REDIS_URL is invalid: {error}") from None


class MongoSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where the archive and read models live."""

    url: Annotated[
        str,
        setting("MONGODB_URL", "MongoDB URL; the database is the URL path (default eventhunting)."),
    ]

    @property
    def database(self) -> str:
        path = urlsplit(self.url).path.strip("/")
        return path or "eventhunting"


class AuthSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Token signing and lifetimes, and the first admin."""

    jwt_secret: Annotated[
        str, setting("JWT_SECRET", "HMAC key for access tokens (32+ characters).", min_length=32)
    ]
    access_token_seconds: Annotated[
        int, setting("ACCESS_TOKEN_SECONDS", "Access token lifetime.", ge=30, le=86_400)
    ] = 900
    refresh_token_seconds: Annotated[
        int, setting("REFRESH_TOKEN_SECONDS", "Refresh token lifetime.", ge=60, le=90 * 86_400)
    ] = 30 * 86_400
    bootstrap_admin_email: Annotated[
        str | None, setting("BOOTSTRAP_ADMIN_EMAIL", "Email of the admin created at start-up.")
    ] = None
    bootstrap_admin_password: Annotated[
        str | None,
        setting("BOOTSTRAP_ADMIN_PASSWORD", "Password of the admin created at start-up."),
    ] = None
    password_hash_profile: Annotated[
        typing.Literal["standard", "test"],
        setting(
            "PASSWORD_HASH_PROFILE",
            "argon2id cost: standard (production), or test (cheap; test suites only).",
        ),
    ] = "standard"  # noqa: S105 (a profile name, not a secret)
    login_failures_per_account: Annotated[
        int,
        setting(
            "LOGIN_FAILURES_PER_ACCOUNT",
            "Failed logins for one email from one client address within the window before"
            " 429 (failures from other addresses do not count).",
            ge=1,
            le=10_000,
        ),
    ] = 5
    login_failures_per_address: Annotated[
        int,
        setting(
            "LOGIN_FAILURES_PER_ADDRESS",
            "Failed logins from one client address, across emails, within the window before"
            " 429 (bounds the password-hashing work one address can cause).",
            ge=1,
            le=100_000,
        ),
    ] = 20
    login_failures_before_slowdown: Annotated[
        int,
        setting(
            "LOGIN_FAILURES_BEFORE_SLOWDOWN",
            "Failed logins for one email from all addresses within the window after which"
            " that email gets one attempt per window/this many seconds (429 in between).",
            ge=1,
            le=100_000,
        ),
    ] = 50
    login_failure_window_seconds: Annotated[
        int,
        setting(
            "LOGIN_FAILURE_WINDOW_SECONDS",
            "How long failed logins count towards the limits.",
            ge=1,
            le=86_400,
        ),
    ] = 900
    account_state_cache_seconds: Annotated[
        int,
        setting(
            "ACCOUNT_STATE_CACHE_SECONDS",
            "How long an API process may reuse an account's roles and disabled flag before"
            " reading them again (0 = every request); at most the access token lifetime.",
            ge=0,
            le=300,
        ),
    ] = 5

    def __post_init__(self) -> None:
        if self.account_state_cache_seconds > self.access_token_seconds:
            raise ValueError(
                f"{PREFIX}ACCOUNT_STATE_CACHE_SECONDS is invalid: it must not exceed"
                f" {PREFIX}ACCESS_TOKEN_SECONDS ({self.access_token_seconds})"
            )


class SalesSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How orders and partitions behave."""

    hold_seconds: Annotated[
        int, setting("HOLD_SECONDS", "How long a hold lasts before it expires.", ge=1, le=86_400)
    ] = 900
    partitions: Annotated[
        int,
        setting("PARTITIONS", "Partition count; fixed once data exists.", ge=1, le=1024),
    ] = 16


class VnpaySettings(msgspec.Struct, frozen=True, kw_only=True):
    """Merchant credentials and gateway endpoints."""

    tmn_code: Annotated[
        Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9]{8}$")] | None,
        setting("VNPAY_TMN_CODE", "Merchant code (vnp_TmnCode), 8 letters or digits."),
    ] = None
    hash_secret: Annotated[
        Annotated[str, msgspec.Meta(min_length=1)] | None,
        setting("VNPAY_HASH_SECRET", "Merchant hash secret."),
    ] = None
    pay_url: Annotated[str, setting("VNPAY_PAY_URL", "Payment page URL.")] = (
        "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html"
    )
    api_url: Annotated[str, setting("VNPAY_API_URL", "querydr/refund API URL.")] = (
        "https://sandbox.vnpayment.vn/merchant_webapi/api/transaction"
    )
    ipn_allowed_addresses: Annotated[
        str | None,
        setting(
            "VNPAY_IPN_ALLOWED_ADDRESSES",
            "Comma-separated addresses or networks (CIDR) allowed to call the IPN route; fill in"
            " VNPAY's published addresses (anyone may call it when unset; the signature is"
            " checked either way).",
        ),
    ] = None
    payment_check_delay_seconds: Annotated[
        int,
        setting(
            "VNPAY_PAYMENT_CHECK_DELAY_SECONDS",
            "How long after a payment page closed without an IPN the reconciler asks querydr.",
            ge=0,
            le=86_400,
        ),
    ] = 120
    refunds_per_second: Annotated[
        float,
        setting(
            "VNPAY_REFUNDS_PER_SECOND",
            "Most refund calls one reconciler makes per second (VNPAY's rate limit), also the"
            " pace at which a cancelled event's paid orders are put up for refund.",
            gt=0,
            le=1_000,
        ),
    ] = 5.0
    refund_retry_initial_seconds: Annotated[
        float,
        setting(
            "VNPAY_REFUND_RETRY_INITIAL_SECONDS",
            "How long after a refund VNPAY refused the reconciler calls again; the wait doubles"
            " with each failure of the refund, up to VNPAY_REFUND_RETRY_MAX_SECONDS.",
            gt=0,
            le=86_400,
        ),
    ] = 60.0
    refund_retry_max_seconds: Annotated[
        float,
        setting(
            "VNPAY_REFUND_RETRY_MAX_SECONDS",
            "The longest wait between two calls of a failed refund.",
            gt=0,
            le=604_800,
        ),
    ] = 3_600.0

    def __post_init__(self) -> None:
        from eventhunting.client_address import parse_networks

        try:
            parse_networks(self.ipn_allowed_addresses)
        except ValueError as error:
            raise ValueError(f"{PREFIX}VNPAY_IPN_ALLOWED_ADDRESSES is invalid: {error}") from None


class MailSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Outgoing mail, and how hard one delivery tries before it gives the entry back."""

    smtp_url: Annotated[
        str | None,
        setting(
            "SMTP_URL",
            "smtp://user:pass@host:port (?starttls=auto|required|never, ?tls_verify=false)"
            " or smtps://... (implicit TLS).",
        ),
    ] = None
    mail_from: Annotated[str, setting("MAIL_FROM", "Sender address of outgoing mail.")] = (
        "EventHunting <tickets@eventhunting.local>"
    )
    smtp_attempts: Annotated[
        int,
        setting(
            "SMTP_ATTEMPTS",
            "SMTP attempts per delivery for transient failures (4xx, refused, dropped, timeout).",
            ge=1,
            le=20,
        ),
    ] = 5
    smtp_retry_max_seconds: Annotated[
        float,
        setting(
            "SMTP_RETRY_MAX_SECONDS",
            "Cap of the exponential, jittered wait between two SMTP attempts.",
            ge=0,
            le=300,
        ),
    ] = 30.0
    smtp_timeout_seconds: Annotated[
        float,
        setting(
            "SMTP_TIMEOUT_SECONDS",
            "Timeout of connecting and of each SMTP command.",
            gt=0,
            le=600,
        ),
    ] = 30.0
    smtp_connections: Annotated[
        int,
        setting(
            "SMTP_CONNECTIONS",
            "SMTP connections a mailer process keeps open and sends over at once (each"
            " authenticated once, reused across messages and batches).",
            ge=1,
            le=64,
        ),
    ] = 4

    def __post_init__(self) -> None:
        if self.smtp_url is not None:
            from eventhunting.mail.smtp_url import parse_smtp_url

            try:
                parse_smtp_url(self.smtp_url)
            except ValueError as error:
                raise ValueError(f"{PREFIX}SMTP_URL is invalid: {error}") from None


class QrSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Keys of ticket QR signatures: the key that signs, and earlier keys still accepted."""

    signing_key: Annotated[
        str | None,
        setting(
            "QR_SIGNING_KEY",
            "Ed25519 private key that signs ticket QR codes (PEM, or base64 of the raw 32"
            " bytes); required by the processes that issue tickets.",
        ),
    ] = None
    public_keys: Annotated[
        str | None,
        setting(
            "QR_PUBLIC_KEYS",
            "Comma-separated Ed25519 public keys (PEM or base64 raw) whose QR codes are still"
            " valid: earlier signing keys, or all keys where the signing key is not given.",
        ),
    ] = None

    def __post_init__(self) -> None:
        from eventhunting.tickets.qr_keys import QrKeyError, key_ring_of, parse_private_key

        try:
            if self.signing_key is not None:
                parse_private_key(self.signing_key)
        except QrKeyError as error:
            raise ValueError(f"{PREFIX}QR_SIGNING_KEY is invalid: {error}") from None
        try:
            key_ring_of(self)
        except QrKeyError as error:
            raise ValueError(f"{PREFIX}QR_PUBLIC_KEYS is invalid: {error}") from None


class StoreSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every command needs: the event store, MongoDB, partitions and logging.

    `eventhunting replay` and `restore` load only these (they need no JWT secret)."""

    redis: RedisSettings
    mongodb: MongoSettings
    sales: SalesSettings = msgspec.field(default_factory=SalesSettings)
    log_level: Annotated[
        typing.Literal["DEBUG", "INFO", "WARNING", "ERROR"],
        setting("LOG_LEVEL", "Log level."),
    ] = "INFO"


class Settings(StoreSettings, frozen=True, kw_only=True):
    """Every setting of the system, grouped by concern (`api`, `worker` and `dev`)."""

    auth: AuthSettings
    vnpay: VnpaySettings = msgspec.field(default_factory=VnpaySettings)
    mail: MailSettings = msgspec.field(default_factory=MailSettings)
    public_base_url: Annotated[str, setting("PUBLIC_BASE_URL", "External base URL of the API.")] = (
        "http://127.0.0.1:8000"
    )
    qr: QrSettings = msgspec.field(default_factory=QrSettings)
    invoice_letters: Annotated[
        str,
        setting(
            "INVOICE_LETTERS",
            "The two letters the seller chooses at the end of e-invoice symbols (1K26TEH).",
            pattern=r"^[A-Z]{2}$",
        ),
    ] = "EH"
    trusted_proxies: Annotated[
        str | None,
        setting(
            "TRUSTED_PROXIES",
            "Comma-separated addresses or networks (CIDR) of reverse proxies whose"
            " X-Forwarded-For names the client (the payment's vnp_IpAddr); none by default.",
        ),
    ] = None

    def __post_init__(self) -> None:
        from eventhunting.client_address import parse_networks

        try:
            parse_networks(self.trusted_proxies)
        except ValueError as error:
            raise ValueError(f"{PREFIX}TRUSTED_PROXIES is invalid: {error}") from None


SettingsT = TypeVar("SettingsT", bound=StoreSettings)


URL_SCHEMES: dict[str, tuple[str, ...]] = {
    "EVENTHUNTING_REDIS_URL": ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"),
    "EVENTHUNTING_MONGODB_URL": ("mongodb", "mongodb+srv"),
    "EVENTHUNTING_PUBLIC_BASE_URL": ("http", "https"),
    "EVENTHUNTING_VNPAY_PAY_URL": ("http", "https"),
    "EVENTHUNTING_VNPAY_API_URL": ("http", "https"),
    "EVENTHUNTING_SMTP_URL": ("smtp", "smtps"),
}


class FieldSpec(typing.NamedTuple):
    group: str | None
    name: str
    env: str
    description: str
    annotation: Any


def field_specs(schema: type[StoreSettings] = Settings) -> list[FieldSpec]:
    """Every setting of `schema` (all of them by default) with its variable name."""
    specs: list[FieldSpec] = []

    def walk(struct: type[msgspec.Struct], group: str | None) -> None:
        hints = typing.get_type_hints(struct, include_extras=True)
        for name in struct.__struct_fields__:
            hint = hints[name]
            if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
                walk(hint, name)
                continue
            meta = next(m for m in typing.get_args(hint) if isinstance(m, msgspec.Meta))
            assert meta.extra is not None
            specs.append(FieldSpec(group, name, meta.extra["env"], meta.description or "", hint))

    walk(schema, None)
    return specs


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file; comments and blank lines ignored, quotes stripped."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


@overload
def load_settings(
    environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
) -> Settings: ...


@overload
def load_settings(
    environ: Mapping[str, str] | None = None,
    dotenv: Path | None = Path(".env"),
    *,
    schema: type[SettingsT],
) -> SettingsT: ...


def load_settings(
    environ: Mapping[str, str] | None = None,
    dotenv: Path | None = Path(".env"),
    *,
    schema: type[StoreSettings] = Settings,
) -> StoreSettings:
    """Build settings from the environment (a .env file fills gaps, never overrides).

    Only the settings of `schema` are read and checked: a command asks for what it uses.
    """
    source: dict[str, str] = dict(read_dotenv(dotenv)) if dotenv is not None else {}
    source.update(os.environ if environ is None else environ)

    raw: dict[str, Any] = {}
    for spec in field_specs(schema):
        value = source.get(spec.env)
        if value is None or value == "":
            continue
        schemes = URL_SCHEMES.get(spec.env)
        if schemes is not None and urlsplit(value).scheme not in schemes:
            allowed = ", ".join(f"{scheme}://" for scheme in schemes)
            raise SettingsError(f"{spec.env} must be a URL starting with {allowed}")
        target = raw.setdefault(spec.group, {}) if spec.group else raw
        target[spec.name] = value
    try:
        return msgspec.convert(raw, schema, strict=False)
    except msgspec.ValidationError as error:
        raise SettingsError(describe_validation_error(str(error), schema)) from None


def describe_validation_error(message: str, schema: type[StoreSettings] = Settings) -> str:
    """Turn msgspec's `... - at `$.auth.jwt_secret`` into a line naming the variable."""
    reason, _, location = message.partition(" - at `$.")
    if reason.startswith(PREFIX):
        return reason  # a check across settings names its variables itself
    if not location:
        missing = reason.removeprefix("Object missing required field `").rstrip("`")
        spec = find_spec(missing, schema=schema) if missing != reason else None
        if spec is not None:
            return f"{spec.env} is required: {spec.description}"
        return message
    path = location.rstrip("`").split(".")
    if reason.startswith("Object missing required field `"):
        path.append(reason.removeprefix("Object missing required field `").rstrip("`"))
        spec = find_spec(*path, schema=schema)
        if spec is not None:
            return f"{spec.env} is required: {spec.description}"
    spec = find_spec(*path, schema=schema)
    if spec is None:
        return message
    return f"{spec.env} is invalid: {reason}"


def find_spec(*path: str, schema: type[StoreSettings] = Settings) -> FieldSpec | None:
    group, name = (path[0], path[1]) if len(path) == 2 else (None, path[0])
    specs = field_specs(schema)
    for spec in specs:
        if spec.group == group and spec.name == name:
            return spec
    if len(path) == 1:
        # A whole group is missing: name the first required variable in it.
        for spec in specs:
            if spec.group == path[0]:
                return spec
    return None
