"""Small helpers shared by every sub-package."""
