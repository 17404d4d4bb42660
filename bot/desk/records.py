"""The desk's durable records in SQL: handoffs with their timestamps, notes,
tickets for customers out of reach, the audit trail, and what the console
shows about a customer. Synchronous (SQLAlchemy); the desk calls them in a
thread (`in_thread`)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Callable, Dict, Iterable, List, Set, TypeVar

from sqlalchemy import select

from bot.privacy import mask_name, mask_phone_number
from bot.shop import database
from bot.shop.numbers import next_number
from bot.shop.schema import (
    HANDOFF_OPEN,
    Agent,
    AuditRecord,
    Customer,
    Handoff,
    HandoffNote,
    Identity,
    Ticket,
    utcnow,
)

T = TypeVar("T")


async def in_thread(work: Callable[[], T]) -> T:
    return await asyncio.to_thread(work)


def _at(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite gives naive UTC back
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def create_handoff(url: str, **values: Any) -> int:
    with database.session(url) as session:
        handoff = Handoff(state="queued", transfers=0, **values)
        session.add(handoff)
        session.flush()
        return int(handoff.id)


def mark_assigned(url: str, handoff_id: int, agent_id: int, transfer: bool = False) -> None:
    with database.session(url) as session:
        handoff = session.get(Handoff, handoff_id)
        if handoff is None:
            return
        handoff.state, handoff.agent_id = "with_agent", agent_id
        handoff.assigned_at = handoff.assigned_at or utcnow()
        if transfer:
            handoff.transfers += 1


def mark_requeued(url: str, handoff_id: int, transfer: bool) -> None:
    with database.session(url) as session:
        handoff = session.get(Handoff, handoff_id)
        if handoff is None:
            return
        handoff.state, handoff.agent_id = "queued", None
        if transfer:
            handoff.transfers += 1


def mark_first_response(url: str, handoff_id: int) -> None:
    with database.session(url) as session:
        handoff = session.get(Handoff, handoff_id)
        if handoff is not None and handoff.first_response_at is None:
            handoff.first_response_at = utcnow()


def mark_ended(
    url: str, handoff_id: int, state: str, ended_by: str, ticket_id: str | None = None
) -> None:
    with database.session(url) as session:
        handoff = session.get(Handoff, handoff_id)
        if handoff is None or handoff.state not in HANDOFF_OPEN:
            return
        handoff.state, handoff.ended_by, handoff.ended_at = state, ended_by, utcnow()
        if ticket_id:
            handoff.ticket_id = ticket_id


def open_handoffs(url: str) -> List[Dict[str, Any]]:
    """Handoffs SQL says are open (to rebuild the queue if Redis lost it)."""
    with database.session(url) as session:
        rows = session.scalars(select(Handoff).where(Handoff.state.in_(HANDOFF_OPEN)))
        return [
            {"id": h.id, "conversation_id": h.conversation_id, "channel": h.channel,
             "group": h.group_name, "priority": h.priority, "reason": h.reason,
             "language": h.language, "customer_id": h.customer_id or 0,
             "requested_at": _at(h.requested_at)}
            for h in rows
        ]


def create_ticket(
    url: str, conversation_id: str, channel: str, customer_id: int | None, contact: str,
    message: str, language: str,
) -> str:
    with database.session(url) as session:
        number = next_number(session, Ticket, "TK")
        session.add(Ticket(
            id=number, customer_id=customer_id or None, conversation_id=conversation_id,
            channel=channel, contact=contact[:200], message=message[:4000] or "-",
            language=language, status="open",
        ))
        return number


def add_note(url: str, handoff_id: int, agent_id: int, text: str) -> Dict[str, Any]:
    with database.session(url) as session:
        note = HandoffNote(handoff_id=handoff_id, agent_id=agent_id, text=text)
        session.add(note)
        session.flush()
        agent = session.get(Agent, agent_id)
        return {"id": note.id, "agent": agent.display_name if agent else "",
                "text": text, "at": _at(note.created_at) or 0.0}


def notes(url: str, handoff_ids: List[int]) -> List[Dict[str, Any]]:
    if not handoff_ids:
        return []
    with database.session(url) as session:
        rows = session.execute(
            select(HandoffNote, Agent.display_name)
            .join(Agent, Agent.id == HandoffNote.agent_id, isouter=True)
            .where(HandoffNote.handoff_id.in_(handoff_ids))
            .order_by(HandoffNote.created_at)
        )
        return [{"id": n.id, "agent": name or "", "text": n.text, "at": _at(n.created_at)}
                for n, name in rows]


def audit(url: str, actor: str, action: str, target: str | None = None,
          detail: Dict[str, Any] | None = None, customer_id: int | None = None) -> None:
    with database.session(url) as session:
        session.add(AuditRecord(actor=actor[:100], action=action[:60],
                                target=(target or "")[:60] or None, detail=detail,
                                customer_id=customer_id or None))


def customer_profile(url: str, customer_id: int | None) -> Dict[str, Any]:
    """What the agent may see of the customer: masked, no figures they don't need."""
    if not customer_id:
        return {"verified": False}
    with database.session(url) as session:
        customer = session.get(Customer, customer_id)
        if customer is None:
            return {"verified": False}
        channels = sorted({i.channel for i in customer.identities})
        return {
            "verified": True,
            "name": mask_name(customer.name),
            "level": customer.level,
            "language": customer.language,
            "phone": mask_phone_number(customer.phone),
            "channels": channels,
            "customer_since": _at(customer.created_at),
        }


