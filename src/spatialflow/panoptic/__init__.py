"""Panoptic segmentation core: segment ids, the heuristic merge, PQ, submissions.

- ``ids``                 COCO-panoptic segment ids <-> PNG colours
- ``merge``               instances + stuff -> panoptic ids (``merge``, ``MergeConfig``, ``MERGE_PRESETS``)
- ``pq``                  panopticapi-exact PQ/SQ/RQ (``PQAccumulator``, ``pq_compute``)
- ``detection_metrics``   things-only box / mask AP through pycocotools
- ``submission``          the COCO test-dev upload zip
"""
