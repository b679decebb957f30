"""Aggregation server: handshake, training rounds, checkpoints, final cross-site evaluation."""
