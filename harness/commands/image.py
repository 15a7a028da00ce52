"""`harness image build KIND [--base IMAGE] [--certs DIR] [--torch-wheel WHL] [--force]` and
`harness image tag KIND [--base IMAGE]` (prints the content tag a build would produce)."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness import images


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("image", help="build the project's container images, show their tags")
    actions = parser.add_subparsers(dest="image_action", required=True)

    build = actions.add_parser("build", help="build an image (skipped when its content tag exists)")
    build.add_argument("kind", choices=images.KINDS)
    build.add_argument("--base", help="base image (default: the Dockerfile's ARG BASE_IMAGE)")
    build.add_argument("--certs", type=Path, action="append", default=[],
                       help="extra CA certificates (*.crt/*.pem) to trust; repeatable. "
                            f"{images.HOST_CERT_DIR} is always included")
    build.add_argument("--torch-wheel", type=Path, help="local torch CPU wheel (cpu; default: found via pip config)")
    build.add_argument("--force", action="store_true", help="build even if the tag exists")

    tag = actions.add_parser("tag", help="print the content tag of an image")
    tag.add_argument("kind", choices=images.KINDS)
    tag.add_argument("--base", help="base image (default: the Dockerfile's ARG BASE_IMAGE)")
    tag.add_argument("--torch-wheel", type=Path, help="as for build (the wheel's name is part of the tag)")

    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    # ImageError and EngineUnavailable are EnvironmentNotReady: the CLI exits 3 with their line.
    if args.image_action == "tag":
        print(_tag(args))
        return 0
    return _build(args)


def _wheel(args) -> Path | None:
    if args.kind != "cpu":
        return None
    return args.torch_wheel or images.host_torch_wheel()


def _tag(args) -> str:
    base = args.base or images.default_base(args.kind)
    wheel = _wheel(args)
    return images.content_tag(args.kind, base, wheels=[wheel] if wheel else [])


def _build(args) -> int:
    from harness.errors import BadInput
    from harness.executors.docker import connect

    for folder in args.certs:
        if not folder.is_dir():
            raise BadInput(f"--certs {folder}: no such folder")
    client = connect(timeout=3600)
    tag = images.build_image(args.kind, args.base, client, log=print, cert_dirs=args.certs,
                             torch_wheel=_wheel(args), force=args.force)
    print(tag)
    return 0
