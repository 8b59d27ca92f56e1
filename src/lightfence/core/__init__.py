"""Pure core: measurements, estimates and verdicts. No I/O."""
