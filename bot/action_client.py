"""Rasa's calls to the action server, on kept-alive connections and orjson.

Rasa 3.6 (`EndpointConfig.request`) opens a new `aiohttp.ClientSession`, hence
a new TCP connection, for every custom-action call, and serialises the whole
tracker with the standard `json` module. A form turn makes two or three such
calls; under 16 customers at once the connection set-up and the encoding were
~15 % of the Rasa server's event loop (py-spy, bench/latency.py's mix).

Here each endpoint keeps one session per event loop (connections are reused,
bounded by aiohttp's pool), and bodies are encoded and decoded with orjson.
The request, headers, parameters, timeout, errors and result are Rasa's: a
status >= 400 raises the same `ClientResponseError` (RemoteAction turns a 400
into `ActionExecutionRejection`), connection errors surface as aiohttp's, and a
non-JSON answer gives None.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import Any, Dict

import aiohttp
import orjson
from rasa.utils.endpoints import ClientResponseError, EndpointConfig, concat_url

_rasa_request = EndpointConfig.request
# orjson refuses what json.dumps accepted: non-string keys (json turns them into
# strings) and NumPy values (Rasa's confidences can be NumPy floats).
_DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_sessions: Dict[tuple[int, int], aiohttp.ClientSession] = {}


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_DUMPS_OPTIONS)


def _session(endpoint: EndpointConfig) -> aiohttp.ClientSession:
    """The endpoint's kept-alive session on the running loop (Sanic: one per worker)."""
    loop = asyncio.get_running_loop()
    key = (id(endpoint), id(loop))
    session = _sessions.get(key)
    if session is None or session.closed:
        session = endpoint.session()
        _sessions[key] = session
    return session


async def close_sessions() -> None:
    for session in list(_sessions.values()):
        await session.close()
    _sessions.clear()


async def request(
    self: EndpointConfig,
    method: str = "post",
    subpath: str | None = None,
    content_type: str | None = "application/json",
    compress: bool = False,
    **kwargs: Any,
) -> Any | None:
    """EndpointConfig.request on a kept-alive session, with orjson."""
    headers = {}
    if content_type:
        headers["Content-Type"] = content_type
    if "headers" in kwargs:
        headers.update(kwargs.pop("headers"))
    if self.headers:
        headers.update(self.headers)
    if "json" in kwargs:
        kwargs["data"] = dumps(kwargs.pop("json"))
    timeout = kwargs.get("timeout")
    if isinstance(timeout, (int, float)):
        kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout)
    sslcontext = None
    if self.cafile:
        if not os.path.exists(self.cafile):
            # Rasa's own path raises its error for a missing file.
            return await _rasa_request(self, method, subpath, content_type, compress,
                                       headers=headers, **kwargs)
        sslcontext = ssl.create_default_context(cafile=self.cafile)
    async with _session(self).request(
        method,
        concat_url(self.url, subpath),
        headers=headers,
        params=self.combine_parameters(kwargs),
        compress=compress,
        ssl=sslcontext,
        **kwargs,
    ) as response:
        body = await response.read()
        if response.status >= 400:
            raise ClientResponseError(response.status, response.reason, body)
        if response.content_type != "application/json":
            return None
        return orjson.loads(body) if body else None


def install() -> None:
    if EndpointConfig.request is not request:
        EndpointConfig.request = request  # type: ignore[method-assign]
