"""How many app WebSockets a process holds, per customer and per client address.

A customer (one JWT subject) gets at most `max_per_customer` open sockets in a
process: one more closes the oldest (a phone and a tablet are two; thousands
are an attack or a reconnect loop, each holding descriptors and a pump). A
socket that has not yet shown a valid token counts against its client
address, at most `max_unauthenticated_per_address` at once, and is closed if
no token comes within the auth timeout.

Counted per process (a process's descriptors and memory are what runs out);
with N instances behind a load balancer a customer holds at most N × the cap.

The client address is the web channel's (connectors.web.addresses): the peer's,
or, when `real_ip_header` is configured (a reverse proxy in front sets it), that
header's last entry, the one our proxy wrote; an IPv6 client's /64. Without the
setting the header is ignored, since anyone can send it.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from connectors.web.addresses import client_address

__all__ = ["SocketLimits", "client_address"]

Evict = Callable[[], Any]  # closes one socket (schedules the close; returns at once)


@dataclass
class SocketLimits:
    max_per_customer: int = 5
    max_unauthenticated_per_address: int = 20
    _open: dict[str, OrderedDict[str, Evict]] = field(default_factory=dict)
    _unauthenticated: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    # --- before a token -------------------------------------------------------

    def do_start_unauthenticated(self, address: str) -> bool:
        """Count a socket waiting for its token; False (not counted) if its address has too many."""
        if self._unauthenticated[address] >= self.max_unauthenticated_per_address:
            return False
        self._unauthenticated[address] += 1
        return True

    def do_end_unauthenticated(self, address: str) -> None:
        self._unauthenticated[address] -= 1
        if self._unauthenticated[address] <= 0:
            del self._unauthenticated[address]

    def unauthenticated(self, address: str) -> int:
        return self._unauthenticated.get(address, 0)

    # --- with a token ---------------------------------------------------------

    def do_open(self, customer: str, socket_id: str, evict: Evict) -> None:
        """Register a customer's socket; beyond the cap, the oldest are evicted."""
        sockets = self._open.setdefault(customer, OrderedDict())
        sockets[socket_id] = evict
        while len(sockets) > self.max_per_customer:
            _, oldest = sockets.popitem(last=False)
            oldest()

    def do_close(self, customer: str, socket_id: str) -> None:
        sockets = self._open.get(customer)
        if sockets is None:
            return
        sockets.pop(socket_id, None)
        if not sockets:
            del self._open[customer]

    def open_for(self, customer: str) -> int:
        return len(self._open.get(customer, ()))
