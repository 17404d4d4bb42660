"""The event pipe: every tracker event into a Redis Stream, read by consumer groups."""
