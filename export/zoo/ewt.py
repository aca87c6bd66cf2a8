"""pos-ewt: a part-of-speech tagger for real English (UD English EWT, 17 UPOS tags), small and fast for the edge.

Data: the vendored train and dev splits (``export/zoo/data/ud_english_ewt``); the test split is held out. Model
selection and tuning use dev only. ``make run`` exports the committed checkpoint; ``python -m export pos-ewt
--retrain`` trains from scratch (progress bar with loss, dev accuracy and tokens/s; curve saved as a PNG).
"""

from __future__ import annotations

import lzma
import math
import random
import time
import weakref
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import conllu
import torch
import torch.nn.functional as F
from tqdm import tqdm

import runtime
from runtime.artifact import INT8_FILE, ONNX_FILE
from runtime.tagger import normalize_word, spell, word_chars
from .models import CharBiLSTMTagger, TaggerConfig
from .plots import png, pyplot
from ..api import Check
from .spec import DataError, ModelSpec, Trained, checkpoint, data_dir, data_record, training_record

DATA = Path(__file__).parent / "data" / "ud_english_ewt"
CHECKPOINT = Path(__file__).parent / "checkpoints" / "pos-ewt.pt"
PAD, UNK = "<pad>", "<unk>"


Sentence = tuple[list[str], list[str]]  # (words, UPOS tags)


class _CheckedLines:
    """The lines of a CoNLL-U file, each word line checked for its 10 tab-separated columns as it streams by,
    so a malformed line is reported by its number (the ``conllu`` parser reports no line)."""

    def __init__(self, f, path: Path):
        self.f, self.path = f, path

    def read(self, *args):  # conllu.parse_incr wants a file; it only iterates
        raise NotImplementedError

    def __iter__(self):
        for n, line in enumerate(self.f, 1):
            if line.strip() and not line.startswith("#"):
                columns = line.rstrip("\r\n").split("\t")
                if len(columns) != 10:
                    raise DataError(f"{self.path}: malformed CoNLL-U: line {n}: expected 10 tab-separated columns, "
                                    f"got {len(columns)}: {line.rstrip()[:80]!r}")
            yield line


def read_conllu(path: Path) -> list[Sentence]:
    """Words and UPOS of every sentence; multi-word token ranges (3-4) and empty nodes (8.1) are skipped."""
    if not path.exists():
        raise DataError(f"{path}: missing data file (a UD English EWT split)")
    opener = lzma.open if path.suffix == ".xz" else open
    sentences = []
    with opener(path, "rt", encoding="utf-8") as f:
        try:
            for n, sent in enumerate(conllu.parse_incr(_CheckedLines(f, path)), 1):
                toks = [tok for tok in sent if isinstance(tok["id"], int)]
                bad = next((tok for tok in toks if not tok.get("form") or tok.get("upos") in (None, "", "_")), None)
                if bad is not None:
                    raise DataError(f"{path}: malformed CoNLL-U: sentence {n} "
                                    f"({sent.metadata.get('sent_id', 'no sent_id')}), word {bad['id']}: expected 10 "
                                    f"tab-separated columns with FORM and UPOS, got {dict(bad)}")
                words = [(tok["form"], tok["upos"]) for tok in toks]
                if words:
                    sentences.append(([w for w, _ in words], [t for _, t in words]))
        except conllu.exceptions.ParseException as e:
            raise DataError(f"{path}: malformed CoNLL-U: {e}") from None
        except (UnicodeDecodeError, lzma.LZMAError, EOFError) as e:
            raise DataError(f"{path}: unreadable: expected UTF-8 CoNLL-U{' (xz)' if path.suffix == '.xz' else ''}, "
                            f"got {type(e).__name__}: {e}") from None
    if not sentences:
        raise DataError(f"{path}: expected at least one sentence with words, got no sentences")
    return sentences


TRAIN_FILE, DEV_FILE = "en_ewt-ud-train.conllu.xz", "en_ewt-ud-dev.conllu.xz"


def data() -> Path:
    """The folder holding the splits: the vendored copy, or ``python -m export pos-ewt --data DIR``."""
    return data_dir(POS_EWT)


