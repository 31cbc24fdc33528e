"""scikit-learn estimators on the NumPy core (being written)."""
