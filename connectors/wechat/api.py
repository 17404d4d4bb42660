"""WeChat's server API (客服消息, menus…) for the connector.

wechatpy's client does the calls; this module adds what a multi-instance
service needs from it:

- Its HTTP client is blocking, so every call runs in a small thread pool,
  never on the event loop.
- WeChat keeps one valid access_token per app: fetching a new one retires the
  old one within minutes. So the token lives in Redis (wechatpy's
  RedisStorage) for every instance; only the holder of a Redis lock fetches,
  after re-reading the cache (another instance may just have fetched), and a
  call refused with an invalid/expired token refreshes only if the cache
  still holds the token that failed. Instances never knock out each other's
  token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any, Callable, TypeVar
from urllib.parse import parse_qs, urlsplit

import redis
import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException
from wechatpy.session.memorystorage import MemoryStorage
from wechatpy.session.redisstorage import RedisStorage

logger = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://api.weixin.qq.com/cgi-bin/"
# invalid credential, invalid access_token, access_token expired
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
# Stop using a cached token this long before WeChat says it expires.
TOKEN_MARGIN_SECONDS = 300
HTTP_TIMEOUT_SECONDS = 10.0
LOCK_SECONDS = 30

T = TypeVar("T")

# Bounded: a WeChat outage must not tie up the loop's default executor.
_EXECUTOR = ThreadPoolExecutor(max_workers=4, thread_name_prefix="wechat-api")


class _TimeoutSession(requests.Session):
    # wechatpy's token fetch passes no timeout; a hung WeChat would hang a thread forever.
    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["timeout"] = kwargs.get("timeout") or HTTP_TIMEOUT_SECONDS
        return super().request(*args, **kwargs)


class _TokenStorage(RedisStorage):
    def set(self, key: str, value: Any, ttl: int | None = None) -> None:
        super().set(key, value, max(60, int(ttl) - TOKEN_MARGIN_SECONDS) if ttl else ttl)


def failed_token(error: WeChatClientException) -> str | None:
    """The access_token a refused call was made with (from its URL)."""
    url = getattr(error.request, "url", None) or ""
    return (parse_qs(urlsplit(url).query).get("access_token") or [None])[0]


class SharedTokenClient(WeChatClient):
    """wechatpy's WeChatClient with the token shared through Redis (see module doc)."""

    def __init__(
        self,
        app_id: str,
        app_secret: str,
        base_url: str,
        store: redis.Redis | None,
        prefix: str = "wechat",
    ) -> None:
        session = _TokenStorage(store, prefix=prefix) if store is not None else MemoryStorage()
        # auto_retry off: wechatpy's retry refetches on any token error, even when
        # another instance already has a fresh token.
        super().__init__(app_id, app_secret, session=session, auto_retry=False)
        self._http = _TimeoutSession()
        self.API_BASE_URL = base_url
        self._store, self._prefix = store, prefix
        self._local_lock = threading.Lock()

    @property
    def access_token(self) -> str:
        return self.session.get(self.access_token_key) or self.refresh_access_token(None)

    def fetch_access_token(self) -> dict[str, Any]:
        # wechatpy hard-codes api.weixin.qq.com here; use the configured base.
        return self._fetch_access_token(
            url=f"{self.API_BASE_URL}token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )

    def refresh_access_token(self, failed: str | None) -> str:
        """A working token: the cached one unless it is `failed` (or none), else a new one."""
        with self._local_lock, self._cluster_lock():
            current = self.session.get(self.access_token_key)
            if current and current != failed:
                return str(current)
            logger.info("fetching a WeChat access_token for %s", self.appid)
            self.fetch_access_token()
            token = self.session.get(self.access_token_key)
            if not token:
                raise WeChatClientException(None, "WeChat returned no access_token", client=self)
            return str(token)

    def _cluster_lock(self) -> Any:
        if self._store is None:  # a process on its own (`bot wechat-menu` without REDIS_URL)
            return nullcontext()
        name = f"{self._prefix}:{self.appid}:token-lock"
        return self._store.lock(name, timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS)

    def call(self, fn: Callable[[WeChatClient], T]) -> T:
        """fn(client), once more with a refreshed token if WeChat refused the token."""
        try:
            return fn(self)
        except WeChatClientException as error:
            if error.errcode not in TOKEN_ERRORS:
                raise
            logger.info("WeChat refused the access_token (%s); refreshing", error.errcode)
            self.refresh_access_token(failed_token(error))
            return fn(self)


class WeChatAPI:
    """Async face of SharedTokenClient. The client is made on first use, so
    building a channel (e.g. for `Push`) needs no Redis yet."""

    def __init__(
        self,
        app_id: str,
        app_secret: str,
        base_url: str = DEFAULT_API_BASE_URL,
        redis_url: str | None = None,
    ) -> None:
        self.app_id, self.app_secret, self.base_url = app_id, app_secret, base_url
        self._redis_url = redis_url
        self._client: SharedTokenClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> SharedTokenClient:
        with self._lock:
            if self._client is None:
                from connectors.clients import redis_url

                url = self._redis_url or redis_url()
                store = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
                self._client = SharedTokenClient(self.app_id, self.app_secret, self.base_url, store)
            return self._client

    def use_client(self, client: SharedTokenClient) -> None:
        """Use this client (e.g. one with a process-local token store)."""
        self._client = client

    async def call(self, fn: Callable[[WeChatClient], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_EXECUTOR, lambda: self.client.call(fn))

    async def send_text(self, openid: str, content: str) -> Any:
        return await self.call(lambda c: c.message.send_text(openid, content))

    async def create_menu(self, menu: dict[str, Any]) -> Any:
        return await self.call(lambda c: c.menu.create(menu))
