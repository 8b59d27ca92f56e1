"""The timed challenge protocol: wire messages, session state machines and measurement records.

Pure and sans-IO: nothing here opens a socket or reads a clock. Times come in as `now_ns`.
"""
