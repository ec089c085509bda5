"""Reference data in PostgreSQL: the 辖区 tree and its departments; a Tianjin-like seed."""

from __future__ import annotations

from typing import Any

import psycopg

from suqiu.domain.refdata import Department, Jurisdiction

# (code, name, level, parent): city > district > zone / street, as on a Tianjin platform.
SEED_JURISDICTIONS = [
    ("tj", "天津市", "city", None),
    ("tj-binhai", "滨海新区", "district", "tj"),
    ("tj-heping", "和平区", "district", "tj"),
    ("tj-teda", "天津经济技术开发区", "zone", "tj-binhai"),
    ("tj-ftz", "中国(天津)自由贸易试验区", "zone", "tj-binhai"),
    ("tj-hitech", "滨海高新技术产业开发区", "zone", "tj-binhai"),
    ("tj-binhai-xingang", "新港街道", "street", "tj-binhai"),
]
SEED_DEPARTMENTS = [
    ("tj-commerce", "天津市商务局", "tj"),
    ("tj-ndrc", "天津市发展和改革委员会", "tj"),
    ("tj-market", "天津市市场监督管理委员会", "tj"),
    ("bh-commerce", "滨海新区商务局", "tj-binhai"),
    ("bh-ndrc", "滨海新区发展和改革委员会", "tj-binhai"),
    ("bh-market", "滨海新区市场监督管理局", "tj-binhai"),
    ("bh-hrss", "滨海新区人力资源和社会保障局", "tj-binhai"),
    ("bh-planning", "滨海新区规划和自然资源局", "tj-binhai"),
    ("bh-eco", "滨海新区生态环境局", "tj-binhai"),
    ("bh-tax", "国家税务总局天津市滨海新区税务局", "tj-binhai"),
    ("bh-approval", "滨海新区行政审批局", "tj-binhai"),
    ("teda-service", "泰达企业服务中心", "tj-teda"),
    ("teda-construction", "泰达建设和交通局", "tj-teda"),
    ("ftz-office", "自贸区管委会综合办", "tj-ftz"),
    ("hitech-science", "高新区科技局", "tj-hitech"),
]


def seed(conn: psycopg.Connection[Any]) -> None:
    """Insert the Tianjin-like reference data; existing rows are kept as they are."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO jurisdictions (code, name, level, parent) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            SEED_JURISDICTIONS,
        )
        cur.executemany(
            "INSERT INTO departments (code, name, jurisdiction) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            SEED_DEPARTMENTS,
        )


async def load(conn: psycopg.AsyncConnection[Any]) -> tuple[dict[str, Department], dict[str, Jurisdiction]]:
    cur = await conn.execute("SELECT code, name, jurisdiction FROM departments")
    departments = {r[0]: Department(r[0], r[1], r[2]) for r in await cur.fetchall()}
    cur = await conn.execute("SELECT code, name, level, parent FROM jurisdictions")
    jurisdictions = {r[0]: Jurisdiction(r[0], r[1], r[2], r[3]) for r in await cur.fetchall()}
    return departments, jurisdictions
