"""A conversation fuzzer: random customers against the real dialogue, in process.

Customers are drawn from a seeded generator: the training examples of every
intent and FAQ answer in both languages, plus order numbers, wrong numbers,
emoji, typed payloads ("/restart", `/inform{…}`, "\u3000/restart"), clicks on
the bot's buttons and numbers picking them, very long text, gibberish, two
requests in one message and language switches, in any order. Every turn goes
through Rasa's `Agent` (NLU, policies, the action server) with a customer
channel's metadata, and every turn is checked against the dialogue's invariant:

- at least one bot message;
- every bot message in the language of the customer's message (of the
  conversation, for messages without words);
- no unfilled template ("{order_id}", "None") and no error text;
- no form asks the same question more than twice in a row.

A failing conversation is shrunk (turns dropped while it still fails) so the
report is the shortest one found. Used by tests/test_dialogue_fuzz.py and
bench/dialogue.py.
"""

from __future__ import annotations

import asyncio
import random
import re
import string
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List

import yaml

from bot.nlu.language import message_language

ROOT = Path(__file__).resolve().parent.parent
MAX_ASKS = 2
CUSTOMER = {
    "channel": "web",
    "identity": {"channel": "web", "subject": "v-fuzz", "verified_by": "visitor_token"},
}
# Customers whose identity is bound to an account of their own in the demo data
# (bind_fuzz_customers): their look-ups answer from the database, and what they
# change (a cancelled order) touches no account other tests read.
VERIFIED = [
    {
        "channel": "web",
        "identity": {"channel": "web", "subject": "fuzz-zh", "verified_by": "host_hmac",
                     "customer": True},
    },
    {
        "channel": "app",
        "identity": {"channel": "app", "subject": "fuzz-en", "verified_by": "jwt",
                     "customer": True},
    },
]


def bind_fuzz_customers(shop_url: str) -> None:
    """Bind VERIFIED's identities to the zh and the en demo customer (beyond the
    named ones) with the most orders."""
    from sqlalchemy import select

    from bot.shop import database, demo
    from bot.shop.schema import Customer, Identity

    named = len(demo.DEMO_CUSTOMERS)
    with database.session(shop_url) as session:
        others = session.scalars(select(Customer).where(Customer.id > named)).all()
        for entry in VERIFIED:
            identity = entry["identity"]
            language = "zh" if identity["subject"].endswith("zh") else "en"
            chosen = max(
                (c for c in others if c.language == language), key=lambda c: len(c.orders)
            )
            session.add(Identity(customer_id=chosen.id, channel=identity["channel"],
                                 subject=identity["subject"], bound_by="seed"))
TYPED_PAYLOADS = [
    "/restart",
    "\u3000/restart",
    " /restart",
    "\u200b/restart",
    "／restart",
    '/inform{"order_id": "JM202411230456"}',
    "/human_handoff",
    "/nlu_fallback",
    "/out_of_scope",
    "/order_status",
    "/greet",
    "/session_start",
    "/back",
]
EMOJI = ["👍", "😂😂😂", "🙏", "😡", "❤️", "🤔", "👌👌"]
CONNECTORS = {
    "zh": ["，", "，顺便问下", "，另外", "。还有", " "],
    "en": [" and ", ". Also, ", ", plus ", "? "],
}
FORM_ANSWERS = {
    "zh": ["{phone}", "+86 {phone}", "{code}", "北京市朝阳区建国路 88 号 3 单元 501",
           "{amount}元", "¥{amount}", "全额", "收到的东西是坏的", "张三 {phone}",
           "test@example.com", "杭州西湖区文三路 90 号"],
    "en": ["{phone}", "{code}", "Flat 5, 12 Nanjing Road, Shanghai 200001", "${amount}",
           "{amount}", "full refund", "it arrived broken", "jane@example.com",
           "my number is {phone}"],
}
# What a form says when it ends without its answer (bot.policies.dialogue).
FORM_ENDED = {"utter_task_let_go", "utter_task_stopped"}
_TEMPLATE = re.compile(r"\{[A-Za-z_]+\}|\bNone\b")
# What Rasa or a crashed action would say: never what a customer should see.
_ERROR_TEXTS = ("Traceback", "Exception", "Internal Server Error", "utter_")


