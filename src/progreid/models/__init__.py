"""progreid.models."""
