"""The seed models: each tutorial in ``../shared/seeds`` as a recipe that builds (and trains) its network.

Each recipe replays its seed's random-number use, so that weights and printed tensors come out as the
seed printed them, and states the facts from the seed that the exported artifact must reproduce.

The untrained models (lstm-tutorial, rnn-hello*, lstm-2layer*) are rebuilt from their seed on every export: the
random draws are the same on every machine, so are the weights (``retrain`` is ignored). The trained ones
(pos-tutorial, pos-tutorial-gru, char-hello, char-hello-batch-first) train in seconds, but floating point
rounding differs between CPUs (AVX2 vs AVX-512 kernels), and hundreds of optimizer steps amplify it (char-hello's
1000 Adam epochs: weights up to 0.1 apart). So, like pos-ewt, they export their committed checkpoint
(``checkpoints/NAME.pt``: config, vocab, weights, training record); ``python -m export NAME --retrain`` trains
them again and rewrites it. Facts about the untrained network (pos-tutorial's first printed tensor) are checked
on every export: it is rebuilt from the seed either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import runtime
from .models import NetConfig, build
from ..api import Check
from .spec import ModelSpec, Trained, checkpoint

# The trained seed models' committed checkpoints, NAME.pt (same format as pos-ewt's).
CHECKPOINTS = Path(__file__).parent / "checkpoints"


def _seed_checkpoint(name: str, retrain: bool, train: Callable[[], dict]) -> Trained:
    """The committed checkpoint of seed model ``name`` (``train()`` it again and rewrite it when ``retrain``)."""
    net, cfg, ckpt = checkpoint(CHECKPOINTS / f"{name}.pt", retrain, train)
    return Trained(net, cfg, vocab=ckpt["vocab"], training=ckpt["training"])


def _checkpoint_dict(net: torch.nn.Module, cfg: NetConfig, vocab: dict, training: dict) -> dict:
    return {"config": cfg.to_json(), "vocab": vocab,
            "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()}, "training": training}


# A printed 4-decimal number is within half a unit of its last place of the true value.
PRINTED_4DP = 0.5e-4 + 1e-6


def printed(got: np.ndarray, expected, what: str) -> tuple[bool, str]:
    """Compare against a tensor the seed printed to 4 decimals."""
    expected = np.asarray(expected, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64).reshape(expected.shape)
    diff = float(np.abs(got - expected).max())
    return diff <= PRINTED_4DP, f"{what}: max |diff| {diff:.1e} vs printed (4 dp)"


def all_of(*results: tuple[bool, str]) -> tuple[bool, str]:
    return all(ok for ok, _ in results), "; ".join(d for _, d in results)


# ---- seed 000/001/002: nn.LSTM(3, 3) basics ---------------------------------------------------------------------

# Seed 000, In [5]/[6]: after stepping the 5 inputs one at a time from hidden = (randn, randn).
SEED000_STEP_OUT = [-0.3600, 0.0893, 0.0215]
SEED000_STEP_CELL = [-1.1298, 0.4467, 0.0254]
# Seed 000, In [7]: the whole sequence at once from a fresh hidden = (randn, randn).
SEED000_SEQ_OUT = [[-0.0187, 0.1713, -0.2944], [-0.3521, 0.1026, -0.2971], [-0.3191, 0.0781, -0.1957],
                   [-0.1634, 0.0941, -0.1637], [-0.3368, 0.0959, -0.0538]]
SEED000_SEQ_H = [-0.3368, 0.0959, -0.0538]
SEED000_SEQ_C = [-0.9825, 0.4715, -0.0633]


def _seed000_prefix():
    """Seed 000's RNG use before the tagger: manual_seed(1), nn.LSTM(3, 3), 5 inputs, two hidden pairs."""
    torch.manual_seed(1)
    net = build(NetConfig("LSTM", input_size=3, hidden_size=3))  # draws exactly as nn.LSTM(3, 3)
    inputs = [torch.randn(1, 3) for _ in range(5)]
    step_hidden = (torch.randn(1, 1, 3), torch.randn(1, 1, 3))
    seq_hidden = (torch.randn(1, 1, 3), torch.randn(1, 1, 3))
    return net, inputs, step_hidden, seq_hidden


