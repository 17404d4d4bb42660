"""The tables. Money is integer cents (fen); times are timezone-aware UTC."""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict, List

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import declarative_base, relationship

Base: Any = declarative_base()

CHANNELS = ("wechat", "web", "app")
LEVELS = ("regular", "silver", "gold", "platinum")
# An order's shipping state, in the order it moves through them.
ORDER_STATES = (
    "pending_payment", "paid", "dispatched", "in_transit", "delivered", "cancelled", "refunded",
)
# Before dispatch an order may still be cancelled or have its address changed.
BEFORE_DISPATCH = ("pending_payment", "paid")
REFUND_STATES = ("requested", "approved", "paid", "rejected")
TICKET_STATES = ("open", "answered", "closed")
# What a one-time code is for.
CODE_PURPOSES = ("bind", "password_reset")
# Who works at the desk: agents answer, supervisors also see and assign
# everything, admins also manage people.
AGENT_ROLES = ("agent", "supervisor", "admin")
# A handoff's lifecycle (DESIGN.md): waiting in a queue, with a person, then
# ended: closed by the agent, cancelled by the customer (or given up), or
# turned into a ticket (no agent, waited too long, customer out of reach).
HANDOFF_STATES = ("queued", "with_agent", "closed", "cancelled", "message_left")
HANDOFF_OPEN = ("queued", "with_agent")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=f"ck_{column}_known")


class Customer(Base):
    __tablename__ = "customers"

    id = Column(Integer, primary_key=True)
    name = Column(String(100), nullable=False)
    # Digits only, with country code for non-Chinese numbers ("8613812345678").
    phone = Column(String(20), nullable=False, unique=True)
    email = Column(String(200))
    language = Column(String(2), nullable=False, default="zh")
    level = Column(String(10), nullable=False, default="regular")
    wallet_cents = Column(BigInteger, nullable=False, default=0)
    points = Column(Integer, nullable=False, default=0)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)

    identities: List[Identity] = relationship(
        "Identity", back_populates="customer", cascade="all, delete-orphan"
    )
    orders: List[Order] = relationship(
        "Order", back_populates="customer", order_by="Order.created_at.desc()"
    )
    addresses: List[Address] = relationship(
        "Address", back_populates="customer", cascade="all, delete-orphan"
    )

    __table_args__ = (
        _one_of("level", LEVELS),
        _one_of("language", ("zh", "en")),
        CheckConstraint("wallet_cents >= 0", name="ck_wallet_not_negative"),
        CheckConstraint("points >= 0", name="ck_points_not_negative"),
    )


class Identity(Base):
    """A verified channel identity bound to a customer: the only way from a
    message to an account (WeChat OpenID, the host site's user id, the app's
    customer id)."""

    __tablename__ = "identities"

    id = Column(Integer, primary_key=True)
    customer_id = Column(ForeignKey("customers.id", ondelete="CASCADE"), nullable=False)
    channel = Column(String(10), nullable=False)
    subject = Column(String(128), nullable=False)
    # How it was bound: "seed", "host_site" (the web host's signed user id),
    # "app_jwt", "sms_code" (a one-time code sent to the account's phone).
    bound_by = Column(String(20), nullable=False)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)

    customer: Customer = relationship("Customer", back_populates="identities")

    __table_args__ = (
        UniqueConstraint("channel", "subject", name="uq_identity_channel_subject"),
        _one_of("channel", CHANNELS),
    )


class Address(Base):
    __tablename__ = "addresses"

    id = Column(Integer, primary_key=True)
    customer_id = Column(ForeignKey("customers.id", ondelete="CASCADE"), nullable=False)
    recipient = Column(String(100), nullable=False)
    phone = Column(String(20), nullable=False)
    line = Column(String(300), nullable=False)
    is_default = Column(Integer, nullable=False, default=0)

    customer: Customer = relationship("Customer", back_populates="addresses")