def load_splits(folder: Path | None = None) -> tuple[list[Sentence], list[Sentence]]:
    folder = folder or data()
    return read_conllu(folder / TRAIN_FILE), read_conllu(folder / DEV_FILE)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 1
    epochs: int = 30  # at most; the schedule shrinks to fit max_minutes; the best dev epoch is kept
    max_minutes: float = 28.0  # wall-clock budget for training (the issue allows 30)
    batch_size: int = 32  # sentences
    lr: float = 2e-3
    clip: float = 5.0
    ema: float = 0.999  # decay of the weight average that is evaluated and kept
    min_word_count: int = 2  # rarer words are unknown to the word embedding (the characters still see them)
    word_dropout: float = 0.25  # alpha: a word seen n times is replaced by <unk> with probability alpha/(alpha+n)
    threads: int = 2


@dataclass
class Vocab:
    words: list[str]
    chars: list[str]
    tags: list[str]
    word_counts: list[int]

    def to_manifest(self) -> dict:
        return {"words": self.words, "chars": self.chars, "tags": self.tags, "unk": UNK, "pad": PAD,
                "normalize": True}


def build_vocab(train: list[Sentence], cfg: TrainConfig) -> Vocab:
    counts = Counter(normalize_word(w) for words, _ in train for w in words)
    kept = sorted((w for w, n in counts.items() if n >= cfg.min_word_count), key=lambda w: (-counts[w], w))
    chars = sorted({c for words, _ in train for w in words for c in w})
    tags = sorted({t for _, ts in train for t in ts})
    return Vocab([PAD, UNK] + kept, [PAD, UNK] + chars, tags, [0, 0] + [counts[w] for w in kept])


