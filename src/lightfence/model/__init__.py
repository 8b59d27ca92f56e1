"""Shared formats both sides of the wire import: the landmark registry file and trust levels.

This package sits on the ground floor: it imports only `crypto.keys` and the standard library,
so the agent, the landmark, the evidence checker and the verifier can all depend on it.
"""
