"""Custom Rasa dialogue policies.

Loading them (which the Rasa server does with every model) also installs our
fixes to Rasa's internals (bot.rasa_fixes), keeps its connections to the action
server alive (bot.action_client), copies trackers without replaying them
(bot.tracker_copy) and moves its model inference off
the event loop (bot.rasa_threads).
"""

from bot import action_client, rasa_fixes, rasa_threads, tracker_copy

rasa_fixes.install()
action_client.install()
tracker_copy.install()
rasa_threads.install()
