"""Order actions: the order-number form.

What happens once the form has the number is chosen by rules on the
`order_request` slot (status, cancel, refund, refund_status). The questions are
domain responses per request (`utter_ask_order_id_cancel`: "Which order would
you like to cancel?"), so switching from one request to another asks a question
of its own.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, Dict, List

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.orm import Session

from actions.accounts import AccountLookup, Answer
from actions.common import language
from actions.shop import (
    audit,
    identity_of,
    money,
    read_quietly,
    shop_session,
    verified_customer,
)
from bot.shop.schema import Customer, Order

logger = logging.getLogger(__name__)
_ORDER_ID = re.compile(r"(?:JM)?(\d{12})", re.IGNORECASE)
# The question for each order_request ("Which order would you like to cancel?").
ASK_ORDER_ID = {
    "status": "utter_ask_order_id",
    "cancel": "utter_ask_order_id_cancel",
    "refund": "utter_ask_order_id_refund",
    "refund_status": "utter_ask_order_id_refund_status",
    "address": "utter_ask_order_id_address",
}


def normalize_order_id(value: Any) -> str | None:
    """Canonical form JM + 12 digits, or None when it isn't an order number."""
    if not isinstance(value, str):
        return None
    match = _ORDER_ID.fullmatch(value.strip().replace(" ", ""))
    return f"JM{match.group(1)}" if match else None


