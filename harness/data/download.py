"""Verified, resumable download of one registry archive into a cache folder.

The bytes go to ``<file>.part`` (with ``<file>.part.json`` recording where they came from and the
server's validator), and only a ``.part`` whose md5 matches the registry is renamed to its final
name: a file under its final name has always been verified. A cut download is resumed with an
HTTP range request carrying ``If-Range`` (the ETag, else Last-Modified), so a file that changed on
the server restarts instead of being spliced. Sources are tried in order (mirrors first, then the
registry's URLs); a source is an http(s) URL, a ``file://`` URL or a local path (sites that keep
their own copy). Each fault is sorted into one of two kinds:

- the source offered wrong bytes (md5 mismatch, wrong size): ``WrongBytes``, the .part is dropped;
- the source could not be used (unreachable, 404, refused redirect, 5xx after retries):
  ``Unreachable``, the .part is kept for the next try.

The caller turns "every source offered wrong bytes" into exit 2 and "none could be used" into exit 3.
"""
from __future__ import annotations

import errno
import http.client
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import requests
import urllib3

from harness.core.errors import EnvironmentNotReady
from harness.core.fileio import file_digest, write_json_atomic
from harness.data.registry import Archive

MAX_REDIRECTS = 5
CHUNK = 1 << 20
TIMEOUT = (15, 60)  # connect, read (seconds between bytes)
REDIRECTS = (301, 302, 303, 307, 308)
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class WrongBytes(Exception):
    """The source served bytes that are not the archive (``str()``: the one line to show)."""


class Unreachable(Exception):
    """The source could not be used now (``str()``: why)."""


class Transient(Unreachable):
    """Worth another try after a pause: a cut connection, a timeout, a 5xx."""


