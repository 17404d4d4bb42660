"""The REST channel on a real Sanic server in a process of its own, stopped by a
signal the way `bot run` stops Rasa (tests/test_draining.py).

    python -m tests.draining_server PORT HANDLED_FILE

Each message is a turn of 0.2 s: its id is written to HANDLED_FILE when the
turn starts (the bot has it: a stored user event), then the reply "ok <id>".
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from sanic import Sanic

from connectors.rest import TokenRestInput

TOKEN = "drain-test-token"
TURN_SECONDS = 0.2


def main() -> None:
    port, handled = int(sys.argv[1]), sys.argv[2]
    app = Sanic("draining_test")

    async def on_new_message(message: Any) -> None:
        with open(handled, "a") as file:
            file.write(message.text + "\n")
        await asyncio.sleep(TURN_SECONDS)
        await message.output_channel.send_text_message(message.sender_id, f"ok {message.text}")

    app.blueprint(TokenRestInput(TOKEN).blueprint(on_new_message), url_prefix="/webhooks/rest")
    # As Rasa runs it: one process, Sanic's own SIGTERM/SIGINT handling.
    app.run(host="127.0.0.1", port=port, access_log=False, workers=1)


if __name__ == "__main__":
    main()
