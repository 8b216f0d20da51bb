"""What a finished transfer returns."""

from __future__ import annotations

import attrs


@attrs.frozen
class CompletedPart:
    """A part S3 has stored (``etag`` as S3 returned it, quotes included;
    ``checksum_crc32c``: its CRC32C, base64, when it was sent with one — from
    the UploadPart answer, what was sent, ListParts or the journal; a CRC32C
    multipart upload is completed with it)."""

    part_number: int
    etag: str
    size: int
    checksum_crc32c: str | None = None


@attrs.frozen(kw_only=True)
class TransferResult:
    """The outcome of :func:`aioims.transfer.upload_file` and friends.

    ``upload_id`` is None for a single PutObject (then ``parts`` holds one
    entry with the object's ETag).  ``md5`` is the hex MD5 of the whole
    source (None when ``md5=False``).  ``resumed_parts`` counts parts a
    checkpoint let us skip; ``refreshes`` the credential refreshes.
    """

    upload_id: str | None
    parts: list[CompletedPart]
    md5: str | None
    size: int
    resumed_parts: int = 0
    elapsed: float = 0.0
    bucket: str = ""
    key: str = ""
    etag: str | None = None
    refreshes: int = 0

    @property
    def part_count(self) -> int:
        return len(self.parts)