def train_lstm_tutorial(retrain: bool = False) -> Trained:
    net = _seed000_prefix()[0]
    return Trained(net.eval(), net.cfg, training={"recipe": "untrained, torch.manual_seed(1) as in seed 000"})


def _seed000_inputs():
    """Seed 000's inputs and hidden states as numpy: five (1, 1, 3) steps, then two (h, c) pairs."""
    _, inputs, step_hidden, seq_hidden = _seed000_prefix()
    return ([x.numpy().reshape(1, 1, 3) for x in inputs], [t.numpy() for t in step_hidden],
            [t.numpy() for t in seq_hidden])


def check_seed000_stepping(m: runtime.Model):
    xs, (h, c), _ = _seed000_inputs()
    state = {"h_0": h, "c_0": c}
    for x in xs:  # (T=1, B=1, F=3) each
        out = m.run(input=x, **state)
        state = {"h_0": out["h_n"], "c_0": out["c_n"]}
    return all_of(printed(out["output"], SEED000_STEP_OUT, "out"), printed(out["c_n"], SEED000_STEP_CELL, "c"))


def check_seed000_whole(m: runtime.Model):
    xs, _, (h, c) = _seed000_inputs()
    out = m.run(input=np.concatenate(xs), h_0=h, c_0=c)  # (5, 1, 3)
    return all_of(printed(out["output"], SEED000_SEQ_OUT, "out"), printed(out["h_n"], SEED000_SEQ_H, "h"),
                  printed(out["c_n"], SEED000_SEQ_C, "c"))


LSTM_TUTORIAL_CHECKS = (
    Check("seed 000: stepping the 5 inputs reproduces the printed out and cell state", check_seed000_stepping),
    Check("seed 000: the whole sequence reproduces the printed out, hidden and cell", check_seed000_whole),
)


# ---- seed 000/001/002: the LSTMTagger ------------------------------------------------------------------------

TOY_DATA = [("The dog ate the apple".split(), ["DET", "NN", "V", "DET", "NN"]),
            ("Everybody read that book".split(), ["NN", "V", "DET", "NN"])]
TOY_TAGS = ["DET", "NN", "V"]  # seed 000's order (seed 002 uses V, NN, DET)
UNK = "<unk>"
# Seed 000, In [14]: scores of the untrained tagger for "The dog ate the apple".
SEED000_UNTRAINED_SCORES = [[-1.1389, -1.2024, -0.9693], [-1.1065, -1.2200, -0.9834], [-1.1286, -1.2093, -0.9726],
                            [-1.1190, -1.1960, -0.9916], [-1.0137, -1.2642, -1.0366]]


def _toy_tagger(name: str, cell: str) -> Callable[[bool], Trained]:
    def recipe(retrain: bool = False) -> Trained:
        _seed000_prefix()  # the tagger is built after seed 000's LSTM basics, from the same RNG stream
        words = list(dict.fromkeys(w for sent, _ in TOY_DATA for w in sent))
        w_ix, t_ix = {w: i for i, w in enumerate(words)}, {t: i for i, t in enumerate(TOY_TAGS)}
        cfg = NetConfig(cell, input_size=6, hidden_size=6, encoder="embedding", vocab_size=len(words) + 1,
                        head="log_softmax", num_classes=len(TOY_TAGS))
        net = build(cfg, known_ids=len(words))  # EMBEDDING_DIM = HIDDEN_DIM = 6; the unknown word's row starts at 0

        def scores(sent):  # (T,) words -> (T, V)
            ids = torch.tensor([w_ix[w] for w in sent])[:, None]  # (T, B=1)
            state = [torch.zeros(cfg.num_layers, 1, cfg.hidden_size) for _ in range(2 if cell == "LSTM" else 1)]
            return net(ids, *state)[0][:, 0]  # (T, 1, V) -> (T, V)

        facts = []  # about the untrained tagger, which the checkpoint was trained from
        if cell == "LSTM":
            with torch.no_grad():
                ok, detail = printed(scores(TOY_DATA[0][0]).numpy(), SEED000_UNTRAINED_SCORES, "scores")
            facts.append(("seed 000: the untrained tagger's scores match the first printed tensor", ok, detail))

        def train() -> dict:
            optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
            for _ in tqdm(range(300), desc=f"pos-tutorial ({cell})", unit="epoch", leave=False, disable=None):
                for sent, tags in TOY_DATA:  # the seed's loop: one sentence per step, state reset to zeros
                    net.zero_grad()
                    loss = F.nll_loss(scores(sent), torch.tensor([t_ix[t] for t in tags]))
                    loss.backward()
                    optimizer.step()
            return _checkpoint_dict(net, cfg, {"words": words + [UNK], "tags": TOY_TAGS, "unk": UNK},
                                    {"recipe": "seed 000: torch.manual_seed(1), SGD lr 0.1, 300 epochs, NLLLoss",
                                     "final_loss": loss.item()})

        trained = _seed_checkpoint(name, retrain, train)
        trained.facts = facts
        return trained
    return recipe


