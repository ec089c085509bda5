"""`suqiu classify`: train the routing model (智能分拨) on the store's history, and list the models."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from suqiu.base.config import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cl = sub.add_parser("classify", help="智能分拨: train the routing model on the store's history, list the models")
    cs = cl.add_subparsers(dest="classify_command", required=True)
    cs.add_parser("train", help="fit a model on the answered cases, judge it on the newest 20 %%, store it; it "
                                "becomes active only when no worse than the active one (exit 3 when kept out)")
    show = cs.add_parser("show", help="the stored models, newest first, with their held-out figures")
    show.add_argument("--json", action="store_true", help="everything, per class figures included, as JSON")


def run_classify(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_run(settings.require(), args))


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from suqiu.service.routing import TooLittleHistory, TrainingBusy, train
    from suqiu.service.runtime import Runtime
    from suqiu.store import routing as store

    rt = await Runtime(settings).open()
    try:
        if args.classify_command == "show":
            async with rt.pool.connection() as conn:
                found = await store.models(conn)
            if args.json:
                sys.stdout.write(json.dumps([m.as_dict() for m in found], ensure_ascii=False, indent=2) + "\n")
            else:
                sys.stdout.write(f"{'version':<26} {'active':<6} {'cases':>7}  {'department F1/top-3':<20} "
                                 f"{'category F1/top-3':<18} decision\n")
                for m in found:
                    sys.stdout.write(f"{m.version:<26} {'yes' if m.active else '':<6} {m.cases:>7}  "
                                     f"{_pair(m.metrics['department']):<20} {_pair(m.metrics['category']):<18} "
                                     f"{m.decision}\n")
            return 0
        try:
            trained = await train(rt.pool, rt.context, rt.subjects.master, rt.clock.now())
        except (TooLittleHistory, TrainingBusy) as exc:
            sys.stderr.write(f"{exc}\n")
            return 2
        info = trained.info
        out = sys.stdout.write
        out(f"model {info.version}: learnt from {info.cases} cases submitted {info.window_from:%Y-%m-%d} to "
            f"{info.window_to:%Y-%m-%d}, judged on the newest {info.metrics['held_out']} (organisation "
            f"version {info.org_version})\n")
        for head, rare in trained.rare.items():
            out(f"left out as seen fewer than 2 times ({head}): {', '.join(rare)}\n")
        for head in ("category", "department"):
            _figures(head, info.metrics[head])
        if "active_model" in info.metrics:
            old = info.metrics["active_model"]
            out(f"active model {old['version']} on the same cases: department {_pair(old['department'])}, "
                f"category {_pair(old['category'])}\n")
        out(f"{'active' if info.active else 'NOT active'}: {info.decision}\n")
        return 0 if info.active else 3
    finally:
        await rt.close()


def _pair(figures: dict[str, Any]) -> str:
    return f"{figures['macro_f1']:.3f} / {figures['top3']:.3f}"


def _figures(head: str, figures: dict[str, Any]) -> None:
    out = sys.stdout.write
    out(f"\n{head}: accuracy {figures['accuracy']:.3f}  macro-F1 {figures['macro_f1']:.3f}  "
        f"top-3 {figures['top3']:.3f}  ({figures['cases']} held-out cases)\n")
    out(f"  {'class':<24} {'precision':>9} {'recall':>7} {'F1':>6} {'cases':>6}\n")
    for name, c in sorted(figures["per_class"].items(), key=lambda kv: -kv[1]["support"]):
        out(f"  {name:<24} {c['precision']:>9.3f} {c['recall']:>7.3f} {c['f1']:>6.3f} {c['support']:>6}\n")
