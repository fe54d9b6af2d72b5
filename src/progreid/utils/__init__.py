"""Small helpers shared by every layer (atomic file writes, safe loading)."""
