"""A third-party package that reuses a built-in name, installed by pip as a user would: every command still
works, the built-in keeps its name, and the clash is one warning naming both distributions."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

PLUGIN_SOURCE = '''
import numpy as np
from cqdkit.plugin import Degradation, hookimpl


class Black:
    def __call__(self, views, rng):
        return views.replace(z=np.zeros_like(views.z))


@hookimpl
def cqdkit_degradations():
    yield Degradation(name="jpeg", summary="a clashing jpeg that blackens z", factory=Black)
    yield Degradation(name="blacken", summary="the same, under its own name", factory=Black)
'''


def build_wheel(folder: Path) -> Path:
    """A wheel of ``cqdkit-myjpeg 0.2`` (module ``cqdkit_myjpeg``, entry point ``myjpeg``), written by hand so
    that no build backend is needed offline; pip installs it like any other."""
    dist_info = "cqdkit_myjpeg-0.2.dist-info"
    files = {
        "cqdkit_myjpeg.py": PLUGIN_SOURCE,
        f"{dist_info}/METADATA": "Metadata-Version: 2.1\nName: cqdkit-myjpeg\nVersion: 0.2\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: cqdkit-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/entry_points.txt": "[cqdkit]\nmyjpeg = cqdkit_myjpeg\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join(record + [f"{dist_info}/RECORD,,"]) + "\n"
    wheel = folder / "cqdkit_myjpeg-0.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


def test_an_installed_package_reusing_a_built_in_name_is_a_warning(tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--disable-pip-version-check", "--target", str(site), str(build_wheel(tmp_path))], check=True)
    assert (site / "cqdkit_myjpeg-0.2.dist-info" / "INSTALLER").exists()  # installed by pip, not faked
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    environment.pop("CQDKIT_DISABLE_PLUGIN_AUTOLOAD", None)

    def cqdkit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cqdkit", *args], capture_output=True, text=True,
                              env=environment, timeout=300)

    listing = cqdkit("plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    warning = " ".join(listing.stderr.split())
    assert warning.count("warning: degradation 'jpeg' is provided by") == 1
    assert "(cqdkit 0.1.0, built in)" in warning and "myjpeg (cqdkit-myjpeg 0.2)" in warning
    assert "the built-in is kept" in warning and "pip uninstall cqdkit-myjpeg" in warning
    rows = [row for row in json.loads(listing.stdout) if row["kind"] == "degradation"]
    jpeg = [(row["plugin"], row["skipped"]) for row in rows if row["name"] == "jpeg"]
    assert jpeg == [("cqdkit.degradations.plugin", False), ("cqdkit-myjpeg", True)]
    assert ("cqdkit-myjpeg", False) in [(row["plugin"], row["skipped"]) for row in rows if row["name"] == "blacken"]

    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
    degraded = cqdkit("degrade", "jpeg", str(image), "--size", "32", "--out", str(tmp_path / "out"))
    assert degraded.returncode == 0, degraded.stderr
    built_in = cqdkit("--no-plugins", "degrade", "jpeg", str(image), "--size", "32", "--out", str(tmp_path / "ref"))
    assert built_in.returncode == 0, built_in.stderr
    written = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.png"))
    assert written, "degrade wrote no image"
    for name in written:  # the built-in jpeg ran, not the newcomer's black z
        ours = np.asarray(Image.open(tmp_path / "out" / name))
        assert np.array_equal(ours, np.asarray(Image.open(tmp_path / "ref" / name)))
        assert ours.any()
