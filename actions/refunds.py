"""Refund requests: which orders may have one, the reason and amount form, the
refund with its number.

After the order form has the number, `action_refund_start` checks the order:
the verified customer's own, shipped, nothing refunded in full, no refund still
open. Otherwise it says why not (an order not shipped yet is better cancelled:
that button is offered). A refundable order opens `refund_form` (reason, then
amount: at most what was paid less what is already refunded), and
`action_submit_refund` checks everything again in one transaction before it
creates the refund, since the order may have moved on meanwhile.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, List

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.orm import Session

from actions.accounts import READY, READY_SLOT, Answer
from actions.forms import LimitedValidation
from actions.orders import ActionOrderStatus, normalize_order_id
from actions.shop import (
    audit,
    identity_of,
    money,
    next_number,
    read_quietly,
    shop_session,
    verified_customer,
)
from bot.shop.schema import Customer, Order, Refund

logger = logging.getLogger(__name__)

# A refund is for goods on their way or delivered; before dispatch, cancel instead.
REFUNDABLE = ("dispatched", "in_transit", "delivered")
OPEN_REFUNDS = ("requested", "approved")
# The reason buttons' codes (utter_ask_refund_reason); typed reasons are kept as typed.
REASON_CODES = ("quality", "wrong_item", "not_as_described", "changed_mind")
MAX_REASON = 500
FULL_AMOUNT = "full"
_FULL_WORDS = re.compile(
    r"(?:全额|全部|全款|都退|全退|退全部|all|full|full refund|the full amount|everything"
    r"|all of it)",
    re.IGNORECASE,
)
_AMOUNT = re.compile(
    r"(?:[¥￥]|rmb|cny)?\s*(\d{1,7}(?:\.\d{1,2})?)\s*(?:元|块钱|块|rmb|yuan|cny)?", re.IGNORECASE
)


def refundable_cents(order: Order) -> int:
    """What was paid less every refund not rejected."""
    taken = sum(r.amount_cents for r in order.refunds if r.status != "rejected")
    return max(order.total_cents - taken, 0)


def refusal(order: Order) -> Answer | None:
    """Why this order can't have a refund requested now, or None."""
    facts = {"order_id": order.id}
    if order.status == "pending_payment":
        return "utter_refund_refused_unpaid", facts
    if order.status == "paid":
        return "utter_refund_cancel_instead", facts
    still_open = [r for r in order.refunds if r.status in OPEN_REFUNDS]
    if still_open:
        return "utter_refund_already_open", {**facts, "refund_id": still_open[0].id}
    if order.status not in REFUNDABLE or refundable_cents(order) <= 0:
        return "utter_refund_refused_closed", facts
    return None


def parse_amount(text: str) -> Decimal | str | None:
    """Yuan as a Decimal, FULL_AMOUNT, or None when the text is no amount."""
    cleaned = text.strip().replace(",", "").replace("，", "")
    if _FULL_WORDS.fullmatch(cleaned) or cleaned == FULL_AMOUNT:
        return FULL_AMOUNT
    match = _AMOUNT.fullmatch(cleaned)
    if not match:
        return None
    try:
        return Decimal(match.group(1))
    except InvalidOperation:
        return None


class ActionRefundStart(ActionOrderStatus):
    """May this order have a refund? Yes: the refund form follows (READY)."""

    topic = "refund_start"

    def about(self, session: Session, order: Order, tracker: Tracker, lang: str) -> Answer:
        refused = refusal(order)
        audit(session, identity_of(tracker), "refund_refused" if refused else "refund_started",
              order.customer, target=order.id,
              detail={"status": order.status} if refused else None)
        return refused or (READY, {})

    def events_for(self, response: str, parameters: Dict[str, Any]) -> List[Dict[str, Any]]:
        # A fresh form each time: nothing from an earlier refund carries over.
        return [
            SlotSet(READY_SLOT, response == READY),
            SlotSet("refund_reason", None),
            SlotSet("refund_amount", None),
        ]


