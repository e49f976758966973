"""The benchmark harness on a tiny procedural synthetic scene (64x48, 6 + 3 views).

A prediction that renders the GT maps must score 100; the protocols must write
results.json / results.md / figure.png with one entry per method, label variant and
scene; simulated labels must be deterministic and view-local.
"""

import json

import cv2
import numpy as np
import pytest

from clusteringsdf_core.bench.evaluate import evaluate_prediction
from clusteringsdf_core.bench.harness import run_protocol
from clusteringsdf_core.bench.protocols import PROTOCOLS, with_labels
from clusteringsdf_core.bench.methods import (Method, MeshCache, apply_overrides, get_method,
                                              method_names)
from clusteringsdf_core.bench.prediction import ScenePrediction
from clusteringsdf_core.config import ConfigError
from clusteringsdf_core.data.dataset import load_scene
from clusteringsdf_core.data.synthetic import (SyntheticSceneConfig, generate_scene,
                                               write_synthetic_scene)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    config = SyntheticSceneConfig(furniture="procedural", width=64, height=48, num_train=6,
                                  num_test=3, num_objects=3)
    write_synthetic_scene(generate_scene(config), root)
    return load_scene(root, labels=None)


def _gt_prediction() -> ScenePrediction:
    return ScenePrediction(method="gt", mesh=None, vertex_instance=None,
                           renderer=lambda frame: (frame.gt_semantic, frame.gt_instance))


def test_gt_prediction_scores_100(scene):
    metrics = evaluate_prediction(scene, _gt_prediction())
    assert metrics["pq_scene"] == pytest.approx(100.0)
    assert metrics["sq_scene"] == pytest.approx(100.0)
    assert metrics["rq_scene"] == pytest.approx(100.0)
    assert metrics["ea"] == pytest.approx(100.0)
    assert metrics["miou"] == pytest.approx(100.0)
    assert metrics["pq_frame_mean"] == pytest.approx(100.0)
    assert metrics["pq_scene_things"] == pytest.approx(100.0)
    assert metrics["num_test_frames"] == len(scene.test)
    assert metrics["eval_size"] == [512, 512]
    assert metrics["ap50_agnostic"] is None and metrics["fscore"] is None  # no mesh


def test_ids_consistent_across_views_matter_for_pq(scene):
    """Rendering each view's GT ids shifted by the view index keeps every per-frame
    segment exact but breaks the scene-level identity: PQ^scene drops, EA does not."""
    def shifted(frame):
        inst = np.where(frame.gt_instance > 0, frame.gt_instance + 100 * frame.index, 0)
        return frame.gt_semantic, inst

    metrics = evaluate_prediction(scene, ScenePrediction("shifted", None, None, renderer=shifted))
    assert metrics["ea"] == pytest.approx(100.0)
    assert metrics["pq_scene"] < 100.0


def test_with_labels_is_deterministic_and_view_local(scene):
    a = with_labels(scene, "gt", seed=3)
    b = with_labels(scene, "gt", seed=3)
    assert a.label_variant == "sim:gt" and scene.train[0].instance is None   # original untouched
    # same frames read in another order give the same labels
    for i in reversed(range(len(scene.train))):
        np.testing.assert_array_equal(a.train[i].instance, b.train[i].instance)
        np.testing.assert_array_equal(a.train[i].semantic, b.train[i].semantic)
    # perfect segmenter: each GT object is one segment per view, but its id changes across views
    ids_of: dict[int, set] = {}
    for frame in a.train:
        for obj in np.unique(frame.gt_instance[frame.instance > 0]):
            machine = np.unique(frame.instance[frame.gt_instance == obj])
            assert len(machine) == 1
            ids_of.setdefault(int(obj), set()).add(int(machine[0]))
    assert any(len(ids) > 1 for ids in ids_of.values())
    other_seed = with_labels(scene, "gt", seed=4)
    assert any(not np.array_equal(x.instance, y.instance) for x, y in zip(a.train, other_seed.train))


def test_registry_and_overrides():
    assert {"felzenszwalb", "hdbscan", "naive_fusion"} <= set(method_names())
    method = get_method("naive_fusion")
    assert "depth" in method.needs
    with pytest.raises(KeyError, match="registered"):
        get_method("no_such_method")
    from clusteringsdf_core.bench.baselines import FelzenszwalbConfig

    config = apply_overrides(FelzenszwalbConfig(), {"k": 3.0, "tsdf": {"voxel_size_m": 0.05}})
    assert config.k == 3.0 and config.tsdf.voxel_size_m == 0.05
    with pytest.raises(ConfigError):
        apply_overrides(FelzenszwalbConfig(), {"no_such_field": 1})


