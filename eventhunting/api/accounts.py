"""HTTP routes of accounts: register, sign in, tokens, the caller's account, admin, event staff."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from eventhunting.api.auth import Principal, forget_account_state, requires_roles, signed_in
from eventhunting.api.openapi import PROBLEM_STATUSES
from eventhunting.api.paging import Page, page_schema
from eventhunting.api.parameters import DEFAULT_PAGE_SIZE, PageNumber, PageSize
from eventhunting.bootstrap import Services
from eventhunting.domain import accounts as rules
from eventhunting.domain.accounts import (
    ADMIN,
    ChangeRoles,
    ChooseInvoiceLetters,
    DisableAccount,
    EnableAccount,
    GrantStaff,
    RegisterAccount,
    RevokeStaff,
)
from eventhunting.domain.errors import InvalidInput
from eventhunting.projections.accounts import AccountQuery, ListedAccount
from eventhunting.services.accounts import AccountService, InvoiceSeriesChoice
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


# --- request bodies -----------------------------------------------------------------------


class AccountCreate(msgspec.Struct, frozen=True, kw_only=True):
    email: NewEmail
    password: NewPassword
    full_name: FullName


class AccountRolesUpdate(msgspec.Struct, frozen=True, kw_only=True):
    roles: Annotated[
        list[Role],
        msgspec.Meta(
            max_length=16,
            description="`customer` is always kept; `staff` is granted per event.",
        ),
    ]


class AccountDisabledUpdate(msgspec.Struct, frozen=True, kw_only=True):
    disabled: bool
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class InvoiceSeriesUpdate(msgspec.Struct, frozen=True, kw_only=True):
    letters: Annotated[
        str,
        msgspec.Meta(
            pattern="^[A-Z]{2}$",
            description="Two capital letters ending the e-invoice symbol (1K26T + letters),"
            " as registered with the tax authority (Circular 78/2021/TT-BTC).",
            examples=["EH"],
        ),
    ]


class LoginCredentials(msgspec.Struct, frozen=True, kw_only=True):
    email: Email
    password: Password


class RefreshToken(msgspec.Struct, frozen=True, kw_only=True):
    refresh_token: Token


# --- responses ----------------------------------------------------------------------------


class Account(msgspec.Struct, frozen=True, kw_only=True):
    """An account as the API shows it (never the password hash)."""

    id: str
    email: str
    full_name: str
    roles: list[str]
    staff_events: list[str]
    disabled: bool

    @classmethod
    def of(cls, account: rules.Account) -> Account:
        return cls(
            id=account.account_id,
            email=account.email,
            full_name=account.full_name,
            roles=sorted(account.roles),
            staff_events=sorted(account.staff_events),
            disabled=account.disabled,
        )

    @classmethod
    def listed(cls, account: ListedAccount) -> Account:
        return cls(
            id=account.id,
            email=account.email,
            full_name=account.full_name,
            roles=account.roles,
            staff_events=account.staff_events,
            disabled=account.disabled,
        )


class TokenPair(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class InvoiceSeries(msgspec.Struct, frozen=True, kw_only=True):
    """An organizer's invoice series: the letters, and the symbol of invoices paid now."""

    letters: str
    symbol: str
    chosen: bool
    """False: the letters are the default (EVENTHUNTING_INVOICE_LETTERS)."""

    @classmethod
    def of(cls, choice: InvoiceSeriesChoice) -> InvoiceSeries:
        return cls(letters=choice.letters, symbol=choice.symbol, chosen=choice.chosen)


