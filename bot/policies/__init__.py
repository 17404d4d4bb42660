"""Custom Rasa dialogue policies.

Loading them (which the Rasa server does with every model) also installs our
fixes to Rasa's internals (bot.rasa_fixes) and moves its model inference off
the event loop (bot.rasa_threads).
"""

from bot import rasa_fixes, rasa_threads

rasa_fixes.install()
rasa_threads.install()
