"""HTTP service: FastAPI app, persistence, roles, CLI."""
