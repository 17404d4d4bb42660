"""Binding a WeChat follower or an anonymous web visitor to their account with a
one-time code sent to the account's phone.

- The customer gives the account's phone number; whether or not it belongs to
  an account, the bot says the same ("if it is an account's phone, a code was
  sent"), so the chat can't be used to find out who is a customer.
- A code is 6 digits, stored hashed, valid for CODE_MINUTES.
- MAX_WRONG wrong codes within LOCK_MINUTES (whatever phone was given, with or
  without a code sent) lock binding for this channel identity until they age
  out; at most MAX_SENDS codes go out per identity and per phone in that time.
- Every code sent, wrong code, lock and binding leaves an audit record.

The checks run in `validate_bind_form` (the form asks again after a wrong code);
`action_bind_done` tells the result.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, Dict, List, Tuple

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from actions.accounts import READY_SLOT, VERIFIED_SLOT
from actions.common import language
from actions.forms import LimitedValidation
from actions.shop import (
    ChannelIdentity,
    audit,
    can_bind,
    clean_mobile,
    identity_of,
    in_thread,
    logged_in,
    mask_name,
    mask_phone,
    member_level,
    read_quietly,
    shop_session,
    verified_customer,
)
from bot.settings import get_settings
from bot.shop.notify import TEXTS, code_hash, code_matches, new_code, sender
from bot.shop.schema import AuditRecord, Customer, Identity, VerificationCode

logger = logging.getLogger(__name__)

CODE_MINUTES = 5
MAX_WRONG = 5
MAX_SENDS = 3
LOCK_MINUTES = 15
# bind_code's values once the form is done (the code itself is never kept).
VERIFIED, LOCKED = "verified", "locked"
_CODE = re.compile(r"\d{6}")

Reply = Tuple[Dict[str, Any], str | None, Dict[str, Any]]  # slots, response, its parameters


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _count(session: Session, identity: ChannelIdentity, action: str, since: dt.datetime,
           target: str | None = None) -> int:
    channel, subject = identity
    query = select(func.count()).select_from(AuditRecord).where(
        AuditRecord.action == action, AuditRecord.at >= since,
    )
    if target is None:
        query = query.where(AuditRecord.channel == channel, AuditRecord.subject == subject)
    else:
        query = query.where(AuditRecord.target == target)
    return int(session.scalar(query) or 0)


def wrong_codes(session: Session, identity: ChannelIdentity) -> int:
    since = _now() - dt.timedelta(minutes=LOCK_MINUTES)
    return _count(session, identity, "bind_code_wrong", since)


def locked(session: Session, identity: ChannelIdentity) -> bool:
    return wrong_codes(session, identity) >= MAX_WRONG


def _latest_send(session: Session, identity: ChannelIdentity) -> AuditRecord | None:
    channel, subject = identity
    return session.scalars(
        select(AuditRecord)
        .where(AuditRecord.channel == channel, AuditRecord.subject == subject,
               AuditRecord.action == "bind_code_sent")
        .order_by(AuditRecord.id.desc())
    ).first()


def _salt(identity: ChannelIdentity) -> str:
    return f"bind:{identity[0]}:{identity[1]}"


class ActionBindStart(Action):
    """Whether this customer can and needs to verify; READY opens the form."""

    def name(self) -> str:
        return "action_bind_start"

    def check(self, tracker: Tracker) -> Tuple[str | None, Dict[str, Any], List[Dict[str, Any]]]:
        """The answer (None: the form may start), its parameters, and the verified
        customer's slots when there is one already."""
        identity = identity_of(tracker)
        if identity is None or not (can_bind(tracker) or logged_in(tracker)):
            return "utter_bind_unavailable", {}, []
        with shop_session() as session:
            customer = verified_customer(session, identity)
            if customer is not None:
                return ("utter_bind_already", {"name": mask_name(customer.name)},
                        [SlotSet(VERIFIED_SLOT, True), member_level(customer)])
            if not can_bind(tracker):  # a login no account knows: a person sorts it out
                return "utter_account_not_bound", {}, []
            if locked(session, identity):
                return "utter_bind_locked", {"minutes": str(LOCK_MINUTES)}, []
        return None, {}, []

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        try:
            response, parameters, verified = await in_thread(lambda: self.check(tracker))
        except SQLAlchemyError:
            logger.exception("binding: the shop database failed")
            response, parameters, verified = "utter_account_lookup_failed", {}, []
        if response:
            dispatcher.utter_message(response=response, **parameters)
        return [
            SlotSet(READY_SLOT, response is None),
            SlotSet("bind_phone", None),
            SlotSet("bind_code", None),
            *verified,
        ]


