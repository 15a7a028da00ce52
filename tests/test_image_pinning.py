"""The image a run names is the image it runs: a recipe's ``pspnet-repro/<kind>:latest`` is pinned
to the build of this checkout's harness, or refused (exit 3) with the command that builds it."""
from __future__ import annotations

import shutil

import pytest

from harness.executors import images

pytestmark = pytest.mark.docker


def test_latest_is_pinned_to_the_content_tag_of_this_checkout(cpu_image, client):
    resolved = images.resolve_image(client, "pspnet-repro/cpu:latest")
    assert resolved.run_tag == cpu_image and resolved.image_id == client.images.get(cpu_image).id
    assert resolved.harness_version and resolved.harness_version.startswith("0.1.0")
    labels = client.images.get(cpu_image).labels
    assert labels[images.SOURCE_LABEL] == images.source_digest("cpu")


def test_latest_built_from_other_sources_is_refused_with_the_build_command(cpu_image, client, tmp_path):
    checkout = tmp_path / "checkout"
    for rel in ("docker", "harness", "recipes", "pyproject.toml"):
        source = images.REPO_ROOT / rel
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, checkout / rel)
    (checkout / "harness" / "cli.py").write_text((checkout / "harness" / "cli.py").read_text() + "\n# edited\n")
    with pytest.raises(images.ImageError) as err:
        images.resolve_image(client, "pspnet-repro/cpu:latest", repo_root=checkout)
    assert err.value.exit_code == 3
    assert "built from other harness sources" in str(err.value) and "harness image build cpu" in str(err.value)


def test_an_image_named_by_its_own_tag_is_used_as_named(cpu_image, client):
    resolved = images.resolve_image(client, cpu_image)
    assert resolved.run_tag == cpu_image and resolved.asked == cpu_image