class StaffGrant(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    account_id: str
    staff: bool


def provide_accounts(state: State) -> AccountService:
    services: Services = state.services
    return services.accounts


ACCOUNTS_DEPENDENCY = {"accounts": Provide(provide_accounts, sync_to_thread=False)}


def client_address(request: Request[Any, Any, Any]) -> str:
    """The caller's address: X-Forwarded-For is believed only from the trusted proxies."""
    services: Services = request.app.state.services
    peer = request.client.host if request.client is not None else None
    return services.client_addresses.of(peer, request.headers.get("x-forwarded-for"))


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["accounts"]
    dependencies = ACCOUNTS_DEPENDENCY

    @post("/register", status_code=HTTP_201_CREATED, summary="Create an account")
    async def register(
        self,
        data: AccountCreate,
        accounts: AccountService,
        idempotency_key: Annotated[
            str | None, Parameter(header="Idempotency-Key", required=False, max_length=200)
        ] = None,
    ) -> Account:
        command = RegisterAccount(
            email=data.email, full_name=data.full_name, password=data.password
        )
        return Account.of(await accounts.register(command, idempotency_key=idempotency_key))

    @post(
        "/login",
        status_code=HTTP_200_OK,
        summary="Sign in for an access and a refresh token",
        opt={PROBLEM_STATUSES: (401, 429)},
    )
    async def login(
        self, data: LoginCredentials, accounts: AccountService, request: Request[Any, Any, Any]
    ) -> TokenPair:
        pair = await accounts.login(
            email=data.email, password=data.password, client_address=client_address(request)
        )
        return TokenPair(**msgspec.structs.asdict(pair))

    @post(
        "/refresh",
        status_code=HTTP_200_OK,
        summary="Spend a refresh token for a new pair",
        opt={PROBLEM_STATUSES: (401,)},
    )
    async def refresh(self, data: RefreshToken, accounts: AccountService) -> TokenPair:
        pair = await accounts.refresh(data.refresh_token)
        return TokenPair(**msgspec.structs.asdict(pair))

    @post(
        "/logout",
        status_code=HTTP_204_NO_CONTENT,
        guards=[signed_in],
        summary="Revoke the sign-in of a refresh token",
        opt={PROBLEM_STATUSES: ()},
    )
    async def logout(
        self, data: RefreshToken, accounts: AccountService, principal: Principal
    ) -> None:
        await accounts.logout(account_id=principal.account_id, refresh_token=data.refresh_token)


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["accounts"]
    guards = [signed_in]
    dependencies = ACCOUNTS_DEPENDENCY

    @get("", summary="The caller's account")
    async def me(self, accounts: AccountService, principal: Principal) -> Account:
        return Account.of(await accounts.get(principal.account_id))


class InvoiceSeriesController(Controller):
    """An organizer's invoice series. The letters apply to invoices of orders paid from the
    change on; each invoice keeps the symbol it was issued with."""

    path = "/api/v1/me/invoice-series"
    tags = ["accounts"]
    guards = [requires_roles(rules.ORGANIZER)]
    dependencies = ACCOUNTS_DEPENDENCY

    @get("", summary="The caller's invoice series (organizer)")
    async def show(self, accounts: AccountService, principal: Principal) -> InvoiceSeries:
        return InvoiceSeries.of(await accounts.invoice_series(principal.account_id))

    @put(
        "",
        summary="Choose the letters of the caller's invoice series (organizer)",
        description=(
            "Two capital letters A-Z (422 `invalid_input` otherwise). Invoices and credit"
            " notes issued from now on take them; issued ones keep their symbol."
        ),
        opt={PROBLEM_STATUSES: ()},
    )
    async def choose(
        self, data: InvoiceSeriesUpdate, accounts: AccountService, principal: Principal
    ) -> InvoiceSeries:
        command = ChooseInvoiceLetters(
            account_id=principal.account_id, letters=data.letters, by=principal.actor
        )
        return InvoiceSeries.of(await accounts.choose_invoice_letters(command))


class AdminAccountsController(Controller):
    path = "/api/v1/admin/accounts"
    tags = ["admin"]
    guards = [requires_roles(ADMIN)]
    dependencies = ACCOUNTS_DEPENDENCY

    @get("", summary="Accounts, newest first (read model; may lag a moment)")
    async def list_accounts(
        self,
        accounts: AccountService,
        email: Annotated[str | None, Parameter(max_length=320)] = None,
        role: Annotated[str | None, Parameter(max_length=64)] = None,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> Annotated[Page[Account], page_schema("AccountPage")]:
        found = await accounts.search(
            AccountQuery(email=email, role=role, page=page, page_size=page_size)
        )
        return Page(
            items=[Account.listed(account) for account in found.items],
            total=found.total,
            page=found.page,
            page_size=found.page_size,
        )

    @get("/{account_id:str}", summary="One account")
    async def show(self, account_id: str, accounts: AccountService) -> Account:
        return Account.of(await accounts.get(account_id))

    @put("/{account_id:str}/roles", summary="Set an account's roles")
    async def set_roles(
        self,
        account_id: str,
        data: AccountRolesUpdate,
        accounts: AccountService,
        principal: Principal,
        request: Request[Any, Any, Any],
    ) -> Account:
        command = ChangeRoles(account_id=account_id, by=principal.actor, roles=tuple(data.roles))
        account = await accounts.change_roles(command)
        forget_account_state(request.app, account_id)
        return Account.of(account)

    @put("/{account_id:str}/disabled", summary="Disable or enable an account")
    async def set_disabled(
        self,
        account_id: str,
        data: AccountDisabledUpdate,
        accounts: AccountService,
        principal: Principal,
        request: Request[Any, Any, Any],
    ) -> Account:
        by = principal.actor
        if data.disabled:
            account = await accounts.disable(
                DisableAccount(account_id=account_id, by=by, reason=data.reason)
            )
        else:
            account = await accounts.enable(EnableAccount(account_id=account_id, by=by))
        forget_account_state(request.app, account_id)
        return Account.of(account)


class EventStaffController(Controller):
    """Per-event staff (ticket check-in), granted by the event's organizer or an admin."""

    path = "/api/v1/events/{event_id:str}/staff"
    tags = ["accounts"]
    guards = [requires_roles("organizer")]
    dependencies = ACCOUNTS_DEPENDENCY

    @put("/{account_id:str}", summary="Let an account check tickets in at this event")
    async def grant(
        self,
        event_id: str,
        account_id: str,
        accounts: AccountService,
        principal: Principal,
        request: Request[Any, Any, Any],
    ) -> StaffGrant:
        command = GrantStaff(account_id=account_id, event_id=event_id, by=principal.actor)
        await accounts.grant_staff(command)
        forget_account_state(request.app, account_id)
        return StaffGrant(event_id=event_id, account_id=account_id, staff=True)

    @delete(
        "/{account_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Stop an account checking tickets in at this event",
    )
    async def revoke(
        self,
        event_id: str,
        account_id: str,
        accounts: AccountService,
        principal: Principal,
        request: Request[Any, Any, Any],
    ) -> None:
        command = RevokeStaff(account_id=account_id, event_id=event_id, by=principal.actor)
        await accounts.revoke_staff(command)
        forget_account_state(request.app, account_id)


ACCOUNT_ROUTES = [
    AuthController,
    MeController,
    InvoiceSeriesController,
    AdminAccountsController,
    EventStaffController,
]


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
