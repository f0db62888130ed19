"""Pure decoders: message bytes → validated Arrow rows + rejections with a reason code.

No Kafka, no lake, no filesystem: the ingest worker, the live app, the simulator's checks and
the benchmarks all call these with plain bytes and timestamps. Every decoder reports what it
cannot store as a :class:`~pipeline.codec.reasons.Rejection` (reason, detail); details name
fields and rules, never a value from the message.

Hostile JSON: one policy, one reader (:func:`~pipeline.codec.reasons.strict_json`) for every
JSON decoder: canonical plate reads (the slow path; the vectorised path sends everything it
cannot prove clean there), vendor payloads and ``passenger_list/1``. Each of these is
``malformed_json`` and nothing of the message is stored:

- not exactly one JSON document in UTF-8: bad syntax, trailing data, a second document;
- a repeated key (RFC 8259 leaves its meaning open, so two readers could see two messages);
- an unpaired surrogate escape (``"\\ud800"``): no text, and no UTF-8 for the lake;
- ``NaN``, ``Infinity`` or ``-Infinity`` anywhere (not JSON numbers);
- nesting deeper than Python's recursion limit, or an integer literal past its digit limit.

Scope: the rules cover what a decoder reads. Vendor payloads and passenger lists are read
whole, except that an OpenALPR ``alpr_group`` is held to repeats of the fields its decoder
reads, at their places (``camera_id``, ``best_plate.plate``, ``candidates[].plate``, ...): a
repeated ``agent_uid`` or ``best_plate.processing_time_ms`` is not seen on either path, since
its batch reader skips the unread nine tenths of the payload for syntax only; every other
rule covers the whole group. Vendor payloads taken by the batch
(:mod:`pipeline.codec.vendors._columnar`) are held to the same rules without a per-message
parse: byte scans over the batch (ASCII, no escape, bounded brackets) and one Arrow read that
parses every field of every payload, inferring the unmapped ones, so syntax, trailing data
and a repeated key anywhere fail it, and NaN/Infinity or an overlong integer shows as a
non-finite number (OpenALPR groups: the unmapped fields skipped, a byte scan for NaN/Inf
literals and overlong digit runs instead); whatever they cannot prove clean is read by
``strict_json``.
A canonical read is read as its ``plate_read/1`` fields: the vectorised reader skips every
other field unparsed, so a repeat, a surrogate or deep nesting inside an unknown field is not
seen on either path (they must agree); NaN/Infinity are refused anywhere, since a byte
scan finds them cheaply. Vendor XML (Hikvision) is ``malformed_xml`` when it is not
well-formed or carries a DTD, entities or external references.
"""
