"""Read a Prometheus exposition the way Prometheus does, and wait on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "text/plain", resp.content_type
        text = await resp.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 for a labelled series not yet created (a counter that never moved)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scraped_until(url: str, ok: Callable[[Samples], bool], timeout: float = 30.0) -> Samples:
    """Scrape until `ok` (real time, not business time); the last scrape on timeout, for the assert."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    samples = await scrape(url)
    while not ok(samples) and loop.time() < deadline:
        await asyncio.sleep(0.1)
        samples = await scrape(url)
    return samples
