"""Recurrent models written the way people publish them.

Each class keeps the forward signature it would have in the wild (no adapters to
a seqedge calling convention).  Every model has a ``case_<name>()`` factory
returning::

    (model, args, input_names, axes)

* ``model``       -- seeded random weights, ``eval()`` mode
* ``args``        -- the positional args for ``forward`` (nested tuples allowed)
* ``input_names`` -- one name per *flattened* tensor in ``args``
* ``axes``        -- ``torch.onnx`` ``dynamic_axes`` form; sequence axes are
                     called ``"time"``, batch axes ``"batch"`` and the CRNN image
                     width ``"width"``.

The styles follow common public code: the pytorch/examples word language model,
CRNN text recognisers (conv stack + bidirectional LSTM + CTC head), packed
bidirectional GRU sentiment classifiers, ``nn.LSTMCell`` decoder loops, and the
PyTorch-tutorial ``LSTMTagger``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

__all__ = [
    "RNNModel", "CRNN", "PackedGRUClassifier", "BiGRUTagger", "LSTMCellDecoder", "ProjLSTM", "LSTMTagger",
    "case_rnnmodel_lstm", "case_rnnmodel_gru", "case_rnnmodel_rnn_tanh", "case_rnnmodel_tied",
    "case_crnn", "case_packed_gru_classifier", "case_bigru_tagger", "case_lstmcell_decoder",
    "case_proj_lstm", "case_lstm_tagger", "case_gru_tagger", "case_rnnmodel_rnn_relu", "GRUTagger", "CASES",
]


# ---------------------------------------------------------------------------
# 1. word language model (pytorch/examples style)
# ---------------------------------------------------------------------------
class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.2, tie_weights=False):
        super(RNNModel, self).__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ["LSTM", "GRU"]:
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        else:
            try:
                nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[rnn_type]
            except KeyError:
                raise ValueError("rnn_type must be one of LSTM, GRU, RNN_TANH, RNN_RELU") from None
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)

        # "Using the Output Embedding to Improve Language Models" (Press & Wolf 2016)
        if tie_weights:
            if nhid != ninp:
                raise ValueError("When using the tied flag, nhid must be equal to emsize")
            self.decoder.weight = self.encoder.weight

        self.init_weights()
        self.rnn_type = rnn_type
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(self.nlayers, bsz, self.nhid),
                    weight.new_zeros(self.nlayers, bsz, self.nhid))
        return weight.new_zeros(self.nlayers, bsz, self.nhid)


# ---------------------------------------------------------------------------
# 2. CRNN text-line recogniser (conv stack + BiLSTM, CTC log-probs)
# ---------------------------------------------------------------------------
class BidirectionalLSTM(nn.Module):

    def __init__(self, nIn, nHidden, nOut):
        super(BidirectionalLSTM, self).__init__()
        self.rnn = nn.LSTM(nIn, nHidden, bidirectional=True)
        self.embedding = nn.Linear(nHidden * 2, nOut)

    def forward(self, input):
        recurrent, _ = self.rnn(input)
        T, b, h = recurrent.size()
        t_rec = recurrent.view(T * b, h)
        output = self.embedding(t_rec)  # [T * b, nOut]
        return output.view(T, b, -1)


class CRNN(nn.Module):
    """Input (B, 1, 32, W) -> CTC log-probs (W // 4, B, nclass)."""

    def __init__(self, imgH=32, nc=1, nclass=20, nh=16):
        super(CRNN, self).__init__()
        assert imgH % 16 == 0, "imgH has to be a multiple of 16"
        ks = [3, 3, 3, 3]
        ps = [1, 1, 1, 1]
        nm = [8, 16, 32, 32]

        cnn = nn.Sequential()

        def convRelu(i):
            nIn = nc if i == 0 else nm[i - 1]
            cnn.add_module("conv{0}".format(i), nn.Conv2d(nIn, nm[i], ks[i], 1, ps[i]))
            cnn.add_module("batchnorm{0}".format(i), nn.BatchNorm2d(nm[i]))
            cnn.add_module("relu{0}".format(i), nn.ReLU(True))

        convRelu(0)
        cnn.add_module("pooling0", nn.MaxPool2d(2, 2))            # 16 x W/2
        convRelu(1)
        cnn.add_module("pooling1", nn.MaxPool2d(2, 2))            # 8 x W/4
        convRelu(2)
        cnn.add_module("pooling2", nn.MaxPool2d((2, 1), (2, 1)))  # 4 x W/4
        convRelu(3)
        cnn.add_module("pooling3", nn.MaxPool2d((4, 1), (4, 1)))  # 1 x W/4
        self.cnn = cnn
        self.rnn = nn.Sequential(
            BidirectionalLSTM(nm[-1], nh, nh),
            BidirectionalLSTM(nh, nh, nclass))

    def forward(self, input):
        # conv features
        conv = self.cnn(input)
        b, c, h, w = conv.size()
        assert h == 1, "the height of conv must be 1"
        conv = conv.squeeze(2)
        conv = conv.permute(2, 0, 1)  # [w, b, c]

        # rnn features
        output = self.rnn(conv)
        return F.log_softmax(output, dim=2)


# ---------------------------------------------------------------------------
# 3. packed bidirectional GRU sentence classifier
# ---------------------------------------------------------------------------
class PackedGRUClassifier(nn.Module):

    def __init__(self, vocab_size, embedding_dim, hidden_dim, output_dim, n_layers=1, dropout=0.3, pad_idx=0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_idx)
        self.rnn = nn.GRU(embedding_dim, hidden_dim, num_layers=n_layers, bidirectional=True,
                          dropout=0 if n_layers < 2 else dropout)
        self.fc = nn.Linear(hidden_dim * 2, output_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, text, text_lengths):
        # text = [sent len, batch size]
        embedded = self.dropout(self.embedding(text))
        # lengths must live on the CPU for packing
        packed_embedded = pack_padded_sequence(embedded, text_lengths.to("cpu"), enforce_sorted=False)
        packed_output, hidden = self.rnn(packed_embedded)
        # hidden = [num layers * num directions, batch size, hid dim]; last layer fwd / bwd
        hidden = self.dropout(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1))
        return self.fc(hidden)