def check_toy_tags(m: runtime.Tagger):
    got = m.tag_batch([s for s, _ in TOY_DATA])
    want = [t for _, t in TOY_DATA]
    return got == want, f"tagged {got}, gold {want}"


def _toy_sentences() -> list[list[list[str]]]:
    """The seed's two sentences, alone and together, and one with a word it never saw."""
    return [[s for s, _ in TOY_DATA], [TOY_DATA[0][0]], ["the dog read a book".split()]]


TAGGER_CHECKS = (Check("trained, it tags both toy sentences right (DET NN V DET NN; NN V DET NN)", check_toy_tags),)


# ---- seed 003: one-hot character RNN over h, e, l, o ---------------------------------------------------------

HELO = np.eye(4, dtype=np.float32)  # rows: h, e, l, o
# Seed 003's input_data: (3, 5, 4), sequence-first: T=3, B=5.
SEED003_INPUT = HELO[[[0, 1, 2, 2, 3], [1, 3, 2, 2, 2], [2, 2, 1, 1, 2]]]
SEED003_RNN_OUT = [[[-0.7497, -0.6135], [-0.5282, -0.2473], [-0.9136, -0.4269], [-0.9136, -0.4269], [-0.9028, 0.1180]],
                   [[-0.5753, -0.0070], [-0.9052, 0.2597], [-0.9173, -0.1989], [-0.9173, -0.1989], [-0.8996, -0.2725]],
                   [[-0.9077, -0.3205], [-0.8944, -0.2902], [-0.5134, -0.0288], [-0.5134, -0.0288], [-0.9127, -0.2222]]]
SEED003_RNN3_OUT = [[[0.7543, -0.5375], [0.7845, -0.5849], [0.6533, -0.3864], [0.6533, -0.3864], [0.7243, -0.4933]],
                    [[0.7869, -0.7195], [0.7127, -0.6512], [0.5887, -0.4131], [0.5887, -0.4131], [0.5597, -0.4298]],
                    [[0.6109, -0.6075], [0.5860, -0.5538], [0.7732, -0.6762], [0.7732, -0.6762], [0.6341, -0.5182]]]
SEED003_RNN3_H = [[[-0.8182, -0.0702], [-0.7993, -0.3433], [-0.2320, 0.6506], [-0.2320, 0.6506], [-0.8197, 0.1777]],
                  [[0.1845, -0.7633], [0.1997, -0.6192], [-0.2353, -0.8978], [-0.2353, -0.8978], [0.1801, -0.6859]],
                  SEED003_RNN3_OUT[2]]
SEED003_LSTM_OUT = [[[-0.0684, 0.1712], [-0.0680, 0.1788], [-0.0682, 0.1728], [-0.0682, 0.1728], [-0.0681, 0.1772]],
                    [[-0.0879, 0.2323], [-0.0883, 0.2345], [-0.0879, 0.2272], [-0.0879, 0.2272], [-0.0881, 0.2290]],
                    [[-0.0939, 0.2460], [-0.0941, 0.2466], [-0.0936, 0.2497], [-0.0936, 0.2497], [-0.0937, 0.2444]]]
