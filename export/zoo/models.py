"""The torch side of every seed model: one config dataclass and one network family.

A network is encoder -> recurrent core -> head, with the recurrent state explicit:

    LSTM:       forward(input, h_0, c_0) -> (output, h_n, c_n)
    GRU, RNN:   forward(input, h_0)      -> (output, h_n)

Shape letters: T time steps, B batch, F input features, H hidden size, L num_layers, V classes/symbols.
Sequence tensors are (T, B, ...) or, with ``batch_first``, (B, T, ...); state is (L, B, H) either way.

The seeds reshape with the example's length (``embeds.view(len(sentence), 1, -1)``), which pins that length
into every exported graph. Nothing here reads a size from the data, so time and batch stay dynamic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from runtime.artifact import BATCH, TIME, IOSpec, TensorSpec
from runtime.tagger import char_input

CELLS = ("LSTM", "GRU", "RNN")
ENCODERS = ("dense", "embedding", "one_hot")
HEADS = ("none", "log_softmax", "linear")


@dataclass(frozen=True)
class NetConfig:
    cell: str  # "LSTM" | "GRU" | "RNN"
    input_size: int  # F: features per step entering the recurrent core
    hidden_size: int  # H
    num_layers: int = 1  # L
    batch_first: bool = False  # sequence tensors (B, T, ...) instead of (T, B, ...)
    encoder: str = "dense"  # "dense": float features in; "embedding": ids -> learned vectors; "one_hot": ids -> one-hot
    vocab_size: int = 0  # ids accepted by the encoder, including the unknown id (embedding/one_hot only)
    head: str = "none"  # "none": the core's output as is; "linear": Linear(H, V) logits; "log_softmax": then log_softmax
    num_classes: int = 0  # V for the linear and log_softmax heads
    dropout: float = 0.0  # between stacked recurrent layers, training only

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell: expected one of {CELLS}, got {self.cell!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder: expected one of {ENCODERS}, got {self.encoder!r}")
        if self.head not in HEADS:
            raise ValueError(f"head: expected one of {HEADS}, got {self.head!r}")

    def to_json(self) -> dict:
        return asdict(self)


class OneHot(nn.Module):
    """ids (T, B) -> one-hot (T, B, F). Ids >= F (the unknown symbol) become all-zero vectors."""

    def __init__(self, num_ids: int, size: int):
        super().__init__()
        self.register_buffer("table", torch.eye(num_ids, size))  # (num_ids, F); rows past F are zero

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.table)


class Classifier(nn.Module):
    """(T, B, H) -> (T, B, V) log-probabilities."""

    def __init__(self, hidden_size: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.linear(x), dim=-1)


class Net(nn.Module):
    """Encoder, recurrent core, head. Submodules are built in the seeds' order (embedding, rnn, linear) so that
    the same ``torch.manual_seed`` gives the seeds' exact initial weights."""

    def __init__(self, cfg: NetConfig, known_ids: int | None = None):
        super().__init__()
        self.cfg = cfg
        if cfg.encoder == "embedding":
            # The seeds' vocabularies have no unknown word. Draw the known rows exactly as nn.Embedding would
            # (same RNG use as the seed) and add zero rows for the extra ids (unknown) after them.
            known = cfg.vocab_size if known_ids is None else known_ids
            emb = nn.Embedding(known, cfg.input_size)
            extra = torch.zeros(cfg.vocab_size - known, cfg.input_size)
            emb.weight = nn.Parameter(torch.cat([emb.weight.data, extra]))  # (vocab_size, F)
            emb.num_embeddings = cfg.vocab_size
            self.encoder: nn.Module = emb
        elif cfg.encoder == "one_hot":
            self.encoder = OneHot(cfg.vocab_size, cfg.input_size)
        else:
            self.encoder = nn.Identity()
        rnn_cls = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}[cfg.cell]
        self.rnn = rnn_cls(cfg.input_size, cfg.hidden_size, num_layers=cfg.num_layers, batch_first=cfg.batch_first,
                           dropout=cfg.dropout)
        self.head: nn.Module = {"none": lambda: nn.Identity(),
                                "linear": lambda: nn.Linear(cfg.hidden_size, cfg.num_classes),
                                "log_softmax": lambda: Classifier(cfg.hidden_size, cfg.num_classes)}[cfg.head]()


