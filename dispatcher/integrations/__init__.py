"""Kept so the documented imports work: the helpers live in ``dispatcher.receiver.integrations``."""
