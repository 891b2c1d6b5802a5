"""Language models of review text: a recurrent LM, judged by perplexity against an n-gram
model on the same tokens, that continues a prompt.

The shared parts do the work (text reading with row checks, the tokenizer and a
training-only vocabulary, the recurrent encoder, the fit loop, the registry); this module
holds what is specific: the token stream (documents end to end, each followed by an
end-of-text token), truncated backpropagation through time over it, exact perplexity,
sampling (temperature, top-k, top-p, a seed), and the fitted `LMPipeline` artefact.

Perplexity is counted on the same tokens for the model and the baseline: every token of
every document and one end-of-text token per document, each out-of-vocabulary token as
`<unk>`. At character level the tokens are characters, and bits per character are
reported too.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from rnnpipe import artefact, settings
from rnnpipe.baselines import KneserNeyLM
from rnnpipe.config import from_dict, to_dict
from rnnpipe.errors import ConfigError, DataError, ModelError
from rnnpipe.features.splits import stratified_split
from rnnpipe.ingest import PROMPT_COLUMN
from rnnpipe.io import preloadable
from rnnpipe.lm_config import (  # noqa: F401 - the settings, also read from here
    GenerateConfig,
    LMConfig,
    LMDataConfig,
    LMModelConfig,
    LMRegisterConfig,
    LMSplitConfig,
    LMTextConfig,
    StreamConfig,
    check_generation,
)
from rnnpipe.models import LanguageModel
from rnnpipe.text import UNK, Tokenizer, Vocabulary, check_text, read_texts, text_digests

EOS = "<eos>"


# --- tokens ---------------------------------------------------------------------------------


class LMPreprocessor:
    """Raw text -> tokens (words or characters) -> ids of a training-only vocabulary whose
    id 2 is the end-of-text token."""

    def __init__(self, cfg: LMConfig):
        t = cfg.text
        self.level = t.level
        pattern = t.pattern if t.level == "word" else r"[\s\S]"
        self.tokenizer = Tokenizer(t.lowercase, t.html, t.urls, pattern)
        self.cfg = cfg

    def tokens(self, text: str) -> list[str]:
        out = self.tokenizer(text)
        if self.level == "char":  # runs of white space are one space
            out = [" " if c.isspace() else c for c in out]
            out = [c for i, c in enumerate(out) if c != " " or (i and out[i - 1] != " ")]
        return out

    def fit(self, texts: list[str]) -> LMPreprocessor:
        t = self.cfg.text
        built = Vocabulary.build((self.tokens(x) for x in texts), t.min_freq, t.max_size)
        self.vocab_ = Vocabulary([EOS, *built.tokens[2:]], [0, *(built.counts or [])])
        self.vocab_.total_tokens, self.vocab_.covered_tokens = built.total_tokens, built.covered_tokens
        return self

    @property
    def eos_id(self) -> int:
        return self.vocab_.index[EOS]

    def in_vocabulary(self, tokens: list[str]) -> list[str]:
        """Tokens as the model and the n-gram baseline see them (unknown -> `<unk>`)."""
        index = self.vocab_.index
        return [t if t in index else UNK for t in tokens]

    def stream(self, texts: list[str]) -> np.ndarray:
        """One id stream: end-of-text, then each document followed by end-of-text."""
        eos = self.eos_id
        pieces = [np.array([eos], np.int64)]
        for text in texts:
            pieces.append(self.vocab_.encode(self.tokens(text)))
            pieces.append(np.array([eos], np.int64))
        return np.concatenate(pieces)

    def detokenize(self, tokens: list[str]) -> str:
        return "".join(tokens) if self.level == "char" else " ".join(tokens)

    def to_dict(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.to_dict(), "level": self.level, "vocab": self.vocab_.tokens}

    @classmethod
    def from_dict(cls, cfg: LMConfig, d: dict[str, Any]) -> LMPreprocessor:
        p = cls(cfg)
        p.vocab_ = Vocabulary(d["vocab"][2:])
        return p


class StreamBatches:
    """A `BatchSource` over a token stream for truncated backpropagation through time: the
    stream is cut into `rows` parallel rows, and consecutive (rows, bptt) windows come in
    order, so the model's carried state continues each row. Yields ((tokens, reset), next
    tokens); `reset` is True for the first window of a pass. `shuffle` (training) moves the
    window boundaries by a random offset each pass; `batch_size` is ignored (the layout fixes
    the rows)."""

    def __init__(self, ids: np.ndarray, rows: int, bptt: int):
        n = (len(ids) - 1) // rows
        if n < 2:
            raise DataError(f"a stream of {len(ids)} tokens is too short for {rows} rows")
        ids = torch.as_tensor(ids[: n * rows + 1], dtype=torch.long)
        self.x = ids[:-1].reshape(rows, n)
        self.y = ids[1:].reshape(rows, n)
        self.rows, self.bptt = rows, bptt

    @property
    def tokens(self) -> int:
        return int(self.y.numel())

    def __len__(self) -> int:  # in rows x windows, so that ceil(len / rows) counts the windows
        return self.rows * math.ceil(self.x.shape[1] / self.bptt)

    def to(self, device) -> StreamBatches:
        out = StreamBatches.__new__(StreamBatches)
        out.__dict__.update(self.__dict__)
        out.x, out.y = self.x.to(device), self.y.to(device)
        return out

    def batches(self, batch_size: int = 0, shuffle: bool = False, generator: torch.Generator | None = None):
        n = self.x.shape[1]
        start = int(torch.randint(0, self.bptt, (1,), generator=generator)) if shuffle else 0
        bounds = ([0] if start else []) + list(range(start, n, self.bptt)) + [n]
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            if hi > lo:
                yield (self.x[:, lo:hi], i == 0), self.y[:, lo:hi]


def lm_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per token (natural log): exp of it is the perplexity."""
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


