"""Detections.to_vision_msgs (ROS 2 vision_msgs/Detection2DArray layout) and Detections.label_image."""
import json

import numpy as np
import pytest

from ovdense.structures import Detections


def hand_made():
    mask = np.zeros((2, 4, 6), bool)
    mask[0, 0:3, 0:4] = True
    mask[1, 2:4, 3:6] = True  # overlaps instance 0 at rows 2, cols 3
    return Detections(xyxy=np.array([[0, 0, 4, 3], [3, 2, 6, 4]], np.float32), mask=mask,
                      confidence=np.array([0.75, 0.5], np.float32), class_id=np.array([2, 0], np.int64),
                      class_name=["cup", "table"])


def test_to_vision_msgs_exact():
    header = {"stamp": {"sec": 12, "nanosec": 5}, "frame_id": "camera_color_optical_frame"}
    msg = hand_made().to_vision_msgs(header)
    assert msg == {
        "header": header,
        "detections": [
            {"bbox": {"center": {"position": {"x": 2.0, "y": 1.5}, "theta": 0.0}, "size_x": 4.0, "size_y": 3.0},
             "results": [{"hypothesis": {"class_id": "cup", "score": 0.75}}], "id": "0"},
            {"bbox": {"center": {"position": {"x": 4.5, "y": 3.0}, "theta": 0.0}, "size_x": 3.0, "size_y": 2.0},
             "results": [{"hypothesis": {"class_id": "table", "score": 0.5}}], "id": "1"},
        ],
    }
    det = msg["detections"][0]
    for value in (det["bbox"]["size_x"], det["bbox"]["center"]["position"]["x"],
                  det["results"][0]["hypothesis"]["score"]):
        assert type(value) is float
    assert type(det["id"]) is str and type(det["results"][0]["hypothesis"]["class_id"]) is str


def test_json_round_trip_and_default_header():
    msg = hand_made().to_vision_msgs()
    assert msg["header"] == {}
    assert json.loads(json.dumps(msg)) == msg


def test_empty_detections():
    msg = Detections.empty(4, 6).to_vision_msgs()
    assert msg == {"header": {}, "detections": []}
    assert json.loads(json.dumps(msg)) == msg
    img = Detections.empty(4, 6).label_image(4, 6)
    assert img.dtype == np.int32 and img.shape == (4, 6) and not img.any()


def test_label_image_later_instances_on_top():
    img = hand_made().label_image(4, 6)
    assert img.dtype == np.int32
    expected = np.array([[1, 1, 1, 1, 0, 0],
                         [1, 1, 1, 1, 0, 0],
                         [1, 1, 1, 2, 2, 2],
                         [0, 0, 0, 2, 2, 2]], np.int32)
    np.testing.assert_array_equal(img, expected)


def test_label_image_errors():
    d = hand_made()
    with pytest.raises(ValueError, match="masks"):
        Detections(xyxy=d.xyxy, mask=None, confidence=d.confidence, class_id=d.class_id,
                   class_name=d.class_name).label_image(4, 6)
    with pytest.raises(ValueError, match="4x6"):
        d.label_image(5, 6)
