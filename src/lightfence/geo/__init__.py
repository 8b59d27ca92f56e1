"""Geometry on the Earth: distances, caps, regions. Pure, no I/O beyond loading packaged data."""
