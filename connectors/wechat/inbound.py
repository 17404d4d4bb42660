"""A request from WeChat's servers, checked before anything acts on it.

Signed (constant-time comparison: wechatpy's own checks use `!=`), fresh
(replays of an old signed request are refused), small, and well-formed XML
with no DTD or entities (defusedxml, before wechatpy's xmltodict sees it).
In safe mode the envelope's msg_signature covers the encrypted message and
wechatpy's crypto decrypts it and checks the app id.

Everything here is pure: the channel maps `Refused` to an HTTP answer.
"""

from __future__ import annotations

import hmac
import re
import time
from dataclasses import dataclass
from typing import Mapping
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException
from wechatpy.messages import BaseMessage
from wechatpy.replies import TextReply
from wechatpy.utils import WeChatSigner

MAX_BODY_BYTES = 64 * 1024
MAX_CLOCK_SKEW_SECONDS = 300
# What WeChat's OpenIDs look like (28 characters today); it becomes a conversation id.
# Used with fullmatch: "$" would let a trailing newline through.
_OPENID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DIGITS = re.compile(r"[0-9]{1,20}")


class Refused(Exception):
    """The request is not processed; `status` and `reason` say why.

    `code` names the kind (a fixed word: the refusal log's key) and `summary`
    is the reason without `detail`, which may quote the request (a parser's
    message): the answer tells the caller everything, the log line only the
    summary."""

    def __init__(self, status: int, reason: str, *, code: str, detail: str = "") -> None:
        self.status, self.code, self.summary = status, code, reason
        self.reason = f"{reason}: {detail}" if detail else reason
        super().__init__(self.reason)


@dataclass(frozen=True)
class Inbound:
    message: BaseMessage  # wechatpy's typed message or event
    fields: dict[str, str]  # the message's top-level elements, as text
    encrypted: bool
    nonce: str

    @property
    def openid(self) -> str:
        return self.fields["FromUserName"]

    @property
    def msg_type(self) -> str:
        return self.fields["MsgType"].lower()

    @property
    def event(self) -> str:
        return (self.fields.get("Event") or "").lower()

    @property
    def dedup_id(self) -> str:
        """Same for WeChat's retries of one message: MsgId, or for events
        FromUserName + CreateTime (WeChat's advice) + Event + EventKey (two
        menu items clicked within a second are two events; a double click one)."""
        if self.fields.get("MsgId"):
            return self.fields["MsgId"]
        created, key = self.fields.get("CreateTime", ""), self.fields.get("EventKey", "")
        return f"{self.openid}:{created}:{self.event}:{key}"


def sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


def signature_ok(given: str | None, *parts: str) -> bool:
    # Bytes: compare_digest refuses non-ASCII str, and `given` is the caller's.
    return hmac.compare_digest(sign(*parts).encode(), (given or "").encode())


