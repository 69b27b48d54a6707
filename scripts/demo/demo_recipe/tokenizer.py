"""A ``CLIPTokenizer`` over the synthetic captions' fixed vocabulary in which every word is ONE token.

CLIP's byte-level BPE is kept (so any text still tokenizes: unknown words fall back to bytes); merges are
added for every prefix of every vocabulary word, so ``blue`` becomes ``b l u e</w>`` -> ``blue</w>``.
:func:`build_caption_tokenizer` checks the one-token property for every word and raises if it fails.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Sequence

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _word_merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """Merges that build each word left to right, longest words first: a word's whole chain then ranks
    before any merge that only a shorter word needs, so a shorter word inside it (``red`` in
    ``checkered``) cannot split it."""
    merges: list[tuple[str, str]] = []
    seen = set()
    for word in sorted(words, key=lambda w: (-len(w), w)):
        for length in range(2, len(word) + 1):
            left = word[: length - 1]
            right = word[length - 1] + ("</w>" if length == len(word) else "")
            if (left, right) not in seen:
                seen.add((left, right))
                merges.append((left, right))
    return merges


def build_caption_tokenizer(words: Sequence[str], model_max_length: int = 32):
    """A transformers ``CLIPTokenizer`` where each of ``words`` (lower-case ASCII) is a single token."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(token, len(vocab))
    merges = _word_merges(sorted(set(words)))
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n",
                                              encoding="utf-8")
        tokenizer = CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"),
                                  model_max_length=model_max_length, pad_token=EOS)
    for word in words:
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise ValueError(f"word {word!r} tokenizes to {len(ids)} tokens {tokenizer.convert_ids_to_tokens(ids)}")
    return tokenizer
