"""credentials.yml as the channels and the service both read it."""

from __future__ import annotations

import re
from pathlib import Path


def credential_variables(credentials_file: Path) -> list[str]:
    """The ${VAR} names credentials.yml reads from the environment, in order.

    Rasa refuses an unset one; `bot run` and `connectors.push` give each a
    value (empty switches that part of a channel off).
    """
    text = credentials_file.read_text(encoding="utf-8") if credentials_file.is_file() else ""
    return list(dict.fromkeys(re.findall(r"\$\{(\w+)\}", text)))