@dataclass
class Step:
    """One customer turn: fixed text, or a click/number chosen from the bot's last turn."""

    kind: str
    text: str = ""
    language: str = "zh"
    customer: bool = True  # sent with a customer channel's metadata

    def resolve(self, last_buttons: List[Dict[str, str]], rng: random.Random) -> str:
        if self.kind == "click" and last_buttons:
            return rng.choice(last_buttons)["payload"]
        if self.kind == "click":
            return "1"
        return self.text


@dataclass
class Exchange:
    text: str
    understood: str
    intent: str | None
    bot: List[Dict[str, Any]]


@dataclass
class Outcome:
    steps: List[Step]
    exchanges: List[Exchange] = field(default_factory=list)
    violation: str | None = None
    # The failing turn's tracker events, for the report.
    events: List[str] = field(default_factory=list)

    def report(self) -> str:
        lines = [f"violation: {self.violation}"]
        for number, ex in enumerate(self.exchanges, 1):
            lines.append(
                f"  {number}. customer: {ex.text!r}  (understood {ex.understood!r}, {ex.intent})"
            )
            if not ex.bot:
                lines.append("       bot: <nothing>")
            for message in ex.bot:
                buttons = [b.get("title") for b in message.get("buttons") or []]
                shown = (message.get("text") or "").replace("\n", " ")[:110]
                lines.append(f"       bot: {shown!r} {buttons if buttons else ''}")
        if self.events:
            lines.append("  events of the failing turn:")
            lines.extend(f"    {event}" for event in self.events)
        return "\n".join(lines)


def training_examples() -> Dict[str, Dict[str, List[str]]]:
    """{language: {intent or faq/key: [examples]}} from data/nlu."""
    found: Dict[str, Dict[str, List[str]]] = {}
    for language in ("zh", "en"):
        by_intent: Dict[str, List[str]] = {}
        for path in sorted((ROOT / "data" / "nlu" / language).glob("*.yml")):
            for block in yaml.safe_load(path.read_text(encoding="utf-8")).get("nlu") or []:
                if "intent" not in block:
                    continue
                texts = [
                    re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", line[2:].strip())
                    for line in block["examples"].splitlines()
                    if line.strip().startswith("- ")
                ]
                by_intent.setdefault(block["intent"], []).extend(t for t in texts if t)
        found[language] = by_intent
    return found


class Customers:
    """Seeded random customers."""

    def __init__(self, seed: int, examples: Dict[str, Dict[str, List[str]]] | None = None):
        self.rng = random.Random(seed)
        self.examples = examples or training_examples()

    def example(self, language: str, intent: str | None = None) -> str:
        intents = self.examples[language]
        intent = intent or self.rng.choice(sorted(intents))
        return self.rng.choice(intents[intent])

    def conversation(self, turns: int) -> List[Step]:
        rng = self.rng
        language = rng.choice(["zh", "en"])
        steps: List[Step] = []
        for _ in range(turns):
            if rng.random() < 0.15:
                language = "en" if language == "zh" else "zh"
            steps.append(self.step(language))
        return steps

    def step(self, language: str) -> Step:
        rng = self.rng
        roll = rng.random()
        customer = rng.random() < 0.85
        if roll < 0.46:
            return Step("example", self.example(language), language, customer)
        if roll < 0.52:
            # What the shop's forms ask for: a phone, a code, an address, an amount, an email.
            answer = rng.choice(FORM_ANSWERS[language])
            return Step("form_answer", answer.format(
                phone=f"1{rng.choice('3589')}{rng.randint(0, 10**9 - 1):09d}",
                code=f"{rng.randint(0, 999_999):06d}", amount=rng.choice(["9.9", "50", "500"]),
            ), language, customer)
        if roll < 0.60:
            return Step("click", language=language, customer=customer)
        if roll < 0.66:
            return Step("number", str(rng.randint(1, 6)), language, customer)
        if roll < 0.72:
            digits = "".join(rng.choice(string.digits) for _ in range(12))
            form = rng.choice(["JM{d}", "{d}", "jm {d}", "订单号JM{d}", "my order is JM{d}"])
            return Step("order_id", form.format(d=digits), language, customer)
        if roll < 0.75:
            wrong = rng.choice(["12345", "JM2024", "13812345678", "0", "99999999"])
            return Step("wrong_number", wrong, language, customer)
        if roll < 0.79:
            return Step("emoji", rng.choice(EMOJI), language, customer)
        if roll < 0.86:
            return Step("payload", rng.choice(TYPED_PAYLOADS), language, True)
        if roll < 0.93:
            first, second = self.example(language), self.example(language)
            joined = first + rng.choice(CONNECTORS[language]) + second
            return Step("two_requests", joined, language, customer)
        if roll < 0.95:
            long = " ".join(self.example(language) for _ in range(rng.randint(60, 150)))
            return Step("long", long, language, customer)
        noise = "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(rng.randint(3, 25)))
        return Step("gibberish", noise.strip() or "zzz", language, customer)