# ---------------------------------------------------------------------------
# 4. batch-first bidirectional GRU frame tagger
# ---------------------------------------------------------------------------
class BiGRUTagger(nn.Module):

    def __init__(self, input_size, hidden_size, num_classes, num_layers=2, dropout=0.1):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                          bidirectional=True, dropout=dropout)
        self.fc = nn.Linear(hidden_size * 2, num_classes)

    def forward(self, x):
        out, _ = self.gru(x)  # (B, T, 2H)
        return self.fc(out)


# ---------------------------------------------------------------------------
# 5. nn.LSTMCell unrolled in Python
# ---------------------------------------------------------------------------
class LSTMCellDecoder(nn.Module):

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.cell = nn.LSTMCell(input_size, hidden_size)

    def forward(self, x, state):
        h, c = state
        outputs = []
        for t in range(x.size(0)):
            h, c = self.cell(x[t], (h, c))
            outputs.append(h)
        return torch.stack(outputs, dim=0), (h, c)


# ---------------------------------------------------------------------------
# 6. LSTM with projections
# ---------------------------------------------------------------------------
class ProjLSTM(nn.Module):

    def __init__(self, input_size, hidden_size, proj_size, num_layers=1):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, proj_size=proj_size)

    def forward(self, x, hidden):
        # hidden = (h0 [L, B, proj_size], c0 [L, B, hidden_size])
        output, (h_n, c_n) = self.lstm(x, hidden)
        return output, (h_n, c_n)


