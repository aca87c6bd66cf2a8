"""Every registered model's name, kind, source and summary, as data with no import: what ``python -m export --list``
and ``--help`` print before torch is imported. Each ``ModelSpec`` (registry.py) takes its kind, source and summary
from here, and the registry's names are these, in this order."""

from __future__ import annotations

from typing import NamedTuple


class Entry(NamedTuple):
    kind: str  # recurrent | tagger | char-lm
    source: str  # which seed tutorials (or data set) it comes from
    summary: str
    reads_data: bool = False  # reads data files (ModelSpec.data_files, which must agree): --data is checked by this


CATALOG: dict[str, Entry] = {
    "lstm-tutorial": Entry("recurrent", "000, 001, 002", "nn.LSTM(3, 3), torch.manual_seed(1)"),
    "pos-tutorial": Entry("tagger", "000, 001, 002", "LSTMTagger on two toy sentences"),
    "pos-tutorial-gru": Entry("tagger", "001", "LSTMTagger with nn.GRU"),
    "rnn-hello": Entry("recurrent", "003", "one-hot char nn.RNN(4, 2)"),
    "rnn-hello-3layer": Entry("recurrent", "003", "one-hot char nn.RNN(4, 2, num_layers=3)"),
    "rnn-hello-lstm": Entry("recurrent", "003", "practice Q1: nn.LSTM(4, 2, num_layers=3)"),
    "lstm-2layer": Entry("recurrent", "004", "nn.LSTM(3, 5, num_layers=2), sequence-first"),
    "lstm-2layer-batch-first": Entry("recurrent", "004", "nn.LSTM(3, 5, num_layers=2, batch_first=True)"),
    "char-hello": Entry("char-lm", "004", "char LSTM(35, 35, 3) memorizing one sentence"),
    "char-hello-batch-first": Entry("char-lm", "004", "the batched batch_first char LSTM"),
    "pos-ewt": Entry("tagger", "UD English EWT", "char-BiLSTM + word embeddings -> 2-layer BiLSTM UPOS tagger",
                     reads_data=True),
    "char-shakespeare": Entry("char-lm", "tiny-shakespeare", "char LSTM language model, streamed one char per step",
                              reads_data=True),
}