class Checker:
    """The invariant, turn by turn, for one conversation."""

    def __init__(self) -> None:
        self.language = "zh"  # the language slot's initial value
        self.ask_key: str | None = None
        self.ask_run = 0

    def check(self, understood: str, bot: List[Dict[str, Any]]) -> str | None:
        """The first violation in this turn, described, or None."""
        found = self.problems(understood, bot)
        return found[0][1] if found else None

    def problems(self, understood: str, bot: List[Dict[str, Any]]) -> List[tuple[str, str]]:
        """Every violation in this turn as (kind, description); kinds: silent,
        empty_message, template, error_text, language, asks."""
        said = message_language(understood) if understood else None
        if said:
            self.language = said
        if not bot:
            self.ask_key, self.ask_run = None, 0
            return [("silent", "the bot said nothing")]
        found: List[tuple[str, str]] = []
        for message in bot:
            text = message.get("text") or ""
            if not text and not message.get("custom") and not message.get("image"):
                found.append(("empty_message", f"an empty bot message: {message}"))
            if _TEMPLATE.search(text):
                found.append(("template", f"unfilled template in {text!r}"))
            if any(marker in text for marker in _ERROR_TEXTS):
                found.append(("error_text", f"error text in {text!r}"))
            got = message_language(text) if text else None
            if got and got != self.language:
                found.append((
                    "language",
                    f"answered in {got}, the customer wrote {self.language}: {text[:60]!r}",
                ))
        asks = self._check_asks(bot)
        if asks:
            found.append(("asks", asks))
        return found

    def _check_asks(self, bot: List[Dict[str, Any]]) -> str | None:
        said = [str(m.get("utter_action") or "") for m in bot]
        # A form that let go or stopped earlier in this turn is done: a question
        # after it (the message's next request starting a form) begins a new run.
        ended = [i for i, name in enumerate(said) if name in FORM_ENDED]
        if ended:
            self.ask_key, self.ask_run = None, 0
            said = said[ended[-1] + 1 :]
        asks = [name for name in said if name.startswith("utter_ask_")]
        if not asks:
            self.ask_key, self.ask_run = None, 0
            return None
        # "…_again" repeats the question asked last: earlier in this turn (a new
        # task asked, a side question answered, asked again) or in the turn before.
        key = self.ask_key
        for ask in asks:
            if not ask.endswith("_again"):
                key = ask
            elif key is None:
                key = ask[: -len("_again")]
        assert key is not None
        self.ask_run = self.ask_run + 1 if key == self.ask_key else 1
        self.ask_key = key
        if self.ask_run > MAX_ASKS:
            return f"the form asked {key} {self.ask_run} times in a row"
        return None


