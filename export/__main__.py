"""Re-export a trained model without training: `python -m export OUT/model.pt --out-directory DIR`.

Writes the same three files as the block (model.onnx, model.tflite, model_quantized_int8_io.tflite)
through the same fold -> ONNX -> TFLite -> verify path (export/checkpoint.py). The int8 calibration rows
are the training run's, stored in model.pt; `--data-directory D` calibrates on D's validation split
(X_split_test.npy, first 1,000 rows) instead. Exit codes: 0 done, 1 bad input or failed check, 2 bad flags.
"""
from __future__ import annotations

import argparse
import os
import sys


def parse(argv: list[str] | None) -> argparse.Namespace:
    from kws.errors import ArgumentParser  # usage + one `ERR:` line, as every tool of the project

    p = ArgumentParser(prog="python -m export", description=__doc__.splitlines()[0])
    p.add_argument("model", help="model.pt written by train.py into its out directory")
    p.add_argument("--out-directory", required=True, help="where the three model files are written")
    p.add_argument("--data-directory", help="EI data directory whose validation split calibrates int8 "
                                            "(default: the rows stored in model.pt)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = parse(argv)
    from kws.errors import exit_code

    return exit_code(lambda: export(args))


def export(args: argparse.Namespace) -> int:
    """Load, fold, export and verify into a hidden folder, then move the three files into place."""
    from .checkpoint import CALIBRATION_ROWS, export_checkpoint
    from .staging import staged, writable_out_dir

    out = writable_out_dir(args.out_directory)
    calib = None
    if args.data_directory:
        from block.data import load_ei_data

        calib = load_ei_data(args.data_directory).x_val[:CALIBRATION_ROWS]
    with staged(out) as tmp:
        ckpt, report = export_checkpoint(args.model, tmp, calib)
    dropped = sum(report["dendrites_dropped"].values())  # negligible dendrites left out (export.fold)
    dead = f" ({dropped} negligible dropped)" if dropped else ""
    print(f"exported {report['params']} params, {ckpt.model.num_dendrites} dendrites{dead}, "
          f"classes {ckpt.classes}: " + ", ".join(f"{k} ({v:,} B)" for k, v in report["files"].items())
          + f" in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
