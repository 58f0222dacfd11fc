"""The composition root: builds every client and service from settings, in one place."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from eventhunting.client_address import ClientAddresses, parse_networks
from eventhunting.payments.vnpay import MerchantCredentials
from eventhunting.services.accounts import AccountService, build_account_service
from eventhunting.services.catalog import CatalogService
from eventhunting.services.dead_letters import DeadLetterService
from eventhunting.services.orders import OrderService
from eventhunting.services.payments import PaymentService
from eventhunting.services.readiness import StoreReadiness
from eventhunting.services.refunds import RefundService
from eventhunting.services.sales import SalesService
from eventhunting.services.tickets import TicketService
from eventhunting.settings import Settings
from eventhunting.store.append import EventStore
from eventhunting.store_clients import StoreClients, connect_store
from eventhunting.tickets.qr_keys import key_ring_of

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services(StoreClients):
    """Everything a request handler or worker needs, built once per process."""

    settings: Settings
    clock: Clock
    started_at: float
    accounts: AccountService
    store: EventStore
    catalog: CatalogService
    orders: OrderService
    payments: PaymentService
    client_addresses: ClientAddresses
    sales: SalesService
    tickets: TicketService
    refunds: RefundService
    dead_letters: DeadLetterService
    readiness: StoreReadiness


def merchant_credentials(settings: Settings) -> MerchantCredentials | None:
    """VNPAY credentials when both are configured; payments answer 503 without them."""
    vnpay = settings.vnpay
    if vnpay.tmn_code is None or vnpay.hash_secret is None:
        return None
    return MerchantCredentials(tmn_code=vnpay.tmn_code, hash_secret=vnpay.hash_secret)


async def build_services(settings: Settings, *, clock: Clock = system_clock) -> Services:
    """Create clients (they connect lazily) and the services built on them."""
    clients = connect_store(settings)
    redis_client, database = clients.redis, clients.database
    store = EventStore(redis_client, settings.sales.partitions, clock=clock)
    catalog = CatalogService(store, database, clock)
    orders = OrderService(
        store=store,
        redis=redis_client,
        load_event=catalog.load_event,
        hold_seconds=settings.sales.hold_seconds,
        clock=clock,
        database=database,
    )
    client_addresses = ClientAddresses(parse_networks(settings.trusted_proxies))
    accounts = build_account_service(
        settings,
        redis_client,
        clock,
        store=store,
        database=database,
        ensure_manages_event=catalog.ensure_manages_event,
    )
    payments = PaymentService(
        orders=orders,
        redis=redis_client,
        database=database,
        credentials=merchant_credentials(settings),
        pay_url=settings.vnpay.pay_url,
        public_base_url=settings.public_base_url,
        clock=clock,
        invoice_letters=settings.invoice_letters,
        find_account=accounts.find,
        client_addresses=client_addresses,
        ipn_allowed=parse_networks(settings.vnpay.ipn_allowed_addresses),
        refunds_per_second=settings.vnpay.refunds_per_second,
    )
    return Services(
        settings=settings,
        redis=redis_client,
        mongo=clients.mongo,
        database=database,
        clock=clock,
        started_at=time.monotonic(),
        accounts=accounts,
        client_addresses=client_addresses,
        sales=SalesService(store, database, catalog.load_event, clock),
        store=store,
        catalog=catalog,
        orders=orders,
        payments=payments,
        tickets=TicketService(
            store=store,
            redis=redis_client,
            clock=clock,
            verifying_ring=key_ring_of(settings.qr),
        ),
        refunds=RefundService(orders, database, payments),
        dead_letters=DeadLetterService(redis_client, database, settings.sales.partitions),
        readiness=StoreReadiness(redis_client, clients.mongo),
    )