class Encoder:
    """Sentences -> the model's padded input tensors and the tags, the same way the runtime encodes them."""

    def __init__(self, vocab: Vocab, cfg: TaggerConfig):
        self.w = {w: i for i, w in enumerate(vocab.words)}
        self.c = {c: i for i, c in enumerate(vocab.chars)}
        self.t = {t: i for i, t in enumerate(vocab.tags)}
        self.cfg = cfg

    def batch(self, sents: list[Sentence]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        lengths = [len(w) for w, _ in sents]
        t, b = max(lengths), len(sents)
        words = torch.zeros(t, b, dtype=torch.long)  # (T, B), 0 = <pad>
        tags = torch.full((t, b), -100, dtype=torch.long)  # -100: ignored by the loss
        for j, (ws, ts) in enumerate(sents):
            words[: len(ws), j] = torch.tensor([self.w.get(normalize_word(w), 1) for w in ws])
            tags[: len(ts), j] = torch.tensor([self.t[x] for x in ts])
        spellings = [[tuple(self.c.get(ch, 1) for ch in word_chars(w, self.cfg.max_word_chars)) for w in ws]
                     for ws, _ in sents]
        chars = {k: torch.from_numpy(v) for k, v in spell(spellings, self.cfg.char_buckets).items()}
        return {"words": words, "lengths": torch.tensor(lengths), **chars}, tags


def batches(sents: list[Sentence], size: int, rng: random.Random | None = None) -> list[list[Sentence]]:
    """Length-bucketed batches (little padding); shuffled when ``rng`` is given."""
    order = list(range(len(sents)))
    if rng:
        rng.shuffle(order)
        pools = [order[i:i + size * 50] for i in range(0, len(order), size * 50)]
        order = [i for pool in pools for i in sorted(pool, key=lambda k: len(sents[k][0]))]
    else:
        order.sort(key=lambda k: len(sents[k][0]))
    out = [[sents[i] for i in order[j:j + size]] for j in range(0, len(order), size)]
    if rng:
        rng.shuffle(out)
    return out


@torch.no_grad()
def accuracy(net: CharBiLSTMTagger, enc: Encoder, sents: list[Sentence]) -> float:
    net.eval()
    correct = total = 0
    for batch in batches(sents, 256):
        inputs, tags = enc.batch(batch)
        pred = net(**inputs).argmax(-1)
        mask = tags != -100
        correct += int((pred[mask] == tags[mask]).sum())
        total += int(mask.sum())
    return correct / total


def train(cfg: TrainConfig = TrainConfig(), model_cfg: dict | None = None, folder: Path | None = None) -> dict:
    """Train from scratch; returns a checkpoint dict (config, vocab, weights of the best dev epoch, history).

    Adam with a cosine learning-rate schedule sized to the wall-clock budget (measured on the first batches);
    dev accuracy is measured on an exponential moving average of the weights, which is what gets kept.
    """
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    torch.set_num_threads(cfg.threads)
    train_set, dev_set = load_splits(folder)
    vocab = build_vocab(train_set, cfg)
    mcfg = TaggerConfig(word_vocab=len(vocab.words), char_vocab=len(vocab.chars), num_tags=len(vocab.tags),
                        **(model_cfg or {}))
    enc = Encoder(vocab, mcfg)
    net, averaged = CharBiLSTMTagger(mcfg), CharBiLSTMTagger(mcfg)
    averaged.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.9))
    keep = torch.tensor([cfg.word_dropout / (cfg.word_dropout + max(n, 1)) for n in vocab.word_counts])
    history, best, best_state = [], -1.0, None
    started = time.perf_counter()
    per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total_steps, step = cfg.epochs * per_epoch, 0
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        bar = tqdm(batches(train_set, cfg.batch_size, rng), desc=f"pos-ewt epoch {epoch}", unit="batch",
                   leave=False, disable=None)
        t0, seen, loss_sum, n_batches = time.perf_counter(), 0, 0.0, 0
        for batch in bar:
            inputs, tags = enc.batch(batch)
            words = inputs["words"]
            drop = torch.rand(words.shape) < keep[words]  # word dropout: rare words -> <unk>
            inputs["words"] = torch.where(drop & (words > 1), torch.ones_like(words), words)
            scores = net(**inputs)  # (T, B, V)
            loss = F.nll_loss(scores.reshape(-1, scores.size(-1)), tags.reshape(-1), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
            if step == 50:  # size the schedule to the budget, leaving ~8% for the dev evaluations
                per_step = (time.perf_counter() - started) / 50
                total_steps = min(total_steps, int(cfg.max_minutes * 60 * 0.92 / per_step))
            for group in opt.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total_steps)))
            opt.step()
            decay = min(cfg.ema, (1 + step) / (10 + step))  # warm-up: early on, the average follows the weights
            with torch.no_grad():  # exponential moving average of the weights
                for a, p in zip(averaged.parameters(), net.parameters()):
                    a.mul_(decay).add_(p, alpha=1 - decay)
            step += 1
            n_batches += 1
            seen += int(inputs["lengths"].sum())
            loss_sum += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}", dev=f"{best:.4f}", tok_s=f"{seen / (time.perf_counter() - t0):.0f}",
                            refresh=False)
            if step >= total_steps:
                break
        dev = accuracy(averaged, enc, dev_set)
        minutes = (time.perf_counter() - started) / 60
        history.append({"epoch": epoch, "train_loss": loss_sum / n_batches, "dev_accuracy": dev, "minutes": minutes,
                        "tokens_per_s": seen / (time.perf_counter() - t0)})
        tqdm.write(f"pos-ewt epoch {epoch}: train loss {loss_sum / n_batches:.4f}, dev UPOS {dev:.4f} "
                   f"(averaged weights), {minutes:.1f} min")
        if dev > best:
            best, best_state = dev, {k: v.detach().clone() for k, v in averaged.state_dict().items()}
        if step >= total_steps:
            break
    return {"config": mcfg.to_json(), "vocab": asdict(vocab), "state_dict": best_state,
            "training": {**asdict(cfg), "history": history, "best_dev_accuracy": best,
                         "minutes": (time.perf_counter() - started) / 60}}


def curve_png(history: list[dict]) -> bytes:
    epochs = [h["epoch"] for h in history]
    fig, ax = pyplot().subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss (NLL)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(epochs, [100 * h["dev_accuracy"] for h in history], "s-", color="tab:red", label="dev UPOS")
    ax2.set_ylabel("dev UPOS accuracy (%)", color="tab:red")
    ax.set_title("pos-ewt training (UD English EWT)")
    return png(fig)


# ---- the registered model ------------------------------------------------------------------------------------

MIN_DEV_ACCURACY = 0.955
MAX_FP32_BYTES = 8_000_000
MAX_INT8_BYTES = 3_000_000
MAX_INT8_ACCURACY_LOSS = 0.003  # 0.3 points
MIN_INT8_AGREEMENT = 0.995