SEED003_LSTM_H = [[[0.0567, 0.0531], [0.0675, 0.0558], [0.0672, -0.1853], [0.0672, -0.1853], [0.0715, 0.0583]],
                  [[0.0833, -0.1614], [0.0842, -0.1605], [0.0980, -0.1692], [0.0980, -0.1692], [0.0774, -0.1625]],
                  SEED003_LSTM_OUT[2]]
SEED003_CONFIGS = {  # name -> (config, printed output, printed h_n); built in this order from manual_seed(0)
    "rnn-hello": (NetConfig("RNN", 4, 2, num_layers=1), SEED003_RNN_OUT, SEED003_RNN_OUT[2:]),
    "rnn-hello-3layer": (NetConfig("RNN", 4, 2, num_layers=3), SEED003_RNN3_OUT, SEED003_RNN3_H),
    "rnn-hello-lstm": (NetConfig("LSTM", 4, 2, num_layers=3), SEED003_LSTM_OUT, SEED003_LSTM_H),
}


def _train_rnn_hello(name: str) -> Callable[[bool], Trained]:
    def recipe(retrain: bool = False) -> Trained:
        # Seed 003 sets no seed; torch.manual_seed(0) reproduces every tensor it printed, with its three
        # modules built in the order the notebook ran them.
        torch.manual_seed(0)
        nets = {n: build(cfg) for n, (cfg, _, _) in SEED003_CONFIGS.items()}
        return Trained(nets[name].eval(), nets[name].cfg,
                       training={"recipe": "untrained, torch.manual_seed(0): RNN(4,2), RNN(4,2,3), LSTM(4,2,3)"})
    return recipe


def _seed003_checks(name: str) -> tuple[Check, ...]:
    _, out, h_n = SEED003_CONFIGS[name]

    def outputs(m: runtime.Model):
        got = m.run(input=SEED003_INPUT)
        return all_of(printed(got["output"], out, "outputs"), printed(got["h_n"], h_n, "hidden_state"))

    return (Check("seed 003: outputs and hidden_state match the printed tensors", outputs),)


# ---- seed 004: nn.LSTM(3, 5, num_layers=2) -------------------------------------------------------------------

def _train_lstm_2layer(batch_first: bool) -> Callable[[bool], Trained]:
    def recipe(retrain: bool = False) -> Trained:
        torch.manual_seed(1)  # seed 004 sets no seed and prints only shapes
        net = build(NetConfig("LSTM", 3, 5, num_layers=2, batch_first=batch_first))
        return Trained(net.eval(), net.cfg, training={"recipe": "untrained, torch.manual_seed(1)"})
    return recipe


def _seed004_shape_checks(batch_first: bool) -> tuple[Check, ...]:
    lead = (3, 5) if batch_first else (5, 3)  # the seed's (B, T) or (T, B)

    def shapes(m: runtime.Model):
        rng = np.random.default_rng(0)
        got = m.run(input=rng.standard_normal(lead + (3,), dtype=np.float32),
                    h_0=rng.standard_normal((2, 3, 5), dtype=np.float32),
                    c_0=rng.standard_normal((2, 3, 5), dtype=np.float32))
        shp = {k: v.shape for k, v in got.items()}
        want = {"output": lead + (5,), "h_n": (2, 3, 5), "c_n": (2, 3, 5)}
        return shp == want, f"shapes {shp}, seed printed {want}"

    return (Check("seed 004: output, hidden and cell shapes as printed", shapes),)


# ---- seed 004: the char LSTM that memorizes one sentence ------------------------------------------------------

HELLO = "hello pytorch. how long can a rnn cell remember? show me your limit!"
HELLO_CHARS = "abcdefghijklmnopqrstuvwxyz ?!.,:;"  # the seed's first 33 symbols; its '0' and '1' are start and end
HELLO_SYMBOLS = list(HELLO_CHARS) + ["<s>", "</s>", UNK]  # ids 33, 34 as in the seed; 35 = unknown (input only)
HELLO_BATCH = 5  # the batched variant's batch: 5 windows of the sentence, each shifted by one


