"""The model's two typed configurations and the named presets of the paper's ablation tables.

mmdetection's ``train_cfg`` / ``test_cfg`` split:

- :class:`SpatialFlowConfig`: everything that decides the *weights* (the network, its losses, the anchor
  assignment and the mask-head proposals used in training). It is part of a row's training identity.
- :class:`InferenceConfig`: how trained weights are *evaluated* (test-time score threshold, NMS, top-k,
  mask threshold, the panoptic merge). Changing it never retrains anything.

Every ablation switch of Tables 2-4 and 6 is a field of :class:`SpatialFlowConfig`; the presets
(:data:`PRESETS`) are the cumulative rows of Table 2 / Table 3 plus the deformable variant of Table 6.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from spatialflow.errors import ConfigError
from spatialflow.panoptic.merge import MergeConfig

# The layers whose shape depends on the classes (fnmatch patterns over parameter names): the only ones
# trained in the first phase of the Cityscapes-from-COCO recipe (paper supplement, Table 7 "-COCO").
CLASS_DEPENDENT_PARAMETERS = ("cls_head.conv.*", "stuff_head.classifier.*", "mask_head.predictor.mask_fcn_logits.*")

BACKBONE_DEPTHS = (18, 34, 50, 101)
BACKBONE_NORMS = ("frozen", "frozen_stats")
STUFF_LOSS_NORMS = ("labelled", "unpadded")
MASK_TARGETS = ("soft", "binary")
CANDIDATE_RANKINGS = ("pair", "anchor_max")
MASK_PASTES = ("legacy", "grid_sample")


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: must be one of {list(choices)}, got {value!r}")


@dataclass
class SpatialFlowConfig:
    """Everything that defines a SpatialFlow model (defaults: the paper's full model on COCO, ResNet-50).

    Image sizes are not model fields: the data transforms resize, the model pads to a multiple of 32.
    """

    # classes: things 0..K-1; stuff 0..S-1, the stuff head predicts S + 1 classes ('other' = S)
    num_things: int = 80
    num_stuff: int = 53
    # backbone + FPN
    depth: int = 50
    fpn_channels: int = 256
    pretrained_backbone: bool = False  # ImageNet weights from torchvision's local cache only, or:
    backbone_weights: str | None = None  # a file in that format (the tiny profile's ImageNet stand-in)
    frozen_stages: int = 1  # stem + res2 frozen (-1: none, 0: stem)
    backbone_width: int = 64  # ResNet stem / res2 channels, every stage scales (64: torchvision; tiny: 32)
    # BatchNorm of the ResNet: "frozen" = FrozenBatchNorm2d everywhere (statistics and affine are buffers);
    # "frozen_stats" = the authors' norm_cfg requires_grad=True + norm_eval=True: statistics frozen (BN
    # always in eval mode), affine weight/bias trainable outside the frozen stages and counted as parameters
    backbone_norm: str = "frozen"
    # ablation switches (Table 2/3 rows, Table 6)
    subnets: bool = True  # stuff (4 blocks) + mask (1 block) sub-networks
    flow_reg_cls: bool = True  # phi_cls: reg_j -> cls_j
    flow_reg_stuff: bool = True  # phi_stuff: reg_j -> stuff_j   (needs subnets)
    flow_reg_mask: bool = True  # phi_mask: reg_4 -> mask_1      (needs subnets)
    flow_stuff_mask: bool = True  # psi: stuff_4 -> mask_1        (needs subnets)
    dcn: bool = False  # deformable convs in res3-res5 and in the cls/stuff/mask sub-net blocks
    stuff_head_dcn: bool = False  # the stuff head's 3x3 convs deformable (DCNv2 with own offsets, "as
    #                               UPSNet does"): Table 7's "-COCO-M" (supplement 6.1)
    # heads
    stuff_channels: int = 128
    stuff_groups: int = 32  # GroupNorm groups in the stuff head
    mask_channels: int = 256
    roi_align_aligned: bool = False  # mask-head RoIAlign with the half-pixel shift (mmcv aligned=True)
    # loss
    stuff_loss_weight: float = 0.25  # the paper's lambda: L = cls + reg + mask + lambda * stuff (COCO 0.25, Cityscapes 1)
    # stuff cross-entropy divided by "labelled" pixels (void and padding excluded) or by "unpadded" pixels
    # (void included, padding excluded: the authors' avg_factor without their image-0 window bug)
    stuff_loss_norm: str = "labelled"
    # mask targets: "soft" (torchvision: GT masks RoIAligned with aligned=False, fractional values) or
    # "binary" (mmdet: RoIAligned with aligned=True, then >= 0.5)
    mask_target: str = "soft"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # anchors: sizes octave_base_scale * stride * 2^(i / scales_per_octave), strides 8..128
    anchor_octave_base_scale: float = 4.0
    anchor_scales_per_octave: int = 3
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.4
    # mask-head proposals in training: detached detections (these settings) + the GT boxes
    train_score_thresh: float = 0.05
    train_pre_nms_topk: int = 1000  # candidates per level
    train_candidate_ranking: str = "pair"  # see InferenceConfig.candidate_ranking
    train_nms_thresh: float = 0.4
    train_max_proposals: int = 100  # detections per image after NMS
    mask_proposal_iou: float = 0.5  # proposals with IoU >= this to a GT train the mask head

    def __post_init__(self) -> None:
        self.anchor_ratios = tuple(float(r) for r in self.anchor_ratios)
        validate(self)

    @property
    def num_anchors(self) -> int:
        return self.anchor_scales_per_octave * len(self.anchor_ratios)


@dataclass
class InferenceConfig:
    """How a trained model is evaluated (the paper's test settings; ``test_cfg`` in mmdetection)."""

    score_thresh: float = 0.05
    pre_nms_topk: int = 1000  # candidates per level
    # "pair": the top-k (anchor, class) pairs above score_thresh per level; "anchor_max": the authors'
    # (mmdet get_bboxes): the top-k anchors per level by their maximum class score, then every class of
    # those anchors above score_thresh
    candidate_ranking: str = "pair"
    nms_thresh: float = 0.4
    max_detections: int = 100
    mask_threshold: float = 0.5
    # 28x28 masks into the image: "legacy" (torchvision paste_masks_in_image) or "grid_sample" (mmdet's
    # _do_paste_mask: bilinear grid_sample at pixel centres)
    mask_paste: str = "legacy"
    merge: MergeConfig = field(default_factory=MergeConfig)  # spatialflow.panoptic.merge

    def __post_init__(self) -> None:
        if isinstance(self.merge, dict):
            self.merge = _merge_from_dict(self.merge)
        for name in ("pre_nms_topk", "max_detections"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"inference.{name}: must be an integer >= 1, got {value!r}")
        for name in ("score_thresh", "nms_thresh", "mask_threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise ConfigError(f"inference.{name}: must lie in [0, 1], got {value!r}")
        _check_choice("inference.candidate_ranking", self.candidate_ranking, CANDIDATE_RANKINGS)
        _check_choice("inference.mask_paste", self.mask_paste, MASK_PASTES)
        m = self.merge
        for name in ("score_threshold", "overlap_threshold"):
            value = getattr(m, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise ConfigError(f"inference.merge.{name}: must lie in [0, 1], got {value!r}")
        if not isinstance(m.stuff_area_limit, (int, float)) or m.stuff_area_limit < 0:
            raise ConfigError(f"inference.merge.stuff_area_limit: must be >= 0, got {m.stuff_area_limit!r}")


def inference_config(values: dict | InferenceConfig | None = None) -> InferenceConfig:
    """An :class:`InferenceConfig` from a mapping (unknown keys are one-line errors)."""
    if values is None:
        return InferenceConfig()
    if isinstance(values, InferenceConfig):
        return values
    if not isinstance(values, dict):
        raise ConfigError(f"inference: expected a mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(InferenceConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"inference: unknown key(s) {unknown}; known: {sorted(known)}")
    return InferenceConfig(**values)


def inference_to_dict(cfg: InferenceConfig) -> dict:
    return dataclasses.asdict(cfg)


_SWITCHES = ("subnets", "flow_reg_cls", "flow_reg_stuff", "flow_reg_mask", "flow_stuff_mask", "dcn")


def _row(*on: str) -> dict[str, bool]:
    return {name: name in on for name in _SWITCHES}


# Cumulative like Table 2: each row adds one component to the row above.
PRESETS: dict[str, dict] = {
    "baseline": _row(),
    "+subnets": _row("subnets"),
    "+reg_cls": _row("subnets", "flow_reg_cls"),
    "+reg_stuff": _row("subnets", "flow_reg_cls", "flow_reg_stuff"),
    "+reg_mask": _row("subnets", "flow_reg_cls", "flow_reg_stuff", "flow_reg_mask"),
    "spatialflow": _row("subnets", "flow_reg_cls", "flow_reg_stuff", "flow_reg_mask", "flow_stuff_mask"),
    "spatialflow_dcn": _row(*_SWITCHES),
}


def validate(cfg: SpatialFlowConfig) -> None:
    """Raise ConfigError for values that make no sense or switches that contradict each other."""
    if cfg.depth not in BACKBONE_DEPTHS:
        raise ConfigError(f"model.depth: must be one of {BACKBONE_DEPTHS}, got {cfg.depth!r}")
    for name in ("num_things", "fpn_channels", "stuff_channels", "mask_channels", "stuff_groups",
                 "anchor_scales_per_octave", "train_pre_nms_topk", "train_max_proposals"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"model.{name}: must be an integer >= 1, got {value!r}")
    if not isinstance(cfg.num_stuff, int) or cfg.num_stuff < 0:
        raise ConfigError(f"model.num_stuff: must be an integer >= 0, got {cfg.num_stuff!r}")
    if cfg.stuff_channels % cfg.stuff_groups:
        raise ConfigError(
            f"model.stuff_channels: {cfg.stuff_channels} is not divisible by stuff_groups ({cfg.stuff_groups})"
        )
    _check_choice("model.backbone_norm", cfg.backbone_norm, BACKBONE_NORMS)
    if not isinstance(cfg.backbone_width, int) or isinstance(cfg.backbone_width, bool) or cfg.backbone_width < 8 \
            or cfg.backbone_width % 8:
        raise ConfigError(f"model.backbone_width: must be a multiple of 8 (64: torchvision's ResNet), got "
                          f"{cfg.backbone_width!r}")
    if cfg.backbone_width != 64 and cfg.pretrained_backbone and not cfg.backbone_weights:
        raise ConfigError(f"model.backbone_width: {cfg.backbone_width} has no ImageNet weights; set "
                          "model.backbone_weights (e.g. the pretrain_backbone stage's) or pretrained_backbone=false")
    _check_choice("model.stuff_loss_norm", cfg.stuff_loss_norm, STUFF_LOSS_NORMS)
    _check_choice("model.mask_target", cfg.mask_target, MASK_TARGETS)
    _check_choice("model.train_candidate_ranking", cfg.train_candidate_ranking, CANDIDATE_RANKINGS)
    for name in ("stuff_head_dcn", "roi_align_aligned"):
        if not isinstance(getattr(cfg, name), bool):
            raise ConfigError(f"model.{name}: must be true or false, got {getattr(cfg, name)!r}")
    if not isinstance(cfg.frozen_stages, int) or not -1 <= cfg.frozen_stages <= 4:
        raise ConfigError(f"model.frozen_stages: must be an integer in -1..4, got {cfg.frozen_stages!r}")
    if not cfg.subnets:
        needing = [f for f in ("flow_reg_stuff", "flow_reg_mask", "flow_stuff_mask") if getattr(cfg, f)]
        if needing:
            raise ConfigError(f"{', '.join(needing)} need the stuff and mask sub-networks: set subnets=True")
    if cfg.dcn and not (cfg.subnets and cfg.flow_reg_cls and cfg.flow_reg_stuff and cfg.flow_reg_mask):
        raise ConfigError(
            "dcn takes its sub-net offsets from the reg flows (supplement eq. 6): it needs subnets, "
            "flow_reg_cls, flow_reg_stuff and flow_reg_mask"
        )
    weight = cfg.stuff_loss_weight
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 <= weight < float("inf"):
        raise ConfigError(f"model.stuff_loss_weight: must be a finite number >= 0, got {weight!r}")
    if not isinstance(cfg.focal_gamma, (int, float)) or cfg.focal_gamma < 0:
        raise ConfigError(f"model.focal_gamma: must be >= 0, got {cfg.focal_gamma!r}")
    if not cfg.anchor_ratios or min(cfg.anchor_ratios) <= 0:
        raise ConfigError(f"anchor_ratios must be positive, got {cfg.anchor_ratios}")
    if not 0 <= cfg.bg_iou_thresh <= cfg.fg_iou_thresh <= 1:
        raise ConfigError("need 0 <= bg_iou_thresh <= fg_iou_thresh <= 1")
    for name in ("train_score_thresh", "train_nms_thresh", "mask_proposal_iou", "focal_alpha"):
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ConfigError(f"model.{name}: must lie in [0, 1], got {value!r}")
    if not isinstance(cfg.anchor_octave_base_scale, (int, float)) or not cfg.anchor_octave_base_scale > 0:
        raise ConfigError(f"model.anchor_octave_base_scale: must be > 0, got {cfg.anchor_octave_base_scale!r}")


def model_config(preset: str = "spatialflow", **overrides: Any) -> SpatialFlowConfig:
    """The preset's configuration with ``overrides`` applied; ConfigError for unknown names or bad values."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    known = {f.name for f in dataclasses.fields(SpatialFlowConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown model config field(s) {unknown}; known: {sorted(known)}")
    try:
        return SpatialFlowConfig(**{**PRESETS[preset], **overrides})
    except TypeError as exc:  # e.g. a merge dict with unknown keys
        raise ConfigError(f"bad model config: {exc}") from exc


def config_to_dict(cfg: SpatialFlowConfig) -> dict:
    """Plain (JSON/YAML-able) dict of the configuration, merge settings nested under 'merge'."""
    d = dataclasses.asdict(cfg)
    d["anchor_ratios"] = list(cfg.anchor_ratios)
    return d


def config_from_dict(d: dict) -> SpatialFlowConfig:
    """Inverse of :func:`config_to_dict`; ConfigError for unknown fields."""
    known = {f.name for f in dataclasses.fields(SpatialFlowConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown model config field(s) {unknown}")
    try:
        return SpatialFlowConfig(**d)
    except TypeError as exc:
        raise ConfigError(f"bad model config: {exc}") from exc


def _merge_from_dict(d: dict) -> MergeConfig:
    known = {f.name for f in dataclasses.fields(MergeConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown merge config field(s) {unknown}; known: {sorted(known)}")
    return MergeConfig(**d)
