"""Helpers shared by test modules in different folders (importable as ``helpers``: pytest's
``pythonpath = ["tests"]``)."""
