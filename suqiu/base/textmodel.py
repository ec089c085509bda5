"""A linear text classifier over character n-grams: fitted with scikit-learn, kept as plain arrays.

Character 1–3-grams need no segmenter and read Chinese, Latin and digits alike ("A3区大道西行便道",
a USCC, a street number). Each head (category, department) is a one-vs-rest linear SVM on
sublinear TF-IDF; a temperature fitted on held-out cases turns its margins into scores from 0 to 1.

A model is stored as NumPy arrays in an npz file, read with `allow_pickle=False`: loading one
executes nothing. The caller signs the bytes (suqiu.base.sealing.MasterKey.signature).
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_FEATURES = 1 << 17
TEXT_LIMIT = 4000  # characters scored: the title and the start of the content carry the problem
FORMAT = 1

Floats = npt.NDArray[np.float32]
# A personal-data mark (suqiu.domain.personal): which number stood there says nothing of the problem.
_MARK = re.compile("\x1a[^\x1a]{0,8}\x1a")


_SPACES = re.compile(r"\s\s+")


def ngrams(text: str) -> list[str]:
    """The character 1–3-grams of a prepared text, as scikit-learn's `analyzer="char"` cuts them."""
    text = _SPACES.sub(" ", text)
    n = len(text)
    return [text[i:i + k] for k in (1, 2, 3) for i in range(n - k + 1)]


def prepare(text: str) -> str:
    """The text as the model reads it: marks out, width folded (Ａ３ = A3), lower case, cut."""
    return unicodedata.normalize("NFKC", _MARK.sub(" ", text[: TEXT_LIMIT * 2])).lower()[:TEXT_LIMIT]


@dataclass(frozen=True)
class Head:
    """One thing the model predicts (category or department): its classes and linear map."""

    classes: tuple[str, ...]
    coef: Floats  # classes × features
    intercept: Floats
    temperature: float = 1.0


