"""`harness image build KIND [--base IMAGE] [--certs DIR] [--torch-wheel WHL] [--force]` and
`harness image tag KIND [--base IMAGE]` (prints the content tag a build would produce) and
`harness image lock KIND [--find-links DIR]` (writes docker/KIND/requirements-<platform>.lock)."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.core.errors import BadInput
from harness.executors import images


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("image", help="build the project's container images, show their tags")
    actions = parser.add_subparsers(dest="image_action", required=True)

    build = actions.add_parser("build", help="build an image (skipped when its content tag exists)")
    build.add_argument("kind", choices=images.KINDS)
    build.add_argument("--base", help="base image (default: the Dockerfile's ARG BASE_IMAGE)")
    build.add_argument("--chip", choices=images.NPU_CHIPS,
                       help="npu: the Ascend chip; picks the CANN base tag (-910- Atlas A1, -910b- Atlas A2)")
    build.add_argument("--certs", type=Path, action="append", default=[],
                       help="extra CA certificates (*.crt/*.pem) to trust; repeatable. "
                            f"{images.HOST_CERT_DIR} is always included")
    build.add_argument("--torch-wheel", type=Path, help="local torch CPU wheel (cpu; default: found via pip config)")
    build.add_argument("--force", action="store_true", help="build even if the tag exists")

    tag = actions.add_parser("tag", help="print the content tag of an image")
    tag.add_argument("kind", choices=images.KINDS)
    tag.add_argument("--base", help="base image (default: the Dockerfile's ARG BASE_IMAGE)")
    tag.add_argument("--chip", choices=images.NPU_CHIPS, help="as for build")
    tag.add_argument("--torch-wheel", type=Path, help="as for build (the wheel's name is part of the tag)")

    lock = actions.add_parser(
        "lock", help="resolve docker/KIND/requirements.in into hash-pinned per-platform locks (needs uv)")
    lock.add_argument("kind", choices=images.KINDS)
    lock.add_argument("--find-links", action="append", default=[], metavar="DIR",
                      help="extra folder of wheels (cpu: the local torch CPU wheel's folder is added)")

    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    # ImageError and EngineUnavailable are EnvironmentNotReady: the CLI exits 3 with their line.
    if args.image_action == "tag":
        print(_tag(args))
        return 0
    if args.image_action == "lock":
        return _lock(args)
    return _build(args)


def _wheel(args) -> Path | None:
    if args.kind != "cpu":
        return None
    return args.torch_wheel or images.host_torch_wheel()


def _base(args) -> str | None:
    chip = getattr(args, "chip", None)
    if chip is None:
        return args.base
    if args.kind != "npu":
        raise BadInput(f"--chip is for the npu image, not {args.kind}")
    if args.base:
        raise BadInput("give --chip or --base, not both (--chip picks the CANN base)")
    return images.npu_base_for_chip(chip)


def _tag(args) -> str:
    base = _base(args) or images.default_base(args.kind)
    wheel = _wheel(args)
    return images.content_tag(args.kind, base, wheels=[wheel] if wheel else [])


def _build(args) -> int:
    from harness.core.errors import BadInput
    from harness.executors.docker import connect

    for folder in args.certs:
        if not folder.is_dir():
            raise BadInput(f"--certs {folder}: no such folder")
    client = connect(timeout=3600)
    tag = images.build_image(args.kind, _base(args), client, log=print, cert_dirs=args.certs,
                             torch_wheel=_wheel(args), force=args.force)
    print(tag)
    return 0


def _lock(args) -> int:
    from harness.executors import image_locks as locks

    links = list(args.find_links)
    if args.kind == "cpu":
        wheel = images.host_torch_wheel()
        if wheel is not None:
            links.append(str(Path(wheel).parent))
    locks.lock(args.kind, find_links=tuple(links))
    return 0
