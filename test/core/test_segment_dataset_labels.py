"""`clusteringsdf segment`: machine labels for a whole dataset as a label variant the
readers open, resumable."""

import json
import subprocess
import sys

import numpy as np
import pytest

from clusteringsdf_core.data.formats import open_dataset
from clusteringsdf_core.data.formats.sens import write_sens
from clusteringsdf_core.data.synthetic import SyntheticSceneConfig, generate_scene
from clusteringsdf_core.segment.backends import make_segmenter
from clusteringsdf_core.segment.dataset_labels import segment_dataset


@pytest.fixture(scope="module")
def scene():
    return generate_scene(SyntheticSceneConfig(furniture="procedural", width=64, height=48, num_train=4,
                                               num_test=1, num_objects=2, depth_noise=False))


def test_labels_of_a_sens_file_become_a_variant_and_a_rerun_resumes(scene, tmp_path):
    sens = write_sens(tmp_path / "scene0000_00.sens", list(scene.dataset.train) + list(scene.dataset.test))
    dataset = open_dataset(sens)
    backend = make_segmenter("classical")
    out = tmp_path / "labelled"
    calls = []
    summary = segment_dataset(dataset, out, backend, variant="classical", progress=lambda d, t: calls.append(d))
    n = len(dataset.train) + len(dataset.test)
    assert (summary.frames, summary.segmented) == (n, n) and calls == list(range(1, n + 1))
    assert summary.segments_mean >= 2 and summary.seconds_mean > 0
    labelled = open_dataset(out, labels="classical")
    assert labelled.name == dataset.name and len(labelled.train) == len(dataset.train)
    for frame, src in zip(labelled.train, dataset.train):
        np.testing.assert_array_equal(frame.instance, backend.segment(src.rgb, src.depth_m).instance)
        np.testing.assert_allclose(frame.T_world_cam, src.T_world_cam, atol=1e-9)
        assert frame.semantic is None                        # the classical backend gives no classes
    # a run that stopped half-way: only the frames without an instance file are segmented again
    missing = out / "labels" / "classical" / "instance" / f"{dataset.train[1].index:06d}.png"
    missing.unlink()
    again = segment_dataset(dataset, out, backend, variant="classical")
    assert again.segmented == 1 and missing.exists() and again.seconds_mean > 0
    assert not list(out.rglob(".*.tmp.png"))
    # a second variant sits beside the first
    segment_dataset(dataset, out, make_segmenter("classical", scale=50.0), variant="fine")
    assert json.loads((out / "scene.json").read_text())["label_variants"] == ["classical", "fine"]
    with pytest.raises(ValueError, match="another scene"):
        segment_dataset(open_dataset(write_sens(tmp_path / "other.sens", list(scene.dataset.train)[:2])),
                        out, backend, variant="classical")


def test_the_segment_command(scene, tmp_path):
    sens = write_sens(tmp_path / "s.sens", list(scene.dataset.train))
    run = subprocess.run([sys.executable, "-m", "clusteringsdf_core.cli", "segment", str(sens), "--out",
                          str(tmp_path / "out"), "--backend", "classical", "--param", "max_segments=8"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "labels/classical" in run.stdout and "frames segmented now" in run.stdout
    frames = open_dataset(tmp_path / "out", labels="classical").train
    assert all(int(f.instance.max()) <= 8 for f in frames)
    bad = subprocess.run([sys.executable, "-m", "clusteringsdf_core.cli", "segment", str(sens), "--out",
                          str(tmp_path / "x"), "--backend", "classical", "--param", "scale=-1"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "scale" in bad.stderr
