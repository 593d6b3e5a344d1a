"""Panoptic data: COCO-panoptic reading/writing/validation, Cityscapes conversion, synthetic data,
training transforms and batching.

Modules (imported explicitly; this package imports nothing so that torch-free users stay light):
``categories`` (CategoryMap), ``coco_panoptic`` (CocoPanoptic, PanopticWriter, load_panoptic_json),
``validate`` (validate_panoptic), ``dataset`` (PanopticDataset, collate), ``transforms``, ``batching``,
``synthetic`` (generate_synthetic, PRESETS), ``cityscapes`` (convert_cityscapes), ``visualize``.
"""
