"""Panoptic segmentation core: segment ids, the heuristic merge, PQ, submissions."""
