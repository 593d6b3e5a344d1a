"""SpatialFlow: the model package (pure PyTorch + torchvision).

Sub-packages, one paper concept each:

- ``spatialflow.data``      COCO-panoptic reader/writer, Cityscapes conversion, synthetic data, transforms
- ``spatialflow.panoptic``  segment ids, the heuristic merge, PQ evaluation, submission packaging
- ``spatialflow.models``    backbone + FPN, the four sub-networks and spatial flows, heads, losses
- ``spatialflow.engine``    training loop, checkpoints, distributed launch, inference and TTA

This package never imports Kedro, DVC or MLflow.
"""

__version__ = "0.1.0"