# --- data ----------------------------------------------------------------------------------


@dataclass
class LMPrepared:
    texts: dict[str, list[str]]
    preprocessor: LMPreprocessor
    streams: dict[str, np.ndarray]
    split_kind: str
    fingerprint: str
    source: str
    skipped: dict[str, int] = field(default_factory=dict)

    def batches(self, part: str, rows: int, bptt: int) -> StreamBatches:
        return StreamBatches(self.streams[part], rows, bptt)

    def seen(self) -> np.ndarray:
        """Digests of the texts the model learns from or stops on (train and val), kept in
        its artefact: a classifier that starts from it checks that none is its val or test."""
        return text_digests(self.texts["train"] + self.texts["val"])

    def docs(self, part: str) -> list[list[str]]:
        """The part's documents as in-vocabulary tokens (what the n-gram baseline reads)."""
        p = self.preprocessor
        return [p.in_vocabulary(p.tokens(t)) for t in self.texts[part]]

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            part: {"documents": len(self.texts[part]), "tokens": int(len(s) - 1), "unknown": int((s == 1).sum())}
            for part, s in self.streams.items()
        }

    def summary(self) -> dict[str, Any]:
        v = self.preprocessor.vocab_
        return {
            "split": self.split_kind,
            "level": self.preprocessor.level,
            "counts": self.counts(),
            "vocabulary": len(v),
            "skipped_rows": self.skipped,
            "train_tokens_in_vocabulary": round(v.covered_tokens / max(v.total_tokens, 1), 4),
        }


@preloadable
def load_lm_texts(cfg: LMConfig) -> dict[str, Any]:
    d = cfg.data
    kw = dict(bad_rows=d.bad_rows, fmt=d.format, require_labels=False)
    out = {"data": read_texts(settings.resolve_data_path(d.path), d.text_col, "", **kw)}
    if d.test_path:
        out["test"] = read_texts(settings.resolve_data_path(d.test_path), d.text_col, "", **kw)
    return out


