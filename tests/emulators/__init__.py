"""Local stand-ins for the generation services, faithful to PROVIDERS.md, for tests only."""
