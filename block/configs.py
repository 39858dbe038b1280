"""Block arguments (block/params.py) -> the library's typed configs, as one `RunConfig`.

Kept apart from params.py so that `train.py --help` never imports torch: this module imports the library.
"""
from __future__ import annotations

from argparse import Namespace
from dataclasses import replace

from block.sizing import resolve_budget
from dendritic import PBConfig, ScheduleConfig
from kws.augment import AugmentConfig
from kws.nets import AnyNetConfig, dstcn, preset
from kws.nets.convfc import NetConfig
from kws.trainer import RunConfig, TrainConfig


def dropout(args: Namespace, net: AnyNetConfig, n_features: int, n_classes: int) -> float:
    """`--dropout`: a rate as given, or for 'auto' the measured best of the network's family and size: a DS-TCN
    takes it from its parameter budget (dstcn.dropout_for_budget), the conv+FC nets none (issue 13's recipe:
    dropout lowered validation accuracy of EI-sized conv+FC nets on all three benchmark sets)."""
    if args.dropout != "auto":
        return args.dropout
    if not isinstance(net, dstcn.DSConfig):
        return 0.0
    budget, _ = resolve_budget(args.max_params, n_features, n_classes, args.mfcc_coefficients, args.model_preset)
    return dstcn.dropout_for_budget(budget)


def run_config(args: Namespace, n_features: int, n_classes: int) -> RunConfig:
    """Map the block arguments onto one RunConfig (the time limit is the pipeline's: TrainConfig.max_seconds)."""
    common = {"noise_std": args.input_noise}
    if args.model_preset == "custom" and args.conv_type in dstcn.CUSTOM_TYPES:
        net = dstcn.custom(args.conv_type, n_features, n_classes, args.mfcc_coefficients, blocks=args.conv_layers,
                           width=args.conv_width, kernel=args.kernel_size, **common)
    elif args.model_preset == "custom":
        net = NetConfig(n_features=n_features, n_classes=n_classes, n_coeffs=args.mfcc_coefficients,
                        conv_type=args.conv_type, conv_layers=args.conv_layers, width=args.conv_width,
                        growth=args.width_growth, kernel_size=args.kernel_size, linear_layers=args.linear_layers,
                        linear_width=args.linear_width, **common)
    else:
        net = preset(args.model_preset, n_features, n_classes, args.mfcc_coefficients, **common)
    net = replace(net, dropout=dropout(args, net, n_features, n_classes))
    pb = PBConfig(mode=args.model_format, scope=args.perforate, activation=args.dendrite_activation,
                  init_mult=args.init_multiplier, dendrite_update=args.dendrite_update,
                  candidate_pool=args.candidate_pool, install_noise_ratio=args.install_noise_ratio,
                  layers=tuple(n.strip() for n in args.perforate_layers.split(",") if n.strip()),
                  dilation=args.dendrite_dilation, kernel=args.dendrite_kernel)
    sched = ScheduleConfig(max_dendrites=args.max_dendrites, switch_patience=args.switch_patience,
                           improvement_threshold=args.improvement_threshold,
                           dendrite_patience=args.dendrite_patience, max_tries=args.max_dendrite_tries,
                           early_stopping_patience=args.early_stopping_patience)
    augment = AugmentConfig(time_shift=args.augment_time_shift, time_masks=args.augment_time_masks,
                            time_mask_width=args.augment_time_mask_width, freq_masks=args.augment_freq_masks,
                            freq_mask_width=args.augment_freq_mask_width, time_warp=args.augment_time_warp,
                            mixup_alpha=args.mixup_alpha)
    train = TrainConfig(epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
                        lr_patience=args.lr_patience, seed=args.seed, augment=augment,
                        class_weights=args.auto_weight_classes, label_smoothing=args.label_smoothing,
                        distill_weight=args.distill_weight, distill_temperature=args.distill_temperature,
                        teacher_width=args.teacher_width)
    return RunConfig(net, pb, sched, train)
