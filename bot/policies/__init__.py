"""Custom Rasa dialogue policies.

Loading them (which the Rasa server does with every model) also installs our
fixes to Rasa's internals (bot.rasa_fixes).
"""

from bot import rasa_fixes

rasa_fixes.install()
