"""Jade Mart customer-service assistant: the service package."""
