"""Test support (no tests here): archives with the real VOC/SBD member paths built from the
synthetic set, a registry naming them, and a real HTTP server on 127.0.0.1 that serves them with
ranges, ETags and the faults the fetch tests need (a cut connection, no range support, 404, a
redirect, a hook half way), counting the bytes it sends."""
from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

VOC_TRACKED = ("JPEGImages", "SegmentationClass")


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mtime: int = 1_336_000_000) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_336_000_000
    tar.addfile(info)


def build_voc_tar(devkit: Path, target: Path) -> Path:
    """VOCtrainval_11-May-2012.tar's layout: VOCdevkit/VOC2012/... with folders the manifest does
    not track (Annotations, SegmentationObject, ImageSets/Main) beside the tracked ones."""
    voc = devkit / "VOC2012"
    with tarfile.open(target, "w", format=tarfile.GNU_FORMAT) as tar:
        for folder in ("VOCdevkit", "VOCdevkit/VOC2012", "VOCdevkit/VOC2012/ImageSets",
                       "VOCdevkit/VOC2012/ImageSets/Segmentation", "VOCdevkit/VOC2012/ImageSets/Main",
                       "VOCdevkit/VOC2012/Annotations", "VOCdevkit/VOC2012/SegmentationObject",
                       *(f"VOCdevkit/VOC2012/{f}" for f in VOC_TRACKED)):
            _add_dir(tar, folder)
        for folder in VOC_TRACKED:
            for path in sorted((voc / folder).iterdir()):
                _add_file(tar, f"VOCdevkit/VOC2012/{folder}/{path.name}", path.read_bytes())
                if folder == "SegmentationClass":
                    _add_file(tar, f"VOCdevkit/VOC2012/SegmentationObject/{path.name}", path.read_bytes())
                if folder == "JPEGImages":
                    _add_file(tar, f"VOCdevkit/VOC2012/Annotations/{path.stem}.xml", b"<annotation/>\n")
        splits = voc / "ImageSets" / "Segmentation"
        train, val = (splits / "train.txt").read_bytes(), (splits / "val.txt").read_bytes()
        for name, data in (("train.txt", train), ("val.txt", val), ("trainval.txt", train + val)):
            _add_file(tar, f"VOCdevkit/VOC2012/ImageSets/Segmentation/{name}", data)
        _add_file(tar, "VOCdevkit/VOC2012/ImageSets/Main/train.txt", train)
    return target


def build_sbd_tgz(devkit: Path, target: Path) -> Path:
    """benchmark.tgz's layout: benchmark_RELEASE/dataset/{cls,img,inst}/ and {train,val}.txt."""
    sbd = devkit / "VOCaug" / "dataset"
    with tarfile.open(target, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for folder in ("benchmark_RELEASE", "benchmark_RELEASE/dataset", "benchmark_RELEASE/dataset/cls",
                       "benchmark_RELEASE/dataset/inst", "benchmark_RELEASE/dataset/img"):
            _add_dir(tar, folder)
        for path in sorted((sbd / "cls").glob("*.mat")):
            _add_file(tar, f"benchmark_RELEASE/dataset/cls/{path.name}", path.read_bytes())
            _add_file(tar, f"benchmark_RELEASE/dataset/inst/{path.name}", path.read_bytes())
            image = devkit / "VOC2012" / "JPEGImages" / f"{path.stem}.jpg"
            _add_file(tar, f"benchmark_RELEASE/dataset/img/{image.name}", image.read_bytes())
        for name in ("train.txt", "val.txt"):
            _add_file(tar, f"benchmark_RELEASE/dataset/{name}", (sbd / name).read_bytes())
        _add_file(tar, "benchmark_RELEASE/benchmark_code_RELEASE/README", b"the benchmark code\n")
    return target


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_registry(path: Path, archives: dict[str, Path], urls: dict[str, list[str]]) -> Path:
    entries = {name: {"file": file.name, "md5": md5(file), "size": file.stat().st_size,
                      "unpacked_bytes": file.stat().st_size, "urls": urls[name]}
               for name, file in archives.items()}
    path.write_text(yaml.safe_dump({"archives": entries}))
    return path


@dataclass
class Behaviour:
    """What the server does; the tests change it between requests."""

    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> bytes
    ranges: bool = True
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> cut the next response after N body bytes
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location
    half_way: dict[str, callable] = field(default_factory=dict)  # path -> called once, half way through
    served: dict[str, int] = field(default_factory=dict)  # path -> body bytes sent, all requests
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(behaviour: Behaviour):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?")[0]
            behaviour.requests.append((path, self.headers.get("Range")))
            if path in behaviour.redirects:
                self.send_response(302)
                self.send_header("Location", behaviour.redirects[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = behaviour.files.get(path)
            if data is None:
                self.send_error(404)
                return
            etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
            start, status = 0, 200
            wanted = self.headers.get("Range")
            if behaviour.ranges and wanted and wanted.startswith("bytes=") and \
                    self.headers.get("If-Range") in (None, etag):
                start, status = int(wanted[6:].split("-")[0]), 206
            body = data[start:]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            if behaviour.ranges:
                self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            cut = behaviour.cut_after.pop(path, None)
            sent, block = 0, 16 * 1024
            while sent < len(body):
                if cut is not None and sent >= cut:
                    break
                if start + sent >= len(data) // 2 and path in behaviour.half_way:
                    behaviour.half_way.pop(path)()
                piece = body[sent:sent + block] if cut is None else body[sent:min(sent + block, cut)]
                try:
                    self.wfile.write(piece)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(piece)
                with behaviour.lock:
                    behaviour.served[path] = behaviour.served.get(path, 0) + len(piece)
            if cut is not None:
                self.close_connection = True

    return Handler


class ArchiveServer:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.behaviour))
        self.httpd.daemon_threads = True
        # A client that hangs up mid-body (the tests' refusals) is expected: no traceback on stderr.
        self.httpd.handle_error = lambda request, client_address: None
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self) -> "ArchiveServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
