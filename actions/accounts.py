"""Account look-ups for verified customers: wallet balance, points, account details.

Each answer is a domain.yml response filled with the customer's figures; every
look-up (and every refused one) leaves an audit record. A customer whose
channel identity isn't bound to an account is told how to verify, and nothing
about any account. A database that fails gets an apology and the offer of a
person, never silence.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Dict, List, Tuple

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from actions.common import label, language
from actions.forms import gave_up
from actions.shop import (
    audit,
    can_bind,
    identity_of,
    in_thread_retrying,
    logged_in,
    mask_email,
    mask_phone,
    member_level,
    money,
    shop_session,
    verified_customer,
)
from bot.settings import get_settings
from bot.shop.notify import TEXTS, code_hash, new_code, sender
from bot.shop.schema import Customer, VerificationCode

logger = logging.getLogger(__name__)
Answer = Tuple[str, Dict[str, Any]]  # (response name, its parameters)
VERIFIED_SLOT = "customer_verified"
# Whether an order may go on to the form that changes it (refund, address).
READY_SLOT = "task_ready"
# No answer of the action's own: the form that follows asks its question.
READY = ""
# Who isn't verified is told how to become so, by what their channel allows.
NOT_VERIFIED_BINDABLE = "utter_account_not_verified_bind"
NOT_VERIFIED_LOGGED_IN = "utter_account_not_bound"


class AccountLookup(Action):
    """Find the verified customer, audit the access, answer with one response."""

    topic = ""
    not_verified_response = "utter_account_not_verified"
    # The slots of the form this action completes: when one is unfilled the form let
    # go (and said so); the action only clears up.
    form_slots: Tuple[str, ...] = ()

    def name(self) -> str:
        return f"action_{self.topic}"

    def answer(self, customer: Customer, lang: str) -> Answer:
        raise NotImplementedError

    def answer_in(
        self, session: Session, customer: Customer, tracker: Tracker, lang: str
    ) -> Answer:
        """The answer, with the session and tracker at hand (audits the access)."""
        audit(session, identity_of(tracker), self.topic, customer)
        return self.answer(customer, lang)

    def not_verified(self, tracker: Tracker) -> Answer:
        """A WeChat follower or web visitor is offered to verify with a code; an app or
        host-site login that no account knows is offered a person; anyone else is
        told to log in (the action's own response)."""
        if can_bind(tracker):
            return NOT_VERIFIED_BINDABLE, {}
        if logged_in(tracker):
            return NOT_VERIFIED_LOGGED_IN, {}
        return self.not_verified_response, {}

    def is_not_verified(self, response: str) -> bool:
        return response in (self.not_verified_response, NOT_VERIFIED_BINDABLE,
                            NOT_VERIFIED_LOGGED_IN)

    def events_for(self, response: str, parameters: Dict[str, Any]) -> List[Dict[str, Any]]:
        """Events besides the verified flag that an answer brings (none by default)."""
        return []

    def look_up(self, tracker: Tracker) -> Tuple[Answer, Dict[str, Any]]:
        """The answer, and the `member_level` slot of whoever was (or wasn't) verified."""
        identity = identity_of(tracker)
        lang = language(tracker)
        with shop_session() as session:
            customer = verified_customer(session, identity)
            if customer is None:
                audit(session, identity, f"{self.topic}_refused_unverified")
                return self.not_verified(tracker), member_level(None)
            return self.answer_in(session, customer, tracker, lang), member_level(customer)

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[str, Any]
    ) -> List[Dict[str, Any]]:
        if gave_up(tracker, self.form_slots):
            return [SlotSet(READY_SLOT, None), *self.events_for(READY, {})]
        try:
            (response, parameters), level = await in_thread_retrying(
                lambda: self.look_up(tracker)
            )
        except (SQLAlchemyError, OSError):
            logger.exception("%s: the shop database (or the SMS sender) failed", self.name())
            dispatcher.utter_message(response="utter_account_lookup_failed")
            # Still an event: the apology is said (the dialogue reads no events as a
            # failed call and would apologise again).
            return [SlotSet(READY_SLOT, False)]
        # Sent only after the audit record is committed.
        if response != READY:
            dispatcher.utter_message(response=response, **parameters)
        # Always an event: the dialogue tells a failed call by its having none.
        return [
            SlotSet(VERIFIED_SLOT, not self.is_not_verified(response)),
            level,
            *self.events_for(response, parameters),
        ]



class ActionCheckBalance(AccountLookup):
    topic = "check_balance"

    def answer(self, customer: Customer, lang: str) -> Answer:
        return "utter_balance", {"balance": money(customer.wallet_cents)}


class ActionCheckPoints(AccountLookup):
    topic = "check_points"

    def answer(self, customer: Customer, lang: str) -> Answer:
        return "utter_points", {
            "points": f"{customer.points:,}", "level": label(f"level_{customer.level}", lang)
        }


class ActionAccountInfo(AccountLookup):
    topic = "account_info"

    def answer(self, customer: Customer, lang: str) -> Answer:
        return "utter_account_info", {
            "name": customer.name,
            "level": label(f"level_{customer.level}", lang),
            "phone": mask_phone(customer.phone),
            "email": mask_email(customer.email),
            "since": customer.created_at.strftime("%Y-%m-%d"),
        }


RESET_CODE_MINUTES = 5


class ActionResetPassword(AccountLookup):
    """A verified customer gets a reset code on the account's phone, never in the chat;
    anyone else gets the self-service steps (utter_reset_password)."""

    topic = "reset_password"
    not_verified_response = "utter_reset_password"

    def not_verified(self, tracker: Tracker) -> Answer:
        # Anyone can reset a password on the login page; no need to verify here.
        return self.not_verified_response, {}

    def answer_in(
        self, session: Session, customer: Customer, tracker: Tracker, lang: str
    ) -> Answer:
        code = new_code()
        channel, subject = identity_of(tracker) or ("", "")
        now = dt.datetime.now(dt.timezone.utc)
        session.add(VerificationCode(
            purpose="password_reset", channel=channel, subject=subject,
            customer_id=customer.id, code_hash=code_hash(code, f"password_reset:{subject}"),
            created_at=now, expires_at=now + dt.timedelta(minutes=RESET_CODE_MINUTES),
        ))
        audit(session, identity_of(tracker), self.topic, customer,
              detail={"sent_to": mask_phone(customer.phone)})
        session.flush()  # the code is stored before it is sent
        text = TEXTS["password_reset"][lang].format(code=code, minutes=RESET_CODE_MINUTES)
        sender(get_settings()).send(customer.phone, text)
        return "utter_reset_code_sent", {
            "phone": mask_phone(customer.phone), "minutes": str(RESET_CODE_MINUTES)
        }
