from setuptools import find_packages, setup

setup(
    name="ovdense",
    version="0.2.0",
    description="Open-vocabulary dense prediction with training-free CLIP heads, SAM masks and DINO affinities",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["ovdense", "ovdense.*"]),
    install_requires=[
        "torch>=2.1",  # not pinned: users bring the build that fits their CUDA
        "torchvision",
        "open_clip_torch>=3.0,<4",
        "segment-anything",
        "mmengine>=0.10",
        "opencv-python-headless",
        "pycocotools",
        "numpy",
        "Pillow",
        "tqdm",
    ],
    extras_require={"dino": ["timm>=1.0"], "test": ["pytest>=7", "timm>=1.0"]},
    entry_points={"console_scripts": ["ovdense=ovdense.cli.main:main"]},
)
