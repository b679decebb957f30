"""Simulation: phantom cohorts, public-dataset adapters and local multi-center runs."""
