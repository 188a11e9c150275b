"""Build script: metadata lives in pyproject.toml. This file only maps the repository's top-level
``configs/`` folder into the package as ``ovdense.configs`` (one copy, shipped in the wheel)."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["ovdense", "ovdense.*"]) + ["ovdense.configs"],
    package_dir={"ovdense.configs": "configs"},
)
