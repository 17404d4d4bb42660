"""Customers made for one test: a fresh account with one order in every state,
bound to a channel identity of its own, so what a test changes (a refund, a new
address) touches no other test's data."""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
from typing import Any, Dict

from bot.shop import database
from bot.shop.schema import ORDER_STATES, Address, Customer, Identity, Order, OrderItem

_serial = itertools.count(secrets.randbelow(5000))


def new_phone() -> str:
    """A phone number no other test uses; the last four digits differ too, since
    the development SMS log shows only those (139****0042)."""
    return f"139{secrets.randbelow(10**4):04d}{next(_serial) % 10**4:04d}"


def fresh_customer(
    shop_url: str, channel: str | None, subject: str | None, language: str = "zh",
    phone: str | None = None, level: str = "regular",
) -> Dict[str, Any]:
    """A new customer (bound to channel/subject when given) of membership `level`:
    their id, phone and order ids by status (each order ¥129.00: one item at 64.50 × 2)."""
    now = dt.datetime.now(dt.timezone.utc)
    phone = phone or new_phone()
    with database.session(shop_url) as session:
        customer = Customer(name="测试 顾客" if language == "zh" else "Test Customer",
                            phone=phone, email=f"t{phone}@example.com", language=language,
                            level=level)
        customer.addresses.append(Address(recipient="测试", phone=phone,
                                          line="上海市黄浦区南京东路 1 号", is_default=1))
        if channel and subject:
            customer.identities.append(Identity(channel=channel, subject=subject,
                                                bound_by="seed"))
        orders = {}
        for age, status in enumerate(ORDER_STATES, start=1):
            number = f"JM{secrets.randbelow(10**12):012d}"
            order = Order(
                id=number, customer=customer, status=status, total_cents=12900,
                recipient="测试", phone=phone, address="上海市黄浦区南京东路 1 号",
                created_at=now - dt.timedelta(days=age),
            )
            if status in ("dispatched", "in_transit", "delivered", "refunded"):
                order.carrier, order.tracking_number = "顺丰速运", "SF1234567890"
            order.items.append(OrderItem(sku="TEA-1", name_zh="龙井茶", name_en="Longjing tea",
                                         quantity=2, unit_price_cents=6450))
            session.add(order)
            orders[status] = number
        session.add(customer)
        session.flush()
        return {"id": customer.id, "phone": phone, "orders": orders}