def recipe(retrain: bool = False) -> Trained:
    net, cfg, ckpt = checkpoint(CHECKPOINT, retrain, train)
    return Trained(net, cfg, vocab=Vocab(**ckpt["vocab"]).to_manifest(),
                   training={**training_record(ckpt, "UD English EWT v2.15 train; model selection on dev"),
                             **data_record(POS_EWT)},
                   extra_files={"training_curve.png": curve_png(ckpt["training"]["history"])})


# Export runs its checks on one loaded tagger; two of them need its dev tags (fp32 accuracy, int8 agreement).
_DEV_TAGS: "weakref.WeakKeyDictionary[runtime.Tagger, tuple[float, list[list[str]]]]" = weakref.WeakKeyDictionary()


def dev_accuracy(tagger: runtime.Tagger) -> tuple[float, list[list[str]]]:
    """UPOS accuracy of ``tagger`` on dev and its tags; computed once per loaded tagger."""
    if tagger not in _DEV_TAGS:
        dev = read_conllu(data() / DEV_FILE)
        pred = tagger.tag_batch([w for w, _ in dev])
        correct = sum(p == g for (_, gold), tags in zip(dev, pred) for p, g in zip(tags, gold))
        _DEV_TAGS[tagger] = correct / sum(len(t) for _, t in dev), pred
    return _DEV_TAGS[tagger]


def dev_batches() -> list[list[list[str]]]:
    """Real dev sentences for the cross-runtime check: the first 8, 8 from the middle, and the 3 longest."""
    dev = [words for words, _ in read_conllu(data() / DEV_FILE)]
    longest = sorted(dev, key=len)[-3:]
    return [dev[:8], dev[len(dev) // 2:len(dev) // 2 + 8], longest]


def check_dev_accuracy(m: runtime.Tagger):
    acc, _ = dev_accuracy(m)
    return acc >= MIN_DEV_ACCURACY, f"dev UPOS accuracy {acc:.4f} (>= {MIN_DEV_ACCURACY} required)"


def check_fp32_size(m: runtime.Tagger):
    size = (m.folder / ONNX_FILE).stat().st_size
    return size <= MAX_FP32_BYTES, f"model.onnx {size / 1e6:.2f} MB (<= {MAX_FP32_BYTES / 1e6:.0f} MB required)"


def check_int8(m: runtime.Tagger):
    """int8: size, dev accuracy lost vs fp32, and tag agreement with fp32 on dev."""
    acc32, pred32 = dev_accuracy(m)
    acc8, pred8 = dev_accuracy(runtime.load(m.folder, variant="int8"))
    n = sum(len(t) for t in pred32)
    agree = sum(a == b for s32, s8 in zip(pred32, pred8) for a, b in zip(s32, s8)) / n
    size = (m.folder / INT8_FILE).stat().st_size
    ok = size <= MAX_INT8_BYTES and acc32 - acc8 <= MAX_INT8_ACCURACY_LOSS and agree >= MIN_INT8_AGREEMENT
    return ok, (f"model.int8.onnx {size / 1e6:.2f} MB (<= 3 MB); dev accuracy {acc8:.4f} vs fp32 {acc32:.4f} "
                f"(loss {100 * (acc32 - acc8):.2f} points, <= 0.3); tag agreement with fp32 {agree:.4f} (>= 0.995)")


POS_EWT = ModelSpec(
    "pos-ewt", example_length=17, example_batch=3, train=recipe, int8=True, data=DATA,
    data_files=(TRAIN_FILE, DEV_FILE), sentences=dev_batches,
    # model.pte (batch 1): sentences of up to 512 words, so up to 512 spellings per bucket, each bucket as long as
    # runtime.tagger.spell makes it (4, 8, then max_word_chars 20); its memory plan is sized for these.
    pte_max={"time": 512, **{f"spellings_{k}": 512 for k in (1, 2, 3)},
             "chars_per_word_1": 4, "chars_per_word_2": 8, "chars_per_word_3": 20},
    checks=(Check(f"dev UPOS accuracy >= {MIN_DEV_ACCURACY}", check_dev_accuracy),
            Check("model.onnx <= 8 MB", check_fp32_size),
            Check("int8: <= 3 MB, loses <= 0.3 points of dev accuracy, agrees with fp32 on >= 99.5% of dev tags",
                  check_int8)))
