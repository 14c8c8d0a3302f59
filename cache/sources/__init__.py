"""Where content comes from: upstream sources behind one small interface.

A source knows two things the rest of the cache must not: how to turn an upstream URL into
a request (host mapping, auth headers) and what an upstream's error answers mean. The fetch
engine (``cache/transfer.py``) does the transferring itself — resumable, verified,
budgeted — for every source alike, asking the source only for those two things, and lets a
source take over whole files whose shape is special (HLS: a playlist, a key and segments).

Implementations: ``smartedu`` (the national platform), ``feed`` (a signed pack feed over
HTTP or from a directory/USB drive), ``peer`` (another appliance's feed found by mDNS).
"""

from .base import ErrorKind, FetchContext, Source, UpstreamRequest

__all__ = ["ErrorKind", "FetchContext", "Source", "UpstreamRequest"]
