"""progreid.search."""
