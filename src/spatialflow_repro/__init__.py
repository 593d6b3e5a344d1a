"""SpatialFlow-Repro: the Kedro project that regenerates the paper's Tables 1-7 with ``spatialflow``."""

__version__ = "0.1.0"
