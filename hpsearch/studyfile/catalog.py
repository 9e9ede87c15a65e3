"""Where study files are found: a path, ./studies/NAME.yaml, or the studies shipped with hpsearch."""

from __future__ import annotations

from pathlib import Path

from hpsearch.errors import HpsearchError, SpecError
from hpsearch.studyfile.schema import load_spec
from hpsearch.studyfile.types import StudySpec

_PACKAGE = Path(__file__).resolve().parent.parent  # hpsearch/
# An installed hpsearch carries its studies as hpsearch/studies/ (pyproject.toml maps the repository's
# studies/ there); a source checkout run as it is (PYTHONPATH) has them beside the package.
SHIPPED_DIR = next((d for d in (_PACKAGE / "studies", _PACKAGE.parent / "studies") if d.is_dir()), _PACKAGE / "studies")


def shipped_study_files() -> list[Path]:
    return sorted(SHIPPED_DIR.glob("*.yaml"))


def find_study_file(name_or_path: str) -> Path | None:
    """The study file a --study argument means, or None if there is none."""
    given = Path(name_or_path)
    if given.suffix in (".yaml", ".yml") or _is_file(given):
        return given
    for folder in (Path("studies"), SHIPPED_DIR):
        candidate = folder / f"{name_or_path}.yaml"
        if _is_file(candidate):
            return candidate
    return None


def _is_file(path: Path) -> bool:
    """Path.is_file, False for a name the system cannot even look up (too long, say) rather than an error."""
    try:
        return path.is_file()
    except (OSError, ValueError):  # ValueError: a NUL byte
        return False


def load_study_spec(name_or_path: str) -> StudySpec:
    """The validated study a --study argument means."""
    path = find_study_file(name_or_path)
    if path is None:
        shipped = ", ".join(p.stem for p in shipped_study_files())
        raise HpsearchError(f"no study file {name_or_path!r}: give a path to a .yaml file or one of the "
                            f"shipped studies ({shipped}); `hpsearch studies` lists them")
    return load_spec(path)


def remembered_spec(study_name: str, path: str | None) -> StudySpec | None:
    """The study file a stored study was made from (`path`, which it records), if it is still there, still reads
    and still names that study; else None. Its target and limits are not stored with the study."""
    if not path or not _is_file(Path(path)):
        return None
    try:
        spec = load_spec(path)
    except SpecError:
        return None
    return spec if spec.name == study_name else None
