"""A linear text classifier over character n-grams: fitted with scikit-learn, kept as plain arrays.

Character 1–3-grams need no segmenter and read Chinese, Latin and digits alike ("A3区大道西行便道",
a USCC, a street number). Each head (category, department) is a one-vs-rest linear SVM (hinge
loss, by SGD) on sublinear TF-IDF; a temperature fitted on held-out cases turns its margins into
scores from 0 to 1.

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

from suqiu.domain.personal import unmarked

MAX_FEATURES = 1 << 17
TEXT_LIMIT = 4000  # characters scored: the title and the start of the content carry the problem
FORMAT = 1

Floats = npt.NDArray[np.float32]
_SPACES = re.compile(r"\s\s+")


def ngrams(text: str) -> list[str]:
    """The character 1–3-grams of a prepared text, as scikit-learn's `analyzer="char"` cuts them."""
    n = len(text)
    return [text[i:i + k] for k in (1, 2, 3) for i in range(n - k + 1)]


def prepare(text: str) -> str:
    """The text as the model reads it: personal-data marks out, width folded (Ａ３ = A3), lower
    case, cut, and runs of white space made one space (as scikit-learn's char analyzer does)."""
    folded = unicodedata.normalize("NFKC", unmarked(text[: TEXT_LIMIT * 2])).lower()[:TEXT_LIMIT]
    return _SPACES.sub(" ", folded)


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
    from sklearn.linear_model import SGDClassifier

    prepared = [prepare(t) for t in texts]
    vocabulary, idf, x = tfidf(prepared)
    heads = {}
    for name, ys in labels.items():
        # A linear SVM (hinge loss) by SGD: as good as liblinear's here and five times faster
        # (BENCHMARKS.md); balanced, as departments are far from equally busy.
        svm = SGDClassifier(loss="hinge", alpha=1e-5, max_iter=15, tol=None, class_weight="balanced",
                            random_state=0, n_jobs=-1)
        svm.fit(x, ys)
        coef, intercept = svm.coef_.astype(np.float32), svm.intercept_.astype(np.float32)
        if len(svm.classes_) == 2:  # a binary SVM keeps one row: the second class's margin
            coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
        heads[name] = Head(tuple(str(c) for c in svm.classes_), coef, intercept)
    return TextModel(vocabulary, idf, heads)


# Character n-grams as integers: each code point + 1 (so none is 0) in 21 bits, up to three of
# them; a unigram is below 2**21, a bigram below 2**42, a trigram above. Counting integers with
# NumPy is what makes training on 100,000 cases take seconds rather than minutes.
_BITS = 21
_MASK = (1 << _BITS) - 1
CHUNK = 5000  # texts counted at a time


def _codes(texts: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Every n-gram of `texts` (already cut and with runs of spaces collapsed) as (text index, code)."""
    if not texts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    chars = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.int64) + 1
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    doc = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    left = np.repeat(np.cumsum(lengths), lengths) - np.arange(len(chars))  # characters left in its text
    docs, codes = [doc], [chars]
    bi = (chars[:-1] << _BITS) | chars[1:]
    docs.append(doc[:-1][left[:-1] >= 2])
    codes.append(bi[left[:-1] >= 2])
    tri = (chars[:-2] << (2 * _BITS)) | (chars[1:-1] << _BITS) | chars[2:]
    docs.append(doc[:-2][left[:-2] >= 3])
    codes.append(tri[left[:-2] >= 3])
    return np.concatenate(docs), np.concatenate(codes)


def _term(code: int) -> str:
    parts = [(code >> (2 * _BITS)) & _MASK, (code >> _BITS) & _MASK, code & _MASK]
    return "".join(chr(c - 1) for c in parts if c)


def tfidf(texts: Sequence[str]) -> tuple[list[str], Floats, Any]:
    """The vocabulary (the MAX_FEATURES most frequent n-grams), its smooth IDF, and the sublinear
    TF-IDF rows of unit length: what TfidfVectorizer(sublinear_tf=True) gives on that vocabulary."""
    from scipy import sparse

    found, tf = [], []
    for i in range(0, len(texts), CHUNK):
        u, counts = np.unique(_codes(texts[i:i + CHUNK])[1], return_counts=True)
        found.append(u)
        tf.append(counts)
    every, where = np.unique(np.concatenate(found), return_inverse=True)
    total = np.bincount(where, weights=np.concatenate(tf))
    keep = np.sort(every[np.argsort(-total, kind="stable")[:MAX_FEATURES]])
    rows = []
    for i in range(0, len(texts), CHUNK):
        docs, codes = _codes(texts[i:i + CHUNK])
        col = np.searchsorted(keep, codes)
        ok = (col < len(keep)) & (keep[np.minimum(col, len(keep) - 1)] == codes)
        m = sparse.csr_matrix((np.ones(int(ok.sum()), np.float32), (docs[ok], col[ok])),
                              shape=(min(CHUNK, len(texts) - i), len(keep)))
        m.sum_duplicates()
        rows.append(m)
    x = sparse.vstack(rows, format="csr") if rows else sparse.csr_matrix((0, len(keep)), dtype=np.float32)
    df = np.bincount(x.indices, minlength=len(keep))
    idf = (np.log((1 + len(texts)) / (1 + df)) + 1).astype(np.float32)
    x.data = (1 + np.log(x.data)) * idf[x.indices]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    norms[norms == 0] = 1
    x = sparse.csr_matrix(sparse.diags((1 / norms).astype(np.float32)) @ x, dtype=np.float32)
    return [_term(int(c)) for c in keep], idf, x


def _softmax(z: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z.astype(np.float64))
    out: npt.NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return out