async def run_conversation(
    agent: Any,
    steps: List[Step],
    seed: int = 0,
    tally: Dict[str, int] | None = None,
) -> Outcome:
    """Play `steps` as a new customer; stop at the first violation, or with
    `tally`, play them all and count each kind of violation (turns, not messages)."""
    from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

    rng = random.Random(seed)
    sender = f"fuzz-{uuid.uuid4().hex[:12]}"
    # One customer in three is logged in to a demo account.
    who = rng.choice([CUSTOMER, CUSTOMER, CUSTOMER, CUSTOMER, *VERIFIED])
    checker = Checker()
    outcome = Outcome(steps)
    last_buttons: List[Dict[str, str]] = []
    seen = 0  # events of the conversation before this turn
    for step in steps:
        text = step.resolve(last_buttons, rng)
        output = CollectingOutputChannel()
        metadata = dict(who) if step.customer else None
        before = seen
        await agent.handle_message(UserMessage(text, output, sender, metadata=metadata))
        tracker = await agent.tracker_store.retrieve(sender)
        seen = len(tracker.events)
        understood, intent = _understood(tracker, before)
        bot = _with_utter_actions(output.messages, tracker, before)
        outcome.exchanges.append(Exchange(text, understood, intent, bot))
        if tally is not None:
            tally["turns"] = tally.get("turns", 0) + 1
            for kind in {kind for kind, _ in checker.problems(understood, bot)}:
                tally[kind] = tally.get(kind, 0) + 1
            last_buttons = [b for m in bot for b in (m.get("buttons") or [])]
            continue
        violation = checker.check(understood, bot)
        if violation:
            outcome.violation = violation
            outcome.events = [_event_line(e) for e in list(tracker.events)[before:]]
            return outcome
        buttons = [b for m in bot for b in (m.get("buttons") or [])]
        last_buttons = buttons or []
    return outcome


def _event_line(event: Any) -> str:
    data = event.as_dict()
    kind = data.get("event")
    if kind == "user":
        marks = (data.get("metadata") or {}).get("dialogue")
        intent = data["parse_data"].get("intent", {}).get("name")
        return f"user {data.get('text')!r} {intent} {marks or ''}"
    if kind == "action":
        return f"action {data.get('name')} ({data.get('policy')}, {data.get('confidence')})"
    if kind == "bot":
        return f"bot {(data.get('text') or '')[:60]!r}"
    if kind == "slot":
        return f"slot {data.get('name')}={data.get('value')!r}"
    if kind == "active_loop":
        return f"active_loop {data.get('name')}"
    return str(kind)


def _understood(tracker: Any, before: int) -> tuple[str, str | None]:
    """What NLU understood of the turn's message (its first user event)."""
    from rasa.shared.core.events import UserUttered

    for event in list(tracker.events)[before:]:
        if isinstance(event, UserUttered):
            return str(event.parse_data.get("text") or event.text or ""), event.intent_name
    return "", None


def _with_utter_actions(
    messages: List[Dict[str, Any]], tracker: Any, before: int
) -> List[Dict[str, Any]]:
    """The turn's bot messages, each with the response it came from (if any)."""
    from rasa.shared.core.events import BotUttered

    uttered = [e for e in list(tracker.events)[before:] if isinstance(e, BotUttered)]
    out = []
    for index, message in enumerate(messages):
        entry = dict(message)
        if index < len(uttered):
            entry["utter_action"] = (uttered[index].metadata or {}).get("utter_action")
        out.append(entry)
    return out


async def shrink(
    agent: Any, failing: Outcome, budget: int = 60
) -> Outcome:
    """Drop turns while the conversation still fails; the shortest failing one."""
    best = failing
    steps = list(failing.steps[: len(failing.exchanges)])
    tries = 0
    index = 0
    while index < len(steps) and tries < budget:
        candidate = steps[:index] + steps[index + 1 :]
        tries += 1
        outcome = await run_conversation(agent, candidate) if candidate else None
        if outcome is not None and outcome.violation:
            steps = candidate[: len(outcome.exchanges)]
            best = outcome
        else:
            index += 1
    return best


