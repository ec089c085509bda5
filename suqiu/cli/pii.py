"""`suqiu pii`: the master key, and a data subject's state and erasure (个人信息删除)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from suqiu.base.config import Settings
from suqiu.base.sealing import MasterKey
from suqiu.domain import DomainError, inputs


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pii = sub.add_parser("pii", help="personal data (个人信息): the master key, a subject's state and erasure")
    ps = pii.add_subparsers(dest="pii_command", required=True)
    kg = ps.add_parser("keygen", help="write a new master key to FILE (mode 0600); never overwrites one")
    kg.add_argument("file", type=Path)
    show = ps.add_parser("show", help="a subject: when it was created and erased, and its cases")
    show.add_argument("--subject", required=True, help="the subject id (GET /v1/appeals/{id} shows it to an admin)")
    er = ps.add_parser("erase", help="delete a subject's key and record the erasure on each of its cases")
    er.add_argument("--subject", required=True)
    er.add_argument("--reason", required=True, help="why: the request's reference (PIPL art. 47)")


def run_pii(settings: Settings, args: argparse.Namespace) -> int:
    if args.pii_command == "keygen":
        if args.file.exists():
            sys.stderr.write(f"{args.file} exists: a master key is never overwritten (its data would be lost)\n")
            return 2
        MasterKey.write_new(args.file)
        sys.stdout.write(f"master key written to {args.file} (mode 0600); set SUQIU_MASTER_KEY_FILE={args.file}\n")
        return 0
    try:
        subject = inputs.uuid_text(args.subject, "--subject")
        reason = inputs.text(args.reason, "--reason", 200) if args.pii_command == "erase" else ""
    except DomainError as exc:
        sys.stderr.write(f"{exc.message}\n")
        return 2
    return asyncio.run(_run(settings.require(), args.pii_command, subject, reason))


async def _run(settings: Settings, command: str, subject: str, reason: str) -> int:
    from suqiu.service.runtime import Runtime
    from suqiu.store import subjects

    rt = await Runtime(settings).open()
    try:
        if command == "erase":
            try:
                erased = await rt.erasure.erase(subject, reason, "cli")
            except DomainError as exc:
                sys.stderr.write(f"{exc.message}\n")
                return 1
            sys.stdout.write(json.dumps(erased.as_dict(), ensure_ascii=False, indent=2) + "\n")
            return 1 if erased.refused else 0
        state = await rt.subjects.state(subject)
        if state is None:
            sys.stderr.write(f"no data subject {subject}\n")
            return 1
        cases = [case for _, case in await subjects.cases_of(rt.pool, [subject])]
        sys.stdout.write(json.dumps({"subject": subject, "created_at": state.created_at.isoformat(),
                                     "erased_at": state.erased_at.isoformat() if state.erased_at else None,
                                     "erase_reason": state.erase_reason, "cases": cases},
                                    ensure_ascii=False, indent=2) + "\n")
        return 0
    finally:
        await rt.close()
