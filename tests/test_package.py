"""agefair as a package: a wheel built from the checkout trains from outside it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import agefair
from agefair.inference.model_files import YUNET_ENV_VAR
from tests.conftest import REPO, TINY, photos_dir, yunet_path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy of what the wheel is made of: the build writes its work folders beside
    # the sources, and they belong nowhere in the checkout.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "agefair", source / "agefair", ignore=skip)
    # No build isolation: the build backend comes from this environment, not the network.
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    proc = subprocess.run([*cmd, "-w", str(out), str(source)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = out.glob("agefair-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_ships_its_configs_and_one_version(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "agefair/conf/train.yaml" in names and "agefair/conf/model/recipe/default.yaml" in names
    assert "agefair/py.typed" in names and "agefair/app/static/index.html" in names
    assert wheel.name.startswith(f"agefair-{agefair.__version__}-")
    assert not [n for n in names if n.startswith(("tests/", "experiments/"))]


@pytest.mark.slow
def test_an_installed_wheel_trains_and_predicts_outside_the_checkout(
    wheel, tmp_path, tiny_archive, tiny_ckpt
):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    # The dependencies come from this environment (a path line, read after the venv's own
    # site-packages, so the installed wheel is the agefair that imports); nothing is downloaded.
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    proc = subprocess.run([*install, "--no-deps", "--no-index", str(wheel)], capture_output=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    run = subprocess.run(
        [env_dir / "bin" / "agefair", "train", *TINY, "trainer.fast_dev_run=true",
         "data.unseen=null", f"paths.archive={tiny_archive}", f"paths.data_dir={work / 'data'}",
         f"hydra.run.dir={work / 'run'}"],
        capture_output=True, text=True, cwd=work, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    where = subprocess.run(
        [python, "-c", "import agefair.config as c; print(c.__file__, c.CONF_DIR)"],
        capture_output=True, text=True, cwd=work, check=True,
    ).stdout  # fmt: skip
    assert str(REPO) not in where and site in where
    assert (work / "run" / "results.csv").is_file()
    photo = photos_dir() / "two_people.jpg"
    env = {**os.environ, YUNET_ENV_VAR: str(yunet_path())}
    predicted = subprocess.run(
        [env_dir / "bin" / "agefair", "predict", photo, "--ckpt", tiny_ckpt, "--json"],
        capture_output=True, text=True, cwd=work, env=env, timeout=300,
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    (result,) = json.loads(predicted.stdout)
    assert len(result["faces"]) == 2 and {"age", "gender", "race"} <= set(result["faces"][0])