def customer_of_identity(url: str, channel: str, subject: str) -> Customer | None:
    with database.session(url) as session:
        bound = session.scalars(
            select(Identity).where(Identity.channel == channel, Identity.subject == subject)
        ).first()
        if bound is None:
            return None
        customer = bound.customer
        session.expunge(customer)
        return customer


def previous_handoffs(
    url: str, conversation_id: str, customer_id: int | None, limit: int = 20
) -> List[Dict[str, Any]]:
    """Earlier handoffs of this conversation and of the same customer on any channel."""
    with database.session(url) as session:
        query = select(Handoff).order_by(Handoff.requested_at.desc()).limit(limit)
        if customer_id:
            query = query.where(
                (Handoff.customer_id == customer_id) | (Handoff.conversation_id == conversation_id)
            )
        else:
            query = query.where(Handoff.conversation_id == conversation_id)
        return [
            {"handoff_id": h.id, "id": h.conversation_id, "channel": h.channel,
             "requested_at": _at(h.requested_at), "ended_at": _at(h.ended_at),
             "state": h.state, "reason": h.reason, "group": h.group_name}
            for h in session.scalars(query)
        ]


def customer_conversations(url: str, customer_id: int | None) -> List[str]:
    """The conversation ids of every channel identity bound to the customer."""
    if not customer_id:
        return []
    with database.session(url) as session:
        rows = session.scalars(select(Identity).where(Identity.customer_id == customer_id))
        return sorted(conversation_of(i.channel, i.subject) for i in rows)


def customer_of_conversation(url: str, conversation_id: str) -> int | None:
    """The customer a conversation's channel identity is bound to, if any."""
    channel, _, subject = conversation_id.partition(":")
    if channel == "web" and subject.startswith("u-"):
        subject = subject[2:]
    with database.session(url) as session:
        bound = session.scalars(
            select(Identity).where(Identity.channel == channel, Identity.subject == subject)
        ).first()
        return bound.customer_id if bound else None


def conversation_of(channel: str, subject: str) -> str:
    """A bound identity's conversation id: the web channel keeps a host site's
    users ("u-<id>") apart from its visitors ("v-…"); see connectors.identity."""
    if channel == "web" and not subject.startswith(("v-", "u-")):
        return f"web:u-{subject}"
    return f"{channel}:{subject}"


def active_agents(url: str) -> List[Agent]:
    with database.session(url) as session:
        agents = list(session.scalars(select(Agent).where(Agent.active == 1)))
        for agent in agents:
            session.expunge(agent)
        return agents


def agent_by_id(url: str, agent_id: int) -> Agent | None:
    with database.session(url) as session:
        agent = session.get(Agent, agent_id)
        if agent is not None:
            session.expunge(agent)
        return agent


def active_agent_ids(url: str, agent_ids: Iterable[int]) -> Set[int]:
    """Which of these agents SQL still has active: one query however many."""
    ids = sorted(set(agent_ids))
    if not ids:
        return set()
    with database.session(url) as session:
        return set(session.scalars(
            select(Agent.id).where(Agent.id.in_(ids), Agent.active == 1)))
