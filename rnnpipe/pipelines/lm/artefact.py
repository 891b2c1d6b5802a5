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

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from rnnpipe import artefact
from rnnpipe.config import from_dict, to_dict
from rnnpipe.errors import ConfigError, DataError
from rnnpipe.pipelines.lm.config import (
    LMConfig,
    check_generation,
)
from rnnpipe.pipelines.lm.data import PROMPT_COLUMN
from rnnpipe.pipelines.lm.model import LanguageModel
from rnnpipe.pipelines.lm.prepare import LMPreprocessor
from rnnpipe.text import check_text


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
        pre = self.preprocessor
        ids, notes = self._prompt(prompt)
        scores = self._next_scores(ids)
        logits, choices = next(scores)
        out: list[str] = []
        for _ in range(max_new_tokens):
            k = sample_next(logits, temperature, top_k, top_p, generator)
            nxt = k if choices is None else choices[k]
            if nxt == pre.eos_id:
                break
            out.append(pre.vocab_.tokens[nxt])
            logits, choices = scores.send(nxt)
        else:
            notes.append(f"stopped at max_new_tokens={max_new_tokens}")
        return out, "; ".join(notes)

    def _next_scores(self, ids: np.ndarray):
        """For `generate`, after the prompt's token ids: yields the next token's (logits, None:
        over the whole vocabulary) and is sent the token chosen. <pad> and <unk> are never
        written."""
        model, pre = self.model, self.preprocessor
        model.eval()
        device = next(model.parameters()).device
        context = torch.as_tensor(np.concatenate([[pre.eos_id], ids]), dtype=torch.long, device=device)
        logits = model(context[None], reset=True)[0, -1].float()
        never = torch.tensor([0, 1], device=device)
        while True:
            logits[never] = float("-inf")
            nxt = yield logits, None
            logits = model(torch.tensor([[nxt]], device=device), reset=False)[0, -1].float()

    def _prompt(self, prompt: str) -> tuple[np.ndarray, list[str]]:
        """(the prompt's token ids, notes on it)."""
        pre = self.preprocessor
        tokens = pre.tokens(prompt)
        ids = pre.vocab_.encode(tokens)
        notes = []
        if tokens and (ids == 1).all():
            notes.append("no word of the prompt is in the vocabulary: the continuation ignores it")
        elif not tokens:
            notes.append("empty prompt: a text from its start")
        return ids, notes

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=next(self.model.parameters()).device).manual_seed(seed)

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
        generator = self._generator(seed)
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

    def drift_values(self, inputs: pd.DataFrame, outputs: pd.DataFrame | None) -> tuple[dict, dict]:
        """A batch chunk's (features, predictions) for its drift report (`rnnpipe.drift`): per
        prompt, the share of its words outside the vocabulary and its negative log-likelihood
        per token under the model (how unlike the training texts it reads; one forward pass,
        against the dozens a continuation takes). A continuation's length follows the
        request's `max_new_tokens`, so no prediction is profiled."""
        pre = self.preprocessor
        unknown, nll = [], []
        for value in inputs[PROMPT_COLUMN].tolist():
            ids = pre.vocab_.encode(pre.tokens(value)) if isinstance(value, str) else np.zeros(0, np.int64)
            if len(ids) == 0:
                unknown.append(np.nan)
                nll.append(np.nan)
                continue
            unknown.append(float(np.mean(ids == 1)))
            total, n = self.log_likelihood(np.concatenate([[pre.eos_id], ids]))
            nll.append(-total / n)
        return {"unknown_share": np.asarray(unknown), "prompt_nll": np.asarray(nll)}, {}

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
        pre = LMPreprocessor.from_dict(cfg, json.loads((p / "preprocessor.json").read_text()))
        if (p / NgramPipeline.NGRAM_FILE).exists():
            return NgramPipeline.read(p, cfg, pre, seen)
        pipe = cls(cfg, pre, seen=seen)
        pipe.model.load_state_dict(torch.load(p / "weights.pt", map_location=device, weights_only=True))
        pipe.model.to(device).eval()
        return pipe