class LSTMNet(Net):
    def forward(self, input: torch.Tensor, h_0: torch.Tensor, c_0: torch.Tensor):
        y, (h_n, c_n) = self.rnn(self.encoder(input), (h_0, c_0))  # y: (T, B, H); h_n, c_n: (L, B, H)
        return self.head(y), h_n, c_n


class HiddenNet(Net):
    """GRU and RNN: one state tensor."""

    def forward(self, input: torch.Tensor, h_0: torch.Tensor):
        y, h_n = self.rnn(self.encoder(input), h_0)  # y: (T, B, H); h_n: (L, B, H)
        return self.head(y), h_n


def build(cfg: NetConfig, known_ids: int | None = None) -> Net:
    """A fresh network for ``cfg``; ``known_ids`` ids draw random embeddings, the rest (unknown) start at zero."""
    return (LSTMNet if cfg.cell == "LSTM" else HiddenNet)(cfg, known_ids)


def state_names(cfg: NetConfig) -> list[tuple[str, str]]:
    return [("h_0", "h_n"), ("c_0", "c_n")] if cfg.cell == "LSTM" else [("h_0", "h_n")]


# Graph IO per kind: (sequence input name, its dtype, main output name). Everything else derives from the config.
KIND_IO = {
    "recurrent": ("input", "float32", "output"),
    "tagger": ("words", "int64", "scores"),
    "char-lm": ("chars", "int64", "logits"),
}


def io_spec(kind: str, cfg: NetConfig) -> IOSpec:
    """The one declaration of a model's IO (names, dtypes, symbolic axes). The exporter's dynamic axes, the
    runtime's input checks and the parity suite all read this, through the manifest."""
    seq_in, seq_dtype, seq_out = KIND_IO[kind]
    lead = (BATCH, TIME) if cfg.batch_first else (TIME, BATCH)
    feature = () if cfg.encoder != "dense" else (cfg.input_size,)
    out_size = cfg.hidden_size if cfg.head == "none" else cfg.num_classes
    state_shape = (cfg.num_layers, BATCH, cfg.hidden_size)
    pairs = state_names(cfg)
    return IOSpec(
        inputs=(TensorSpec(seq_in, seq_dtype, lead + feature),
                *(TensorSpec(i, "float32", state_shape) for i, _ in pairs)),
        outputs=(TensorSpec(seq_out, "float32", lead + (out_size,)),
                 *(TensorSpec(o, "float32", state_shape) for _, o in pairs)),
        state=tuple(pairs),
    )


# ---- the edge POS tagger: char BiLSTM word features + word embeddings -> BiLSTM over the sentence ------------

CHAR_INPUTS = 3  # chars_1..chars_3: CharBiLSTMTagger.forward takes exactly this many


@dataclass(frozen=True)
class TaggerConfig:
    word_vocab: int  # word ids, pad (0) and unknown (1) included
    char_vocab: int  # character ids, pad (0) and unknown (1) included
    num_tags: int  # V
    word_dim: int = 80  # E_w
    char_dim: int = 50  # E_c
    char_hidden: int = 100  # H_c, per direction
    hidden: int = 150  # H, per direction
    num_layers: int = 2
    dropout: float = 0.33
    max_word_chars: int = 20  # C: longer words keep their first and last C/2 characters
    # Spellings of length <= 4, 5..8 and longer go through the char BiLSTM as three inputs (runtime.tagger.spell):
    # a recurrent layer runs every row as long as the longest, so one bucket would make "a" pay for "uncharacteristic".
    char_buckets: tuple[int, ...] = (4, 8)
    family: str = "char-bilstm-tagger"

    def __post_init__(self):
        object.__setattr__(self, "char_buckets", tuple(self.char_buckets))  # JSON gives a list
        if len(self.char_buckets) != CHAR_INPUTS - 1 or list(self.char_buckets) != sorted(set(self.char_buckets)):
            raise ValueError(f"char_buckets: expected {CHAR_INPUTS - 1} increasing lengths, got {self.char_buckets}")

    def to_json(self) -> dict:
        return asdict(self)