class Order(Base):
    __tablename__ = "orders"

    # The number customers see and type: JM + 12 digits.
    id = Column(String(14), primary_key=True)
    customer_id = Column(ForeignKey("customers.id"), nullable=False)
    status = Column(String(20), nullable=False)
    total_cents = Column(BigInteger, nullable=False)
    recipient = Column(String(100), nullable=False)
    phone = Column(String(20), nullable=False)
    address = Column(String(300), nullable=False)
    carrier = Column(String(40))
    tracking_number = Column(String(40))
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    paid_at = Column(DateTime(timezone=True))
    dispatched_at = Column(DateTime(timezone=True))
    delivered_at = Column(DateTime(timezone=True))
    cancelled_at = Column(DateTime(timezone=True))

    customer: Customer = relationship("Customer", back_populates="orders")
    items: List[OrderItem] = relationship(
        "OrderItem", back_populates="order", cascade="all, delete-orphan"
    )
    refunds: List[Refund] = relationship("Refund", back_populates="order")

    __table_args__ = (
        _one_of("status", ORDER_STATES),
        CheckConstraint("total_cents >= 0", name="ck_total_not_negative"),
        Index("ix_orders_customer_created", "customer_id", "created_at"),
    )


class OrderItem(Base):
    __tablename__ = "order_items"

    id = Column(Integer, primary_key=True)
    order_id = Column(ForeignKey("orders.id", ondelete="CASCADE"), nullable=False)
    sku = Column(String(40), nullable=False)
    name_zh = Column(String(200), nullable=False)
    name_en = Column(String(200), nullable=False)
    quantity = Column(Integer, nullable=False)
    unit_price_cents = Column(BigInteger, nullable=False)

    order: Order = relationship("Order", back_populates="items")

    __table_args__ = (CheckConstraint("quantity > 0", name="ck_quantity_positive"),)


class Refund(Base):
    __tablename__ = "refunds"

    # RF + 12 digits, told to the customer.
    id = Column(String(14), primary_key=True)
    order_id = Column(ForeignKey("orders.id"), nullable=False)
    amount_cents = Column(BigInteger, nullable=False)
    reason = Column(Text, nullable=False)
    status = Column(String(10), nullable=False, default="requested")
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)

    order: Order = relationship("Order", back_populates="refunds")

    __table_args__ = (
        _one_of("status", REFUND_STATES),
        CheckConstraint("amount_cents > 0", name="ck_refund_positive"),
        Index("ix_refunds_order", "order_id"),
    )


class Ticket(Base):
    """A message left for a person (no agent online, or the customer's choice)."""

    __tablename__ = "tickets"

    # TK + 12 digits, told to the customer.
    id = Column(String(14), primary_key=True)
    customer_id = Column(ForeignKey("customers.id"))
    conversation_id = Column(String(200), nullable=False)
    channel = Column(String(10), nullable=False)
    contact = Column(String(200), nullable=False)
    message = Column(Text, nullable=False)
    language = Column(String(2), nullable=False)
    status = Column(String(10), nullable=False, default="open")
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)

    __table_args__ = (_one_of("status", TICKET_STATES), _one_of("channel", CHANNELS))


class VerificationCode(Base):
    """A one-time code sent to an account's phone: to bind the channel identity that
    asked for it, or to reset the password. Only its hash is stored."""

    __tablename__ = "verification_codes"

    id = Column(Integer, primary_key=True)
    purpose = Column(String(20), nullable=False, default="bind", server_default="bind")
    # The channel identity that asked for the code.
    channel = Column(String(10), nullable=False)
    subject = Column(String(128), nullable=False)
    customer_id = Column(ForeignKey("customers.id", ondelete="CASCADE"), nullable=False)
    code_hash = Column(String(128), nullable=False)
    attempts = Column(Integer, nullable=False, default=0)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    expires_at = Column(DateTime(timezone=True), nullable=False)
    used_at = Column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_codes_identity", "channel", "subject", "created_at"),
        _one_of("purpose", CODE_PURPOSES),
    )


class AuditRecord(Base):
    """Who looked at or changed what: every account access and every binding."""

    __tablename__ = "audit_records"

    id = Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    # "customer" (through a channel identity), "agent:<name>", "system".
    actor = Column(String(100), nullable=False)
    channel = Column(String(10))
    subject = Column(String(128))
    customer_id = Column(ForeignKey("customers.id", ondelete="SET NULL"))
    action = Column(String(60), nullable=False)
    # What was touched (an order number, a refund number); never a full phone number.
    target = Column(String(60))
    detail: Dict[str, Any] | None = Column(JSON)

    __table_args__ = (
        Index("ix_audit_customer_at", "customer_id", "at"),
        Index("ix_audit_at", "at"),
    )