class ValidateBindForm(LimitedValidation):
    # A wrong code has its own limit (MAX_WRONG, then a lock).
    own_limit_responses = frozenset({"utter_bind_code_wrong"})

    def name(self) -> str:
        return "validate_bind_form"

    async def _run(self, dispatcher: CollectingDispatcher, work: Any) -> Dict[str, Any]:
        try:
            slots, response, parameters = await in_thread(work)
        except (SQLAlchemyError, OSError):
            logger.exception("binding: the shop database (or the SMS sender) failed")
            dispatcher.utter_message(response="utter_account_lookup_failed")
            return {"bind_phone": LOCKED, "bind_code": LOCKED}  # ends the form
        if response:
            dispatcher.utter_message(response=response, **parameters)
        return slots

    async def validate_bind_phone(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
        domain: DomainDict,
    ) -> Dict[str, Any]:
        if slot_value is None:  # cleared as the form starts: nothing to check
            return {"bind_phone": None}
        phone = clean_mobile(slot_value) if isinstance(slot_value, str) else None
        identity = identity_of(tracker)
        if phone is None or identity is None:
            dispatcher.utter_message(response="utter_invalid_phone")
            return {"bind_phone": None}
        lang = language(tracker)
        return await self._run(dispatcher, lambda: self.send_code(identity, phone, lang))

    def send_code(self, identity: ChannelIdentity, phone: str, lang: str) -> Reply:
        since = _now() - dt.timedelta(minutes=LOCK_MINUTES)
        with shop_session() as session:
            too_many = (
                locked(session, identity)
                or _count(session, identity, "bind_code_sent", since) >= MAX_SENDS
                or _count(session, identity, "bind_code_sent", since,
                          target=mask_phone(phone)) >= MAX_SENDS
            )
            if too_many:
                audit(session, identity, "bind_refused_too_many")
                return ({"bind_phone": LOCKED, "bind_code": LOCKED}, "utter_bind_locked",
                        {"minutes": str(LOCK_MINUTES)})
            customer = session.scalars(select(Customer).where(Customer.phone == phone)).first()
            # The audit trail may say whether it matched; the customer is never told.
            audit(session, identity, "bind_code_sent", customer, target=mask_phone(phone),
                  detail={"matched": customer is not None})
            if customer is not None:
                code = new_code()
                now = _now()
                session.add(VerificationCode(
                    purpose="bind", channel=identity[0], subject=identity[1],
                    customer_id=customer.id, code_hash=code_hash(code, _salt(identity)),
                    created_at=now, expires_at=now + dt.timedelta(minutes=CODE_MINUTES),
                ))
                session.flush()  # stored before it is sent
                text = TEXTS["bind"][lang].format(code=code, minutes=CODE_MINUTES)
                sender(get_settings()).send(customer.phone, text)
        return ({"bind_phone": phone}, "utter_bind_code_sent",
                {"phone": mask_phone(phone), "minutes": str(CODE_MINUTES)})

    async def validate_bind_code(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
        domain: DomainDict,
    ) -> Dict[str, Any]:
        code = re.sub(r"\s", "", slot_value) if isinstance(slot_value, str) else ""
        identity = identity_of(tracker)
        if identity is None or not _CODE.fullmatch(code):
            return {"bind_code": None}  # the form asks for the 6 digits again
        return await self._run(dispatcher, lambda: self.check_code(identity, code))

    def check_code(self, identity: ChannelIdentity, code: str) -> Reply:
        now = _now()
        with shop_session() as session:
            if locked(session, identity):
                return ({"bind_code": LOCKED}, "utter_bind_locked",
                        {"minutes": str(LOCK_MINUTES)})
            sent = _latest_send(session, identity)
            sent_at = sent.at if sent else None
            if sent_at is not None and sent_at.tzinfo is None:  # SQLite keeps no zone
                sent_at = sent_at.replace(tzinfo=dt.timezone.utc)
            # Expired alike whether or not the phone matched an account.
            if sent_at is None or now - sent_at > dt.timedelta(minutes=CODE_MINUTES):
                return ({"bind_phone": None, "bind_code": None}, "utter_bind_code_expired", {})
            stored = session.scalars(
                select(VerificationCode)
                .where(VerificationCode.purpose == "bind",
                       VerificationCode.channel == identity[0],
                       VerificationCode.subject == identity[1],
                       VerificationCode.used_at.is_(None),
                       VerificationCode.expires_at > now)
                .order_by(VerificationCode.id.desc())
                .with_for_update()
            ).first()
            if stored is not None and code_matches(code, _salt(identity), stored.code_hash):
                stored.used_at = now
                customer = session.get(Customer, stored.customer_id)
                session.add(Identity(customer=customer, channel=identity[0],
                                     subject=identity[1], bound_by="sms_code"))
                audit(session, identity, "bind_account", customer)
                return {"bind_code": VERIFIED}, None, {}
            if stored is not None:
                stored.attempts += 1
            audit(session, identity, "bind_code_wrong")
            session.flush()
            left = MAX_WRONG - wrong_codes(session, identity)
            if left <= 0:
                if stored is not None:
                    stored.used_at = now  # burnt
                audit(session, identity, "bind_locked")
                return ({"bind_code": LOCKED}, "utter_bind_locked",
                        {"minutes": str(LOCK_MINUTES)})
            return {"bind_code": None}, "utter_bind_code_wrong", {"left": str(left)}


class ActionBindDone(Action):
    def name(self) -> str:
        return "action_bind_done"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[str, Any]]:
        verified = tracker.get_slot("bind_code") == VERIFIED
        level: List[Dict[str, Any]] = []
        if verified:
            def found() -> Tuple[str, Dict[str, Any]] | None:
                with shop_session() as session:
                    customer = verified_customer(session, identity_of(tracker))
                    return (mask_name(customer.name), member_level(customer)) if customer else None

            bound = await read_quietly(found, "binding")
            if bound:
                dispatcher.utter_message(response="utter_bind_done", name=bound[0])
                # Bound mid-session: desk.yml's direct rules count from now on.
                level = [bound[1]]
            else:
                dispatcher.utter_message(response="utter_account_lookup_failed")
                verified = False
        # A lock was told when it happened; nothing more to say.
        return [
            SlotSet("bind_phone", None),
            SlotSet("bind_code", None),
            SlotSet(READY_SLOT, None),
            SlotSet(VERIFIED_SLOT, verified),
            *level,
        ]
