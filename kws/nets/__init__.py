"""The network families the block trains, one module each (convfc.py: conv+FC, EI's default KWS shape).
A family gives a frozen config dataclass with `validate()`, an nn.Module taking EI's flat feature vector,
and named presets; its Linear/Conv layers are what `dendritic.DendriticModel` wraps."""