def prepare_lm(tables: dict[str, Any], cfg: LMConfig) -> LMPrepared:
    """Documents to train / val / test (at random, seeded; or the given test file), the
    vocabulary from the training part only, and each part as one id stream."""
    data = tables["data"]
    s = cfg.split
    held = {"val": s.val} if "test" in tables else {"val": s.val, "test": s.test}
    parts = stratified_split(np.zeros(len(data), np.int64), held, s.seed)
    texts = {p: [data.texts[i] for i in parts[p]] for p in parts}
    skipped = dict(data.skipped)
    if "test" in tables:
        texts["test"] = tables["test"].texts
        skipped.update({f"test_{k}": v for k, v in tables["test"].skipped.items()})
        kind = f"random train/val of {Path(data.source).name}; test = {Path(tables['test'].source).name}"
    else:
        kind = f"random train/val/test of {Path(data.source).name}"
    for part in ("train", "val", "test"):
        if not texts.get(part):
            raise DataError(f"{data.source}: the {part} part is empty; use more data or larger split fractions")
    pre = LMPreprocessor(cfg).fit(texts["train"])
    streams = {part: pre.stream(texts[part]) for part in ("train", "val", "test")}
    h = hashlib.sha256()
    for part in ("train", "val", "test"):
        for t in texts[part]:
            h.update(f"{part}\x1f{t}\x1e".encode())
    return LMPrepared(texts, pre, streams, kind, h.hexdigest(), data.source, skipped)


# --- the fitted pipeline -------------------------------------------------------------------