def _train_char_hello(name: str, batch_first: bool) -> Callable[[bool], Trained]:
    def train() -> dict:
        torch.manual_seed(1)  # seed 004 sets no seed
        v = len(HELLO_CHARS) + 2  # 35 symbols: chars, start, end
        cfg = NetConfig("LSTM", input_size=v, hidden_size=v, num_layers=3, batch_first=batch_first,
                        encoder="one_hot", vocab_size=v + 1)
        net = build(cfg)
        ids = torch.tensor([v - 2] + [HELLO_CHARS.index(ch) for ch in HELLO] + [v - 1])  # (70,) start .. end
        if batch_first:
            # The seed's Char_LSTM_Batch: window k reads ids[k:], all 5 stepped together with the state carried;
            # 65 steps (unroll_len - batch_size + 1). Stepping its loop equals running each window whole.
            steps = len(ids) - 1 - HELLO_BATCH + 1
            x = torch.stack([ids[k:k + steps] for k in range(HELLO_BATCH)])  # (B=5, T=65)
            y = torch.stack([ids[k + 1:k + 1 + steps] for k in range(HELLO_BATCH)])
        else:
            x, y = ids[:-1, None], ids[1:, None]  # (T=69, B=1)
        target = F.one_hot(y, v).float()  # the seed's MSE targets: next symbol, one-hot
        optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
        zeros = torch.zeros(cfg.num_layers, x.shape[0] if batch_first else 1, v)
        bar = tqdm(range(1000), desc=f"char-hello{' (batch_first)' if batch_first else ''}", unit="epoch",
                   leave=False, disable=None)
        for _ in bar:
            optimizer.zero_grad()
            out = net(x, zeros, zeros)[0]  # (T, B, V) or (B, T, V)
            # The seed sums, over steps, the MSE of each step's output against its one-hot target.
            time_axis = 1 if batch_first else 0
            loss = ((out - target) ** 2).mean(dim=tuple(a for a in range(3) if a != time_axis)).sum()
            loss.backward()
            optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)

        return _checkpoint_dict(net, cfg, {"symbols": HELLO_SYMBOLS, "bos": v - 2, "eos": v - 1, "unk": v,
                                           "never_generate": [v - 2, v]},
                                {"recipe": "seed 004: Adam lr 0.01, 1000 epochs, MSE against one-hot next symbols"
                                           + (", batch of 5 shifted windows" if batch_first else ""),
                                 "final_loss": loss.item()})

    return lambda retrain=False: _seed_checkpoint(name, retrain, train)


def check_regenerates_hello(m: runtime.CharLM):
    text = m.generate("", max_chars=len(HELLO) + 10)
    return text == HELLO, f"greedy from the start symbol: {text!r}"


CHAR_HELLO_CHECKS = (Check("seed 004: greedy generation from the start symbol regenerates the sentence exactly",
                           check_regenerates_hello),)


SEED_MODELS: list[ModelSpec] = [
    ModelSpec("lstm-tutorial", 5, 1, train_lstm_tutorial, LSTM_TUTORIAL_CHECKS),
    ModelSpec("pos-tutorial", 5, 1, _toy_tagger("pos-tutorial", "LSTM"), TAGGER_CHECKS, sentences=_toy_sentences),
    ModelSpec("pos-tutorial-gru", 5, 1, _toy_tagger("pos-tutorial-gru", "GRU"), TAGGER_CHECKS,
              sentences=_toy_sentences),
    *(ModelSpec(name, 3, 5, _train_rnn_hello(name), _seed003_checks(name))
      for name in ("rnn-hello", "rnn-hello-3layer", "rnn-hello-lstm")),
    ModelSpec("lstm-2layer", 5, 3, _train_lstm_2layer(False), _seed004_shape_checks(False)),
    ModelSpec("lstm-2layer-batch-first", 5, 3, _train_lstm_2layer(True), _seed004_shape_checks(True)),
    ModelSpec("char-hello", 69, 1, _train_char_hello("char-hello", False), CHAR_HELLO_CHECKS),
    ModelSpec("char-hello-batch-first", 65, HELLO_BATCH, _train_char_hello("char-hello-batch-first", True),
              CHAR_HELLO_CHECKS),
]
