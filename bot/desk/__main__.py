"""Run the agent desk: `python -m bot.desk` (`bot run` starts it).

Listens on BOT_HOST:BOT_DESK_PORT (127.0.0.1:5006); needs REDIS_URL,
DATABASE_URL, BOT_RASA_URL and BOT_API_TOKEN, which `bot run` sets, and the
channels' secrets (credentials.yml) to reach customers.
"""

from __future__ import annotations

import logging

from bot.desk.app import create_app
from bot.privacy import install_log_masking
from bot.settings import get_settings


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    install_log_masking()
    settings = get_settings()
    app = create_app()
    app.run(host=settings.host, port=settings.desk_port, workers=1, access_log=False,
            motd=False)


if __name__ == "__main__":
    main()
