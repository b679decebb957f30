"""Network builders, the task contract and the typed run configuration (no Flower)."""
