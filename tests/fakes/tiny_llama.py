"""A tiny llama (2 layers, 64 wide, the 32,000-token llama-spm vocabulary: ~17 MB, loads in
well under a second) written as GGUF, for real llama.cpp servers in the tests.

The vocabulary comes from the vocabulary-only GGUF files that llama.cpp's source ships
(``vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf`` in llama-cpp-python's source
distribution): :func:`vocab_gguf` takes it from a cache dir, else asks pip for that sdist (the
version installed) and keeps just the vocabulary. Two kinds of weights:

- ``random``: normal random weights, as an untrained model: nonsense text, which a grammar
  still shapes into the schema's JSON.
- ``turkish``: a unigram sampler. Every block's output projections (attention and FFN) are zero
  and every token embeds to the same vector, so the last hidden state is constant and the
  logits are the output matrix's row sums: a few Turkish words and letters, the quote (so
  strings end after ~10 tokens) and the end-of-text token are likely, the rest nearly never.
  Under a JSON-schema grammar it writes items that pass `qa generate`'s checks, which lets a
  test see rows accepted, journaled and resumed through a real server.

``chat_template`` is stored as ``tokenizer.chat_template`` (llama-cpp-python formats chats
with it), e.g. :data:`GEMMA_TEMPLATE`, which refuses a system role as Gemma's does.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

VOCAB = "ggml-vocab-llama-spm.gguf"
N_EMBD, N_LAYER, N_HEAD, N_FF, N_CTX = 64, 2, 4, 128, 2048

# Gemma's templates raise on a system message; this one keeps that rule and Gemma's turn markers
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}"
    "{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# the turkish kind's likely tokens (SentencePiece marks a leading space with ▁), and logits
WORDS = ["▁bir", "▁ve", "▁bu", "▁en", "▁ne", "▁da", "▁de", "ş", "ğ", "ı", "ç", "ö", "ü", "ün"]
WORD_LOGIT = 15.0
QUOTE_LOGIT = 15.2  # p(end a string) ~ e^0.2 / (len(WORDS) + e^0.2) ~ 1/12 per token
OTHER_LOGIT = -10.0


def cache_dir() -> Path:
    """Where the vocabulary is kept between runs ($QA_TEST_CACHE, else ~/.cache/qa-optim)."""
    root = os.environ.get("QA_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "qa-optim")
    return Path(root)


def fetch_sdist(version: str, into: Path) -> Path:
    """llama-cpp-python ``version``'s source distribution, downloaded by pip from the package
    index into ``into`` (pip's own cache makes a second download quick)."""
    res = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
         f"llama-cpp-python=={version}", "-d", str(into)],
        capture_output=True, text=True, timeout=900)
    sdists = list(Path(into).glob("llama_cpp_python-*.tar.gz"))
    if res.returncode or not sdists:
        raise RuntimeError(f"pip download of llama-cpp-python=={version}'s sdist failed: "
                           f"{res.stderr.strip()[-300:]}")
    return sdists[0]


def vocab_gguf(version: str) -> Path:
    """The llama-spm vocabulary GGUF of llama-cpp-python ``version``'s source: from the cache,
    else extracted from its sdist (once)."""
    keep = cache_dir() / f"llama-cpp-python-{version}" / VOCAB
    if keep.is_file():
        return keep
    keep.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=keep.parent) as tmp:
        with tarfile.open(fetch_sdist(version, Path(tmp))) as tar:
            member = next(m for m in tar.getmembers()
                          if m.name.endswith(f"vendor/llama.cpp/models/{VOCAB}"))
            data = tar.extractfile(member).read()
    part = keep.with_suffix(".part")
    part.write_bytes(data)
    part.replace(keep)  # atomic: a concurrent or killed run never sees half a file
    return keep


