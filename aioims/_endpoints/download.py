"""The one image-download primitive: :meth:`IMSSession.open_image_file`.

Every reader of an image file uses it: ``download_private_image`` (to a
path, resumable or not, or to a file object) and the migration's ``ims``
source (a stream reopened at an offset).  One policy for ranges: a request
from ``offset > 0`` sends ``Range: bytes=offset-``; a ``206`` must carry a
``Content-Range`` starting at ``offset``; a server that ignores the range
(``200``) is read from the start and the first ``offset`` bytes are skipped
here, so the caller always receives the bytes from ``offset`` on.  A body
shorter than announced raises :class:`~aioims.ConnectionFailedError`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from .._transport import StreamResponse
from ..errors import ConnectionFailedError

__all__ = ["ImageFile"]

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class ImageFile:
    """An open image file from ``offset``: iterate :meth:`chunks`.

    ``total`` is the whole file's size when the server said it (None
    otherwise); ``range_honoured`` whether it answered the range with 206;
    ``request_id`` the service's request id."""

    def __init__(self, response: StreamResponse, offset: int) -> None:
        self.response = response
        self.offset = offset
        self.request_id = response.request_id
        self.status = response.status
        self.range_honoured = offset == 0 or response.status == 206
        self.total: int | None = None
        self._skip = 0
        length = response.content_length
        if offset and response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                raise ConnectionFailedError(
                    f"unexpected Content-Range {response.headers.get('Content-Range')!r} "
                    f"for a download from offset {offset}",
                    http_status=response.status,
                    request_id=response.request_id,
                )
            if match.group(3) != "*":
                self.total = int(match.group(3))
        else:
            self._skip = offset
            self.total = length
        self.received = 0

    async def chunks(self, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The bytes from ``offset`` to the end, in chunks of up to ``chunk_size``."""
        response = self.response
        expected = response.content_length
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        skip = self._skip
        async for chunk in response.iter_chunks(chunk_size):
            self.received += len(chunk)
            if skip:
                if skip >= len(chunk):
                    skip -= len(chunk)
                    continue
                chunk = chunk[skip:]
                skip = 0
            yield chunk
        if expected is not None and not encoded and self.received != expected:
            raise ConnectionFailedError(
                f"download truncated: got {self.received} of {expected} bytes",
                request_id=response.request_id,
                http_status=response.status,
            )
        if skip:
            raise ConnectionFailedError(
                f"download truncated: the file ended before offset {self.offset}",
                request_id=response.request_id,
                http_status=response.status,
            )
