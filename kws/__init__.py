"""The keyword-spotting side of the block, built on the PB library in dendritic/ (which never imports this).

Reading order: nets/ (the network families: convfc.py is the conv+FC KWS net and its presets, dstcn.py the
tiny depthwise-separable temporal conv net; nets/__init__.py picks one by preset name or config) -> augment.py and losses.py (the training recipe: feature-domain
augmentation, mixup, soft-target and distillation losses) -> trainer.py (the block's training loop around
`dendritic.DendriticModel`) -> lockstep.py (same-shaped runs trained as one stacked network, for sweeps).
errors.py holds the error classes and the `ERR:` line every entry point reports.

Nothing is imported here, so `kws.errors` stays importable without torch (train.py's `--help`, the CLIs).
"""
