"""The container image, built from the Dockerfile and run as users run it: no network needed at start,
non-root, a working HEALTHCHECK, OVMS's flags, and a chat answer from the baked-in default model.

There is no Docker engine on the machines this is built on; podman builds the image and buildah runs it,
both with chroot isolation (``../shared/design.md`` §5). No image registry is reachable either, so the base
image is a Debian bookworm made by debootstrap and imported, unless ``OVSERVE_TEST_BASE_IMAGE`` names one.
``.ci/run`` installs podman, buildah and debootstrap; the module is skipped only where they are not
installed, saying so."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import REPO, free_port

PODMAN, BUILDAH, DEBOOTSTRAP = (shutil.which(tool) for tool in ("podman", "buildah", "debootstrap"))
IMAGE = "localhost/ovserve:test"
BASE = os.environ.get("OVSERVE_TEST_BASE_IMAGE", "localhost/debian:bookworm")
#: The budget with the default model inside.
MAX_IMAGE_BYTES = 900 * 1024**2
CA_BUNDLE = next((p for p in (os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt") if p and
                  Path(p).is_file()), None)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PODMAN is None or BUILDAH is None,
                       reason="podman and buildah are not installed (.ci/run installs them with apt as root)"),
]


def run(*command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
    assert result.returncode == 0, f"{shlex.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def base_image(tmp: Path) -> str:
    """The Debian base: already imported, or made now with debootstrap (about a minute)."""
    if subprocess.run([PODMAN, "image", "exists", BASE], check=False).returncode == 0:
        return BASE
    if DEBOOTSTRAP is None or os.geteuid() != 0:
        pytest.skip(f"no base image {BASE} (no registry is reachable), and making one needs debootstrap as root")
    rootfs = tmp / "rootfs"
    run(DEBOOTSTRAP, "--variant=minbase", "bookworm", str(rootfs), "http://deb.debian.org/debian", timeout=900)
    # Slim as Docker's debian:bookworm-slim is: no package lists or caches, docs, man pages or translations.
    for leftover in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale"):
        for entry in (rootfs / leftover).glob("*"):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    archive = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run([PODMAN, "import", "-", BASE], stdin=archive.stdout, capture_output=True, text=True,
                              check=False, timeout=600)
    archive.wait()
    assert imported.returncode == 0, imported.stderr
    shutil.rmtree(rootfs, ignore_errors=True)
    return BASE


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = base_image(tmp_path_factory.mktemp("base"))
    command = [PODMAN, "build", "--isolation=chroot", "--network=host", "--format", "docker", "--layers=false",
               "--build-arg", f"BASE_IMAGE={base}", "-t", IMAGE, "-f", str(REPO / "Dockerfile")]
    if CA_BUNDLE:  # this network inspects TLS: pip in the build needs the machine's CA bundle
        command += ["-v", f"{CA_BUNDLE}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]
    run(*command, str(REPO), timeout=1800)
    subprocess.run([PODMAN, "image", "prune", "-f"], capture_output=True, check=False)  # the previous build's
    return IMAGE


def inspect(image: str) -> dict:
    (info,) = json.loads(run(PODMAN, "image", "inspect", image).stdout)
    return info


def healthcheck(image: str) -> list[str]:
    """The HEALTHCHECK command: podman shows it at the top level, docker under Config."""
    info = inspect(image)
    check = info.get("Healthcheck") or info["Config"].get("Healthcheck")
    assert check, "the image has no HEALTHCHECK (an OCI-format build drops it: build with --format docker)"
    return check["Test"]


class Container:
    """The image's entrypoint run by buildah (``podman run`` cannot set its rlimits here)."""

    def __init__(self, image: str, args: list[str], env: dict[str, str]) -> None:
        self.name = f"ovserve-test-{os.getpid()}-{time.monotonic_ns()}"
        run(BUILDAH, "from", "--name", self.name, image)
        entrypoint = inspect(image)["Config"]["Entrypoint"]
        envs = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
        self.process = subprocess.Popen(
            [BUILDAH, "run", "--isolation", "chroot", "--network", "host", *envs, self.name, "--", *entrypoint, *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BUILDAH, "run", "--isolation", "chroot", "--network", "host", self.name, "--",
                               *command], capture_output=True, text=True, check=False, timeout=60)

    def stop(self) -> str:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            output, _ = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            output, _ = self.process.communicate()
        subprocess.run([BUILDAH, "rm", self.name], capture_output=True, check=False)
        return output


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[tuple[Container, int]]:
    port = free_port()
    # No way out: a download at start (model, pip, hub) would fail, so the model must be in the image.
    offline = {"HF_HUB_OFFLINE": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_INDEX": "1",
               "OVSERVE_HEALTH_URL": f"http://127.0.0.1:{port}/v2/health/ready"}
    box = Container(image, ["--rest_port", str(port), "--rest_bind_address", "127.0.0.1"], offline)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert box.process.poll() is None, f"the container exited:\n{box.stop()}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not ready in 300 s:\n{box.stop()}"
            time.sleep(1)
        yield box, port
    finally:
        box.stop()


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck_and_labels_within_budget(image):
    info = inspect(image)
    config = info["Config"]
    assert config["User"] == "10001:10001"
    check = healthcheck(image)
    assert check[0] == "CMD" and "/v2/health/ready" in " ".join(check)
    assert config["Labels"]["org.opencontainers.image.title"] == "ovserve"
    assert config["Labels"]["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert config["ExposedPorts"] == {"8000/tcp": {}}
    print(f"image size: {info['Size'] / 1024**2:.0f} MiB")
    assert info["Size"] <= MAX_IMAGE_BYTES, f"{info['Size'] / 1024**2:.0f} MiB is over the 900 MiB budget"


def test_the_container_serves_the_baked_model_offline_on_ovms_flags(container):
    box, port = container
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v3", api_key="unused", max_retries=0)
    deadline = time.monotonic() + 60  # the embedding model loads in the background, from the image too
    while len(client.models.list().data) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sorted(m.id for m in client.models.list().data) == ["all-minilm-l6-v2", "smollm2"]
    embedding = client.embeddings.create(model="all-minilm-l6-v2", input="offline", encoding_format="float")
    assert len(embedding.data[0].embedding) == 384
    answer = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=20,
                                            messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert answer.choices[0].message.content and answer.usage.completion_tokens > 0
    assert box.exec("id", "-u").stdout.strip() == "10001"


def test_the_images_own_healthcheck_passes_once_ready(image, container):
    box, _ = container
    check = healthcheck(image)[1:]  # after "CMD"
    result = box.exec("env", f"OVSERVE_HEALTH_URL=http://127.0.0.1:{container[1]}/v2/health/ready", *check)
    assert result.returncode == 0, result.stderr
    failing = box.exec("env", "OVSERVE_HEALTH_URL=http://127.0.0.1:9/v2/health/ready", *check)
    assert failing.returncode != 0  # the check can fail: nothing listens there
