"""The agent desk (being built): agents and, later, the queue, routing and console."""
