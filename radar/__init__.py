"""Risk Radar: from regulator notices to reviewable listing-rule changes."""

__version__ = "0.1.0"