def _signed_query(args: Mapping[str, str], token: str, now: float) -> tuple[str, str]:
    timestamp, nonce = args.get("timestamp") or "", args.get("nonce") or ""
    if not timestamp or not nonce:
        raise Refused(403, "missing timestamp or nonce", code="no_timestamp")
    if not _DIGITS.fullmatch(timestamp) or abs(now - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
        raise Refused(
            403, f"stale or bad timestamp (more than {MAX_CLOCK_SKEW_SECONDS} s off)",
            code="bad_timestamp",
        )
    return timestamp, nonce


def verify_url(args: Mapping[str, str], token: str, now: float | None = None) -> str:
    """GET URL verification: the echostr to answer with."""
    timestamp, nonce = _signed_query(args, token, time.time() if now is None else now)
    if not signature_ok(args.get("signature"), token, timestamp, nonce):
        raise Refused(403, "bad signature", code="bad_signature")
    echostr = args.get("echostr")
    if not echostr:
        raise Refused(400, "echostr is missing", code="no_echostr")
    return echostr


def parse_xml(data: bytes) -> Element:
    if len(data) > MAX_BODY_BYTES:
        raise Refused(400, f"body larger than {MAX_BODY_BYTES} bytes", code="too_large")
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as error:
        raise Refused(
            400, f"XML with a DTD or entities is not accepted ({type(error).__name__})",
            code="xml_dtd",
        ) from None
    except (ParseError, ValueError) as error:
        raise Refused(400, "malformed XML", code="xml_malformed", detail=str(error)) from None
    if root.tag != "xml":
        raise Refused(400, "the root element must be <xml>", code="xml_root")
    return root


def check_no_repeats(root: Element) -> None:
    """WeChat never sends an element twice. Two <FromUserName>s: which is the
    sender? This module read the last, wechatpy (the reply's addressee) both;
    two <Encrypt>s: the signature was checked on the first."""
    tags = [child.tag for child in root]
    if len(set(tags)) != len(tags):
        raise Refused(400, "an element appears twice", code="field_repeated")


def read_message(
    body: bytes,
    args: Mapping[str, str],
    token: str,
    crypto: WeChatCrypto | None,
    now: float | None = None,
) -> Inbound:
    """The message in a POST from WeChat, or Refused (403: not from WeChat or
    stale; 400: not a message we can read)."""
    timestamp, nonce = _signed_query(args, token, time.time() if now is None else now)
    encrypted = args.get("encrypt_type") == "aes"
    if encrypted:
        if crypto is None:
            raise Refused(
                403, "an encrypted message, but no encoding_aes_key is configured",
                code="no_aes_key",
            )
        envelope = parse_xml(body)
        check_no_repeats(envelope)
        encrypt = envelope.findtext("Encrypt") or ""
        msg_signature = args.get("msg_signature")
        if not signature_ok(msg_signature, token, timestamp, nonce, encrypt):
            raise Refused(403, "bad msg_signature", code="bad_msg_signature")
        if not encrypt:
            raise Refused(400, "no <Encrypt> in the envelope", code="no_encrypt")
        try:
            # Checked above in constant time; wechatpy checks it again (harmlessly).
            plain = crypto.decrypt_message({"Encrypt": encrypt}, msg_signature, timestamp, nonce)
        except InvalidAppIdException:
            raise Refused(403, "the message is for another app id", code="app_id") from None
        except Exception:  # bad base64, padding or length: not WeChat's ciphertext
            raise Refused(
                400, "could not decrypt the message (check encoding_aes_key)", code="decrypt"
            ) from None
        data = plain.encode("utf-8") if isinstance(plain, str) else plain
    else:
        if not signature_ok(args.get("signature"), token, timestamp, nonce):
            raise Refused(403, "bad signature", code="bad_signature")
        data = body
    root = parse_xml(data)
    check_no_repeats(root)
    fields = {child.tag: (child.text or "").strip() for child in root}
    for name in ("MsgType", "FromUserName", "ToUserName"):
        if not fields.get(name):
            raise Refused(400, f"<{name}> is missing", code="field_missing")
    if not _OPENID.fullmatch(fields["FromUserName"]):
        raise Refused(400, "<FromUserName> is not an OpenID", code="bad_openid")
    for name in ("MsgId", "CreateTime"):
        if fields.get(name) and not _DIGITS.fullmatch(fields[name]):
            raise Refused(400, f"<{name}> is not a number", code="not_a_number")
    try:
        message = parse_message(data.decode("utf-8"))
    except Exception as error:  # xmltodict or wechatpy choking on odd content
        raise Refused(
            400, f"not a WeChat message ({type(error).__name__})", code="not_a_message"
        ) from None
    return Inbound(message, fields, encrypted, nonce)


def render_reply(inbound: Inbound, text: str, crypto: WeChatCrypto | None) -> str:
    """The passive text reply to `inbound`, encrypted if it came encrypted."""
    # wechatpy puts the text in CDATA as is; "]]>" in it would end the section.
    content = text.replace("]]>", "]]]]><![CDATA[>")
    xml = TextReply(message=inbound.message, content=content).render()
    if inbound.encrypted and crypto is not None:
        return str(crypto.encrypt_message(xml, inbound.nonce))
    return str(xml)
