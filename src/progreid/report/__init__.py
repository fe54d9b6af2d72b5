"""progreid.report."""
