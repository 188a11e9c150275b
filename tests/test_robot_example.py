"""README's "Use from a robot" example runs as printed: frames and depth in, labelled masks and
3D centroids out, the class list changed mid-stream."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def robot_example() -> str:
    text = README.read_text()
    section = text[text.index("## Use from a robot"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_robot_example_runs_and_gives_3d_centroids():
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(robot_example(), "README.md (Use from a robot)", "exec"), namespace)
    lines = [ln.split() for ln in out.getvalue().splitlines() if ln.strip()]
    assert lines, "the example printed no object"
    names = {int(ln[0]): set() for ln in lines}
    for ln in lines:
        names[int(ln[0])].add(" ".join(t for t in ln[1:] if not t.startswith("[") and not t.endswith("]")
                                       and not re.fullmatch(r"-?[\d.]+", t)))
    assert all(n <= {"red circle", "white square"} for i, n in names.items() if i < 2)
    assert all(n <= {"pink heart", "white square"} for i, n in names.items() if i >= 2)  # the new task
    assert "pink heart" in names.get(3, set()), names
    objects, dets, camera = namespace["objects"], namespace["dets"], namespace["camera"]
    np.testing.assert_allclose(objects.centroid[:, 2], 1.5, atol=1e-6)   # the flat depth at 1.5 m
    for mask, centroid in zip(dets.mask, objects.centroid):               # x from the mask's mean column
        ys, xs = np.nonzero(mask)
        np.testing.assert_allclose(centroid[0], (xs.mean() - camera.cx) * 1.5 / camera.fx, atol=1e-5)
        np.testing.assert_allclose(centroid[1], (ys.mean() - camera.cy) * 1.5 / camera.fy, atol=1e-5)
    message = namespace["message"]
    assert message["header"] == {"frame_id": "camera", "seq": 3}
    assert len(message["detections"]) == len(dets)
