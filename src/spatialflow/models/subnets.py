"""The four parallel sub-networks and the spatial information flows (paper section 3.2).

Notation of the paper: zeta = conv3x3 + ReLU (no normalisation); for every FPN level i and j = 1..4

    eq. (1), baseline:   reg_j = zeta(reg_{j-1})          cls_j = zeta(cls_{j-1})
                         stuff = mask = P_i               (heads read the FPN directly)
    eq. (2), + sub-nets: stuff_j = zeta(stuff_{j-1})      mask_1 = zeta(P_i)
    eq. (3), + flows:    cls_j   = zeta(cls_{j-1}   + phi_cls_j(reg_j))
                         stuff_j = zeta(stuff_{j-1} + phi_stuff_j(reg_j))
                         mask_1  = zeta(P_i + phi_mask(reg_4) + psi(stuff_4))
    all *_0 = P_i.  reg / cls run on P3..P7, stuff / mask on P3..P5.  phi, psi: plain 3x3 convs.

Deformable variant (supplement eq. 6, ``dcn``): the reg flows steer offsets instead of being added,

    cls_j   = zeta_dcn(cls_{j-1},   phi_offset_cls_j(reg_j + cls_{j-1}))
    stuff_j = zeta_dcn(stuff_{j-1}, phi_offset_stuff_j(reg_j + stuff_{j-1}))
    mask_1  = zeta_dcn(P_i + psi(stuff_4), phi_offset_mask(reg_4 + P_i))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from spatialflow.models.config import SpatialFlowConfig
from spatialflow.models.deform import ModulatedDeformConv3x3, offset_conv

NUM_BLOCKS = 4  # reg, cls and stuff sub-nets; the mask sub-net has one block
NUM_SEGMENTATION_LEVELS = 3  # P3..P5 feed the stuff and mask sub-nets


PAPER_CHANNELS = 256


def init_std(in_channels: int) -> float:
    """The paper's normal(0, 0.01) init at 256 input channels, scaled by sqrt(256 / C) for narrower
    networks so that each conv keeps the same signal gain (0.01 * sqrt(9 * 256) = 0.48 per layer). A 64-wide
    tower at std 0.01 would shrink its input 4000-fold over four layers and train far more slowly."""
    return 0.01 * math.sqrt(PAPER_CHANNELS / in_channels)


def conv3x3(channels: int) -> nn.Conv2d:
    """A sub-net / flow conv: 3x3, same channels, normal(std=init_std) weights, zero bias."""
    conv = nn.Conv2d(channels, channels, 3, padding=1)
    nn.init.normal_(conv.weight, std=init_std(channels))
    nn.init.zeros_(conv.bias)
    return conv


def deform3x3(channels: int) -> ModulatedDeformConv3x3:
    conv = ModulatedDeformConv3x3(channels, channels)
    nn.init.normal_(conv.weight, std=init_std(channels))
    return conv


def _convs(n: int, make) -> nn.ModuleList:
    return nn.ModuleList(make() for _ in range(n))


@dataclass
class SubnetOutputs:
    """Per-level outputs: reg / cls for P3..P7, stuff / mask for P3..P5."""

    reg: list[Tensor]
    cls: list[Tensor]
    stuff: list[Tensor]
    mask: list[Tensor]


class SubNetworks(nn.Module):
    """FPN levels [P3..P7] -> :class:`SubnetOutputs` (weights shared across levels)."""

    def __init__(self, cfg: SpatialFlowConfig) -> None:
        super().__init__()
        c = cfg.fpn_channels
        self.cfg = cfg
        self.dcn = cfg.dcn
        self.reg_blocks = _convs(NUM_BLOCKS, lambda: conv3x3(c))
        self.cls_blocks = _convs(NUM_BLOCKS, lambda: deform3x3(c) if cfg.dcn else conv3x3(c))
        if cfg.subnets:
            self.stuff_blocks = _convs(NUM_BLOCKS, lambda: deform3x3(c) if cfg.dcn else conv3x3(c))
            self.mask_block = deform3x3(c) if cfg.dcn else conv3x3(c)
        if cfg.dcn:  # offsets from the flows (validated: all reg flows are on)
            self.phi_offset_cls = _convs(NUM_BLOCKS, lambda: offset_conv(c))
            self.phi_offset_stuff = _convs(NUM_BLOCKS, lambda: offset_conv(c))
            self.phi_offset_mask = offset_conv(c)
        else:
            if cfg.flow_reg_cls:
                self.phi_cls = _convs(NUM_BLOCKS, lambda: conv3x3(c))
            if cfg.flow_reg_stuff:
                self.phi_stuff = _convs(NUM_BLOCKS, lambda: conv3x3(c))
            if cfg.flow_reg_mask:
                self.phi_mask = conv3x3(c)
        if cfg.flow_stuff_mask:
            self.psi = conv3x3(c)

    def forward(self, features: list[Tensor]) -> SubnetOutputs:
        out = SubnetOutputs([], [], [], [])
        for level, p in enumerate(features):
            with_segmentation = level < NUM_SEGMENTATION_LEVELS
            reg, cls, stuff = self._towers(p, with_stuff=with_segmentation and self.cfg.subnets)
            out.reg.append(reg)
            out.cls.append(cls)
            if with_segmentation:
                if self.cfg.subnets:
                    out.stuff.append(stuff)
                    out.mask.append(self._mask(p, reg, stuff))
                else:  # eq. (1): the stuff head and the mask RoIAlign read P3..P5 directly
                    out.stuff.append(p)
                    out.mask.append(p)
        return out

    def _towers(self, p: Tensor, with_stuff: bool) -> tuple[Tensor, Tensor, Tensor]:
        cfg = self.cfg
        reg = cls = stuff = p
        for j in range(NUM_BLOCKS):
            reg = F.relu(self.reg_blocks[j](reg))
            if self.dcn:
                cls = F.relu(self.cls_blocks[j](cls, self.phi_offset_cls[j](reg + cls)))
            elif cfg.flow_reg_cls:
                cls = F.relu(self.cls_blocks[j](cls + self.phi_cls[j](reg)))
            else:
                cls = F.relu(self.cls_blocks[j](cls))
            if not with_stuff:
                continue
            if self.dcn:
                stuff = F.relu(self.stuff_blocks[j](stuff, self.phi_offset_stuff[j](reg + stuff)))
            elif cfg.flow_reg_stuff:
                stuff = F.relu(self.stuff_blocks[j](stuff + self.phi_stuff[j](reg)))
            else:
                stuff = F.relu(self.stuff_blocks[j](stuff))
        return reg, cls, stuff

    def _mask(self, p: Tensor, reg4: Tensor, stuff4: Tensor) -> Tensor:
        x = p
        if self.cfg.flow_stuff_mask:
            x = x + self.psi(stuff4)
        if self.dcn:
            return F.relu(self.mask_block(x, self.phi_offset_mask(reg4 + p)))
        if self.cfg.flow_reg_mask:
            x = x + self.phi_mask(reg4)
        return F.relu(self.mask_block(x))
