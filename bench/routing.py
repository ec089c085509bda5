"""智能分拨: accuracy against a plain baseline, scoring and training cost, memory, duplicates.

    python -m bench.routing [--corpus FILE] [--train-cases 100000]

The corpus is a labelled Chinese appeal corpus with a time per message: by default the Teddy Cup
(泰迪杯, TipDM) 2020 C题 "智慧政务中的文本挖掘应用" 附件2 (留言主题, 留言时间, 留言详情, 一级分类),
downloaded into ~/.cache/suqiu-bench from a public GitHub copy on first use. It is competition data
with no stated licence: it is fetched, never committed. `--corpus` takes a local copy (xlsx, or a
CSV with the same four columns).

Every figure is printed next to a raw baseline from the same run:
- macro-F1 and top-3 against TF-IDF character 1–3-grams + LinearSVC with scikit-learn's defaults,
  on the same time-ordered split (the newest 20 % held out);
- appeals scored per second on one core, against scikit-learn's own transform + decision_function;
- training time at `--train-cases` (the corpus resampled with edits), against one plain fit;
- RSS of a process that loaded the model, against the same process before;
- duplicates: precision and recall on pairs built from the corpus (see `_pairs`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from suqiu.base.textmodel import TextModel, fit, prepare
from suqiu.domain import routing as r

URL = ("https://github.com/694035434/Natural-language-processing-and-text-mining/raw/"
       "b55669f6add2117eac7c924bb6652e215c4516eb/%E9%99%84%E4%BB%B62.xlsx")
COLUMNS = ("留言主题", "留言时间", "留言详情", "一级分类")


def corpus(path: Path | None) -> list[tuple[datetime, str, str]]:
    """(time, text, label) of every labelled message, oldest first."""
    if path is None:
        path = Path.home() / ".cache" / "suqiu-bench" / "teddy-2020-c-annex2.xlsx"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            urllib.request.urlretrieve(URL, path)
    rows: list[dict[str, Any]]
    if path.suffix == ".xlsx":
        import openpyxl

        sheet = openpyxl.load_workbook(path, read_only=True).active
        assert sheet is not None
        values = list(sheet.iter_rows(values_only=True))
        header = [str(h) for h in values[0]]
        rows = [dict(zip(header, v, strict=False)) for v in values[1:]]
    else:
        with path.open(encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        if all(row.get(c) for c in COLUMNS):
            at = row[COLUMNS[1]]
            at = at if isinstance(at, datetime) else datetime.strptime(str(at).strip(), "%Y/%m/%d %H:%M:%S")
            out.append((at, f"{row[COLUMNS[0]]}\n{' '.join(str(row[COLUMNS[2]]).split())}", str(row[COLUMNS[3]])))
    return sorted(out)


def accuracy(data: list[tuple[datetime, str, str]]) -> dict[str, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import f1_score
    from sklearn.svm import LinearSVC

    cut = int(len(data) * (1 - r.HELD_OUT))
    learn, held = data[:cut], data[cut:]
    texts, labels = [t for _, t, _ in learn], [y for _, _, y in learn]
    held_texts, held_labels = [t for _, t, _ in held], [y for _, _, y in held]
    ours = fit(texts, {"label": labels}).evaluate("label", held_texts, held_labels)
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3))
    svm = LinearSVC().fit(vec.fit_transform(texts), labels)
    margins = svm.decision_function(vec.transform(held_texts))
    best = svm.classes_[np.argmax(margins, axis=1)]
    top = svm.classes_[np.argsort(-margins, axis=1)[:, :3]]
    base_f1 = float(f1_score(held_labels, best, average="macro"))
    return {"cases": len(data), "held_out": len(held), "classes": len(set(labels)),
            "macro_f1": ours.macro_f1, "baseline_macro_f1": round(base_f1, 4),
            "ratio": round(ours.macro_f1 / base_f1, 3) if base_f1 else None, "accuracy": ours.accuracy,
            "top3": ours.top3, "baseline_top3": round(float(np.mean([y in t for y, t in zip(held_labels, top,
                                                                                               strict=True)])), 4)}


def edited(rng: random.Random, text: str) -> str:
    """The same message retyped: about one character in ten dropped, punctuation changed, a tail."""
    kept = "".join(ch for ch in text if rng.random() > 0.1)
    return kept.replace("，", ",").replace("。", "！") + rng.choice(["", "请尽快处理。", "谢谢！", "盼复"])


def cost(data: list[tuple[datetime, str, str]], train_cases: int) -> dict[str, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    rng = random.Random(1)
    texts = [edited(rng, t) for _, t, _ in rng.choices(data, k=train_cases)]
    labels = [y for _, _, y in rng.choices(data, k=train_cases)]
    t = time.perf_counter()
    model = fit(texts, {"category": labels, "department": labels})
    ours_fit = time.perf_counter() - t
    t = time.perf_counter()
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3))
    svm = LinearSVC().fit(vec.fit_transform(texts), labels)
    base_fit = time.perf_counter() - t
    sample = texts[:5000]
    t = time.perf_counter()
    model.ranked_all(sample)
    ours_rate = len(sample) / (time.perf_counter() - t)
    t = time.perf_counter()
    svm.decision_function(vec.transform([prepare(x) for x in sample]))
    base_rate = len(sample) / (time.perf_counter() - t)
    with tempfile.NamedTemporaryFile(suffix=".npz", delete=False) as f:
        f.write(model.to_bytes())
    size = os.path.getsize(f.name)
    rss = json.loads(subprocess.run([sys.executable, "-m", "bench.routing", "--rss-of", f.name], check=True,
                                    capture_output=True, text=True).stdout)
    os.unlink(f.name)
    return {"train_cases": train_cases, "fit_s": round(ours_fit, 1), "baseline_fit_s": round(base_fit, 1),
            "scored_per_s": round(ours_rate), "baseline_scored_per_s": round(base_rate),
            "model_mib": round(size / 2**20, 1), **rss}


def rss_of(path: str) -> None:
    """In a fresh process: RSS after importing the worker's runtime, and after loading the model."""
    import suqiu.service.runtime  # noqa: F401  (what a worker has loaded before any model)

    before = _rss_mib()
    model = TextModel.from_bytes(Path(path).read_bytes())
    model.ranked_all(["营业执照变更登记进度"])
    sys.stdout.write(json.dumps({"rss_before_mib": before, "rss_with_model_mib": _rss_mib()}) + "\n")


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def duplicates(data: list[tuple[datetime, str, str]]) -> dict[str, Any]:
    """Positives: each message and its retyped copy. Negatives: each message and another of the
    same category (the hard case: the same kind of problem, not the same problem)."""
    rng = random.Random(2)
    tp = fn = fp = tn = 0
    for i, (_, text, label) in enumerate(data):
        if r.duplicates_of(r.shingles(text), [("copy", r.shingles(edited(rng, text)))]):
            tp += 1
        else:
            fn += 1
        others = [t for j, (_, t, y) in enumerate(data) if y == label and j != i]
        if others and r.duplicates_of(r.shingles(text), [("other", r.shingles(rng.choice(others)))]):
            fp += 1
        else:
            tn += 1
    return {"pairs": tp + fn + fp + tn, "precision": round(tp / max(tp + fp, 1), 4),
            "recall": round(tp / max(tp + fn, 1), 4), "false_positives": fp}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--train-cases", type=int, default=100_000)
    parser.add_argument("--rss-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_of:
        rss_of(args.rss_of)
        return
    data = corpus(args.corpus)
    out = {"accuracy": accuracy(data), "duplicates": duplicates(data), "cost": cost(data, args.train_cases)}
    a, c, d = out["accuracy"], out["cost"], out["duplicates"]
    sys.stdout.write(
        f"accuracy on {a['cases']} messages ({a['classes']} classes, newest {a['held_out']} held out): macro-F1 "
        f"{a['macro_f1']} vs baseline {a['baseline_macro_f1']} = {a['ratio']}x; top-3 {a['top3']} "
        f"(baseline {a['baseline_top3']})\n"
        f"training {c['train_cases']} cases, two heads: {c['fit_s']} s (baseline, one head: {c['baseline_fit_s']} s)\n"
        f"scoring: {c['scored_per_s']} appeals/s on one core (baseline transform+decision: "
        f"{c['baseline_scored_per_s']}/s); model {c['model_mib']} MiB; RSS {c['rss_before_mib']} -> "
        f"{c['rss_with_model_mib']} MiB\n"
        f"duplicates: precision {d['precision']}, recall {d['recall']} on {d['pairs']} pairs\n")
    sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
