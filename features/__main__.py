"""python -m features WAV_DIR --out-directory DATA_DIR: labelled WAVs -> an EI learning-block data directory.

Bad files (unreadable, corrupt or zero-length) are skipped with a `warning:` line, or fail the run with
--strict; an empty folder, fewer than 2 labels or bad options fail with one `ERR:` line and exit 1
(bad flags: exit 2).
Output is written to a temporary sibling folder and renamed into place, so a failed run leaves nothing.
"""

from __future__ import annotations

from features.cli import add_feature_args, feature_args, run
from features.dataset import build_dataset
from kws.errors import ArgumentParser


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m features", description=__doc__.splitlines()[0].split(": ", 1)[1],
        epilog="Labels: the first subfolder's name (yes/a.wav), or for files directly in WAV_DIR the part of "
               "the name before the first dot (yes.a1b2.wav), as EI's uploader does.")
    parser.add_argument("wav_dir", metavar="WAV_DIR",
                        help="folder of WAVs (any rate/format: resampled to 16 kHz mono)")
    parser.add_argument("--out-directory", required=True, help="EI data directory to write")
    parser.add_argument("--validation-fraction", type=float, default=0.2,
                        help="share of non-holdout files in X_split_test (EI's validation); default 0.2")
    parser.add_argument("--holdout-fraction", type=float, default=0.0,
                        help="share of files for holdout/{X,Y}_test.npy (EI's Test set); default 0 = none")
    parser.add_argument("--seed", type=int, default=3, help="split seed; default 3")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out-directory")
    add_feature_args(parser)
    args = parser.parse_args(argv)
    summary = build_dataset(args.wav_dir, args.out_directory, validation_fraction=args.validation_fraction,
                            holdout_fraction=args.holdout_fraction, seed=args.seed, strict=args.strict,
                            overwrite=args.overwrite, **feature_args(args))
    counts = ", ".join(f"{name} {files} files/{rows} rows" for name in ("train", "validation", "holdout")
                       for files, rows in [summary[name]] if files)
    skipped = f"; skipped {summary['skipped']} unreadable file(s)" if summary["skipped"] else ""
    print(f"wrote {args.out_directory}: {counts}; {summary['features']} features; "
          f"classes {summary['classes']}{skipped}")
    return 0


def cli() -> None:
    """The `dendritic-features` command (pyproject.toml)."""
    run(main)


if __name__ == "__main__":
    cli()
