"""The shared WordPiece text vocabulary, modality ids and the vocabulary manifest.

The text vocabulary follows the official 4M-21 layout id for id: ``[PAD]`` 0, ``[UNK]`` 1, ``[SOS]`` 2, ``[EOS]`` 3,
sentinels ``[S_0]..[S_199]`` 4..203, value tokens ``v0=0..v3=999`` 204..4203, then whole words contributed by plugins
(class names, format keywords; sorted, so hook order never matters), then WordPieces learned from a caption corpus.
When the official tokenizer file is given it is used as it is, and the serializers then produce the official ids.

The manifest records, per preset, every model-facing modality: id, model key, vocabulary size, token count, and the
distribution and version that provide it. Stores and checkpoints keep a copy; :meth:`VocabularyManifest.diff` says
exactly what differs when they are opened with another set of plugins.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from fourm_core.errors import FileFormatError, one_line, read_json
from fourm_core.spec import PRESETS, Vocabulary

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from fourm_core.registry import Registry

__all__ = [
    "MANIFEST_VERSION",
    "ModalityEntry",
    "NUM_SENTINELS",
    "SPECIAL_TOKENS",
    "TextVocabulary",
    "VocabularyManifest",
    "build_manifest",
    "build_text_vocabulary",
    "plugin_vocab_words",
    "read_corpus",
]

MANIFEST_VERSION = 1
NUM_SENTINELS = 200
VALUE_BINS = 1000
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[SOS]", "[EOS]")
_SENTINEL = re.compile(r"^\[S_(\d+)\]$")


def _reserved_tokens() -> list[str]:
    """Specials, sentinels and value tokens in the official order (ids 0..4203)."""
    tokens = list(SPECIAL_TOKENS)
    tokens += [f"[S_{i}]" for i in range(NUM_SENTINELS)]
    tokens += [f"v{slot}={v}" for slot in range(4) for v in range(VALUE_BINS)]
    return tokens


class TextVocabulary:
    """A thin typed wrapper over a ``tokenizers.Tokenizer`` with the ids 4M code needs.

    Decoding always keeps special tokens (value tokens and class names are "special" in the official file, and a
    decoded box without them would be empty).
    """

    def __init__(self, tokenizer: Tokenizer, source: str) -> None:
        self.tokenizer = tokenizer
        self.source = source
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self._size = max(vocab.values()) + 1
        missing = [t for t in _reserved_tokens() if t not in vocab]
        if missing:
            raise ValueError(f"text vocabulary from {source} lacks reserved tokens, e.g. {missing[:5]}")
        self.pad_id = vocab["[PAD]"]
        self.unk_id = vocab["[UNK]"]
        self.sos_id = vocab["[SOS]"]
        self.eos_id = vocab["[EOS]"]
        self.sentinel_ids = {int(m.group(1)): i for t, i in vocab.items() if (m := _SENTINEL.match(t))}

    @property
    def size(self) -> int:
        """Number of ids (largest id + 1)."""
        return self._size

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of several texts at once (parallel in the Rust tokenizer)."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def tokens(self, text: str) -> list[str]:
        """Token strings of ``text``, for debugging and tests."""
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` with special tokens kept."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_to_id(self, token: str) -> int | None:
        """Id of one token string, or None."""
        return self.tokenizer.token_to_id(token)

    @property
    def fingerprint(self) -> str:
        """sha256 of the serialized tokenizer: two vocabularies with equal fingerprints give identical ids."""
        return hashlib.sha256(self.tokenizer.to_str().encode("utf-8")).hexdigest()

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer JSON (the ``tokenizers`` format, readable by HF tools)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TextVocabulary:
        """Read a tokenizer JSON: ours, or the official ``text_tokenizer_4m_wordpiece_30k.json``."""
        from tokenizers import Tokenizer

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"text tokenizer file {path} does not exist")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the tokenizers library raises a bare Exception naming neither file nor format
            raise FileFormatError(f"{path}: not a text tokenizer JSON ({one_line(str(exc))})") from None
        return cls(tokenizer, source=str(path))


def build_text_vocabulary(
    corpus: Iterable[str],
    words: Iterable[str] = (),
    vocab_size: int = 30000,
) -> TextVocabulary:
    """Train the shared WordPiece vocabulary on ``corpus`` with the official reserved-token layout.

    ``words`` (class names, format keywords) become whole added tokens after the value tokens, sorted and lowercased,
    as the official file does with the 80 COCO class names. Training is deterministic for a given corpus.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(
        models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100)
    )
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    reserved = _reserved_tokens()
    specials = [
        AddedToken(t, single_word=i >= len(SPECIAL_TOKENS), normalized=False, special=True)
        for i, t in enumerate(reserved)
    ]
    extra = sorted({w.strip().lower() for w in words if w.strip()} - set(reserved))
    specials += [AddedToken(w, single_word=True, normalized=True, special=True) for w in extra]
    if vocab_size < len(specials) + 1:
        raise ValueError(f"vocab_size {vocab_size} is smaller than the {len(specials)} reserved tokens")
    corpus = list(corpus)

    def train(size: int) -> Tokenizer:
        trainer = trainers.WordPieceTrainer(
            vocab_size=size,
            min_frequency=0,
            special_tokens=specials,
            continuing_subword_prefix="##",
            show_progress=False,
        )
        tokenizer.train_from_iterator(corpus, trainer)
        return tokenizer

    # The Rust trainer breaks ties between equally frequent merges in hash-map order, which changes from run to run.
    # When the vocabulary is full, train a little past the cap and keep the most frequent pieces (ties by string);
    # either way, learned ids are then assigned in a canonical order, so one corpus gives one vocabulary.
    learned_budget = vocab_size - len(specials)
    train(vocab_size)
    if tokenizer.get_vocab_size(with_added_tokens=True) >= vocab_size:
        train(vocab_size + max(64, learned_budget // 20))
    return TextVocabulary(_canonical(tokenizer, corpus, len(specials), learned_budget), source="built")


def _canonical(tokenizer: Tokenizer, corpus: list[str], first_learned: int, budget: int) -> Tokenizer:
    """Keep the single-character alphabet plus the most frequent learned pieces, with ids in a canonical order."""
    import json

    from tokenizers import Tokenizer

    state = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = state["model"]["vocab"]
    learned = [t for t, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i >= first_learned]
    counts = dict.fromkeys(learned, 0)
    for encoding in tokenizer.encode_batch(corpus, add_special_tokens=False):
        for token in encoding.tokens:
            if token in counts:
                counts[token] += 1
    alphabet = sorted(t for t in learned if len(t.removeprefix("##")) == 1)
    # Pieces the corpus never uses are merge intermediates whose choice depends on the trainer's tie order; dropping
    # them changes no encoding of the corpus (greedy longest match never picked them) and makes the set canonical.
    pieces = sorted(
        (t for t in learned if len(t.removeprefix("##")) > 1 and counts[t] > 0), key=lambda t: (-counts[t], t)
    )
    kept = alphabet + pieces[: max(0, budget - len(alphabet))]
    reserved = {t: i for t, i in vocab.items() if i < first_learned}
    state["model"]["vocab"] = {**reserved, **{t: first_learned + k for k, t in enumerate(kept)}}
    return Tokenizer.from_str(json.dumps(state))


def read_corpus(paths: Iterable[str | Path]) -> Iterator[str]:
    """Yield documents from text files or folders of ``.txt`` files.

    A file whose lines are ``--`` separators holds multi-line documents (the official trainer's convention); otherwise
    each non-empty line is a document.
    """
    for path in paths:
        path = Path(path)
        files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
        for file in files:
            text = file.read_text(encoding="utf-8", errors="replace")
            if any(line.strip() == "--" for line in text.splitlines()):
                yield from (doc.strip() for doc in re.split(r"^--$", text, flags=re.M) if doc.strip())
            else:
                yield from (line.strip() for line in text.splitlines() if line.strip())


def plugin_vocab_words(registry: Registry) -> dict[str, list[str]]:
    """Whole words each loaded modality asks for, by modality name (recorded in the manifest)."""
    return {m.name: sorted(m.spec.vocab_words) for m in registry.modalities() if m.spec.vocab_words}


class ModalityEntry(BaseModel):
    """One model-facing modality in the manifest (group members are listed together under one key)."""

    model_config = ConfigDict(frozen=True)

    model_key: str
    id: int
    kind: str
    embedding: str
    vocabulary: str
    vocab_size: int | None
    max_tokens: int
    input_only: bool
    target_only: bool
    members: list[str] = Field(description="plugin modality names behind this key (several for a group)")
    providers: list[str] = Field(description="'distribution version' of each member")


class VocabularyManifest(BaseModel):
    """What a store or checkpoint was built with: modality ids, vocabularies, token counts, plugin versions."""

    manifest_version: int = MANIFEST_VERSION
    preset: str
    text_vocabulary: dict[str, str | int | None] = Field(
        description="source, size, sha256 of the shared WordPiece vocabulary (None when not built)"
    )
    vocab_words: dict[str, list[str]] = Field(default_factory=dict)
    modalities: dict[str, ModalityEntry]

    def diff(self, other: VocabularyManifest, here: str = "this manifest", there: str = "the other") -> list[str]:
        """Human-readable differences that make ``other`` incompatible with ``self`` (empty when compatible).

        Versions of providers are reported but do not by themselves make manifests incompatible; ids, vocabularies
        and token counts do.
        """
        out: list[str] = []
        if self.preset != other.preset:
            out.append(f"preset {self.preset!r} in {here} != {other.preset!r} in {there}")
        if self.text_vocabulary.get("sha256") != other.text_vocabulary.get("sha256"):
            out.append(
                f"text vocabulary differs ({self.text_vocabulary.get('source')} in {here} vs "
                f"{other.text_vocabulary.get('source')} in {there})"
            )
        for key in sorted(set(self.modalities) | set(other.modalities)):
            mine, theirs = self.modalities.get(key), other.modalities.get(key)
            if mine is None or theirs is None:
                where, present = (there, theirs) if mine is None else (here, mine)
                assert present is not None
                out.append(f"{key}: only in {where} (provided by {', '.join(present.providers)})")
                continue
            for field in ("id", "vocab_size", "max_tokens", "kind", "input_only", "target_only", "members"):
                a, b = getattr(mine, field), getattr(theirs, field)
                if a != b:
                    out.append(f"{key}: {field} {a} in {here} != {b} in {there}")
        return out

    def save(self, path: str | Path) -> Path:
        """Write as indented JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> VocabularyManifest:
        """Read a manifest written by :meth:`save`."""
        return cls.model_validate(read_json(path, "vocabulary manifest"))


def build_manifest(registry: Registry, preset: str, text: TextVocabulary | None = None) -> VocabularyManifest:
    """Describe every model-facing modality of ``registry`` in ``preset``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    entries: dict[str, ModalityEntry] = {}
    for key, members in registry.model_keys(preset).items():
        spec = members[0].spec
        layout = spec.layout(preset)
        if spec.vocabulary == Vocabulary.OWN:
            vocab_size: int | None = layout.vocab_size
        elif spec.vocabulary == Vocabulary.TEXT:
            vocab_size = text.size if text is not None else None
        else:
            vocab_size = None
        entries[key] = ModalityEntry(
            model_key=key,
            id=members[0].id(preset),
            kind=spec.kind.value,
            embedding=spec.embedding.value,
            vocabulary=spec.vocabulary.value,
            vocab_size=vocab_size,
            max_tokens=layout.max_tokens,
            input_only=spec.input_only,
            target_only=spec.target_only,
            members=[m.name for m in members],
            providers=[m.plugin.label for m in members],
        )
    text_info: dict[str, str | int | None] = (
        {"source": text.source, "size": text.size, "sha256": text.fingerprint}
        if text is not None
        else {"source": None, "size": None, "sha256": None}
    )
    return VocabularyManifest(
        preset=preset, text_vocabulary=text_info, vocab_words=plugin_vocab_words(registry), modalities=entries
    )