# ---------------------------------------------------------------------------
# 7. PyTorch-tutorial LSTMTagger, as in shared/seeds/000_503246bf9ca75f36.txt
# ---------------------------------------------------------------------------
class LSTMTagger(nn.Module):
    def __init__(self, embedding_dim, hidden_dim, vocab_size, tagset_size):
        super(LSTMTagger, self).__init__()
        self.hidden_dim = hidden_dim
        self.word_embeddings = nn.Embedding(vocab_size, embedding_dim)

        # LSTM은 input으로 word embedding을 ouput의 hidden states를 받는다.
        self.lstm = nn.LSTM(embedding_dim, hidden_dim)

        # The Linear layer 는ㄴ hidden state space에서 tag space로 mapping 해줍니다.
        self.hidden2tag = nn.Linear(hidden_dim, tagset_size)
        self.hidden = self.init_hidden()

    def init_hidden(self):
        return (torch.zeros(1,1,self.hidden_dim),
               torch.zeros(1,1,self.hidden_dim))

    def forward(self, sentence):
        embeds = self.word_embeddings(sentence)
        lstm_out, self.hidden = self.lstm(
            embeds.view(len(sentence),1,-1), self.hidden)
        tag_space = self.hidden2tag(lstm_out.view(len(sentence), -1))
        tag_scores = F.log_softmax(tag_space, dim=1)
        return tag_scores


class GRUTagger(nn.Module):
    """The tagger of seed 001's note ("nn.GRU can replace nn.LSTM"), written as seed 002's stateful variant:
    ``init_hidden`` builds the state and forward keeps the last one in ``self.hidden``."""

    def __init__(self, embedding_dim, hidden_dim, vocab_size, tagset_size):
        super(GRUTagger, self).__init__()
        self.hidden_dim = hidden_dim
        self.word_embeddings = nn.Embedding(vocab_size, embedding_dim)
        self.gru = nn.GRU(embedding_dim, hidden_dim)
        self.hidden2tag = nn.Linear(hidden_dim, tagset_size)
        self.hidden = self.init_hidden()

    def init_hidden(self):
        return torch.zeros(1, 1, self.hidden_dim)

    def forward(self, sentence):
        embeds = self.word_embeddings(sentence)
        gru_out, self.hidden = self.gru(embeds.view(len(sentence), 1, -1), self.hidden)
        tag_space = self.hidden2tag(gru_out.view(len(sentence), -1))
        return F.log_softmax(tag_space, dim=1)


# ---------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------
def _seeded(seed, build):
    torch.manual_seed(seed)
    model = build()
    # perturb every parameter/buffer so nothing is left at a trivial init (zero biases, unit BN stats)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(1.0 + 0.2 * torch.rand_like(b))
    return model.eval()


_T, _B = 7, 3


def _rnnmodel_case(rnn_type, seed, tie=False):
    ntoken, ninp, nhid, nlayers = 40, 16 if not tie else 24, 24, 2
    model = _seeded(seed, lambda: RNNModel(rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.2, tie_weights=tie))
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, ntoken, (_T, _B), generator=g)
    hidden = model.init_hidden(_B)
    if rnn_type == "LSTM":
        hidden = (torch.randn(hidden[0].shape, generator=g), torch.randn(hidden[1].shape, generator=g))
        names = ["input", "h_0", "c_0"]
        axes = {"input": {0: "time", 1: "batch"}, "h_0": {1: "batch"}, "c_0": {1: "batch"}}
    else:
        hidden = torch.randn(hidden.shape, generator=g)
        names = ["input", "h_0"]
        axes = {"input": {0: "time", 1: "batch"}, "h_0": {1: "batch"}}
    return model, (tokens, hidden), names, axes


def case_rnnmodel_lstm():
    return _rnnmodel_case("LSTM", 1)


def case_rnnmodel_gru():
    return _rnnmodel_case("GRU", 2)


def case_rnnmodel_rnn_relu():
    return _rnnmodel_case("RNN_RELU", 11)


