"""progreid.losses."""
