"""Shared formats both sides of the wire import: the landmark registry file, trust levels and
canonical JSON (what is signed or hashed).

This package sits on the ground floor: it imports only `crypto.keys` and the standard library,
so the agent, the landmark, the evidence checker and the verifier can all depend on it.
"""