def case_rnnmodel_rnn_tanh():
    return _rnnmodel_case("RNN_TANH", 3)


def case_rnnmodel_tied():
    return _rnnmodel_case("LSTM", 4, tie=True)


def case_crnn():
    model = _seeded(5, lambda: CRNN(imgH=32, nc=1, nclass=20, nh=16))
    g = torch.Generator().manual_seed(5)
    image = torch.randn(2, 1, 32, 48, generator=g)
    return model, (image,), ["input"], {"input": {0: "batch", 3: "width"}}


def case_packed_gru_classifier():
    vocab = 30
    model = _seeded(6, lambda: PackedGRUClassifier(vocab, 12, 16, 4, n_layers=1, pad_idx=0))
    g = torch.Generator().manual_seed(6)
    lengths = torch.tensor([_T, 4, 2], dtype=torch.int64)
    text = torch.randint(1, vocab, (_T, _B), generator=g)
    for b, n in enumerate(lengths.tolist()):
        text[n:, b] = 0  # padding
    return model, (text, lengths), ["text", "text_lengths"], {"text": {0: "time", 1: "batch"},
                                                              "text_lengths": {0: "batch"}}


def case_bigru_tagger():
    model = _seeded(7, lambda: BiGRUTagger(10, 16, 5, num_layers=2))
    g = torch.Generator().manual_seed(7)
    x = torch.randn(_B, _T, 10, generator=g)
    return model, (x,), ["x"], {"x": {0: "batch", 1: "time"}}


def case_lstmcell_decoder():
    model = _seeded(8, lambda: LSTMCellDecoder(10, 16))
    g = torch.Generator().manual_seed(8)
    x = torch.randn(_T, _B, 10, generator=g)
    h0 = torch.randn(_B, 16, generator=g)
    c0 = torch.randn(_B, 16, generator=g)
    return model, (x, (h0, c0)), ["x", "h_0", "c_0"], {"x": {0: "time", 1: "batch"}, "h_0": {0: "batch"},
                                                        "c_0": {0: "batch"}}


def case_proj_lstm():
    model = _seeded(9, lambda: ProjLSTM(10, 24, 8, num_layers=2))
    g = torch.Generator().manual_seed(9)
    x = torch.randn(_T, _B, 10, generator=g)
    h0 = torch.randn(2, _B, 8, generator=g)
    c0 = torch.randn(2, _B, 24, generator=g)
    return model, (x, (h0, c0)), ["x", "h_0", "c_0"], {"x": {0: "time", 1: "batch"}, "h_0": {1: "batch"},
                                                        "c_0": {1: "batch"}}


def case_lstm_tagger():
    model = _seeded(10, lambda: LSTMTagger(6, 6, 9, 3))
    g = torch.Generator().manual_seed(10)
    sentence = torch.randint(0, 9, (5,), generator=g)
    return model, (sentence,), ["sentence"], {"sentence": {0: "time"}}


def case_gru_tagger():
    model = _seeded(12, lambda: GRUTagger(6, 6, 9, 3))
    g = torch.Generator().manual_seed(12)
    sentence = torch.randint(0, 9, (5,), generator=g)
    return model, (sentence,), ["sentence"], {"sentence": {0: "time"}}


CASES = {
    "rnnmodel_lstm": case_rnnmodel_lstm,
    "rnnmodel_gru": case_rnnmodel_gru,
    "rnnmodel_rnn_tanh": case_rnnmodel_rnn_tanh,
    "rnnmodel_tied": case_rnnmodel_tied,
    "crnn": case_crnn,
    "packed_gru_classifier": case_packed_gru_classifier,
    "bigru_tagger": case_bigru_tagger,
    "lstmcell_decoder": case_lstmcell_decoder,
    "proj_lstm": case_proj_lstm,
    "lstm_tagger": case_lstm_tagger,
    "gru_tagger": case_gru_tagger,
    "rnnmodel_rnn_relu": case_rnnmodel_rnn_relu,
}