def own_refundable_order(session: Session, tracker: Tracker) -> Order | None:
    """The verified customer's order of the order_id slot, when it may be refunded."""
    customer: Customer | None = verified_customer(session, identity_of(tracker))
    order_id = normalize_order_id(tracker.get_slot("order_id")) or ""
    order = session.get(Order, order_id) if customer and order_id else None
    if order is None or order.customer_id != customer.id or refusal(order):  # type: ignore[union-attr]
        return None
    return order


async def refund_limit(tracker: Tracker) -> int | None:
    """The most the order of the order_id slot can have refunded now, or None
    (not the customer's, not refundable, or the database can't be read)."""

    def most() -> int | None:
        with shop_session() as session:
            order = own_refundable_order(session, tracker)
            return refundable_cents(order) if order else None

    return await read_quietly(most, "refund amount")


class ActionAskRefundAmount(Action):
    """The amount question names the most that can be refunded."""

    def name(self) -> str:
        return "action_ask_refund_amount"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        limit = await refund_limit(tracker)
        if limit is None:
            # The order changed or can't be read: the submit step says why.
            dispatcher.utter_message(response="utter_account_lookup_failed")
            return []
        dispatcher.utter_message(response="utter_ask_refund_amount", refund_max=money(limit))
        return []


class ValidateRefundForm(LimitedValidation):
    def name(self) -> str:
        return "validate_refund_form"

    def validate_refund_reason(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
        domain: DomainDict,
    ) -> Dict[str, Any]:
        if not isinstance(slot_value, str):
            return {"refund_reason": None}
        reason = " ".join(slot_value.split())[:MAX_REASON]
        if reason in REASON_CODES or len(reason) >= 2:
            return {"refund_reason": reason}
        return {"refund_reason": None}

    async def validate_refund_amount(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
        domain: DomainDict,
    ) -> Dict[str, Any]:
        if slot_value is None:  # cleared as the form starts: nothing to check
            return {"refund_amount": None}
        amount = parse_amount(slot_value) if isinstance(slot_value, str) else None
        if amount is None or (isinstance(amount, Decimal) and amount <= 0):
            dispatcher.utter_message(response="utter_invalid_refund_amount")
            return {"refund_amount": None}

        limit = await refund_limit(tracker)
        if amount == FULL_AMOUNT:
            return {"refund_amount": str(limit) if limit is not None else FULL_AMOUNT}
        if limit is None:
            # Can't check it now; the submit step checks again and says why.
            return {"refund_amount": str(int(amount * 100))}
        cents = int(amount * 100)  # type: ignore[operator]
        if cents > limit:
            dispatcher.utter_message(response="utter_refund_amount_too_high",
                                     refund_max=money(limit))
            return {"refund_amount": None}
        return {"refund_amount": str(cents)}


class ActionSubmitRefund(ActionOrderStatus):
    """Creates the refund (status requested) after checking order and amount again."""

    topic = "request_refund"
    form_slots = ("refund_reason", "refund_amount")

    def name(self) -> str:
        return "action_submit_refund"

    def about(self, session: Session, order: Order, tracker: Tracker, lang: str) -> Answer:
        # Locked while it is checked and the refund added: two requests at once
        # can't both take the same amount.
        session.refresh(order, with_for_update=True)
        refused = refusal(order)
        if refused:
            return refused
        limit = refundable_cents(order)
        wanted = tracker.get_slot("refund_amount")
        cents = limit if wanted in (None, FULL_AMOUNT) else int(wanted)
        if not 0 < cents <= limit:
            return "utter_refund_amount_too_high", {"refund_max": money(limit)}
        refund = Refund(
            id=next_number(session, Refund, "RF"), order=order, amount_cents=cents,
            reason=tracker.get_slot("refund_reason") or "-", status="requested",
        )
        session.add(refund)
        session.flush()  # the number is taken (or the insert fails and is retried)
        audit(session, identity_of(tracker), self.topic, order.customer, target=order.id,
              detail={"refund_id": refund.id, "amount_cents": cents})
        return "utter_refund_submitted", {
            "order_id": order.id, "refund_id": refund.id, "amount": money(cents)
        }

    def events_for(self, response: str, parameters: Dict[str, Any]) -> List[Dict[str, Any]]:
        return [
            SlotSet(READY_SLOT, None),
            SlotSet("refund_reason", None),
            SlotSet("refund_amount", None),
        ]
