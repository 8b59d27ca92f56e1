"""The HTTP API: a thin FastAPI adapter over `lightfence.verifier.service`."""
