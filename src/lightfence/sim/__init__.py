"""Simulation and emulation: latency models fitted on real data, synthetic fleets, paths."""
