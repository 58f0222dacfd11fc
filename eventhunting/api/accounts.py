"""HTTP routes of accounts: register, sign in, tokens, the caller's account, admin, event staff."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from eventhunting.api.auth import Principal, forget_account_state, requires_roles, signed_in
from eventhunting.api.openapi import PROBLEM_STATUSES
from eventhunting.api.parameters import DEFAULT_PAGE_SIZE, PageNumber, PageSize
from eventhunting.bootstrap import Services
from eventhunting.domain import accounts as rules
from eventhunting.domain.accounts import ADMIN, Account
from eventhunting.domain.errors import InvalidInput
from eventhunting.projections.accounts import ACCOUNTS_COLLECTION
from eventhunting.settings import SettingsError

# Generous bounds that only stop absurd bodies; the real rules answer with clear messages.
Email = Annotated[str, msgspec.Meta(max_length=1024)]
Password = Annotated[str, msgspec.Meta(max_length=1024)]
Token = Annotated[str, msgspec.Meta(max_length=1024)]
NewEmail = Annotated[str, msgspec.Meta(max_length=rules.EMAIL_MAX_LENGTH)]
NewPassword = Annotated[
    str,
    msgspec.Meta(
        min_length=rules.PASSWORD_MIN_LENGTH,
        max_length=rules.PASSWORD_MAX_LENGTH,
        description="Not the email address.",
    ),
]
FullName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=rules.FULL_NAME_MAX_LENGTH,
        description="Kept with runs of spaces made one; not only spaces.",
    ),
]
Role = Literal["customer", "organizer", "admin"]


class AccountRegister(msgspec.Struct, frozen=True, kw_only=True):
    email: NewEmail
    password: NewPassword
    full_name: FullName


class AccountView(msgspec.Struct, frozen=True, kw_only=True):
    """An account as the API shows it (never the password hash)."""

    id: str
    email: str
    full_name: str
    roles: list[str]
    staff_events: list[str]
    disabled: bool

    @classmethod
    def of(cls, account: Account) -> AccountView:
        return cls(
            id=account.account_id,
            email=account.email,
            full_name=account.full_name,
            roles=sorted(account.roles),
            staff_events=sorted(account.staff_events),
            disabled=account.disabled,
        )


class LoginCredentials(msgspec.Struct, frozen=True, kw_only=True):
    email: Email
    password: Password


class TokenPairView(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class RefreshTokenBody(msgspec.Struct, frozen=True, kw_only=True):
    refresh_token: Token


class RolesUpdate(msgspec.Struct, frozen=True, kw_only=True):
    roles: Annotated[
        list[Role],
        msgspec.Meta(
            max_length=16,
            description="`customer` is always kept; `staff` is granted per event.",
        ),
    ]


class DisabledUpdate(msgspec.Struct, frozen=True, kw_only=True):
    disabled: bool
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class StaffGrantView(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    account_id: str
    staff: bool


class AccountPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AccountView]
    total: int
    page: int
    page_size: int


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client is not None else "unknown"


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["accounts"]

    @post("/register", status_code=HTTP_201_CREATED, summary="Create an account")
    async def register(
        self,
        data: AccountRegister,
        services: Services,
        idempotency_key: Annotated[
            str | None, Parameter(header="Idempotency-Key", required=False, max_length=200)
        ] = None,
    ) -> AccountView:
        account = await services.accounts.register(
            email=data.email,
            password=data.password,
            full_name=data.full_name,
            idempotency_key=idempotency_key,
        )
        return AccountView.of(account)

    @post(
        "/login",
        status_code=HTTP_200_OK,
        summary="Sign in for an access and a refresh token",
        opt={PROBLEM_STATUSES: (401, 429)},
    )
    async def login(
        self, data: LoginCredentials, services: Services, request: Request[Any, Any, Any]
    ) -> TokenPairView:
        pair = await services.accounts.login(
            email=data.email, password=data.password, client_address=client_address(request)
        )
        return TokenPairView(**msgspec.structs.asdict(pair))

    @post(
        "/refresh",
        status_code=HTTP_200_OK,
        summary="Spend a refresh token for a new pair",
        opt={PROBLEM_STATUSES: (401,)},
    )
    async def refresh(self, data: RefreshTokenBody, services: Services) -> TokenPairView:
        pair = await services.accounts.refresh(data.refresh_token)
        return TokenPairView(**msgspec.structs.asdict(pair))

    @post(
        "/logout",
        status_code=HTTP_204_NO_CONTENT,
        guards=[signed_in],
        summary="Revoke the sign-in of a refresh token",
        opt={PROBLEM_STATUSES: ()},
    )
    async def logout(
        self, data: RefreshTokenBody, services: Services, principal: Principal
    ) -> None:
        await services.accounts.logout(
            account_id=principal.account_id, refresh_token=data.refresh_token
        )


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["accounts"]
    guards = [signed_in]

    @get("", summary="The caller's account")
    async def me(self, services: Services, principal: Principal) -> AccountView:
        return AccountView.of(await services.accounts.get(principal.account_id))


class AdminAccountsController(Controller):
    path = "/api/v1/admin/accounts"
    tags = ["admin"]
    guards = [requires_roles(ADMIN)]

    @get("", summary="Accounts, newest first (read model; may lag a moment)")
    async def list_accounts(
        self,
        services: Services,
        email: Annotated[str | None, Parameter(max_length=320)] = None,
        role: Annotated[str | None, Parameter(max_length=64)] = None,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> AccountPage:
        query: dict[str, Any] = {}
        if email:
            query["email"] = email.strip().lower()
        if role:
            query["roles"] = role
        collection = services.database[ACCOUNTS_COLLECTION]
        total = await collection.count_documents(query)
        cursor = (
            collection.find(query, projection={"password_hash": False})
            .sort([("registered_at", -1), ("_id", -1)])
            .skip((page - 1) * page_size)
            .limit(page_size)
        )
        items = [
            AccountView(
                id=str(document["_id"]),
                email=document["email"],
                full_name=document["full_name"],
                roles=sorted(document.get("roles", [])),
                staff_events=sorted(document.get("staff_events", [])),
                disabled=bool(document.get("disabled", False)),
            )
            async for document in cursor
        ]
        return AccountPage(items=items, total=total, page=page, page_size=page_size)

    @get("/{account_id:str}", summary="One account")
    async def show(self, account_id: str, services: Services) -> AccountView:
        return AccountView.of(await services.accounts.get(account_id))

    @put("/{account_id:str}/roles", summary="Set an account's roles")
    async def set_roles(
        self,
        account_id: str,
        data: RolesUpdate,
        services: Services,
        principal: Principal,
        request: Request[Any, Any, Any],
    ) -> AccountView:
        account = await services.accounts.set_roles(
            account_id, data.roles, actor=principal.account_id
        )
        forget_account_state(request.app, account_id)
        return AccountView.of(account)

    @put("/{account_id:str}/disabled", summary="Disable or enable an account")
    async def set_disabled(
        self,
        account_id: str,
        data: DisabledUpdate,
        services: Services,
        principal: Principal,
        request: Request[Any, Any, Any],
    ) -> AccountView:
        if data.disabled and account_id == principal.account_id:
            raise InvalidInput("Admins cannot disable their own account.", field="disabled")
        account = await services.accounts.set_disabled(
            account_id, data.disabled, reason=data.reason, actor=principal.account_id
        )
        forget_account_state(request.app, account_id)
        return AccountView.of(account)


class EventStaffController(Controller):
    """Per-event staff (ticket check-in), granted by the event's organizer or an admin."""

    path = "/api/v1/events/{event_id:str}/staff"
    tags = ["accounts"]
    guards = [requires_roles("organizer")]

    @put("/{account_id:str}", summary="Let an account check tickets in at this event")
    async def grant(
        self,
        event_id: str,
        account_id: str,
        services: Services,
        principal: Principal,
        request: Request[Any, Any, Any],
    ) -> StaffGrantView:
        await ensure_manages_event(services, principal, event_id)
        await services.accounts.set_staff(account_id, event_id, True, actor=principal.account_id)
        forget_account_state(request.app, account_id)
        return StaffGrantView(event_id=event_id, account_id=account_id, staff=True)

    @delete(
        "/{account_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Stop an account checking tickets in at this event",
    )
    async def revoke(
        self,
        event_id: str,
        account_id: str,
        services: Services,
        principal: Principal,
        request: Request[Any, Any, Any],
    ) -> None:
        await ensure_manages_event(services, principal, event_id)
        await services.accounts.set_staff(account_id, event_id, False, actor=principal.account_id)
        forget_account_state(request.app, account_id)


async def ensure_manages_event(services: Services, principal: Principal, event_id: str) -> None:
    """The event exists for the caller (404 otherwise) and the caller is its organizer or
    an admin (403 `not_event_organizer` otherwise)."""
    event = await services.catalog.load_event(event_id)
    event.ensure_managed_by(principal.account_id, is_admin=principal.is_admin)


ACCOUNT_ROUTES = [AuthController, MeController, AdminAccountsController, EventStaffController]


async def create_bootstrap_admin(services: Services) -> None:
    """Start-up hook: the admin from settings exists and has the admin role (idempotent)."""
    auth = services.settings.auth
    if not (auth.bootstrap_admin_email and auth.bootstrap_admin_password):
        return
    try:
        await services.accounts.ensure_admin(
            auth.bootstrap_admin_email, auth.bootstrap_admin_password
        )
    except InvalidInput as error:
        problems = error.extra.get("errors", [])
        variable = "PASSWORD" if any(p["field"] == "password" for p in problems) else "EMAIL"
        reasons = "; ".join(f"{p['field']} {p['message']}" for p in problems) or error.detail
        raise SettingsError(
            f"EVENTHUNTING_BOOTSTRAP_ADMIN_{variable} is invalid: {reasons}"
        ) from None