class NgramPipeline(LMPipeline):
    """The run's Kneser-Ney n-gram (`KneserNeyLM`) as a servable language model: the same
    prompts in, the same columns out, the same generation settings and drift features.
    Registered beside a recurrent model that loses to it (alias `baseline`), so there is always
    a model to serve. It continues a prompt as nltk's `LanguageModel.generate` draws words
    (`KneserNeyLM.followers`), with the recurrent model's temperature, top-k and top-p applied
    to those words' probabilities. Saved without pickle: the chosen order and discount and the
    training documents as token ids; `load` fits the n-gram again (seconds)."""

    NGRAM_FILE, DOCS_FILE = "ngram.json", "ngram_docs.npy"
    PACKAGES: ClassVar = ("nltk",)  # beyond the runtime packages, in the logged model's requirements

    def __init__(self, config: LMConfig, preprocessor: LMPreprocessor, ngram, docs: np.ndarray, seen=None):
        self.config, self.preprocessor, self.seen = config, preprocessor, seen
        self.ngram, self.docs = ngram, docs  # docs: the training documents' token ids, each ended by -1
        self.model = None  # no torch module: batch jobs leave it on the CPU

    @classmethod
    def of(cls, config: LMConfig, prepared, ngram) -> NgramPipeline:
        """The n-gram `evaluate_lm` fitted on the run's training documents."""
        encode = prepared.preprocessor.vocab_.encode
        ids = [np.append(encode(doc), -1) for doc in prepared.docs("train")]
        docs = np.concatenate(ids).astype(np.int32) if ids else np.zeros(0, np.int32)
        return cls(config, prepared.preprocessor, ngram, docs, seen=prepared.seen())

    def _documents(self) -> list[list[str]]:
        words = self.preprocessor.vocab_.tokens
        ends = np.flatnonzero(self.docs == -1)
        return [[words[i] for i in part[:-1]] for part in np.split(self.docs, ends + 1)[: len(ends)]]

    def log_likelihood(self, ids: np.ndarray, chunk: int = 512) -> tuple[float, int]:
        """As the recurrent model's: ids[0] is the start (an end-of-text token), and every
        later token is scored given the order-1 before it in its document (`KneserNeyLM.score`)."""
        pre, ngram = self.preprocessor, self.ngram
        start = [ngram.START] * (ngram.order_ - 1)
        context, total = list(start), 0.0
        for i in ids[1:]:
            end = int(i) == pre.eos_id
            word = ngram.eos if end else pre.vocab_.tokens[int(i)]
            p = ngram.score(word, context)
            total += math.log(p) if p > 0 else -math.inf
            context = list(start) if end else [*context[1:], word]
        return total, max(len(ids) - 1, 0)

    def _next_scores(self, ids: np.ndarray):
        """As the recurrent model's, over the words that may follow (`KneserNeyLM.followers`):
        yields (their log-probabilities, their token ids), with the end of a text as the
        end-of-text token."""
        ngram, pre = self.ngram, self.preprocessor
        context = [ngram.START] * (ngram.order_ - 1) + [pre.vocab_.tokens[i] for i in ids]
        while True:
            followers, probs = ngram.followers(context)
            choices = [pre.eos_id if w == ngram.eos else pre.vocab_.index[w] for w in followers]
            nxt = yield torch.log(torch.tensor(probs, dtype=torch.float64)), choices
            context.append(pre.vocab_.tokens[nxt])

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        (p / "config.json").write_text(json.dumps(to_dict(self.config), indent=2))
        (p / "preprocessor.json").write_text(json.dumps(self.preprocessor.to_dict()))
        ngram = {"order": self.ngram.order_, "discount": self.ngram.discount_, "eos": self.ngram.eos}
        (p / self.NGRAM_FILE).write_text(json.dumps(ngram))
        np.save(p / self.DOCS_FILE, self.docs)
        if self.seen is not None:
            np.save(p / "seen_texts.npy", self.seen)
        artefact.mark(p, self.KIND)
        return p

    @classmethod
    def read(cls, p: Path, config: LMConfig, preprocessor: LMPreprocessor, seen) -> NgramPipeline:
        from rnnpipe.pipelines.lm.baselines import KneserNeyLM

        spec = json.loads((p / cls.NGRAM_FILE).read_text())
        pipe = cls(config, preprocessor, None, np.load(p / cls.DOCS_FILE), seen=seen)
        pipe.ngram = KneserNeyLM(spec["eos"]).fit_fixed(pipe._documents(), spec["order"], spec["discount"])
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


def prompts_example(cfg: LMConfig) -> pd.DataFrame:
    return pd.DataFrame({PROMPT_COLUMN: cfg.generate.prompts[:2]})


def gate_spec(cfg: LMConfig) -> dict[str, Any]:
    """The LM gate: `register.metric` (lower is better) against the n-gram baseline."""
    r = cfg.register
    return dict(
        metric=r.metric, baselines={"ngram": f"ngram_{r.metric}"}, margin=r.baseline_margin, greater_is_better=False
    )
