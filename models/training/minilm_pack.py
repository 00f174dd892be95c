"""A repacked, smaller MiniLM for offline training machines that cannot install the package.

The frozen text encoder only ever sees the words of our texts, so the word
embedding table (30522 x 384, a third of the weights) can travel as just the rows
of the tokens those texts can produce: every string literal of the synthetic
generator and the dictation simulator, and numbers.  All other weights travel
unchanged, so embeddings computed from the unpacked copy equal the packaged
model's for every covered text.  ``radscribe_source.json`` names the packaged
weights it copies, so checkpoints trained with it load where the package is.

    python -m models.training.minilm_pack pack OUT_DIR          # here
    python -m models.training.minilm_pack unpack OUT_DIR DEST   # on the machine
    export RADSCRIBE_MINILM_DIR=DEST
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import torch

from models.checkpoint import REPACKED_SOURCE_FILE, text_encoder_source
from models.networks.text_encoder import minilm_path

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
ENCODER_FILE = "encoder.safetensors"
ROWS_FILE = "word_rows.safetensors"
COPIED_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
SPECIAL_IDS = (0, 100, 101, 102, 103)
MAX_NUMBER = 2000


def source_strings(package_dirs: Iterable[Path]) -> list[str]:
    """Every string literal (f-string parts included) in the modules of these folders."""
    found: set[str] = set()
    for folder in package_dirs:
        for path in sorted(folder.glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found.add(node.value)
    return sorted(found)


def vocabulary_texts() -> list[str]:
    """Texts whose tokens cover what the synthetic data and simulated dictations can say."""
    root = Path(__file__).resolve().parents[1]
    texts = source_strings([root / "synthetic", root / "training", root / "findings.py"])
    texts += [str(n) for n in range(MAX_NUMBER)]
    texts += [f"{a}.{b}" for a in range(100) for b in range(10)]
    return texts


def covered_ids(texts: Iterable[str]) -> set[int]:
    from models.networks.text_encoder import TextTokenizer

    tokenizer = TextTokenizer()
    ids: set[int] = set(SPECIAL_IDS)
    batch = list(texts)
    for start in range(0, len(batch), 512):
        encoded, mask = tokenizer(batch[start : start + 512], max_tokens=512)
        ids.update(int(v) for v in encoded[mask].tolist())
    return ids


def pack(out_dir: Path, texts: Iterable[str] | None = None) -> dict[str, int]:
    """Write the repacked folder; returns sizes for the log."""
    from safetensors.torch import load_file, save_file

    source = minilm_path()
    out_dir.mkdir(parents=True, exist_ok=True)
    state = load_file(str(source / "model.safetensors"))
    ids = sorted(covered_ids(vocabulary_texts() if texts is None else texts))
    table = state.pop(WORD_EMBEDDINGS)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_dir / ENCODER_FILE))
    save_file(
        {
            "ids": torch.tensor(ids, dtype=torch.int64),
            "rows": table[ids].contiguous(),
            "shape": torch.tensor(table.shape),
        },
        str(out_dir / ROWS_FILE),
    )
    for name in COPIED_FILES:
        shutil.copyfile(source / name, out_dir / name)
    (out_dir / REPACKED_SOURCE_FILE).write_text(json.dumps(text_encoder_source(), indent=1))
    return {"rows": len(ids), "bytes": sum(p.stat().st_size for p in out_dir.iterdir())}


def unpack(packed: Path, dest: Path) -> Path:
    """Rebuild a loadable MiniLM folder (uncovered word rows are zero)."""
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    state = load_file(str(packed / ENCODER_FILE))
    rows = load_file(str(packed / ROWS_FILE))
    table = torch.zeros(tuple(int(v) for v in rows["shape"]), dtype=rows["rows"].dtype)
    table[rows["ids"]] = rows["rows"]
    state[WORD_EMBEDDINGS] = table
    save_file(state, str(dest / "model.safetensors"))
    for name in (*COPIED_FILES, REPACKED_SOURCE_FILE):
        shutil.copyfile(packed / name, dest / name)
    (dest / "covered_ids.json").write_text(json.dumps(rows["ids"].tolist()))
    return dest


def uncovered(texts: Iterable[str], folder: Path) -> set[int]:
    """Token ids of ``texts`` that the unpacked copy in ``folder`` does not carry."""
    kept = set(json.loads((folder / "covered_ids.json").read_text()))
    return covered_ids(texts) - kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("pack")
    p.add_argument("out", type=Path)
    u = sub.add_parser("unpack")
    u.add_argument("packed", type=Path)
    u.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    if args.action == "pack":
        print(json.dumps(pack(args.out)))
    else:
        print(unpack(args.packed, args.dest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
