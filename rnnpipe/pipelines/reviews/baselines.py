"""The text baselines: TF-IDF + logistic regression and the majority class."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression


class TfidfLogisticRegression:
    """TF-IDF of word unigrams and bigrams (sublinear tf, terms in 2+ training texts) and a
    multinomial logistic regression with inverse regularisation `C`. The fitted vectorizer
    is also the n-gram part of a wide-and-deep text classifier (`vectorizer_to_dict` keeps
    it in a model artefact as JSON)."""

    name = "tfidf"

    def __init__(self, C: float = 4.0, lowercase: bool = True, seed: int = 0):
        self.C, self.seed = C, seed
        self.vectorizer = make_tfidf_vectorizer(lowercase)
        self.model = LogisticRegression(C=C, max_iter=3000, random_state=seed)

    def fit(self, texts, y):
        return self.fit_features(self.vectorizer.fit_transform(texts), y)

    def fit_features(self, X, y):
        """Fit the regression on features of an already fitted vectorizer."""
        self.model = LogisticRegression(C=self.C, max_iter=3000, random_state=self.seed).fit(X, y)
        return self

    def features(self, texts):
        return self.vectorizer.transform(texts)

    def predict_proba(self, texts) -> np.ndarray:
        return self.model.predict_proba(self.features(texts))

    def logit_weights(self, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """(weight (K, F), bias (K,)) of a linear layer whose softmax equals `predict_proba`
        (binary: logits 0 and the regression's)."""
        W, b = self.model.coef_, self.model.intercept_
        if n_classes == 2 and W.shape[0] == 1:
            W, b = np.vstack([np.zeros_like(W), W]), np.array([0.0, b[0]])
        return W, b


def make_tfidf_vectorizer(lowercase: bool = True, vocabulary: dict | None = None) -> TfidfVectorizer:
    return TfidfVectorizer(
        ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=lowercase, strip_accents=None, vocabulary=vocabulary
    )


def vectorizer_to_dict(v: TfidfVectorizer) -> dict:
    return {
        "lowercase": v.lowercase,
        "vocabulary": {k: int(i) for k, i in v.vocabulary_.items()},
        "idf": v.idf_.tolist(),
    }


def vectorizer_from_dict(d: dict) -> TfidfVectorizer:
    v = make_tfidf_vectorizer(d["lowercase"], d["vocabulary"])
    v.idf_ = np.asarray(d["idf"], dtype=np.float64)
    return v


class MajorityClass:
    name = "majority"

    def fit(self, texts, y):
        counts = np.bincount(np.asarray(y))
        self.proba_ = counts / counts.sum()
        return self

    def predict_proba(self, texts) -> np.ndarray:
        return np.tile(self.proba_, (len(texts), 1))