def test_mesh_cache_shared_across_label_variants(scene):
    from clusteringsdf_core.recon.tsdf import TSDFConfig

    cache = MeshCache()
    tsdf = TSDFConfig(voxel_size_m=0.06)
    mesh_a, _, reused_a = cache.get(with_labels(scene, "0%"), tsdf)
    mesh_b, _, reused_b = cache.get(with_labels(scene, "70%"), tsdf)
    assert not reused_a and reused_b and mesh_a is mesh_b


def test_baselines_protocol_writes_outputs(scene, tmp_path):
    document = run_protocol("baselines", ["naive_fusion", "felzenszwalb"], [scene], tmp_path,
                            seed=0, fail_fast=True, geometry_points=20_000,
                            method_options={m: {"config": {"tsdf": {"voxel_size_m": 0.05}}}
                                            for m in ("naive_fusion", "felzenszwalb")},
                            report=lambda line: None)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["format"] == document["format"]
    assert "numpy" in results["versions"]
    proto = results["protocols"]["baselines"]
    assert list(proto["variants"]) == ["realistic"]
    assert scene.name in proto["scenes"] and proto["scenes"][scene.name]["num_test"] == 3
    for method in ("naive_fusion", "felzenszwalb"):
        entry = proto["variants"]["realistic"]["methods"][method]["scenes"][scene.name]
        assert "error" not in entry
        for key in ("pq_scene", "sq_scene", "rq_scene", "miou", "ea", "pq_frame_mean",
                    "fscore", "chamfer_m", "seconds"):
            assert isinstance(entry[key], float), key
        assert 0.0 <= entry["pq_scene"] <= 100.0 and entry["seconds"] > 0
        assert entry["prediction"]["has_mesh"]
    methods = proto["variants"]["realistic"]["methods"]
    naive, felz = (methods[m]["scenes"][scene.name] for m in ("naive_fusion", "felzenszwalb"))
    # one TSDF mesh shared: same geometry, and the second method is charged its build time
    assert naive["fscore"] == felz["fscore"]
    assert naive["reused_s"] == 0.0 and felz["reused_s"] > 0.0
    markdown = (tmp_path / "results.md").read_text()
    assert "| naive_fusion |" in markdown and "| felzenszwalb |" in markdown
    assert "PQ^scene" in markdown and "realistic" in markdown
    figure = cv2.imread(str(tmp_path / "figure.png"))
    assert figure is not None and figure.shape[0] > 48 and figure.shape[1] > 4 * 64


def test_table_a_one_entry_per_masking_level(scene, tmp_path):
    calls = []

    def run(dataset, options):
        calls.append(dataset.label_variant)
        return _gt_prediction()

    oracle = Method("oracle", "renders the GT maps", run, needs=("instance_labels",))
    run_protocol("table_a", [oracle], [scene], tmp_path, seed=0, fail_fast=True,
                 report=lambda line: None)
    proto = json.loads((tmp_path / "results.json").read_text())["protocols"]["table_a"]
    levels = PROTOCOLS["table_a"].variants
    assert tuple(proto["variants"]) == levels == ("0%", "10%", "30%", "50%", "70%")
    assert calls == [f"sim:{v}" for v in levels]
    for level in levels:
        entry = proto["variants"][level]["methods"]["oracle"]["scenes"][scene.name]
        assert entry["pq_scene"] == pytest.approx(100.0)
        assert proto["variants"][level]["label_config"]["mask_ratio"] == pytest.approx(
            float(level.rstrip("%")) / 100.0)
    markdown = (tmp_path / "results.md").read_text()
    assert "| method | 0% | 10% | 30% | 50% | 70% |" in markdown
    assert "| oracle | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 |" in markdown


def test_interrupted_benchmark_keeps_the_runs_it_finished(scene, tmp_path):
    calls = []

    def run(dataset, options):
        calls.append(dataset.label_variant)
        if len(calls) == 3:
            raise KeyboardInterrupt   # Ctrl-C during the third masking level
        return _gt_prediction()

    oracle = Method("oracle", "renders the GT maps", run, needs=("instance_labels",))
    with pytest.raises(KeyboardInterrupt):
        run_protocol("table_a", [oracle], [scene], tmp_path, seed=0, report=lambda line: None)
    proto = json.loads((tmp_path / "results.json").read_text())["protocols"]["table_a"]
    assert proto["complete"] is False and (proto["runs_done"], proto["runs_total"]) == (2, 5)
    done = [v for v, block in proto["variants"].items() if block["methods"]["oracle"]["scenes"]]
    assert done == ["0%", "10%"]
    assert proto["variants"]["10%"]["methods"]["oracle"]["mean"]["pq_scene"] == pytest.approx(100.0)
    assert "**Partial**: 2 of 5 runs done" in (tmp_path / "results.md").read_text()
    # A complete run replaces the partial entry.
    run_protocol("table_a", [Method("oracle", "GT", lambda d, o: _gt_prediction())], [scene], tmp_path,
                 seed=0, report=lambda line: None)
    proto = json.loads((tmp_path / "results.json").read_text())["protocols"]["table_a"]
    assert proto["complete"] is True and proto["runs_done"] == 5
    assert "Partial" not in (tmp_path / "results.md").read_text()