class CharBiLSTMTagger(nn.Module):
    """words (T, B), lengths (B,), spelling (T, B), chars_1..chars_3 (N_k, C_k) -> scores (T, B, V) log-probabilities.

    Each distinct spelling of the batch is read once by the char BiLSTM (``runtime.tagger.spell`` builds the
    inputs); ``spelling`` says which row each word is. Both BiLSTMs run on packed sequences
    (``pack_padded_sequence``), so padding never reaches the backward direction: a sentence gets the same
    scores alone or padded in a batch. The exporter maps packing to the ONNX LSTM's ``sequence_lens``.
    """

    __jit_ignored_attributes__ = ["cfg"]

    def __init__(self, cfg: TaggerConfig):
        super().__init__()
        self.cfg = cfg
        self.char_hidden: int = cfg.char_hidden
        self.word_emb = nn.Embedding(cfg.word_vocab, cfg.word_dim, padding_idx=0)
        self.char_emb = nn.Embedding(cfg.char_vocab, cfg.char_dim, padding_idx=0)
        self.char_lstm = nn.LSTM(cfg.char_dim, cfg.char_hidden, bidirectional=True)
        self.lstm = nn.LSTM(cfg.word_dim + 2 * cfg.char_hidden, cfg.hidden, num_layers=cfg.num_layers,
                            bidirectional=True, dropout=cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(2 * cfg.hidden, cfg.num_tags)

    def forward(self, words: torch.Tensor, lengths: torch.Tensor, spelling: torch.Tensor, chars_1: torch.Tensor,
                chars_2: torch.Tensor, chars_3: torch.Tensor) -> torch.Tensor:
        spelled = torch.cat([self.read(chars_1), self.read(chars_2), self.read(chars_3)], dim=0)  # (N, 2H_c)
        x = self.drop(torch.cat([self.word_emb(words), F.embedding(spelling, spelled)], dim=-1))  # (T, B, E_w + 2H_c)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        y, _ = self.lstm(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, total_length=words.size(0))  # (T, B, 2H), zeros past each length
        return F.log_softmax(self.out(self.drop(y)), dim=-1)  # (T, B, V)

    def read(self, chars: torch.Tensor) -> torch.Tensor:
        """Spellings (N, C), 0-padded -> (N, 2H_c): the char BiLSTM's final states, both directions."""
        char_len = (chars != 0).sum(1).clamp(min=1)  # (N,); an all-padding row is read as one pad char
        ce = self.char_emb(chars).transpose(0, 1)  # (C, N, E_c)
        packed = nn.utils.rnn.pack_padded_sequence(ce, char_len.cpu(), enforce_sorted=False)
        _, (h_n, _) = self.char_lstm(packed)  # (2, N, H_c): forward after each spelling's last character,
        return torch.cat([h_n[0], h_n[1]], dim=-1)  # backward after reading back to its first


def tagger_io(cfg: TaggerConfig) -> IOSpec:
    """No recurrent state: a bidirectional tagger reads the whole sentence, it is never stepped. Each character
    input has its own symbolic axes: the buckets' sizes are independent."""
    chars = tuple(TensorSpec(char_input(k), "int64", (f"spellings_{k}", f"chars_per_word_{k}"))
                  for k in range(1, CHAR_INPUTS + 1))
    return IOSpec(
        inputs=(TensorSpec("words", "int64", (TIME, BATCH)), TensorSpec("lengths", "int64", (BATCH,)),
                TensorSpec("spelling", "int64", (TIME, BATCH)), *chars),
        outputs=(TensorSpec("scores", "float32", (TIME, BATCH, cfg.num_tags)),),
    )


def config_from_json(d: dict) -> NetConfig | TaggerConfig:
    d = dict(d)
    if d.get("family") == "char-bilstm-tagger":
        return TaggerConfig(**d)
    return NetConfig(**d)


def build_any(cfg: NetConfig | TaggerConfig) -> nn.Module:
    return CharBiLSTMTagger(cfg) if isinstance(cfg, TaggerConfig) else build(cfg)


def io_for(kind: str, cfg: NetConfig | TaggerConfig) -> IOSpec:
    return tagger_io(cfg) if isinstance(cfg, TaggerConfig) else io_spec(kind, cfg)
