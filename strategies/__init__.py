"""Aggregation strategies: hook overrides of Flower's Message-API strategies."""
