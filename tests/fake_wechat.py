"""A stand-in for WeChat's API servers (api.weixin.qq.com), on loopback,
and WeChat's servers calling the webhook (`WeChatCaller`).

The connector's `api_base_url` points here in tests. It issues access
tokens, accepts customer-service messages and menus, records everything, and
can be told to fail the next calls with a WeChat error code, to refuse
customer-service messages to one follower (45015: outside the 48-hour window)
until told otherwise, or to expire its tokens as WeChat does.

`WeChatCaller` makes the requests WeChat's servers make: signed, and in safe
mode encrypted, with wechatpy's own crypto.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

from tests.http_recorder import Recorded, Recorder

APP_ID = "wx5e6b2c0f3a1d7e90"
APP_SECRET = "test-wechat-app-secret"


class FakeWeChatAPI:
    def __init__(self) -> None:
        self._tokens = itertools.count(1)
        self._failures: dict[str, deque[tuple[int, str]]] = defaultdict(deque)
        self._lock = threading.Lock()
        self.issued: list[str] = []
        self.expired: set[str] = set()
        self.delivered: list[dict[str, Any]] = []  # customer-service messages accepted
        # OpenID -> (errcode, errmsg) every customer-service message to them gets.
        self._refused: dict[str, tuple[int, str]] = {}
        # WeChat: fetching a token retires the earlier ones (after a grace
        # period; here at once).
        self.one_valid_token = False
        self.recorder = Recorder(self._route)

    @property
    def base_url(self) -> str:
        """What the connector's api_base_url is set to."""
        return f"{self.recorder.url}/cgi-bin/"

    def start(self) -> FakeWeChatAPI:
        self.recorder.start()
        return self

    def stop(self) -> None:
        self.recorder.stop()

    def fail_next(self, path: str, errcode: int, errmsg: str, times: int = 1) -> None:
        """Make the next `times` calls to `path` (e.g. "/cgi-bin/message/custom/send") fail."""
        with self._lock:
            self._failures[path].extend([(errcode, errmsg)] * times)

    def refuse_messages_to(
        self,
        openid: str,
        errcode: int = 45015,
        errmsg: str = "response out of time limit or subscription is canceled",
    ) -> None:
        """Refuse every customer-service message to `openid` (after the token check,
        as WeChat does) until `accept_messages_to`: by default 45015, the follower
        has not written for 48 hours."""
        with self._lock:
            self._refused[openid] = (errcode, errmsg)

    def accept_messages_to(self, openid: str) -> None:
        """The follower wrote again: customer-service messages reach them."""
        with self._lock:
            self._refused.pop(openid, None)

    def expire_tokens(self) -> None:
        """Every token issued so far now gets 42001 (expired)."""
        with self._lock:
            self.expired.update(self.issued)

    def sent_messages(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.recorder.matching("/cgi-bin/message/custom/send")]

    def texts_to(self, openid: str) -> list[str]:
        """What the customer got through the customer-service API, in order."""
        with self._lock:
            delivered = list(self.delivered)
        return [
            m["text"]["content"]
            for m in delivered
            if m.get("touser") == openid and m.get("msgtype") == "text"
        ]

    def wait_for_texts(self, openid: str, count: int = 1, timeout: float = 60.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            texts = self.texts_to(openid)
            if len(texts) >= count or time.monotonic() > deadline:
                return texts
            time.sleep(0.05)

    def _route(self, request: Recorded) -> tuple[int, Any]:
        with self._lock:
            failures = self._failures.get(request.path)
            if failures:
                errcode, errmsg = failures.popleft()
                return 200, {"errcode": errcode, "errmsg": errmsg}
        if request.path == "/cgi-bin/token":
            if request.query.get("appid") != APP_ID or request.query.get("secret") != APP_SECRET:
                return 200, {"errcode": 40013, "errmsg": "invalid appid"}
            token = f"ACCESS_TOKEN_{next(self._tokens)}"
            with self._lock:
                if self.one_valid_token:
                    self.expired.update(self.issued)
                self.issued.append(token)
            return 200, {"access_token": token, "expires_in": 7200}
        token = request.query.get("access_token")
        if token in self.expired:
            return 200, {"errcode": 42001, "errmsg": "access_token expired"}
        if token not in self.issued:
            return 200, {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
        if request.path == "/cgi-bin/message/custom/send":
            message = request.json()
            with self._lock:
                refused = self._refused.get(message.get("touser"))
                if refused is not None:
                    return 200, {"errcode": refused[0], "errmsg": refused[1]}
                self.delivered.append(message)
        return 200, {"errcode": 0, "errmsg": "ok"}


# --- WeChat's servers calling the webhook ----------------------------------------------

ACCOUNT = "gh_3f9a1c2b7d6e"  # the Official Account's original id (ToUserName)


def new_openid() -> str:
    """A fresh OpenID-shaped id (28 characters)."""
    return "o" + secrets.token_urlsafe(21)[:27].replace("-", "A").replace("_", "B")


def sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


def message_xml(openid: str, msg_type: str, msg_id: int | None = None, **fields: Any) -> str:
    """A message as WeChat POSTs it (MsgId for messages, none for events)."""
    body = {
        "ToUserName": ACCOUNT,
        "FromUserName": openid,
        "CreateTime": str(int(time.time())),
        "MsgType": msg_type,
        **{k: str(v) for k, v in fields.items()},
    }
    if msg_type != "event":
        body["MsgId"] = str(msg_id if msg_id is not None else secrets.randbits(62))
    return str(xmltodict.unparse({"xml": body}, full_document=False))


@dataclass
class Answer:
    status: int
    body: str
    reply: str | None  # the passive reply's text; None for "success" or an error

    @property
    def is_success(self) -> bool:
        return self.status == 200 and self.body == "success"


class WeChatCaller:
    """Requests as WeChat's servers send them to the webhook."""

    def __init__(
        self, webhook_url: str, token: str, aes_key: str, app_id: str = APP_ID, safe: bool = False
    ) -> None:
        self.url = webhook_url
        self.token = token
        self.crypto = WeChatCrypto(token, aes_key, app_id)
        self.safe = safe  # encrypt by default (an account in safe mode)

    def query(self, timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or secrets.token_hex(8)
        return {"signature": sign(self.token, ts, nonce), "timestamp": ts, "nonce": nonce}

    def verify(self, echostr: str, **query: str) -> tuple[int, str]:
        params = {**self.query(), "echostr": echostr, **query}
        return self._send("GET", params, None)

    def post(
        self,
        xml: str | bytes,
        safe: bool | None = None,
        timestamp: int | None = None,
        query: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Answer:
        """POST a message (encrypted with wechatpy's crypto when `safe`)."""
        safe = self.safe if safe is None else safe
        params, body = self.request(xml, safe, timestamp)
        params.update(query or {})
        return self.send(params, body, safe, timeout)

    def request(
        self, xml: str | bytes, safe: bool, timestamp: int | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The query and body WeChat's servers would POST for `xml`."""
        params = self.query(timestamp)
        body = xml.encode() if isinstance(xml, str) else xml
        if safe:
            envelope = self.crypto.encrypt_message(
                body.decode(), params["nonce"], params["timestamp"]
            )
            parsed = xmltodict.parse(envelope)["xml"]
            params.update(encrypt_type="aes", msg_signature=parsed["MsgSignature"])
            body = xmltodict.unparse(
                {"xml": {"ToUserName": ACCOUNT, "Encrypt": parsed["Encrypt"]}}, full_document=False
            ).encode()
        return params, body

    def send(
        self, params: dict[str, str], body: bytes, safe: bool = False, timeout: float = 30.0
    ) -> Answer:
        """POST `body` with `params` as they are (an attacker's request, say)."""
        status, text = self._send("POST", params, body, timeout)
        return Answer(status, text, self._reply_text(text, safe) if status == 200 else None)

    def _reply_text(self, body: str, safe: bool) -> str | None:
        if not body or body == "success":
            return None
        if safe:
            envelope = xmltodict.parse(body)["xml"]
            body = self.crypto.decrypt_message(
                body, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"]
            )
        reply = xmltodict.parse(body)["xml"]
        assert reply["MsgType"] == "text", reply
        return str(reply["Content"])

    def _send(
        self, method: str, params: dict[str, str], body: bytes | None, timeout: float = 30.0
    ) -> tuple[int, str]:
        request = urllib.request.Request(
            f"{self.url}?{urlencode(params)}",
            data=body,
            method=method,
            headers={"Content-Type": "text/xml"} if body is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
