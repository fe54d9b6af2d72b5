"""progreid.data."""
