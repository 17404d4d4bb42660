"""Realistic demo data: Chinese and English customers, their channel identities,
addresses and orders in every shipping state, refunds and a ticket.

Deterministic for a seed (Faker's zh_CN and en_US locales, seeded), so the
README can name demo customers and tests can rely on them. `bot run` seeds an
empty database; `bot seed-demo` does it on demand.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

from faker import Faker
from sqlalchemy.orm import Session

from bot.shop.schema import (
    ORDER_STATES,
    Address,
    Customer,
    Identity,
    Order,
    OrderItem,
    Refund,
    Ticket,
)

SEED = 20261128
# (sku, Chinese name, English name, price in fen)
CATALOGUE: Sequence[Tuple[str, str, str, int]] = (
    ("TEA-LJ-250", "西湖龙井 250克", "West Lake Longjing tea, 250 g", 16800),
    ("TEA-PE-357", "云南普洱茶饼 357克", "Yunnan Pu'er tea cake, 357 g", 22800),
    ("CUP-CEL-01", "青瓷茶杯 两只装", "Celadon teacups, set of two", 8900),
    ("POT-ZS-300", "宜兴紫砂壶 300毫升", "Yixing clay teapot, 300 ml", 45800),
    ("SLK-SC-01", "桑蚕丝围巾", "Mulberry silk scarf", 29900),
    ("BAM-BX-03", "竹制收纳盒 三件套", "Bamboo storage boxes, set of three", 12900),
    ("HNY-LC-500", "荔枝蜜 500克", "Lychee honey, 500 g", 6800),
    ("FAN-SD-01", "檀香折扇", "Sandalwood folding fan", 5900),
    ("PEN-BR-05", "湖笔毛笔 五支装", "Huzhou writing brushes, set of five", 15800),
    ("MUG-TR-01", "保温旅行杯", "Insulated travel mug", 9900),
)
CARRIERS = ("SF Express", "JD Logistics", "ZTO Express", "YTO Express", "China Post EMS")


@dataclass(frozen=True)
class DemoCustomer:
    """A demo customer the README names: how to reach their account on each channel."""

    key: str
    language: str
    level: str
    wallet_cents: int
    points: int
    # channel -> subject (web: the host site's user id; app: the customer id)
    identities: Dict[str, str] = field(default_factory=dict)
    # Fixed, so the README can tell whose phone to verify with.
    phone: str = ""


DEMO_CUSTOMERS: Sequence[DemoCustomer] = (
    DemoCustomer("zh", "zh", "gold", 128_650, 3_260,
                 {"web": "demo-zh", "app": "app-demo-zh"}, phone="13800000001"),
    DemoCustomer("en", "en", "silver", 45_000, 820,
                 {"web": "demo-en", "app": "app-demo-en"}, phone="13800000002"),
    # Has an account and a phone but no channel bound yet: binds with a code.
    DemoCustomer("unbound", "zh", "regular", 0, 120, {}, phone="13800000003"),
)


@dataclass
class Seeded:
    customers: int = 0
    orders: int = 0
    refunds: int = 0
    tickets: int = 0
    demo: Dict[str, int] = field(default_factory=dict)  # key -> customer id


def _digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


class _Maker:
    def __init__(self, seed: int, now: dt.datetime) -> None:
        self.rng = random.Random(seed)
        self.fakers = {"zh": Faker("zh_CN"), "en": Faker("en_US")}
        for offset, faker in enumerate(self.fakers.values()):
            faker.seed_instance(seed + offset)
        self.now = now
        self.order_serial = 0
        self.refund_serial = 0
        self.phones: set[str] = set()

    def phone(self, language: str) -> str:
        faker = self.fakers[language]
        while True:
            if language == "zh":
                number = _digits(faker.phone_number())[-11:]
            else:
                number = "1" + faker.numerify("%##%######")
            if number not in self.phones:
                self.phones.add(number)
                return number

    def address(self, language: str) -> str:
        faker = self.fakers[language]
        if language == "zh":
            return " ".join(faker.address().split())
        # Not faker.address(): it also makes military (APO/DPO) addresses.
        return (f"{faker.street_address()}, {faker.city()}, {faker.state_abbr()} "
                f"{faker.zipcode()}")

    def customer(
        self, language: str, level: str, wallet_cents: int, points: int, since_days: int
    ) -> Customer:
        faker = self.fakers[language]
        name = faker.name()
        customer = Customer(
            name=name,
            phone=self.phone(language),
            email=faker.email(),
            language=language,
            level=level,
            wallet_cents=wallet_cents,
            points=points,
            created_at=self.now - dt.timedelta(days=since_days),
        )
        customer.addresses.append(
            Address(recipient=name, phone=customer.phone, line=self.address(language),
                    is_default=1)
        )
        return customer

    def order(self, customer: Customer, status: str, age_days: float) -> Order:
        created = self.now - dt.timedelta(days=age_days)
        self.order_serial += 1
        number = f"JM{created:%Y%m%d}{self.order_serial:04d}"
        address = customer.addresses[0]
        order = Order(
            id=number, customer=customer, status=status, total_cents=0,
            recipient=address.recipient, phone=address.phone, address=address.line,
            created_at=created,
        )
        for sku, name_zh, name_en, price in self.rng.sample(CATALOGUE, self.rng.randint(1, 3)):
            order.items.append(OrderItem(
                sku=sku, name_zh=name_zh, name_en=name_en,
                quantity=self.rng.randint(1, 3), unit_price_cents=price,
            ))
        order.total_cents = sum(i.quantity * i.unit_price_cents for i in order.items)
        if status != "pending_payment":
            order.paid_at = created + dt.timedelta(minutes=self.rng.randint(1, 30))
        if status in ("dispatched", "in_transit", "delivered", "refunded"):
            order.dispatched_at = created + dt.timedelta(hours=self.rng.randint(4, 30))
            order.carrier = self.rng.choice(CARRIERS)
            order.tracking_number = "".join(self.rng.choices("0123456789", k=12))
        if status in ("delivered", "refunded"):
            order.delivered_at = order.dispatched_at + dt.timedelta(days=self.rng.randint(1, 4))
        if status == "cancelled":
            order.cancelled_at = created + dt.timedelta(hours=self.rng.randint(1, 10))
        return order

    def refund(self, order: Order, status: str, reason: str) -> Refund:
        self.refund_serial += 1
        at = (order.delivered_at or order.created_at) + dt.timedelta(days=1)
        refund = Refund(
            id=f"RF{at:%Y%m%d}{self.refund_serial:04d}", order=order,
            amount_cents=order.total_cents, reason=reason, status=status,
            created_at=at, updated_at=at + dt.timedelta(hours=6),
        )
        return refund


def seed(session: Session, seed: int = SEED, extra_customers: int = 40,
         now: dt.datetime | None = None) -> Seeded:
    """Fill an empty shop database. The caller commits."""
    maker = _Maker(seed, now or dt.datetime.now(dt.timezone.utc))
    seeded = Seeded()
    orders: List[Order] = []

    for demo in DEMO_CUSTOMERS:
        customer = maker.customer(demo.language, demo.level, demo.wallet_cents, demo.points, 400)
        if demo.phone:
            customer.phone = customer.addresses[0].phone = demo.phone
        for channel, subject in demo.identities.items():
            customer.identities.append(Identity(channel=channel, subject=subject, bound_by="seed"))
        # One order in every state, newest first in the customer's list.
        for age, status in enumerate(reversed(ORDER_STATES), start=1):
            orders.append(maker.order(customer, status, age_days=age * 3 + 0.5))
        session.add(customer)
        session.flush()
        seeded.demo[demo.key] = customer.id

    for index in range(extra_customers):
        language = "zh" if index % 3 else "en"
        customer = maker.customer(
            language,
            maker.rng.choice(("regular", "regular", "silver", "gold", "platinum")),
            maker.rng.randint(0, 300_000),
            maker.rng.randint(0, 12_000),
            maker.rng.randint(1, 900),
        )
        for _ in range(maker.rng.randint(0, 4)):
            status = maker.rng.choice(ORDER_STATES)
            orders.append(maker.order(customer, status, age_days=maker.rng.uniform(0.2, 120)))
        session.add(customer)

    session.add_all(orders)
    for order in orders:
        if order.status == "refunded":
            session.add(maker.refund(order, "paid", "商品与描述不符" if
                                     order.customer.language == "zh" else "Not as described"))
    # A refund still under review, on the demo customers' delivered orders.
    for order in orders:
        if order.status == "delivered" and order.customer.id in seeded.demo.values():
            session.add(maker.refund(order, "requested", "包装破损" if
                                     order.customer.language == "zh" else "Damaged packaging"))
    session.flush()
    demo_zh = session.get(Customer, seeded.demo["zh"])
    session.add(Ticket(
        id=f"TK{maker.now:%Y%m%d}0001", customer_id=demo_zh.id,
        conversation_id="web:u-demo-zh", channel="web", contact=demo_zh.phone,
        message="想问下龙井有没有礼盒装", language="zh", status="open",
        created_at=maker.now - dt.timedelta(days=2),
    ))
    session.flush()
    seeded.customers = session.query(Customer).count()
    seeded.orders = session.query(Order).count()
    seeded.refunds = session.query(Refund).count()
    seeded.tickets = session.query(Ticket).count()
    return seeded
