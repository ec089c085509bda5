"""Floor 2, beside the store: the Avro contract: .avsc files (current and released history) and the single-object codec."""

from suqiu.schemas.codec import Codec, DecodeError, SchemaInfo

__all__ = ["Codec", "DecodeError", "SchemaInfo"]
