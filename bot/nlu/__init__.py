"""Custom Rasa NLU components for Chinese, English and mixed messages."""
