"""Leaving a message: the ticket form (the message, then how to reach the
customer) and the ticket with its number and the time a reply is promised by.

Anyone may leave a message; a verified customer's ticket is linked to their
account and may use the account's phone ("use my account's phone" button, the
number never shown in full). The promise counts working time only
(business_hours.yml): a message left at night is answered the next morning.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from functools import lru_cache
from typing import Any, Dict, List

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.exc import SQLAlchemyError

from actions.accounts import READY_SLOT
from actions.common import language
from actions.forms import LimitedValidation, gave_up
from actions.shop import (
    audit,
    clean_mobile,
    identity_of,
    in_thread_retrying,
    mask_email,
    mask_phone,
    next_number,
    read_quietly,
    shop_session,
    verified_customer,
)
from bot import hours
from bot.shop.schema import CHANNELS, Ticket

logger = logging.getLogger(__name__)

MAX_MESSAGE = 2000
# The reply we promise: this much of opening time from when the message is left.
REPLY_WITHIN = dt.timedelta(hours=4)
ACCOUNT_CONTACT = "account"  # the button's value: the account's own phone
_EMAIL = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+")
_OTHER_PHONE = re.compile(r"\+?\d{7,15}")


def clean_contact(text: str) -> str | None:
    """A phone number (digits only) or an e-mail address, or None."""
    value = text.strip().rstrip("。.")
    if _EMAIL.fullmatch(value):
        return value.lower()
    mobile = clean_mobile(value)
    if mobile:
        return mobile
    digits = re.sub(r"[\s()\-]", "", value)
    return digits if _OTHER_PHONE.fullmatch(digits) else None


def masked_contact(contact: str) -> str:
    return mask_email(contact) if "@" in contact else mask_phone(contact)


@lru_cache(maxsize=1)
def business_hours() -> hours.BusinessHours:
    return hours.configured()


def reply_by(now: dt.datetime, lang: str) -> str:
    """When the reply is promised, in the shop's timezone, as the customer reads it."""
    opening = business_hours()
    due = opening.add_working_time(now, REPLY_WITHIN)
    if due is None:  # not open within a month: promise the usual working days
        due = now + dt.timedelta(days=2)
    local = due.astimezone(opening.timezone)
    if lang == "zh":
        return f"{local.month}月{local.day}日 {local:%H:%M}"
    return f"{local:%H:%M} on {local:%a %d %b}"


class ActionAskTicketContact(Action):
    """A verified customer may answer with the account's phone (a button)."""

    def name(self) -> str:
        return "action_ask_ticket_contact"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        def account_phone() -> str | None:
            with shop_session() as session:
                customer = verified_customer(session, identity_of(tracker))
                return customer.phone if customer else None

        phone = await read_quietly(account_phone, "ticket contact")  # None: the plain question
        if phone:
            dispatcher.utter_message(response="utter_ask_ticket_contact_account",
                                     phone=mask_phone(phone))
        else:
            dispatcher.utter_message(response="utter_ask_ticket_contact")
        return []


class ValidateTicketForm(LimitedValidation):
    def name(self) -> str:
        return "validate_ticket_form"

    def validate_ticket_message(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
        domain: DomainDict,
    ) -> Dict[str, Any]:
        text = slot_value.strip() if isinstance(slot_value, str) else ""
        return {"ticket_message": text[:MAX_MESSAGE] if len(text) >= 2 else None}

    def validate_ticket_contact(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
        domain: DomainDict,
    ) -> Dict[str, Any]:
        if slot_value is None:
            return {"ticket_contact": None}
        if slot_value == ACCOUNT_CONTACT:
            return {"ticket_contact": ACCOUNT_CONTACT}
        contact = clean_contact(slot_value) if isinstance(slot_value, str) else None
        if contact is None:
            dispatcher.utter_message(response="utter_invalid_contact")
        return {"ticket_contact": contact}


class ActionCreateTicket(Action):
    """The ticket, linked to the account when the customer is verified."""

    def name(self) -> str:
        return "action_create_ticket"

    def create(self, tracker: Tracker) -> Dict[str, str] | None:
        identity = identity_of(tracker)
        lang = language(tracker)
        message = tracker.get_slot("ticket_message")
        contact = tracker.get_slot("ticket_contact")
        with shop_session() as session:
            customer = verified_customer(session, identity)
            if contact == ACCOUNT_CONTACT:
                contact = customer.phone if customer else None
            if not message or not contact:
                return None
            channel = identity[0] if identity and identity[0] in CHANNELS else "web"
            now = dt.datetime.now(dt.timezone.utc)
            ticket = Ticket(
                id=next_number(session, Ticket, "TK"),
                customer_id=customer.id if customer else None,
                conversation_id=tracker.sender_id, channel=channel, contact=contact,
                message=message, language=lang, status="open", created_at=now,
            )
            session.add(ticket)
            session.flush()
            audit(session, identity, "leave_message", customer, target=ticket.id)
            return {
                "ticket_id": ticket.id, "contact": masked_contact(contact),
                "reply_by": reply_by(now, lang),
            }

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        if gave_up(tracker, ["ticket_message", "ticket_contact"]):
            return [SlotSet("ticket_message", None), SlotSet("ticket_contact", None)]
        created: Dict[str, str] | None = None
        try:
            created = await in_thread_retrying(lambda: self.create(tracker))
        except SQLAlchemyError:
            logger.exception("leave message: the shop database failed")
            # The message stays in the slots (and the transcript): nothing is lost.
            dispatcher.utter_message(response="utter_technical_trouble")
            return [SlotSet(READY_SLOT, None)]
        if created is None:  # "the account's phone" but the binding went meanwhile
            dispatcher.utter_message(response="utter_technical_trouble")
            return [SlotSet("ticket_contact", None)]
        dispatcher.utter_message(response="utter_ticket_created", **created)
        return [SlotSet("ticket_message", None), SlotSet("ticket_contact", None)]
