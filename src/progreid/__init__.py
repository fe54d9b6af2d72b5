"""progreid: person re-identification with PLA and TRC, exact and fast evaluation."""

__version__ = "0.1.0"
