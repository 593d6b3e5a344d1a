"""Data preparation: synthetic data for the tiny profile, layout checks and conversion for real data."""
