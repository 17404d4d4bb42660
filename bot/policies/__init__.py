"""Custom Rasa dialogue policies.

Loading them (which the Rasa server does with every model) also installs our
fixes to Rasa's internals (bot.rasa_fixes), keeps its connections to the action
server alive (bot.action_client), copies trackers and describes their
states without replaying them for each policy (bot.tracker_copy,
bot.tracker_states), moves its model inference off the event loop
(bot.rasa_threads) and answers a message sent again once (bot.repeated_messages).
"""

from bot import (
    action_client,
    rasa_fixes,
    rasa_threads,
    repeated_messages,
    tracker_copy,
    tracker_states,
)

rasa_fixes.install()
action_client.install()
tracker_copy.install()
tracker_states.install()
rasa_threads.install()
repeated_messages.install()
