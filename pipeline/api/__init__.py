"""The study from Python (being written)."""
