"""The network families the block trains, one module each (convfc.py: conv+FC, EI's default KWS shape;
dstcn.py: the tiny depthwise-separable temporal conv net). A family gives a frozen config dataclass with
`validate()`, an nn.Module taking EI's flat feature vector, and named presets; its Linear/Conv layers are
what `dendritic.DendriticModel` wraps. The helpers below pick the family from a preset name or a config."""
from __future__ import annotations

from torch import nn

from kws.errors import ConfigError
from kws.nets import convfc, dstcn

AnyNetConfig = convfc.NetConfig | dstcn.DSConfig
PRESETS: tuple[str, ...] = (*convfc.PRESETS, *dstcn.PRESETS)


def preset(name: str, n_features: int, n_classes: int, n_coeffs: int = 13, **overrides) -> AnyNetConfig:
    """A preset of whichever family defines `name`; `overrides` (e.g. dropout) replace preset fields."""
    if name in dstcn.PRESETS:
        return dstcn.preset(name, n_features, n_classes, n_coeffs, **overrides)
    if name in convfc.PRESETS:
        return convfc.preset(name, n_features, n_classes, n_coeffs, **overrides)
    raise ConfigError(f"unknown model preset {name!r} (choose from {', '.join(PRESETS)})")


def build_net(cfg: AnyNetConfig) -> nn.Module:
    return dstcn.DSTCN(cfg) if isinstance(cfg, dstcn.DSConfig) else convfc.KWSNet(cfg)


def config_from_dict(d: dict) -> AnyNetConfig:
    """Inverse of the configs' to_dict (JSON or torch.load round trips turn tuples into lists)."""
    d = dict(d)
    if d.get("family") == dstcn.FAMILY:
        kernels = d.get("branch_kernels", ())
        return dstcn.DSConfig(**{**d, "branch_kernels": None if kernels is None else tuple(kernels)})
    if d.get("channels") is not None:
        d["channels"] = tuple(d["channels"])
    return convfc.NetConfig(**d)
