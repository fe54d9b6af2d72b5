"""progreid.training."""