@functools.lru_cache(maxsize=2)
def _tokenizer(vocab: Path) -> dict:
    """The tokenizer fields of a vocabulary GGUF (read once: the reader takes seconds)."""
    from gguf import GGUFReader

    fields = GGUFReader(vocab).fields

    def array(key: str) -> list:
        f = fields[key]
        if key.endswith("tokens"):
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [x.item() for i in f.data for x in f.parts[i]]

    out = {k: array(k) for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                 "tokenizer.ggml.token_type")}
    for k in ("bos_token_id", "eos_token_id", "unknown_token_id"):
        out[f"tokenizer.ggml.{k}"] = int(fields[f"tokenizer.ggml.{k}"].contents())
    return out


def _weights(kind: str, tokens: list[str], eos: int, seed: int) -> dict[str, np.ndarray]:
    """The tensors by GGUF name; numpy shapes are (out, in), as gguf writes them reversed."""
    rng = np.random.default_rng(seed)
    n_vocab = len(tokens)

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    w = {"output_norm.weight": np.ones(N_EMBD, np.float32)}
    if kind == "random":
        w["token_embd.weight"] = rand(n_vocab, N_EMBD)  # (V, d)
        w["output.weight"] = rand(n_vocab, N_EMBD)  # (V, d)
    elif kind == "turkish":
        w["token_embd.weight"] = np.ones((n_vocab, N_EMBD), np.float32)  # one vector for all
        logits = np.full(n_vocab, OTHER_LOGIT, np.float32)
        index = {t: i for i, t in enumerate(tokens)}
        logits[[index[t] for t in WORDS]] = WORD_LOGIT
        logits[index['"']] = QUOTE_LOGIT
        logits[eos] = 0.0
        # the final RMS norm of a ones vector is ones, so logit = row sum
        w["output.weight"] = np.repeat(logits[:, None] / N_EMBD, N_EMBD, axis=1)  # (V, d)
    else:
        raise ValueError(f"unknown kind {kind!r}: random or turkish")
    zero = kind == "turkish"  # blocks that add nothing to the residual stream
    for i in range(N_LAYER):
        b = f"blk.{i}."
        w[b + "attn_norm.weight"] = np.ones(N_EMBD, np.float32)
        w[b + "ffn_norm.weight"] = np.ones(N_EMBD, np.float32)
        for name in ("attn_q", "attn_k", "attn_v"):
            w[b + name + ".weight"] = rand(N_EMBD, N_EMBD)
        w[b + "ffn_gate.weight"] = rand(N_FF, N_EMBD)
        w[b + "ffn_up.weight"] = rand(N_FF, N_EMBD)
        w[b + "attn_output.weight"] = (np.zeros if zero else lambda s: rand(*s))((N_EMBD, N_EMBD))
        w[b + "ffn_down.weight"] = (np.zeros if zero else lambda s: rand(*s))((N_EMBD, N_FF))
    return {k: v.astype(np.float32) for k, v in w.items()}


def write_tiny_llama(path: Path, vocab: Path, kind: str = "random",
                     chat_template: str | None = None, seed: int = 0,
                     space_prefix: bool = False) -> Path:
    """Write the tiny model of ``kind`` (random | turkish) to ``path``; returns ``path``.

    ``space_prefix``: whether the tokenizer puts a space before the text, as llama's does.
    Off by default: llama.cpp's ``llama-server`` feeds the chat template's generation prompt
    to the JSON grammar and skips a first token that starts with a space, so with the prefix
    on (and no special token to start the prompt, as real Gemma and ChatML models have) it
    refuses every grammar: HTTP 400 "Failed to initialize samplers"."""
    import gguf

    tok = _tokenizer(vocab)
    tokens = list(tok["tokenizer.ggml.tokens"])
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"tiny-llama-{kind}")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_vocab_size(len(tokens))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(list(tok["tokenizer.ggml.scores"]))
    w.add_token_types(list(tok["tokenizer.ggml.token_type"]))
    w.add_bos_token_id(tok["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(tok["tokenizer.ggml.eos_token_id"])
    w.add_unk_token_id(tok["tokenizer.ggml.unknown_token_id"])
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(space_prefix)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    for name, arr in _weights(kind, tokens, tok["tokenizer.ggml.eos_token_id"], seed).items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
