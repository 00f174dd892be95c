"""Finding the Whisper model: the packaged default, a directory, a split model joined once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app.speech.audio import decode_audio
from app.speech.model import (
    DEFAULT_MODEL,
    ModelError,
    ModelOptions,
    load_model,
    locate_model,
)
from app.speech.transcriber import Transcriber

COMPANIONS = ("config.json", "tokenizer.json", "vocabulary.txt")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return locate_model(None, cache_dir=tmp_path_factory.mktemp("unused")).directory


def _split(model_dir: Path, first: Path, second: Path) -> None:
    """Cut model.bin in two parts in two folders, as PyPI packages ship a big model."""
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    data = (model_dir / "model.bin").read_bytes()
    middle = len(data) // 2
    (first / "model.bin.part1").write_bytes(data[:middle])
    (second / "model.bin.part2").write_bytes(data[middle:])
    for name in COMPANIONS:
        shutil.copyfile(model_dir / name, second / name)


def test_default_is_the_packaged_tiny_en(tiny_dir: Path, tmp_path: Path) -> None:
    location = locate_model(None, cache_dir=tmp_path)
    assert location.name == DEFAULT_MODEL
    assert (location.directory / "model.bin").is_file()
    assert locate_model("tiny.en", cache_dir=tmp_path) == location
    assert not any(tmp_path.iterdir())  # nothing copied for a whole model


def test_a_model_directory(tiny_dir: Path, tmp_path: Path) -> None:
    location = locate_model(tiny_dir, cache_dir=tmp_path)
    assert location.directory == tiny_dir
    assert location.name == tiny_dir.name


def test_split_model_is_joined_once_and_loads(
    tiny_dir: Path, tmp_path: Path, transcriber: Transcriber, chest_wav: Path
) -> None:
    first, second = tmp_path / "part-1" / "data", tmp_path / "part-2" / "data"
    _split(tiny_dir, first, second)
    cache = tmp_path / "cache"
    spec = f"{first}{os.pathsep}{second}"

    location = locate_model(spec, cache_dir=cache)
    assert location.directory.parent == cache
    joined = location.directory / "model.bin"
    assert joined.read_bytes() == (tiny_dir / "model.bin").read_bytes()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no half-built folder

    stamp = joined.stat().st_mtime_ns
    assert locate_model(spec, cache_dir=cache) == location
    assert joined.stat().st_mtime_ns == stamp  # joined once, reused after

    model = load_model(location, ModelOptions(cpu_threads=2))
    split = Transcriber(model=model, model_name=location.name)
    audio = decode_audio(chest_wav)
    assert split.transcribe_raw(audio).text == transcriber.transcribe_raw(audio).text


def test_missing_part_is_named(tiny_dir: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    _split(tiny_dir, first, second)
    (first / "model.bin.part1").rename(first / "model.bin.part3")
    with pytest.raises(ModelError, match=r"parts are incomplete: found parts \[2, 3\]"):
        locate_model(f"{first}{os.pathsep}{second}", cache_dir=tmp_path / "cache")


def test_missing_tokenizer_is_refused_not_downloaded(tiny_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.bin", "config.json", "vocabulary.txt"):
        (folder / name).symlink_to(tiny_dir / name)
    with pytest.raises(ModelError, match=r"lacks tokenizer\.json"):
        locate_model(folder, cache_dir=tmp_path)


def test_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a CTranslate2 Whisper model"):
        locate_model(tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(ModelError, match="not found"):
        locate_model(tmp_path / "absent", cache_dir=tmp_path / "cache")


def test_a_broken_model_file_fails_to_load_clearly(tiny_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in COMPANIONS:
        shutil.copyfile(tiny_dir / name, folder / name)
    (folder / "model.bin").write_bytes(b"\x00" * 1024)
    location = locate_model(folder, cache_dir=tmp_path)
    with pytest.raises(ModelError, match="cannot load the Whisper model"):
        load_model(location, ModelOptions(cpu_threads=1))


def test_loaded_once_per_process(tiny_dir: Path, tmp_path: Path) -> None:
    location = locate_model(None, cache_dir=tmp_path)
    options = ModelOptions(cpu_threads=2)
    assert load_model(location, options) is load_model(location, options)


def test_workers_share_the_cores(tmp_path: Path) -> None:
    location = locate_model(None, cache_dir=tmp_path)
    model = load_model(location, ModelOptions(workers=2))
    assert model.model.num_workers == 2
    shared_out = max(1, (os.cpu_count() or 1) // 2)  # what cpu_threads=0 means per worker
    assert load_model(location, ModelOptions(workers=2, cpu_threads=shared_out)) is model
    with pytest.raises(ModelError, match="at least one worker"):
        load_model(location, ModelOptions(workers=0))
