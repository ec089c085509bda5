"""The AsyncAPI 3.0 document of the Kafka contract, generated from the schemas in this package.

    python -m suqiu.schemas.asyncapi > docs/asyncapi.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from suqiu.schemas import cloudevents
from suqiu.schemas.codec import Codec

AVRO = "application/vnd.apache.avro+json;version=1.11.1"
KEY = {"type": "string", "description": "case id (UTF-8); the command id for a new appeal on the commands topic"}


def _event_headers(name: str, info: Any) -> dict[str, Any]:
    """An event record's headers: Suqiu's own, and the CloudEvents binary-mode attributes."""
    return {"type": "object", "required": ["event_type", "event_id", *CE_REQUIRED], "properties": {
        "event_type": {"type": "string", "const": name}, "event_id": {"type": "string", "format": "uuid"},
        "seq": {"type": "string", "pattern": "^[0-9]+$", "description": "the event's place in its case"},
        "ce_specversion": {"type": "string", "const": cloudevents.SPEC_VERSION},
        "ce_id": {"type": "string", "format": "uuid", "description": "the event id"},
        "ce_source": {"type": "string", "description": "/suqiu/{system id}/cases/{case id}"},
        "ce_type": {"type": "string", "const": cloudevents.ce_type(name)},
        "ce_time": {"type": "string", "format": "date-time", "description": "when it happened (occurred_at)"},
        "ce_subject": {"type": "string", "description": "the case id"},
        "content-type": {"type": "string", "const": f"{cloudevents.CONTENT_TYPE}; fingerprint={info.fingerprint}"},
    }}


CE_REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "content-type")


def _message(name: str, info: Any, summary: str) -> dict[str, Any]:
    return {
        "name": name, "title": name, "summary": summary,
        "contentType": "application/octet-stream",
        "description": f"Avro single-object encoding: C3 01, fingerprint {info.fingerprint} (CRC-64-AVRO, "
                       f"as framed), then the body. Schema also at GET /v1/schemas/{info.fingerprint}.",
        "headers": _event_headers(name, info) if info.kind == "event" else {"type": "object"},
        "bindings": {"kafka": {"key": KEY, "bindingVersion": "0.5.0"}},
        "payload": {"schemaFormat": AVRO, "schema": info.schema},
    }


def document(codec: Codec | None = None) -> dict[str, Any]:
    codec = codec or Codec()
    events = {n.rsplit(".", 1)[1]: i for n, i in sorted(codec.current.items()) if i.kind == "event"}
    commands = {n.rsplit(".", 1)[1]: i for n, i in sorted(codec.current.items()) if i.kind == "command"}
    messages = {name: _message(name, info, (info.schema.get("doc") or name).split("\n")[0])
                for name, info in {**events, **commands}.items()}
    event_refs = {n: {"$ref": f"#/components/messages/{n}"} for n in events}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Suqiu (诉求) enterprise appeals: Kafka contract",
            "version": "1.0.0",
            "description": "Events keyed by case id, in order per case, at least once; every event is also in "
                           "the PostgreSQL event store, byte for byte. See docs/events.md. Topic names take "
                           "the deployment's SUQIU_TOPIC_PREFIX in front.",
        },
        "channels": {
            "events": {"address": "appeals.events.v1", "messages": event_refs,
                       "description": "Every event of every case."},
            "jurisdictionEvents": {"address": "appeals.events.{jurisdiction}.v1", "messages": event_refs,
                                   "parameters": {"jurisdiction": {"description": "a jurisdiction code, e.g. tj-teda; "
                                                                   "its feed holds the cases of its whole subtree"}},
                                   "description": "The same records, for the configured jurisdictions."},
            "commands": {"address": "appeals.commands.v1",
                         "messages": {"Command": {"$ref": "#/components/messages/Command"}}},
            "commandResults": {"address": "appeals.command-results.v1",
                               "messages": {"CommandResult": {"$ref": "#/components/messages/CommandResult"}}},
            "deadLetters": {"address": "appeals.dlq.v1", "description": "Records that could not be decoded, "
                            "untouched; headers suqiu.dlq.reason and suqiu.dlq.source_topic."},
        },
        "operations": {
            "receiveEvents": {"action": "receive", "channel": {"$ref": "#/channels/events"}},
            "receiveJurisdictionEvents": {"action": "receive", "channel": {"$ref": "#/channels/jurisdictionEvents"}},
            "sendCommands": {"action": "send", "channel": {"$ref": "#/channels/commands"}},
            "receiveCommandResults": {"action": "receive", "channel": {"$ref": "#/channels/commandResults"}},
        },
        "components": {"messages": messages},
    }


def render() -> str:
    return json.dumps(document(), ensure_ascii=False, indent=1, sort_keys=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