class LMPipeline:
    """Tokenizer + vocabulary + recurrent language model: scores text, continues prompts."""

    KIND = "lm"
    INFERENCE_PARAMS: ClassVar = ("max_new_tokens", "temperature", "top_k", "top_p", "seed")

    def __init__(
        self,
        config: LMConfig,
        preprocessor: LMPreprocessor,
        model: LanguageModel | None = None,
        seen: np.ndarray | None = None,
    ):
        self.config, self.preprocessor = config, preprocessor
        self.seen = seen  # `LMPrepared.seen`: digests of the texts it learned from (None: not recorded)
        if model is None:
            m = config.model
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.train.seed)
                model = LanguageModel(
                    len(preprocessor.vocab_), m.embed_dim, m.cell, m.hidden_size, m.num_layers, m.dropout, m.tie_weights
                )
        self.model = model

    def inference_params(self) -> dict[str, Any]:
        """The generation settings a request may give (MLflow inference params) and their
        defaults, from `generate.*`."""
        g = self.config.generate
        return {
            "max_new_tokens": g.max_new_tokens,
            "temperature": float(g.temperature),
            "top_k": g.top_k,
            "top_p": float(g.top_p),
            "seed": g.seed,
        }

    @torch.no_grad()
    def log_likelihood(self, ids: np.ndarray, chunk: int = 512) -> tuple[float, int]:
        """(sum of natural-log probabilities of ids[1:] given what precedes, tokens scored),
        in one pass with the state carried: the exact perplexity is exp(-sum / n)."""
        self.model.eval()
        device = next(self.model.parameters()).device
        x = torch.as_tensor(ids, dtype=torch.long, device=device)
        total, n = 0.0, 0
        for lo in range(0, len(x) - 1, chunk):
            inp, tgt = x[lo : min(lo + chunk, len(x) - 1)], x[lo + 1 : min(lo + chunk, len(x) - 1) + 1]
            logits = self.model(inp[None], reset=lo == 0)[0].float()
            total -= float(torch.nn.functional.cross_entropy(logits, tgt, reduction="sum"))
            n += len(tgt)
        return total, n

    @torch.no_grad()
    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 40,
        temperature: float = 0.8,
        top_k: int = 0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[list[str], str]:
        """Continue `prompt` token by token until end-of-text or `max_new_tokens`; temperature
        ~0 is greedy. -> (the new tokens, a note)."""
        check_generation(temperature, top_k, top_p, max_new_tokens)
        pre, model = self.preprocessor, self.model
        model.eval()
        device = next(model.parameters()).device
        tokens = pre.tokens(prompt)
        ids = pre.vocab_.encode(tokens)
        notes = []
        if tokens and (ids == 1).all():
            notes.append("no word of the prompt is in the vocabulary: the continuation ignores it")
        elif not tokens:
            notes.append("empty prompt: a text from its start")
        context = torch.as_tensor(np.concatenate([[pre.eos_id], ids]), dtype=torch.long, device=device)
        logits = model(context[None], reset=True)[0, -1].float()
        never = torch.tensor([0, 1], device=device)  # <pad> and <unk> are never written
        out: list[str] = []
        for _ in range(max_new_tokens):
            logits[never] = float("-inf")
            nxt = sample_next(logits, temperature, top_k, top_p, generator)
            if nxt == pre.eos_id:
                break
            out.append(pre.vocab_.tokens[nxt])
            logits = model(torch.tensor([[nxt]], device=device), reset=False)[0, -1].float()
        else:
            notes.append(f"stopped at max_new_tokens={max_new_tokens}")
        return out, "; ".join(notes)

    def batch_spec(self, available: list[str]) -> tuple[list[str], str | None]:
        """(the prompt column it reads, None: it answers row by row) for batch jobs."""
        return [PROMPT_COLUMN], None

    def predict(self, prompts: pd.DataFrame, **params: Any) -> pd.DataFrame:
        """A `prompt` column -> per prompt: the continuation `text` (prompt not repeated), its
        `n_tokens`, and a `note` (the prompt had no known word; it stopped at
        max_new_tokens; a prompt that is not text gets no continuation). `params` are the
        generation settings (`inference_params`); one seeded generator serves the whole call,
        so a call is reproducible."""
        if PROMPT_COLUMN not in prompts.columns:
            raise DataError(
                f"input: column {PROMPT_COLUMN!r} not found (columns: {', '.join(map(str, prompts.columns))})"
            )
        settings_ = {**self.inference_params(), **{k: v for k, v in params.items() if v is not None}}
        unknown = set(settings_) - set(self.INFERENCE_PARAMS)
        if unknown:
            raise DataError(
                f"unknown generation setting {sorted(unknown)[0]!r} (known: {', '.join(self.INFERENCE_PARAMS)})"
            )
        try:
            g = dict(
                max_new_tokens=int(settings_["max_new_tokens"]),
                temperature=float(settings_["temperature"]),
                top_k=int(settings_["top_k"]),
                top_p=float(settings_["top_p"]),
            )
            seed = int(settings_["seed"])
        except (TypeError, ValueError) as exc:
            raise DataError(f"generation settings: {exc}") from None
        try:
            check_generation(**g)
        except ConfigError as exc:
            raise DataError(str(exc)) from None
        generator = torch.Generator(device=next(self.model.parameters()).device).manual_seed(seed)
        texts, counts, notes = [], [], []
        for value in prompts[PROMPT_COLUMN].tolist():
            value = None if isinstance(value, float) and math.isnan(value) else value
            problem, text = check_text(value)
            if problem is not None and not (isinstance(value, str) and not value.strip()):
                texts.append(None)
                counts.append(0)
                notes.append(f"{problem.partition(':')[2]}: nothing to continue")
                continue
            new, note = self.generate(text if problem is None else "", generator=generator, **g)
            texts.append(self.preprocessor.detokenize(new))
            counts.append(len(new))
            notes.append(note)
        return pd.DataFrame({"text": texts, "n_tokens": np.asarray(counts, np.int64), "note": notes})

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        (p / "config.json").write_text(json.dumps(to_dict(self.config), indent=2))
        (p / "preprocessor.json").write_text(json.dumps(self.preprocessor.to_dict()))
        torch.save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, p / "weights.pt")
        if self.seen is not None:
            np.save(p / "seen_texts.npy", self.seen)
        artefact.mark(p, self.KIND)
        return p

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> LMPipeline:
        p = Path(path)
        artefact.check(p, cls.KIND)
        cfg = from_dict(LMConfig, json.loads((p / "config.json").read_text()))
        seen = np.load(p / "seen_texts.npy") if (p / "seen_texts.npy").exists() else None
        pipe = cls(cfg, LMPreprocessor.from_dict(cfg, json.loads((p / "preprocessor.json").read_text())), seen=seen)
        pipe.model.load_state_dict(torch.load(p / "weights.pt", map_location=device, weights_only=True))
        pipe.model.to(device).eval()
        return pipe


