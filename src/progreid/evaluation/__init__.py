"""progreid.evaluation."""
