"""Fleet scale: one verdict kernel, a synthetic fleet, batch and stream engines around it."""
