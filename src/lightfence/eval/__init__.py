"""Evaluation on real measured RTTs: verdicts, relays and estimates against ground truth."""