def sample_next(
    logits: torch.Tensor,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> int:
    """One token id from next-token logits: greedy at temperature ~0, else sampled from the
    softmax at `temperature`, restricted to the `top_k` most likely tokens and to the
    smallest set whose probability reaches `top_p`."""
    if temperature < 1e-6:
        return int(torch.argmax(logits))
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, 0) - sorted_p < top_p  # the first always stays
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


# --- evaluation ----------------------------------------------------------------------------


@dataclass
class LMEvaluation:
    metrics: dict[str, float]
    samples: pd.DataFrame  # prompt, temperature, continuation

    def standing(self) -> str:
        m = self.metrics
        verdict = "beats" if m["test_perplexity"] < m["ngram_test_perplexity"] else "does NOT beat"
        return (
            f"test perplexity {m['test_perplexity']:.2f} vs the Kneser-Ney {int(m['ngram_order'])}-gram's "
            f"{m['ngram_test_perplexity']:.2f} (ratio {m['test_perplexity_vs_ngram']:.3f}): the recurrent "
            f"model {verdict} the baseline"
        )


def evaluate_lm(pipeline: LMPipeline, p: LMPrepared) -> LMEvaluation:
    """Exact val and test perplexity of the model and of the n-gram baseline (order and
    discount chosen on validation, fitted on the training documents) on the same tokens, bits
    per character at character level, and the table of sampled continuations."""
    metrics: dict[str, float] = {}
    for part in ("val", "test"):
        lp, n = pipeline.log_likelihood(p.streams[part])
        metrics[f"{part}_perplexity"] = math.exp(-lp / n)
        metrics[f"{part}_tokens"] = float(n)
    ngram = KneserNeyLM().fit(p.docs("train"), p.docs("val"))
    for part in ("val", "test"):
        ppl, _, n = ngram.perplexity(p.docs(part))
        if n != metrics[f"{part}_tokens"]:
            raise ModelError(f"the n-gram baseline scored {n} {part} tokens, the model {metrics[f'{part}_tokens']:.0f}")
        metrics[f"ngram_{part}_perplexity"] = ppl
    metrics.update(
        {
            "ngram_order": float(ngram.order_),
            "ngram_discount": float(ngram.discount_),
            "test_perplexity_vs_ngram": metrics["test_perplexity"] / metrics["ngram_test_perplexity"],
        }
    )
    if pipeline.preprocessor.level == "char":
        for name in ("", "ngram_"):
            metrics[f"{name}test_bits_per_char"] = math.log2(metrics[f"{name}test_perplexity"])
    return LMEvaluation(metrics, sample_table(pipeline))


def sample_table(pipeline: LMPipeline) -> pd.DataFrame:
    """Continuations of the configured prompts at each configured temperature (seeded)."""
    g = pipeline.config.generate
    rows = []
    for temperature in g.temperatures:
        out = pipeline.predict(pd.DataFrame({PROMPT_COLUMN: g.prompts}), temperature=temperature)
        for prompt, text, note in zip(g.prompts, out.text, out.note):
            rows.append({"prompt": prompt, "temperature": temperature, "continuation": text, "note": note})
    return pd.DataFrame(rows)


def plot_perplexity(history: list[dict[str, float]], ngram_val: float | None = None):
    """Per-epoch train and val perplexity, with the n-gram's val perplexity for reference."""
    from rnnpipe.evaluation import plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [math.exp(h["train_loss"]) for h in history], marker="o", ms=3, label="train")
    ax.plot(epochs, [math.exp(h["val_loss"]) for h in history], marker="o", ms=3, label="val")
    if ngram_val:
        ax.axhline(ngram_val, color="gray", ls="--", lw=1, label=f"Kneser-Ney n-gram, val ({ngram_val:.1f})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    ax.set_title("language model: perplexity per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def prompts_example(cfg: LMConfig) -> pd.DataFrame:
    return pd.DataFrame({PROMPT_COLUMN: cfg.generate.prompts[:2]})


def gate_spec(cfg: LMConfig) -> dict[str, Any]:
    """The LM gate: `register.metric` (lower is better) against the n-gram baseline."""
    r = cfg.register
    return dict(
        metric=r.metric, baselines={"ngram": f"ngram_{r.metric}"}, margin=r.baseline_margin, greater_is_better=False
    )
