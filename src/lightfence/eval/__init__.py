"""Evaluation on real measured RTTs: verdicts, relays and position estimates against ground truth."""
