"""The operator's compliance gate: signed verdict tokens, a local allow/deny decision, a log.

Read-only by design: the gate fetches a token from the one verifier URL it is given, decides on
the operator's own host, and logs. It accepts no inbound connection and cannot switch anything off.
"""