class DiskFull(EnvironmentNotReady):
    """The cache's disk filled up (exit 3); what was written stays in the .part."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    backoff_s: float = 2.0  # waits of backoff, 2*backoff, 4*backoff, ...

    def wait(self, attempt: int) -> float:
        return self.backoff_s * (2 ** attempt)


Progress = Callable[[int, int], None]  # (bytes present, bytes expected)


def source_for(mirror: str, file_name: str) -> str:
    """A mirror names a folder (URL prefix, file:// URL or local path) holding the archives by their
    registry file names; a registry URL names the file itself."""
    return mirror.rstrip("/") + "/" + file_name


def part_paths(cache: Path, archive: Archive) -> tuple[Path, Path, Path]:
    final = Path(cache) / archive.file
    return final, final.with_name(final.name + ".part"), final.with_name(final.name + ".part.json")


def fetch_from(source: str, archive: Archive, cache: Path, *, retry: RetryPolicy = RetryPolicy(),
               progress: Progress | None = None, session: requests.Session | None = None) -> Path:
    """Bring ``archive`` from one source into ``cache`` and verify it; returns the final path."""
    final, part, meta = part_paths(cache, archive)
    try:
        _bring(source, archive, part, meta, retry, progress, session)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            have = part.stat().st_size if part.exists() else 0
            raise DiskFull(f"{part}: disk full after {have} of {archive.size} bytes ({exc.strerror}); the partial "
                           "file is kept: free space and run `harness data fetch` again to resume") from None
        raise
    got = file_digest(part, "md5")
    if got != archive.md5:
        _drop(part, meta)
        raise WrongBytes(f"{archive.file} from {source}: md5 mismatch: expected {archive.md5}, got {got} (not kept)")
    os.replace(part, final)
    meta.unlink(missing_ok=True)
    return final


def _bring(source: str, archive: Archive, part: Path, meta: Path, retry: RetryPolicy, progress: Progress | None,
           session: requests.Session | None) -> None:
    scheme = urlsplit(source).scheme
    if scheme in ("http", "https"):
        session = session or requests.Session()
        for attempt in range(retry.attempts):
            try:
                _http_download(session, source, archive, part, meta, progress)
                break
            except Transient:
                if attempt + 1 == retry.attempts:
                    raise
                time.sleep(retry.wait(attempt))
    elif scheme in ("", "file"):
        _copy_local(Path(unquote(urlsplit(source).path)) if scheme == "file" else Path(source), archive, part, progress)
    else:
        raise Unreachable(f"{source}: unsupported scheme {scheme!r} (expected http, https, file:// or a path)")


def _drop(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _copy_local(path: Path, archive: Archive, part: Path, progress: Progress | None) -> None:
    try:
        size = path.stat().st_size
        source = open(path, "rb")
    except OSError as exc:
        raise Unreachable(f"{path}: {exc.strerror or exc}") from None
    with source:
        if size != archive.size:
            raise WrongBytes(f"{archive.file} at {path}: {size} bytes, expected {archive.size} (not copied)")
        with _open_part(part, 0) as out:
            _pump(iter(lambda: source.read(CHUNK), b""), out, archive, 0, progress)


def _open_part(part: Path, offset: int):
    part.parent.mkdir(parents=True, exist_ok=True)
    handle = open(part, "r+b" if offset and part.exists() else "wb")
    handle.seek(offset)
    handle.truncate()
    return handle


def _pump(chunks, out, archive: Archive, have: int, progress: Progress | None) -> int:
    """Write ``chunks`` after ``have`` bytes, never past the registry size (a cap, not a hope)."""
    for chunk in chunks:
        if have + len(chunk) > archive.size:
            raise WrongBytes(f"{archive.file}: the source sends more than the {archive.size} bytes it has")
        out.write(chunk)
        out.flush()  # what arrived is on disk before the next read: a cut loses nothing
        have += len(chunk)
        if progress:
            progress(have, archive.size)
    return have


def _validator(response: requests.Response) -> str | None:
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):  # If-Range needs a strong validator
        return etag
    return response.headers.get("Last-Modified")


def _resume_offset(source: str, part: Path, meta: Path) -> tuple[int, str | None]:
    """Resume only bytes that came from this source with a validator the server can confirm."""
    try:
        recorded = json.loads(meta.read_text())
        have = part.stat().st_size
    except (OSError, ValueError):
        return 0, None
    if recorded.get("source") != source or not recorded.get("validator"):
        return 0, None
    return have, recorded["validator"]


def _get(session: requests.Session, url: str, headers: dict) -> requests.Response:
    """GET following at most MAX_REDIRECTS redirects, only to http(s) and never from https to http."""
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = session.get(url, headers=headers, stream=True, allow_redirects=False, timeout=TIMEOUT)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Transient(f"{url}: {type(exc).__name__}: {_short(exc)}") from None
        except requests.RequestException as exc:
            raise Unreachable(f"{url}: {_short(exc)}") from None
        if response.status_code not in REDIRECTS:
            return response
        response.close()
        target = urljoin(url, response.headers.get("Location", ""))
        refused = redirect_refused(url, target)
        if refused:
            raise Unreachable(f"{url}: redirects to {target}: {refused} (refused)")
        url = target
    raise Unreachable(f"{url}: more than {MAX_REDIRECTS} redirects")


def redirect_refused(origin: str, target: str) -> str | None:
    """Why a redirect from ``origin`` to ``target`` is not followed, or None: only http(s), and never
    from https down to plain http (the md5 would catch changed bytes, but not a leaked request)."""
    scheme = urlsplit(target).scheme
    if scheme not in ("http", "https"):
        return f"{scheme or 'no'} scheme, not http(s)"
    if urlsplit(origin).scheme == "https" and scheme == "http":
        return "from https down to plain http"
    return None


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


def _http_download(session: requests.Session, source: str, archive: Archive, part: Path, meta: Path,
                   progress: Progress | None) -> None:
    offset, validator = _resume_offset(source, part, meta)
    if offset >= archive.size:
        return  # all there: the md5 decides
    headers = {"Accept-Encoding": "identity"}  # the bytes as stored: the md5 is of those
    if offset:
        headers |= {"Range": f"bytes={offset}-", "If-Range": validator}
    response = _get(session, source, headers)
    with response:
        status = response.status_code
        if status in (404, 410, 401, 403):
            raise Unreachable(f"{source}: HTTP {status}")
        if status == 416:
            _drop(part, meta)  # the range no longer fits the file: start over
            raise Transient(f"{source}: HTTP 416 for a resume at byte {offset}")
        if status >= 500 or status == 429:
            raise Transient(f"{source}: HTTP {status}")
        if status == 206:
            start, total = _content_range(response)
            if start != offset:
                _drop(part, meta)
                raise Transient(f"{source}: asked for byte {offset}, got a range from {start}")
        elif status == 200:
            offset, total = 0, _content_length(response)
        else:
            raise Unreachable(f"{source}: HTTP {status}")
        if total is not None and total != archive.size:
            raise WrongBytes(f"{archive.file} from {source}: offers {total} bytes, expected {archive.size} (not downloaded)")
        write_json_atomic(meta, {"source": source, "url": response.url, "validator": _validator(response)})
        with _open_part(part, offset) as out:
            try:
                _pump(_body(response), out, archive, offset, progress)
            except (requests.RequestException, ConnectionError) as exc:
                raise Transient(f"{source}: cut after {out.tell()} of {archive.size} bytes ({_short(exc)})") from None
    if part.stat().st_size < archive.size:
        raise Transient(f"{source}: ended after {part.stat().st_size} of {archive.size} bytes")


def _body(response: requests.Response):
    """The body as it arrives (``read1``: whatever is there, up to CHUNK), undecoded: the md5 is of
    the stored bytes. ``iter_content`` would drop a partly filled chunk when the connection is cut."""
    raw = response.raw
    while True:
        try:
            block = raw.read1(CHUNK, decode_content=False)
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            raise requests.ConnectionError(exc) from None  # the connection broke or stalled
        if not block:
            return
        yield block


def _content_range(response: requests.Response) -> tuple[int | None, int | None]:
    value = response.headers.get("Content-Range", "")  # bytes START-END/TOTAL
    try:
        unit, _, rest = value.partition(" ")
        span, _, total = rest.partition("/")
        return int(span.split("-")[0]), (None if total == "*" else int(total))
    except ValueError:
        return None, None


def _content_length(response: requests.Response) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None
