"""``RawSchema``: a Faust schema whose events carry the record's key and value bytes as Kafka
delivered them, decoded by nothing.

Why: our raw topics (``events``, the item deltas) are declared with ``key_type=bytes``,
``value_type=bytes`` and the ``raw`` serializer, so Faust's decoding changes nothing, yet it
runs for every message: the serializer registry looks the codec up by name, the raw codec
returns its input, and ``want_bytes`` checks the type, for the key and again for the value
(``bench/faust_floor.py`` measures it). The validation that matters happens in our own code
(``stream_app.worker.live_path.parse_message``), which sends what it rejects to the DLQ.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import AppT, Message


class RawSchema(faust.Schema):
    """Bytes in, bytes out: ``Topic.decode`` builds the event from ``message.key`` and
    ``message.value`` as they are (``None`` stays ``None``), with no codec lookups.

    >>> schema = RawSchema()
    >>> (schema.key_type, schema.value_type, schema.key_serializer, schema.value_serializer)
    (<class 'bytes'>, <class 'bytes'>, 'raw', 'raw')
    """

    def __init__(self) -> None:
        super().__init__(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    def compile(
        self,
        app: AppT,
        *,
        on_key_decode_error: Any = None,
        on_value_decode_error: Any = None,
        default_propagate: bool = False,
    ) -> Any:
        """The decode function a topic calls per message; nothing in it can fail to decode,
        so the error callbacks are never needed."""
        create_event = app.create_event

        async def decode(message: Message, *, propagate: bool = default_propagate) -> Any:
            return create_event(message.key, message.value, message.headers, message)

        return decode
