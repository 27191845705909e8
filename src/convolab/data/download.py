"""Fetching a registry dataset's files from its mirrors into the cache: timeouts, retries over mirrors, a progress bar,
the checksum verified, a temporary file renamed into place only when whole. Nothing here runs when `offline`."""
from __future__ import annotations

import http.client
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from convolab.data.checksums import record_hashes
from convolab.data.readers import find_file, reader_for
from convolab.data.registry import DatasetInfo, IdxFile
from convolab.errors import DataError

DOWNLOAD_TIMEOUT_S = 30.0     # per connection and per read: a stalled mirror is abandoned after this long
DOWNLOAD_ATTEMPTS = 2         # per mirror, before the next mirror is tried
RETRY_DELAY_S = 1.0           # between attempts on one mirror
CHUNK_BYTES = 1 << 16


def _progress_bar(label: str, total: int):
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    progress = Progress("[bold]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        console=Console(stderr=True), transient=False)
    task = progress.add_task(label, total=total or None)
    progress.start()
    return progress, task


def fetch(url: str, destination: Path, progress: bool) -> None:
    """Stream `url` to `destination`, raising DataError if the transfer fails or stops short of Content-Length."""
    try:
        response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
    except urllib.error.HTTPError as error:
        raise DataError(f"HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DataError(f"cannot connect ({reason})") from None
    with response:
        total = int(response.headers.get("Content-Length") or 0)
        received = 0
        bar = _progress_bar(destination.name.split(".part")[0], total) if progress else None
        try:
            with open(destination, "wb") as out:
                while True:
                    try:
                        chunk = response.read(CHUNK_BYTES)
                    except http.client.IncompleteRead as error:
                        received += len(error.partial)
                        raise DataError(f"transfer cut after {received:,} of {total:,} bytes") from None
                    except (socket.timeout, OSError) as error:
                        raise DataError(f"transfer failed after {received:,} bytes ({error})") from None
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar[0].update(bar[1], completed=received)
        finally:
            if bar is not None:
                bar[0].stop()
    if total and received != total:
        raise DataError(f"transfer cut after {received:,} of {total:,} bytes")


def download_file(file: IdxFile, info: DatasetInfo, directory: Path, progress: bool) -> None:
    """Fetch `file` into `directory` from the first mirror that gives a verified copy; DataError listing every try."""
    failures: list[str] = []
    destination = directory / file.filename
    reader = reader_for(info)
    for mirror in info.mirrors:
        url = mirror + file.filename
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            temporary = directory / f"{file.filename}.part{os.getpid()}"
            try:
                fetch(url, temporary, progress)
                content_sha256 = reader.check_download(temporary, file)
                temporary.replace(destination)   # only a whole, verified file takes the real name
                if file.content_sha256 is None:
                    record_hashes(info, {file.role: content_sha256})
                return
            except DataError as error:
                failures.append(f"{url}: {error.message.replace(str(temporary) + ': ', '')}")
                if "checksum mismatch" in error.message:
                    break   # the mirror serves the wrong bytes; asking again will not change them
                if attempt < DOWNLOAD_ATTEMPTS:
                    time.sleep(RETRY_DELAY_S)
            finally:
                temporary.unlink(missing_ok=True)
    counted = {failure: failures.count(failure) for failure in failures}   # identical retries said once, counted
    raise DataError("every mirror failed:" + "".join(
        f"\n      - {failure}" + (f" (x{count})" if count > 1 else "") for failure, count in counted.items()))


def download(info: DatasetInfo, directory: Path, progress: bool) -> None:
    """Fetch every file of `info` that `directory` lacks into it (the cache)."""
    directory.mkdir(parents=True, exist_ok=True)
    for file in info.files:
        if find_file(directory, file) is None:
            download_file(file, info, directory, progress)