def test_a_subset_of_label_variants(scene, tmp_path):
    oracle = Method("oracle", "renders the GT maps", lambda d, o: _gt_prediction(), needs=("instance_labels",))
    document = run_protocol("table_a", [oracle], [scene], tmp_path, seed=0, report=lambda line: None,
                            label_variants=["70%", "0%"])
    assert list(document["protocols"]["table_a"]["variants"]) == ["0%", "70%"]
    with pytest.raises(ValueError, match="no label variant"):
        run_protocol("table_a", [oracle], [scene], tmp_path, label_variants=["realistic"])


def test_several_label_seeds_run_each_scene_once_per_seed(scene, tmp_path):
    seen = []

    def run(dataset, options):
        seen.append((options["seed"], dataset.train[0].instance.copy()))
        # A method whose score depends on the seed: the GT for seed 0, nothing for seed 3.
        return _gt_prediction() if options["seed"] == 0 else ScenePrediction(
            method="empty", mesh=None, vertex_instance=None,
            renderer=lambda frame: (np.zeros_like(frame.gt_semantic), np.zeros_like(frame.gt_instance)))

    oracle = Method("oracle", "seed-dependent", run, needs=("instance_labels",))
    document = run_protocol("table_a", [oracle], [scene], tmp_path, seed=[0, 3], fail_fast=True,
                            report=lambda line: None, label_variants=["0%"])
    proto = document["protocols"]["table_a"]
    assert proto["label_seeds"] == [0, 3] and proto["runs_total"] == 2
    assert [s for s, _ in seen] == [0, 3]
    assert not np.array_equal(seen[0][1], seen[1][1])      # the ids are re-drawn per seed
    method = proto["variants"]["0%"]["methods"]["oracle"]
    assert set(method["scenes"]) == {f"{scene.name}/labels0", f"{scene.name}/labels3"}
    runs = [e["pq_scene"] for e in method["scenes"].values()]
    assert runs[0] == pytest.approx(100.0) and runs[1] < 50.0
    assert method["mean"]["num_scenes"] == 2
    assert method["mean"]["pq_scene"] == pytest.approx(np.mean(runs))
    assert method["mean"]["pq_scene_std"] == pytest.approx(np.std(runs))
    markdown = (tmp_path / "results.md").read_text()
    assert "label seed(s) 0, 3" in markdown and "### PQ^scene per run" in markdown
    with pytest.raises(ValueError, match="distinct"):
        run_protocol("table_a", [oracle], [scene], tmp_path, seed=[1, 1], label_variants=["0%"])


def test_failing_method_is_recorded(scene, tmp_path):
    def broken(dataset, options):
        raise RuntimeError("boom")

    document = run_protocol("baselines", [Method("broken", "raises", broken)], [scene], tmp_path,
                            report=lambda line: None)
    entry = document["protocols"]["baselines"]["variants"]["realistic"]["methods"]["broken"][
        "scenes"][scene.name]
    assert "boom" in entry["error"]
    assert "boom" in (tmp_path / "results.md").read_text()


