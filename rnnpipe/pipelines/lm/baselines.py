"""The language model's baseline: a Kneser-Ney n-gram (nltk.lm)."""

from __future__ import annotations

import math


def _cached_kneser_ney():
    """nltk's interpolated Kneser-Ney smoothing with its counts indexed once.

    nltk computes each continuation count by scanning every higher-order n-gram, and each
    context's totals by summing its followers, on every call: 37 scored tokens/s on the
    bundled reviews. This subclass precomputes exactly those numbers once after fitting;
    the formulas are nltk's own (`nltk.lm.smoothing.KneserNey.alpha_gamma`)."""
    from collections import defaultdict

    from nltk.lm.smoothing import KneserNey

    class CachedKneserNey(KneserNey):
        def __init__(self, vocabulary, counter, order, discount=0.75, **kwargs):
            super().__init__(vocabulary, counter, order, discount=discount, **kwargs)
            self._cont = None  # built on first use: the model is fitted after this is made
            self._context_stats: dict = {}

        def _index(self) -> None:
            cont, total = defaultdict(int), defaultdict(int)
            for k in range(2, self._order + 1):
                for prefix, followers in self.counts[k].items():
                    n = 0
                    for word, count in followers.items():
                        if count > 0:
                            cont[(prefix[1:], word)] += 1
                            n += 1
                    total[prefix[1:]] += n
            self._cont, self._total = dict(cont), dict(total)

        def _continuation_counts(self, word, context=tuple()):
            if self._cont is None:
                self._index()
            return self._cont.get((context, word), 0), self._total.get(context, 0)

        def _stats(self, context):
            stats = self._context_stats.get(context)
            if stats is None:
                followers = self.counts[context]
                stats = (followers.N(), sum(1 for c in followers.values() if c > 0))
                self._context_stats[context] = stats
            return stats

        def alpha_gamma(self, word, context):
            n, n_plus = self._stats(context)
            if len(context) + 1 == self._order:
                count, total = self.counts[context][word], n
            else:
                count, total = self._continuation_counts(word, context)
            alpha = max(count - self.discount, 0.0) / total
            gamma = self.discount * n_plus / total
            return alpha, gamma

    return CachedKneserNey


class KneserNeyLM:
    """An interpolated Kneser-Ney n-gram language model (nltk.lm), the baseline of the
    recurrent language model on the same tokens: each document's tokens and one end-of-text
    token, every token outside the model's vocabulary mapped to its unknown token first.
    The order and the discount are chosen on validation perplexity."""

    name = "ngram"
    ORDERS = (2, 3, 4)
    DISCOUNTS = (0.5, 0.75, 0.9)

    def __init__(self, eos: str = "</s>"):
        self.eos = eos

    def _fit_order(self, docs: list[list[str]], order: int):
        from nltk.lm.models import InterpolatedLanguageModel
        from nltk.lm.preprocessing import padded_everygram_pipeline

        train, vocab = padded_everygram_pipeline(order, docs)
        lm = InterpolatedLanguageModel(_cached_kneser_ney(), order, params={"order": order})
        lm.fit(train, vocab)
        return lm

    def _log_prob(self, lm, docs: list[list[str]]) -> tuple[float, int]:
        """(sum of natural-log probabilities, tokens scored): every token and one end per doc."""
        order, total, n = lm.order, 0.0, 0
        score = lm.unmasked_score
        lookup = lm.vocab.lookup
        for doc in docs:
            padded = ["<s>"] * (order - 1) + list(lookup(doc)) + ["</s>"]
            for i in range(order - 1, len(padded)):
                p = score(padded[i], tuple(padded[i - order + 1 : i]))
                total += math.log(p) if p > 0 else -math.inf
                n += 1
        return total, n

    START, NEVER_WRITTEN = "<s>", ("<s>", "<UNK>", "<unk>", "<pad>")  # nltk's padding and unknown, ours

    def fit_fixed(self, train_docs: list[list[str]], order: int, discount: float) -> KneserNeyLM:
        """Fit at a chosen order and discount (a saved baseline, fitted again on load)."""
        self.order_, self.discount_, self.val_perplexity_ = order, discount, {}
        self.lm_ = self._fit_order(train_docs, order)
        self.lm_.estimator.discount = discount
        return self

    def score(self, word: str, context: list[str]) -> float:
        """P(word | the last order-1 tokens of `context`), the smoothed probability perplexity
        counts (`context` starts with the padding `<s>` tokens of a document's start)."""
        lm, k = self.lm_, self.order_ - 1
        return lm.unmasked_score(lm.vocab.lookup(word), tuple(lm.vocab.lookup(context[-k:])) if k else ())

    def followers(self, context: list[str]) -> tuple[list[str], list[float]]:
        """The words that may come next and their probabilities, as nltk's
        `LanguageModel.generate` draws them: the followers seen in training of the longest
        tail of `context` that has any, each weighted by the smoothed probability (padding and
        unknown-word tokens are never written; the end of a text, `</s>`, may be). Where no
        tail was seen (a prompt of unknown words), the words that start a text (nltk would
        draw from the whole vocabulary, uniformly)."""
        lm, k = self.lm_, self.order_ - 1
        tail = tuple(lm.vocab.lookup(context[-k:])) if k else ()
        start = (self.START,) * k
        words: list[str] = []
        for ctx in [tail[i:] for i in range(len(tail))] + [start, ()]:
            words = sorted(w for w in lm.context_counts(ctx) if w not in self.NEVER_WRITTEN)
            if words:
                break
        return words, [lm.unmasked_score(w, ctx) for w in words]

    def fit(self, train_docs: list[list[str]], val_docs: list[list[str]]) -> KneserNeyLM:
        best = None
        self.val_perplexity_ = {}
        for order in self.ORDERS:
            lm = self._fit_order(train_docs, order)
            for discount in self.DISCOUNTS:
                lm.estimator.discount = discount
                lp, n = self._log_prob(lm, val_docs)
                ppl = math.exp(-lp / n)
                self.val_perplexity_[f"{order}/{discount}"] = ppl
                if best is None or ppl < best[0]:
                    best = (ppl, order, discount, lm)
        _, self.order_, self.discount_, self.lm_ = best
        self.lm_.estimator.discount = self.discount_
        return self

    def perplexity(self, docs: list[list[str]]) -> tuple[float, float, int]:
        """(perplexity, sum of natural-log probabilities, tokens scored)."""
        lp, n = self._log_prob(self.lm_, docs)
        return math.exp(-lp / n), lp, n
