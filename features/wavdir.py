"""Find the WAV files under a folder and the label each one carries, the two ways EI's uploader knows."""

from __future__ import annotations

from pathlib import Path

from features.errors import InputError

NAMING = ("labels come from the first subfolder (yes/a.wav) or from the name before the first dot "
          "(yes.a1.wav), as EI's uploader reads them")


def label_of(path: Path, root: Path) -> str:
    """A file in a subfolder takes the first subfolder's name (`yes/a.wav`, `yes/spk1/a.wav` -> yes); a
    file directly in root takes EI's file-name convention, the name before the first dot (`yes.a1.wav`)."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else path.name.split(".")[0]


def single_file_labels(items: list[tuple[Path, str]], root: Path) -> str | None:
    """A warning when every label has exactly one file and none is in a subfolder: the names are almost
    certainly not in `label.xxx.wav` form (e.g. `down_0.wav`), so each file became a class of its own."""
    labels = [label for _, label in items]
    in_subfolders = any(len(p.relative_to(root).parts) > 1 for p, _ in items)
    if len(items) < 2 or len(set(labels)) < len(labels) or in_subfolders:
        return None
    return f"every class has a single file ({len(labels)} files and classes, e.g. {labels[0]!r}): {NAMING}"


def find_wavs(target: str | Path) -> list[tuple[Path, str]]:
    """(path, label) for one .wav file, or for every .wav below a folder (sorted, hidden entries skipped)."""
    target = Path(target)
    if target.is_file():
        return [(target, label_of(target, target.parent))]
    if not target.is_dir():
        raise InputError(f"{target}: no such file or folder")
    wavs = sorted(
        p for p in target.rglob("*")
        if p.suffix.lower() == ".wav" and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(target).parts)
    )
    if not wavs:
        raise InputError(f"{target}: no .wav files found")
    return [(p, label_of(p, target)) for p in wavs]