def test_cli_bench_on_a_scene_folder(scene, tmp_path, capsys):
    from clusteringsdf_core.cli import main

    out = tmp_path / "bench"
    code = main(["bench", "--methods", "naive_fusion", "--protocol", "baselines", "--scene",
                 str(scene.root), "--out", str(out), "--geometry-points", "5000",
                 "--set", "naive_fusion.tsdf.voxel_size_m=0.05", "--figure-views", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out / "results.md") in printed and str(out / "figure.png") in printed
    results = json.loads((out / "results.json").read_text())
    entry = results["protocols"]["baselines"]["variants"]["realistic"]["methods"]["naive_fusion"]
    assert entry["scenes"][scene.name]["prediction"]["config"]["tsdf"]["voxel_size_m"] == 0.05


def test_synthetic_scenes_reuse_a_scene_written_before_the_layout_option(tmp_path):
    from clusteringsdf_core.bench.scenes import synthetic_scenes

    small = dict(furniture="procedural", width=48, height=36, num_train=3, num_test=2, num_objects=3)
    lines = []
    first = synthetic_scenes([0], tmp_path, report=lines.append, **small)
    assert first[0].name == "synthetic_seed0" and first[0].meta["config"]["layout"] == "apart"
    meta_path = tmp_path / "seed_0" / "scene.json"
    document = json.loads(meta_path.read_text())
    del document["meta"]["config"]["layout"]
    meta_path.write_text(json.dumps(document))
    lines.clear()
    synthetic_scenes([0], tmp_path, report=lines.append, **small)
    assert lines == [f"reusing scene seed 0 in {tmp_path / 'seed_0'}"]


def test_cli_bench_runs_every_seed_in_each_layout(tmp_path, capsys):
    from clusteringsdf_core.cli import main

    out = tmp_path / "bench"
    scene_args = ["--seeds", "0", "--furniture", "procedural", "--width", "48", "--height", "36",
                  "--num-train", "4", "--num-test", "2", "--num-objects", "4", "--out", str(out)]
    code = main(["bench", "--methods", "naive_fusion", "--layout", "apart,touching", *scene_args,
                 "--geometry-points", "2000", "--set", "naive_fusion.tsdf.voxel_size_m=0.05",
                 "--figure-views", "0"])
    assert code == 0
    assert sorted(p.name for p in (out / "scenes").iterdir()) == ["seed_0", "seed_0_touching"]
    results = json.loads((out / "results.json").read_text())
    proto = results["protocols"]["baselines"]
    assert list(proto["scenes"]) == ["synthetic_seed0", "synthetic_seed0_touching"]
    assert proto["scenes"]["synthetic_seed0_touching"]["config"]["layout"] == "touching"
    runs = proto["variants"]["realistic"]["methods"]["naive_fusion"]["scenes"]
    assert set(runs) == {"synthetic_seed0", "synthetic_seed0_touching"}
    assert "synthetic_seed0_touching" in (out / "results.md").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit, match="unknown layout"):
        main(["bench", "--methods", "naive_fusion", "--layout", "stacked", *scene_args])


def test_machine_protocol_runs_on_the_scenes_own_labels(tmp_path):
    """`--protocol machine --labels classical`: the methods see the labels that
    `clusteringsdf segment` wrote beside the GT, and are scored against the GT."""
    from clusteringsdf_core.segment.backends import make_segmenter
    from clusteringsdf_core.segment.dataset_labels import segment_dataset

    root = tmp_path / "scene"
    write_synthetic_scene(generate_scene(SyntheticSceneConfig(furniture="procedural", width=64, height=48,
                                                              num_train=6, num_test=3, num_objects=3)), root)
    scene = load_scene(root, labels=None)
    backend = make_segmenter("classical")
    segment_dataset(scene, root, backend, variant="classical")
    seen = []

    def run(dataset, options):
        seen.extend((f.instance, backend.segment(f.rgb, f.depth_m).instance) for f in dataset.train)
        return _gt_prediction()

    recorder = Method("recorder", "keeps the labels it trained on", run, needs=("instance_labels",))
    document = run_protocol("machine", [recorder, "naive_fusion"], [scene], tmp_path / "bench", fail_fast=True,
                            label_variants=["classical"], geometry_points=2000, report=lambda line: None)
    assert len(seen) == len(scene.train) and all(np.array_equal(a, b) for a, b in seen)
    variant = document["protocols"]["machine"]["variants"]["classical"]
    assert variant["label_config"] == {"scene_variant": "classical"}
    assert variant["methods"]["recorder"]["scenes"][scene.name]["pq_scene"] == pytest.approx(100.0)
    assert 0.0 <= variant["methods"]["naive_fusion"]["scenes"][scene.name]["pq_scene"] <= 100.0
    with pytest.raises(ValueError, match="own machine labels"):
        run_protocol("machine", [recorder], [scene], tmp_path / "bench")
    from clusteringsdf_core.cli import main
    assert main(["bench", "--protocol", "machine", "--scene", str(root), "--labels", "classical",
                 "--methods", "hdbscan", "--out", str(tmp_path / "cli"), "--figure-views", "0"]) == 0
    results = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert "pq_scene" in results["protocols"]["machine"]["variants"]["classical"]["methods"]["hdbscan"][
        "scenes"][scene.name]
    with pytest.raises(ValueError, match="no label variant 'detector'"):
        run_protocol("machine", [recorder], [scene], tmp_path / "bench", label_variants=["detector"])
