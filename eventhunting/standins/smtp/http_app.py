"""The HTTP side of the sink: inbox pages and the JSON API (messages, faults, counters)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from litestar import Controller, Litestar, Request, Response, delete, get, post
from litestar.di import Provide
from litestar.exceptions import NotFoundException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig

from eventhunting.standins.smtp.faults import (
    Counters,
    DownFault,
    DropFault,
    FaultPlan,
    FaultState,
    RefuseFault,
)
from eventhunting.standins.smtp.inbox import Inbox, StoredMessage
from eventhunting.standins.smtp.message_view import (
    MessageSummary,
    MessageView,
    part_content,
    summary_of,
    view_of,
    with_part_urls,
)
from eventhunting.standins.smtp.smtp_server import SmtpListener

TEMPLATES = Path(__file__).parent / "templates"
# Parts are the sender's bytes: never let a browser run or sniff them as our pages.
PART_HEADERS = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}


def page_policy(request: Request[Any, Any, Any]) -> str:
    """Nothing from other sites: the mail's HTML (a srcdoc frame inherits this) may show
    only this sink's part URLs and data: images, and run no script."""
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(str(request.base_url)))
    return (
        "default-src 'none'; "
        f"img-src 'self' {origin} data:; "
        "style-src 'unsafe-inline'; "
        "frame-src 'self'; "
        "form-action 'self'; "
        "base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def part_url(message_id: str, part_id: str) -> str:
    return f"/api/messages/{message_id}/parts/{quote(part_id, safe='@')}"


def found(inbox: Inbox, message_id: str) -> StoredMessage:
    message = inbox.get(message_id)
    if message is None:
        raise NotFoundException(f"no message {message_id}")
    return message


class InboxPages(Controller):
    """Server-rendered pages for people: the inbox and one message."""

    path = "/"
    include_in_schema = False

    @get("/")
    async def inbox_page(self, request: Request[Any, Any, Any], inbox: Inbox) -> Template:
        return Template(
            template_name="inbox.html",
            context={"messages": [summary_of(message) for message in inbox.newest_first()]},
            headers={"Content-Security-Policy": page_policy(request)},
        )

    @get("/messages/{message_id:str}")
    async def message_page(
        self, request: Request[Any, Any, Any], inbox: Inbox, message_id: str
    ) -> Template:
        view = view_of(found(inbox, message_id))
        html = (
            None
            if view.html is None
            else with_part_urls(view.html, view.parts, lambda part_id: part_url(view.id, part_id))
        )
        return Template(
            template_name="message.html",
            context={
                "message": view,
                "html": html,
                "parts": [(part, part_url(view.id, part.id)) for part in view.parts],
            },
            headers={"Content-Security-Policy": page_policy(request)},
        )

    @post("/clear", status_code=303)
    async def clear_from_page(self, inbox: Inbox) -> Redirect:
        await inbox.clear()
        return Redirect("/", status_code=303)


class MessagesApi(Controller):
    """Accepted messages as JSON, their raw bytes and parts; clearing them."""

    path = "/api/messages"

    @get("/")
    async def list_messages(self, inbox: Inbox) -> list[MessageSummary]:
        return [summary_of(message) for message in inbox.newest_first()]

    @delete("/")
    async def clear_messages(self, inbox: Inbox) -> None:
        await inbox.clear()

    @get("/{message_id:str}")
    async def show_message(self, inbox: Inbox, message_id: str) -> MessageView:
        return view_of(found(inbox, message_id))

    @get("/{message_id:str}/raw")
    async def raw_message(self, inbox: Inbox, message_id: str) -> Response[bytes]:
        return Response(
            found(inbox, message_id).raw, media_type="message/rfc822", headers=PART_HEADERS
        )

    @get("/{message_id:str}/parts/{part_id:str}")
    async def message_part(self, inbox: Inbox, message_id: str, part_id: str) -> Response[bytes]:
        content = part_content(found(inbox, message_id), part_id)
        if content is None:
            raise NotFoundException(f"message {message_id} has no part {part_id}")
        part, data = content
        return Response(data, media_type=part.content_type, headers=PART_HEADERS)


class FaultsApi(Controller):
    """Faults for tests: refuse or drop the next messages, be down for a while, clear."""

    path = "/api/faults"

    @get("/")
    async def show_faults(self, plan: FaultPlan, listener: SmtpListener) -> FaultState:
        return fault_state(plan, listener)

    @post("/", status_code=200)
    async def add_fault(
        self, data: RefuseFault | DropFault | DownFault, plan: FaultPlan, listener: SmtpListener
    ) -> FaultState:
        if isinstance(data, DownFault):
            listener.go_down(data.seconds)
        else:
            plan.add(data)
        return fault_state(plan, listener)

    @delete("/")
    async def clear_faults(self, plan: FaultPlan, listener: SmtpListener) -> None:
        plan.clear()
        await listener.come_back()


class CountersApi(Controller):
    """How many messages were accepted, refused and dropped: "exactly one delivered"."""

    path = "/api/counters"

    @get("/")
    async def show_counters(self, plan: FaultPlan) -> Counters:
        return plan.counters

    @delete("/")
    async def reset_counters(self, plan: FaultPlan) -> None:
        plan.reset_counters()


def fault_state(plan: FaultPlan, listener: SmtpListener) -> FaultState:
    return FaultState(
        pending=list(plan.pending), down_until=listener.down_until, listening=listener.listening
    )


def create_http_app(inbox: Inbox, plan: FaultPlan, listener: SmtpListener) -> Litestar:
    return Litestar(
        route_handlers=[InboxPages, MessagesApi, FaultsApi, CountersApi],
        dependencies={
            "inbox": Provide(lambda: inbox, sync_to_thread=False),
            "plan": Provide(lambda: plan, sync_to_thread=False),
            "listener": Provide(lambda: listener, sync_to_thread=False),
        },
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine),
        openapi_config=None,
        # The sink's JSON log lines, not Litestar's own format.
        logging_config=None,
    )
