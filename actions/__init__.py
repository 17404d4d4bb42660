"""Custom actions (rasa_sdk), one module per topic.

Actions return events and utter domain responses by name; the responses carry
the zh/en variations, so no action holds customer-facing text of its own
except where it must be built from data (fallback suggestions).
"""
