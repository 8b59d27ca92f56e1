"""The pure core: measurements, policies and verdicts. No sockets, no clocks, no database."""