async def survey(
    agent: Any, seed: int, conversations: int, max_turns: int = 12, concurrency: int = 8
) -> Dict[str, int]:
    """Play a seeded set of random conversations to the end and count, per kind of
    violation, the turns that had one (bench/dialogue.py)."""
    customers = Customers(seed)
    plans = [
        customers.conversation(customers.rng.randint(1, max_turns)) for _ in range(conversations)
    ]
    gate = asyncio.Semaphore(concurrency)
    tally: Dict[str, int] = {}

    async def play(number: int, steps: List[Step]) -> None:
        async with gate:
            await run_conversation(agent, steps, seed=seed * 100_003 + number, tally=tally)

    await asyncio.gather(*(play(i, steps) for i, steps in enumerate(plans)))
    return tally


@dataclass
class FuzzResult:
    conversations: int
    turns: int
    failures: List[Outcome]
    by_kind: Dict[str, int]


async def fuzz(
    agent: Any,
    seed: int,
    conversations: int,
    max_turns: int = 12,
    concurrency: int = 8,
    stop_after: int = 3,
    progress: Callable[[int], None] | None = None,
) -> FuzzResult:
    customers = Customers(seed)
    plans = [
        customers.conversation(customers.rng.randint(1, max_turns)) for _ in range(conversations)
    ]
    gate = asyncio.Semaphore(concurrency)
    failures: List[Outcome] = []
    turns = 0
    by_kind: Dict[str, int] = {}
    done = 0

    async def play(number: int, steps: List[Step]) -> None:
        nonlocal turns, done
        if len(failures) >= stop_after:
            return
        async with gate:
            outcome = await run_conversation(agent, steps, seed=seed * 100_003 + number)
        turns += len(outcome.exchanges)
        for step in steps[: len(outcome.exchanges)]:
            by_kind[step.kind] = by_kind.get(step.kind, 0) + 1
        if outcome.violation:
            failures.append(outcome)
        done += 1
        if progress:
            progress(done)

    await asyncio.gather(*(play(i, steps) for i, steps in enumerate(plans)))
    shrunk = [await shrink(agent, failure) for failure in failures[:stop_after]]
    return FuzzResult(conversations, turns, shrunk, by_kind)


class Chat:
    """One customer talking to the in-process dialogue, turn by turn (for tests)."""

    def __init__(
        self, agent: Any, customer: bool = True, identity: Dict[str, Any] | None = None
    ) -> None:
        """`identity`: the channel identity the messages carry (default: an
        anonymous web visitor); `customer=False`: a trusted caller's messages."""
        self.agent = agent
        self.sender = f"chat-{uuid.uuid4().hex[:12]}"
        self.metadata = dict(CUSTOMER) if customer else None
        if identity is not None:
            self.metadata = {"channel": identity["channel"], "identity": identity}
        self._seen = 0

    def say(self, text: str, parse_data: Dict[str, Any] | None = None) -> List[Dict[str, Any]]:
        """The bot's messages for one customer message, each with `utter_action`."""
        return asyncio.run(self._say(text, parse_data))

    async def _say(self, text: str, parse_data: Dict[str, Any] | None) -> List[Dict[str, Any]]:
        from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

        output = CollectingOutputChannel()
        # A fresh dict per message, as channels build it (the NLU notes in it).
        metadata = dict(self.metadata) if self.metadata else None
        message = UserMessage(text, output, self.sender, metadata=metadata, parse_data=parse_data)
        await self.agent.handle_message(message)
        tracker = await self.agent.tracker_store.retrieve(self.sender)
        before, self._seen = self._seen, len(tracker.events)
        self.tracker = tracker
        self.turn_events = list(tracker.events)[before:]
        return _with_utter_actions(output.messages, tracker, before)

    def actions(self, text: str, parse_data: Dict[str, Any] | None = None) -> List[str]:
        """The responses the bot used for one message (utter_… names, in order)."""
        return [str(m.get("utter_action")) for m in self.say(text, parse_data)]
