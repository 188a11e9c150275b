"""Packaging (issue 10 item 1-2): the wheel ships configs, name files, the demo assets and the licence;
the dependencies are what ovdense imports; an installed wheel runs ``ovdense demo`` offline outside the
repository (slow: builds a wheel and a venv)."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    tomllib = None


def _pyproject():
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _dist_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


#: distribution -> the top-level module it provides
IMPORT_NAMES = {"torch": "torch", "open-clip-torch": "open_clip", "mmengine-lite": "mmengine",
                "opencv-python-headless": "cv2", "pycocotools": "pycocotools", "numpy": "numpy",
                "pillow": "PIL", "tqdm": "tqdm", "safetensors": "safetensors"}


def _imported_modules():
    names = set()
    for path in (REPO / "ovdense").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def test_dependencies_are_what_ovdense_imports():
    meta = _pyproject()["project"]
    deps = [_dist_name(r) for r in meta["dependencies"]]
    imported = _imported_modules()
    for dist in deps:
        assert dist in IMPORT_NAMES, f"{dist}: add it to IMPORT_NAMES"
        assert IMPORT_NAMES[dist] in imported, f"{dist} is a dependency but nothing imports {IMPORT_NAMES[dist]}"
    # one OpenCV wheel, and none that pulls the GUI one (mmengine does; mmengine-lite is the same code)
    assert [d for d in deps if d.startswith("opencv")] == ["opencv-python-headless"]
    assert "mmengine" not in deps and "segment-anything" not in deps and "torchvision" not in deps
    extras = meta["optional-dependencies"]
    assert {"sam", "dino", "train", "dev", "test"} <= set(extras)
    assert [_dist_name(r) for r in extras["sam"]] == ["segment-anything"]
    assert meta["license"] == "MIT" and (REPO / "LICENSE").read_text().startswith("MIT License")
    assert meta["scripts"]["ovdense"] == "ovdense.cli.main:main"


def test_named_configs_resolve_from_the_shipped_folder():
    from ovdense.config import configs_dir, find_config, load_config

    assert find_config("naclip_voc21") == os.path.join(configs_dir(), "naclip", "naclip_voc21.py")
    assert find_config("configs/sclip/sclip_ade20k.py").endswith(os.path.join("sclip", "sclip_ade20k.py"))
    assert find_config("naclip") == os.path.join(configs_dir(), "_base_", "naclip.py")
    cfg = load_config("naclip_voc21")
    assert cfg.head["type"] == "naclip" and cfg.classes["names"] == "../names/cls_voc21.txt"
    with pytest.raises(FileNotFoundError, match="config file not found: nope"):
        load_config("nope")


def _build_wheel(dest: Path) -> Path:
    """``pip wheel`` of a copy of the sources (an in-tree build would write build/ into the checkout,
    where a concurrent build could collide)."""
    import shutil

    src = dest / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("ovdense", "configs"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(dest)], capture_output=True, text=True, timeout=300,
                          cwd=dest)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheels = list(dest.glob("ovdense-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_ships_configs_names_assets_and_licence(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    configs = sorted(p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*")
                     if p.is_file() and p.suffix in (".py", ".txt", ".md") and "__pycache__" not in p.parts)
    missing = [c for c in configs if f"ovdense/configs/{c}" not in names]
    assert not missing, missing
    for asset in ("synth_clip/synth_clip.pt", "synth_clip/synth-vit-tiny.json", "synth_classes.txt"):
        assert f"ovdense/assets/{asset}" in names
    assert sum(n.startswith("ovdense/assets/images/") and n.endswith(".png") for n in names) >= 2
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "tools/")) for n in names)
    assert wheel.stat().st_size < 12 * 2**20


def _running_site_dirs() -> list:
    """The site-packages folders of the interpreter running the tests (a virtualenv's, the
    system's, conda's...), in ``sys.path`` order: where torch and the other dependencies are."""
    import site

    dirs = [p for p in sys.path if os.path.basename(p.rstrip(os.sep)) in ("site-packages", "dist-packages")]
    dirs += site.getsitepackages()
    if site.ENABLE_USER_SITE and site.getusersitepackages():
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(os.path.abspath(d) for d in dirs) if os.path.isdir(d)]


def _venv_with_running_dependencies(venv: Path) -> Path:
    """A venv without system site packages whose ``sys.path`` ends with the running interpreter's
    site-packages (one ``.pth`` file): the dependencies are found from any interpreter, a
    virtualenv included (``--system-site-packages`` made inside a venv reaches the base Python's
    site-packages, not the venv's). Those folders are added as plain path entries, so their own
    ``.pth`` files (an editable ovdense of the checkout) are not run, and the venv's own
    site-packages, where the wheel goes, comes first."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    (Path(purelib) / "_running_env_site_packages.pth").write_text("\n".join(_running_site_dirs()) + "\n")
    return py


@pytest.mark.slow
def test_installed_wheel_runs_the_demo_offline_outside_the_repo(wheel, tmp_path):
    """A fresh venv (torch etc. from the running interpreter's site-packages), the wheel installed
    without an index, ``ovdense demo`` run from a folder outside the repository: the installed
    package, not the checkout, does the work."""
    venv = tmp_path / "venv"
    py = _venv_with_running_dependencies(venv)
    # the running pip installs into the venv (made without pip: no ensurepip needed)
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(HF_HUB_OFFLINE="1", OVDENSE_CACHE_DIR=str(tmp_path / "cache"))
    where = subprocess.run([str(py), "-c", "import ovdense, ovdense.config as c; print(ovdense.__file__); "
                            "print(c.find_config('naclip_voc21'))"], capture_output=True, text=True, cwd=work,
                           env=env, timeout=120)
    assert where.returncode == 0, where.stderr
    module, config = where.stdout.split()
    assert module.startswith(str(venv)) and config.startswith(str(venv)), where.stdout
    ovdense_exe = venv / "bin" / "ovdense"
    version = subprocess.run([str(ovdense_exe), "--version"], capture_output=True, text=True, cwd=work, env=env)
    assert version.returncode == 0 and version.stdout.startswith("ovdense ")
    demo = subprocess.run([str(ovdense_exe), "demo", "--out", "demo-out", "--device", "cpu"], capture_output=True,
                          text=True, cwd=work, env=env, timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    overlays = sorted((work / "demo-out" / "overlays").glob("*.jpg"))
    assert len(overlays) >= 2
    from PIL import Image

    for path in overlays:
        with Image.open(path) as im:  # the image with a legend panel beside it
            assert im.size[1] >= 192 and im.size[0] > 192
    assert (work / "demo-out" / "contact_sheet.jpg").is_file()
    assert "example images segmented" in demo.stdout
    # a named config with its relative name file resolves inside the installed package
    names = subprocess.run([str(py), "-c", "from ovdense.config import load_config, resolve_names_path; "
                            "c = load_config('sclip_voc21'); print(resolve_names_path(c.classes['names'], c))"],
                           capture_output=True, text=True, cwd=work, env=env, timeout=120)
    assert names.returncode == 0 and names.stdout.strip().startswith(str(venv)), names.stdout + names.stderr
    assert os.path.isfile(names.stdout.strip())


def test_configs_command_lists_and_prints(capsys):
    from ovdense.cli import main

    assert main(["configs"]) == 0
    listed = capsys.readouterr().out.split()
    assert "naclip_voc21" in listed and "_base_/sclip" in listed
    assert main(["configs", "sclip_ade20k"]) == 0
    assert "cls_ade20k.txt" in capsys.readouterr().out
    assert main(["configs", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: config file not found: nope")