class Agent(Base):
    """A person at the desk (bot.desk.agents). Only the password's hash is stored."""

    __tablename__ = "agents"

    id = Column(Integer, primary_key=True)
    username = Column(String(40), nullable=False, unique=True)
    # What customers are told ("客服小青 is here to help").
    display_name = Column(String(60), nullable=False)
    password_hash = Column(String(200), nullable=False)
    role = Column(String(10), nullable=False, default="agent")
    # Skill groups whose queues the agent serves (orders, billing, complaints…).
    groups: List[str] | None = Column(JSON, nullable=False, default=list)
    # Chats at once.
    capacity = Column(Integer, nullable=False, default=5)
    active = Column(Integer, nullable=False, default=1)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)

    __table_args__ = (
        _one_of("role", AGENT_ROLES),
        CheckConstraint("capacity > 0", name="ck_capacity_positive"),
    )


class Handoff(Base):
    """One handoff of a conversation to a person, with every timestamp the desk and
    analytics need (wait, first response, handle time)."""

    __tablename__ = "handoffs"

    id = Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    conversation_id = Column(String(200), nullable=False)
    channel = Column(String(10), nullable=False)
    customer_id = Column(ForeignKey("customers.id", ondelete="SET NULL"))
    language = Column(String(2), nullable=False, default="zh")
    # Skill group whose queue it waits in (orders, billing, complaints, general).
    group_name = Column(String(30), nullable=False)
    # Higher first (VIP, complaint); then arrival.
    priority = Column(Integer, nullable=False, default=0)
    # Why the bot handed off: asked, complaint, misunderstood, vip…
    reason = Column(String(30), nullable=False)
    # The intent that decided the group (the customer's task).
    topic_intent = Column(String(60))
    state = Column(String(14), nullable=False, default="queued")
    agent_id = Column(ForeignKey("agents.id", ondelete="SET NULL"))
    requested_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    assigned_at = Column(DateTime(timezone=True))
    first_response_at = Column(DateTime(timezone=True))
    ended_at = Column(DateTime(timezone=True))
    # agent:<username>, customer, system.
    ended_by = Column(String(60))
    transfers = Column(Integer, nullable=False, default=0)
    ticket_id = Column(ForeignKey("tickets.id", ondelete="SET NULL"))

    __table_args__ = (
        _one_of("state", HANDOFF_STATES),
        Index("ix_handoffs_conversation", "conversation_id", "requested_at"),
        Index("ix_handoffs_customer", "customer_id", "requested_at"),
        Index("ix_handoffs_state", "state"),
    )


class HandoffNote(Base):
    """A private note of an agent's on a handoff: never shown to the customer."""

    __tablename__ = "handoff_notes"

    id = Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    handoff_id = Column(ForeignKey("handoffs.id", ondelete="CASCADE"), nullable=False)
    agent_id = Column(ForeignKey("agents.id", ondelete="SET NULL"))
    text = Column(Text, nullable=False)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)

    __table_args__ = (Index("ix_notes_handoff", "handoff_id"),)


class Rating(Base):
    """The customer's answer to "was your problem solved?" and the 1–5 score with an
    optional comment; linked to the handoff it rates, when there was one."""

    __tablename__ = "ratings"

    id = Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    conversation_id = Column(String(200), nullable=False)
    handoff_id = Column(ForeignKey("handoffs.id", ondelete="SET NULL"))
    solved = Column(Integer)
    score = Column(Integer)
    comment = Column(Text)
    created_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at = Column(DateTime(timezone=True), nullable=False, default=utcnow)

    __table_args__ = (
        CheckConstraint("score IS NULL OR (score BETWEEN 1 AND 5)", name="ck_score_range"),
        Index("ix_ratings_conversation", "conversation_id", "created_at"),
        Index("ix_ratings_handoff", "handoff_id"),
    )
