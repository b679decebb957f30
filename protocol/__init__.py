"""The typed message protocol between the server and the sites: every message and reply, and the metric names."""