@dataclass(frozen=True)
class Metrics:
    """How a head did on cases it was not trained on."""

    cases: int
    accuracy: float
    macro_f1: float
    top3: float
    per_class: dict[str, dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        return {"cases": self.cases, "accuracy": self.accuracy, "macro_f1": self.macro_f1, "top3": self.top3,
                "per_class": self.per_class}


Features = list[tuple[npt.NDArray[np.intp], Floats]]  # per text: columns and values


class TextModel:
    """Scores texts on each head; built by `fit` or read back by `from_bytes`.

    Scoring needs NumPy only (no scikit-learn or SciPy import in the processes that score)."""

    def __init__(self, vocabulary: Sequence[str], idf: Floats, heads: Mapping[str, Head]) -> None:
        self.vocabulary = list(vocabulary)
        self.idf = idf
        self.heads = dict(heads)
        self._columns = {t: i for i, t in enumerate(self.vocabulary)}
        # Features × classes: a text's few columns are then a gather of rows.
        self._weights = {name: np.ascontiguousarray(h.coef.T) for name, h in self.heads.items()}

    def features(self, texts: Sequence[str]) -> Features:
        """Sublinear TF-IDF of unit length per text, as TfidfVectorizer(sublinear_tf=True) gives it."""
        out: Features = []
        for text in texts:
            counts: dict[int, int] = {}
            for gram in ngrams(prepare(text)):
                j = self._columns.get(gram)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            cols = np.fromiter(counts, dtype=np.intp, count=len(counts))
            vals = (1 + np.log(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))) * self.idf[cols]
            norm = float(np.sqrt(vals @ vals))
            out.append((cols, vals / norm if norm else vals))
        return out

    def margins(self, head: str, x: Features) -> npt.NDArray[np.float32]:
        w, h = self._weights[head], self.heads[head]
        rows = [vals @ w[cols] if len(cols) else np.zeros(len(h.classes), np.float32) for cols, vals in x]
        return np.vstack(rows).astype(np.float32) + h.intercept if rows else np.zeros((0, len(h.classes)), np.float32)

    def scores(self, head: str, x: Features) -> npt.NDArray[np.float64]:
        """Each class's score from 0 to 1 (a softmax of the margins at the head's temperature)."""
        return _softmax(self.margins(head, x) / self.heads[head].temperature)

    def ranked_all(self, texts: Sequence[str]) -> dict[str, list[list[tuple[str, float]]]]:
        """Per head, for each text, every class with its score, the best first."""
        x = self.features(texts)
        out = {}
        for head, h in self.heads.items():
            scores = self.scores(head, x)
            order = np.argsort(-scores, axis=1, kind="stable")
            out[head] = [[(h.classes[j], float(row[j])) for j in idx] for row, idx in zip(scores, order, strict=True)]
        return out

    def evaluate(self, head: str, texts: Sequence[str], labels: Sequence[str]) -> Metrics:
        h = self.heads[head]
        margins = self.margins(head, self.features(texts))
        best = [h.classes[j] for j in np.argmax(margins, axis=1)]
        top = np.argsort(-margins, axis=1)[:, :3]
        index = {c: i for i, c in enumerate(h.classes)}
        top3 = float(np.mean([index.get(lab, -1) in row for lab, row in zip(labels, top, strict=True)]))
        from sklearn.metrics import f1_score, precision_recall_fscore_support

        classes = sorted(set(labels) | set(best))
        p, r, f, s = precision_recall_fscore_support(labels, best, labels=classes, zero_division=0)
        per_class = {c: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                         "f1": round(float(f[i]), 4), "support": int(s[i])} for i, c in enumerate(classes)}
        return Metrics(len(labels), round(float(np.mean([a == b for a, b in zip(labels, best, strict=True)])), 4),
                       round(float(f1_score(labels, best, labels=sorted(set(labels)), average="macro",
                                            zero_division=0)), 4), round(top3, 4), per_class)

    def calibrate(self, head: str, texts: Sequence[str], labels: Sequence[str]) -> None:
        """Fit the head's temperature on held-out cases (it changes scores, never the order)."""
        h = self.heads[head]
        index = {c: i for i, c in enumerate(h.classes)}
        rows = [(i, index[lab]) for i, lab in enumerate(labels) if lab in index]
        if not rows:
            return
        margins = self.margins(head, self.features([texts[i] for i, _ in rows])).astype(np.float64)
        truth = np.array([j for _, j in rows])

        def loss(t: float) -> float:
            p = _softmax(margins / t)
            return float(-np.mean(np.log(p[np.arange(len(truth)), truth] + 1e-12)))

        from scipy.optimize import minimize_scalar

        best = minimize_scalar(loss, bounds=(0.01, 10.0), method="bounded")
        self.heads[head] = Head(h.classes, h.coef, h.intercept, float(best.x))

    def to_bytes(self) -> bytes:
        arrays: dict[str, Any] = {"format": np.array([FORMAT]), "vocabulary": np.array(self.vocabulary, dtype=str),
                                  "idf": self.idf, "heads": np.array(sorted(self.heads), dtype=str)}
        for name, h in self.heads.items():
            arrays |= {f"{name}.classes": np.array(h.classes, dtype=str), f"{name}.coef": h.coef,
                       f"{name}.intercept": h.intercept, f"{name}.temperature": np.array([h.temperature])}
        out = io.BytesIO()
        np.savez_compressed(out, **arrays)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TextModel:
        """A model from `to_bytes`; arrays only, never a pickled object (ValueError otherwise)."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                if int(z["format"][0]) != FORMAT:
                    raise ValueError(f"model format {int(z['format'][0])}, this version reads {FORMAT}")
                vocabulary = [str(t) for t in z["vocabulary"]]
                heads = {str(name): Head(tuple(str(c) for c in z[f"{name}.classes"]),
                                         z[f"{name}.coef"].astype(np.float32),
                                         z[f"{name}.intercept"].astype(np.float32),
                                         float(z[f"{name}.temperature"][0])) for name in z["heads"]}
                return cls(vocabulary, z["idf"].astype(np.float32), heads)
        except (KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not a routing model: {exc}") from None


def fit(texts: Sequence[str], labels: Mapping[str, Sequence[str]]) -> TextModel:
    """Fit one head per entry of `labels` (head -> one label per text) on shared features."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    vectorizer = TfidfVectorizer(analyzer=ngrams, sublinear_tf=True, max_features=MAX_FEATURES, dtype=np.float32)
    x = vectorizer.fit_transform([prepare(t) for t in texts])
    vocabulary = [""] * len(vectorizer.vocabulary_)
    for term, i in vectorizer.vocabulary_.items():
        vocabulary[i] = term
    heads = {}
    for name, ys in labels.items():
        svm = LinearSVC(C=0.5, class_weight="balanced")
        svm.fit(x, ys)
        coef, intercept = svm.coef_.astype(np.float32), svm.intercept_.astype(np.float32)
        if len(svm.classes_) == 2:  # a binary SVM keeps one row: the second class's margin
            coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
        heads[name] = Head(tuple(str(c) for c in svm.classes_), coef, intercept)
    return TextModel(vocabulary, vectorizer.idf_.astype(np.float32), heads)


def _softmax(z: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z.astype(np.float64))
    out: npt.NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return out