class ValidateOrderForm(FormValidationAction):
    def name(self) -> str:
        return "validate_order_form"

    def validate_order_id(
        self,
        slot_value: Any,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> Dict[str, Any]:
        order_id = normalize_order_id(slot_value)
        if order_id is None:
            dispatcher.utter_message(response="utter_invalid_order_id")
        return {"order_id": order_id}


class ActionAskOrderId(Action):
    """The form's question for the order number; shorter when asked again."""

    def name(self) -> str:
        return "action_ask_order_id"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        # The form sets requested_slot when it asks, so it is already ours on a re-ask.
        if tracker.get_slot("requested_slot") == "order_id":
            dispatcher.utter_message(response="utter_ask_order_id_again")
            return []
        request = tracker.get_slot("order_request")
        buttons = await recent_order_buttons(tracker)
        dispatcher.utter_message(
            response=ASK_ORDER_ID.get(request, "utter_ask_order_id"), buttons=buttons
        )
        return []


RECENT_ORDERS = 5


async def recent_order_buttons(tracker: Tracker) -> List[Dict[str, str]]:
    """A verified customer's recent orders as buttons (none for anyone else, or
    when the database can't be read: the question alone still works)."""
    lang = language(tracker)

    def look_up() -> List[Dict[str, str]]:
        with shop_session() as session:
            customer = verified_customer(session, identity_of(tracker))
            if customer is None:
                return []
            buttons = []
            for order in customer.orders[:RECENT_ORDERS]:
                item = order.items[0].name_zh if lang == "zh" else order.items[0].name_en
                buttons.append({
                    "title": f"{order.id} · {item}",
                    "payload": f'/inform{{"order_id": "{order.id}"}}',
                })
            return buttons

    return await read_quietly(look_up, "recent orders") or []


# One response per shipping state (bot.shop.schema.ORDER_STATES).
STATUS_RESPONSES = {
    "pending_payment": "utter_order_status_pending_payment",
    "paid": "utter_order_status_paid",
    "dispatched": "utter_order_status_dispatched",
    "in_transit": "utter_order_status_in_transit",
    "delivered": "utter_order_status_delivered",
    "cancelled": "utter_order_status_cancelled",
    "refunded": "utter_order_status_refunded",
}


class ActionOrderStatus(AccountLookup):
    """Where the verified customer's order is. An order number that isn't theirs
    gets the same answer as one that doesn't exist: nothing is revealed."""

    topic = "order_status"
    not_verified_response = "utter_order_not_verified"

    def not_verified(self, tracker: Tracker) -> Answer:
        response, parameters = super().not_verified(tracker)
        if response == self.not_verified_response:  # the number echoed: "order X: log in"
            parameters = {"order_id": tracker.get_slot("order_id")}
        return response, parameters

    def own_order(
        self, session: Session, customer: Customer, tracker: Tracker
    ) -> Order | Answer:
        """The customer's order the slot names, or the "not found" answer (the same
        for an order of someone else's as for one that doesn't exist; audited)."""
        order_id = normalize_order_id(tracker.get_slot("order_id")) or ""
        order = session.get(Order, order_id) if order_id else None
        if order is None or order.customer_id != customer.id:
            audit(session, identity_of(tracker), f"{self.topic}_not_found", customer,
                  target=order_id[:14])
            return "utter_order_not_found", {"order_id": order_id or "-"}
        return order

    def answer_in(
        self, session: Session, customer: Customer, tracker: Tracker, lang: str
    ) -> Answer:
        order = self.own_order(session, customer, tracker)
        if not isinstance(order, Order):
            return order
        return self.about(session, order, tracker, lang)

    def about(self, session: Session, order: Order, tracker: Tracker, lang: str) -> Answer:
        """The answer about the customer's own order."""
        audit(session, identity_of(tracker), self.topic, order.customer, target=order.id)
        return STATUS_RESPONSES[order.status], order_facts(order, lang)


def order_facts(order: Order, lang: str) -> Dict[str, Any]:
    """What the order-status responses fill in."""
    first = order.items[0]
    name = first.name_zh if lang == "zh" else first.name_en
    count = sum(item.quantity for item in order.items)
    return {
        "order_id": order.id,
        "item": name,
        "count": str(count),
        "carrier": order.carrier or "-",
        "tracking_number": order.tracking_number or "-",
        "date": (order.delivered_at or order.dispatched_at or order.cancelled_at
                 or order.created_at).strftime("%Y-%m-%d"),
    }


REFUND_RESPONSES = {
    "requested": "utter_refund_status_requested",
    "approved": "utter_refund_status_approved",
    "paid": "utter_refund_status_paid",
    "rejected": "utter_refund_status_rejected",
}


class ActionRefundStatus(ActionOrderStatus):
    """Where the refund on a verified customer's order is (the latest one)."""

    topic = "refund_status"

    def about(self, session: Session, order: Order, tracker: Tracker, lang: str) -> Answer:
        audit(session, identity_of(tracker), self.topic, order.customer, target=order.id)
        if not order.refunds:
            return "utter_refund_status_none", {"order_id": order.id}
        refund = max(order.refunds, key=lambda r: r.created_at)
        return REFUND_RESPONSES[refund.status], {
            "order_id": order.id,
            "refund_id": refund.id,
            "amount": money(refund.amount_cents),
            "date": refund.updated_at.strftime("%Y-%m-%d"),
        }


CANCEL_PENDING_SLOT = "cancel_pending"
# Why an order can't be cancelled any more, by its state.
CANCEL_REFUSED = {
    "dispatched": "utter_cancel_refused_shipped",
    "in_transit": "utter_cancel_refused_shipped",
    "delivered": "utter_cancel_refused_shipped",
    "cancelled": "utter_cancel_refused_closed",
    "refunded": "utter_cancel_refused_closed",
}


class ActionCancelOrder(ActionOrderStatus):
    """Cancelling a verified customer's order: only before dispatch, and only once
    they confirm (the next turn); after dispatch, refused with the reason."""

    topic = "cancel_order"

    def about(self, session: Session, order: Order, tracker: Tracker, lang: str) -> Answer:
        identity, customer = identity_of(tracker), order.customer
        if order.status in CANCEL_REFUSED:
            audit(session, identity, "cancel_order_refused", customer, target=order.id,
                  detail={"status": order.status})
            return CANCEL_REFUSED[order.status], order_facts(order, lang)
        audit(session, identity, "cancel_order_asked", customer, target=order.id)
        facts = order_facts(order, lang)
        return "utter_confirm_cancel", {**facts, "total": money(order.total_cents)}

    def events_for(self, response: str, parameters: Dict[str, Any]) -> List[Dict[str, Any]]:
        # The order asked about, for the yes or no of the next turn; else nothing pending.
        asked = response == "utter_confirm_cancel"
        return [SlotSet(CANCEL_PENDING_SLOT, parameters["order_id"] if asked else None)]


def _confirms(tracker: Tracker, pending: str) -> bool:
    """A yes to cancelling `pending`: "yes", or "cancel it" ("是的，取消吧") naming no
    other order (one naming another order is not a yes to this one)."""
    intent = tracker.get_intent_of_latest_message()
    if intent == "affirm":
        return True
    named = {str(e.get("value") or "").upper() for e in tracker.latest_message.get("entities", [])
             if e.get("entity") == "order_id"}
    return intent == "cancel_order" and named <= {pending.upper()}


class ActionCancelConfirmed(AccountLookup):
    """The customer's yes or no to "cancel order X?" (asked the turn before)."""

    topic = "cancel_confirmed"
    not_verified_response = "utter_account_not_verified"

    def answer_in(
        self, session: Session, customer: Customer, tracker: Tracker, lang: str
    ) -> Answer:
        pending = tracker.get_slot(CANCEL_PENDING_SLOT)
        identity = identity_of(tracker)
        if not pending or not _confirms(tracker, pending):
            audit(session, identity, "cancel_order_kept", customer, target=pending)
            return "utter_cancel_kept", {"order_id": pending or "-"}
        order = session.get(Order, pending, with_for_update=True)
        if order is None or order.customer_id != customer.id:
            return "utter_order_not_found", {"order_id": pending}
        if order.status in CANCEL_REFUSED:  # it moved on since the question
            return CANCEL_REFUSED[order.status], order_facts(order, lang)
        order.status = "cancelled"
        order.cancelled_at = dt.datetime.now(dt.timezone.utc)
        audit(session, identity, "cancel_order", customer, target=order.id)
        return "utter_order_cancelled", order_facts(order, lang)

    def events_for(self, response: str, parameters: Dict[str, Any]) -> List[Dict[str, Any]]:
        return [SlotSet(CANCEL_PENDING_SLOT, None)]  # answered: nothing pending
