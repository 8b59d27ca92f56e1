"""Evaluation on real measurements: data sets, leave-one-out runs, reports."""
