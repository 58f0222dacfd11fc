"""Admin routes for dead letters: entries a consumer group gave up on, and retrying one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.di import Provide

from eventhunting.api.auth import ADMIN, Principal, requires_roles
from eventhunting.api.openapi import PROBLEM_STATUSES
from eventhunting.api.paging import Page, page_schema
from eventhunting.api.parameters import DEFAULT_PAGE_SIZE, PageNumber, PageSize
from eventhunting.services.dead_letters import GROUPS, DeadLetter, DeadLetterService

GroupName = Annotated[str, msgspec.Meta(max_length=64)]


def provide_dead_letters(state: State) -> DeadLetterService:
    dead_letters: DeadLetterService = state.services.dead_letters
    return dead_letters


class DeadLetterView(msgspec.Struct, frozen=True, kw_only=True):
    """An entry of a partition log that `group` gave up on after `deliveries` failures.

    `error` is the last failure's type and message (no traceback); `event_type`, `stream`
    and `version` say which event it is (its payload is not shown).
    """

    group: str
    partition: int
    id: str
    position: str
    stream: str
    version: int
    event_type: str | None
    error: str
    deliveries: int
    failed_at: datetime
    retried: bool
    """It failed again after an admin's retry."""


class RetryAccepted(msgspec.Struct, frozen=True, kw_only=True):
    group: str
    id: str
    stream: str
    version: int


def view_of(letter: DeadLetter) -> DeadLetterView:
    return msgspec.convert(letter, DeadLetterView, from_attributes=True)


class DeadLetterController(Controller):
    """`/api/v1/admin/dead-letters`."""

    path = "/api/v1/admin/dead-letters"
    tags = ["admin"]
    guards = [requires_roles(ADMIN)]
    dependencies = {"dead_letters": Provide(provide_dead_letters, sync_to_thread=False)}

    @get(
        "",
        summary="Entries a consumer group gave up on, latest failure first",
        description=f"Every group's `{{p<k>}}:<group>:dead` streams ({', '.join(GROUPS)});"
        " `group` narrows the list to one.",
    )
    async def list_dead_letters(
        self,
        dead_letters: DeadLetterService,
        group: GroupName | None = None,
        page: PageNumber = 1,
        page_size: PageSize = DEFAULT_PAGE_SIZE,
    ) -> Annotated[Page[DeadLetterView], page_schema("DeadLetterPage")]:
        found = await dead_letters.list(group=group, page=page, page_size=page_size)
        return Page(
            items=[view_of(letter) for letter in found.items],
            total=found.total,
            page=page,
            page_size=page_size,
        )

    @post(
        "/{group:str}/{letter_id:str}/retry",
        summary="Hand a dead letter back to its group",
        description="202: `mailer` and `reconciler` entries are handled again by their"
        " worker (once; back in the list if they fail again), `archiver` entries are"
        " archived at once. 409 `dead_letter_not_retryable` for `projector` entries: rebuild"
        " the read models with `eventhunting replay` instead. 404 `dead_letter_not_found`"
        " (also for one retried already).",
        status_code=202,
        opt={PROBLEM_STATUSES: (409,)},
    )
    async def retry(
        self,
        group: str,
        letter_id: str,
        dead_letters: DeadLetterService,
        principal: Principal,
    ) -> RetryAccepted:
        letter = await dead_letters.retry(group, letter_id, by=principal.account_id)
        return RetryAccepted(
            group=group, id=letter.id, stream=letter.stream, version=letter.version
        )
