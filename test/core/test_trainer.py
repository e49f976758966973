"""The trainer: both modes run, gradients reach every channel, checkpoints resume exactly,
rays cover every label, key-frame rules, online frames."""

import numpy as np
import pytest
import torch

from clusteringsdf_core.config import Config
from clusteringsdf_core.training.keyframes import KeyframeBuffer, KeyframeSampler, select_keyframes
from clusteringsdf_core.presets import preset
from clusteringsdf_core.render.rays import ray_box
from clusteringsdf_core.training.sampling import LabelIndex, label_comprehensive_pixels
from clusteringsdf_core.training import Trainer, as_floats


def tiny_config(**overrides) -> Config:
    base = preset("cpu").merged({
        "model": {"num_channels": 6, "grid_levels": 2, "grid_max_resolution": 24, "sdf_hidden": [32],
                  "feature_dim": 8, "color_hidden": [16]},
        "sampling": {"rays_per_batch": 128}, "loss": {"eikonal_points": 64},
        "data": {"image_width": 48, "image_height": 36},
        "trainer": {"iterations": 2, "progress_bar": False, "device": "cpu"},
    })
    return base.merged(overrides) if overrides else base


@pytest.mark.parametrize("parametrization", ["direct", "shared_geometry"])
def test_two_steps_in_instance_mode(tiny_dataset, parametrization, torch_device):
    # every term of the paper from the first step (the presets start L_onehot late)
    trainer = Trainer.from_dataset(tiny_dataset, tiny_config(**{"model.sdf_parametrization": parametrization,
                                                                "loss.onehot_start_fraction": 0.0,
                                                                "trainer.device": torch_device}))
    assert all(p.device.type == torch_device for p in trainer.model.parameters())
    before = [p.detach().clone() for p in trainer.model.parameters()]
    losses = trainer.fit()
    assert trainer.iteration == 2
    assert {"rgb", "sdf", "eikonal", "diff", "reg", "onehot", "fg_bg"} <= set(losses)
    assert all(np.isfinite(v) for v in losses.values())
    changed = [not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters())]
    assert sum(changed) >= len(changed) - 1   # the untouched one may be an unused bias


def test_onehot_waits_for_its_start_fraction(tiny_dataset):
    trainer = Trainer.from_dataset(tiny_dataset, tiny_config(**{"trainer.iterations": 4,
                                                                "loss.onehot_start_fraction": 0.5}))
    steps = [trainer.step() for _ in range(4)]
    assert ["onehot" in s for s in steps] == [False, False, True, True]
    assert all("diff" in s for s in steps)


def test_two_steps_in_semantic_mode(tiny_dataset, torch_device):
    config = tiny_config(**{"trainer.mode": "semantic", "model.num_channels": 22, "trainer.device": torch_device})
    trainer = Trainer.from_dataset(tiny_dataset, config)
    losses = trainer.fit()
    assert "sem" in losses and np.isfinite(losses["total"])
    with pytest.raises(ValueError, match="one channel per class"):
        Trainer.from_dataset(tiny_dataset, tiny_config(**{"trainer.mode": "semantic"}))


@pytest.mark.parametrize("parametrization", ["direct", "shared_geometry"])
def test_gradients_reach_every_channel(tiny_dataset, parametrization):
    trainer = Trainer.from_dataset(tiny_dataset, tiny_config(**{"model.sdf_parametrization": parametrization}))
    trainer.step()
    last = trainer.model.sdf_net.mlp[-1]
    first_channel = 1 if parametrization == "shared_geometry" else 0
    rows = last.weight.grad[first_channel:first_channel + trainer.model.num_channels]
    assert (rows.abs().sum(dim=1) > 0).all(), "a channel received no gradient"


def test_checkpoint_resume_gives_identical_next_steps(tiny_dataset, tmp_path, torch_device):
    trainer = Trainer.from_dataset(tiny_dataset, tiny_config(**{"trainer.iterations": 10,
                                                                "trainer.device": torch_device}))
    trainer.fit(iterations=2)
    path = trainer.save_checkpoint(tmp_path / "ckpt.pt")
    expected = [as_floats(trainer.step()) for _ in range(2)]
    resumed = Trainer.load_checkpoint(path, dataset=tiny_dataset)
    assert resumed.iteration == 2
    got = [as_floats(resumed.step()) for _ in range(2)]
    if torch_device == "cpu":
        assert got == expected
        for a, b in zip(trainer.model.parameters(), resumed.model.parameters()):
            assert torch.equal(a, b)
    else:   # CUDA's atomic adds (grid_sample, index_add backward) sum in any order
        assert got == [pytest.approx(e, rel=1e-3, abs=1e-5) for e in expected]
        for a, b in zip(trainer.model.parameters(), resumed.model.parameters()):
            assert torch.allclose(a, b, atol=1e-4)


def test_online_checkpoint_resumes_with_its_key_frames(tiny_dataset, tmp_path):
    # An online trainer's views exist only in memory: the checkpoint takes them along
    # (keyframes/ beside it), and a trainer loaded without any dataset steps exactly as
    # the saved one.
    config = tiny_config(**{"trainer.iterations": 10, "keyframes.min_translation_m": 0.0,
                            "keyframes.min_rotation_deg": 0.0})
    trainer = Trainer(config, tiny_dataset.bounds, classes=tiny_dataset.classes)
    frames = list(tiny_dataset.train)
    for frame in frames[:3]:
        assert trainer.add_frame(frame)
    trainer.fit(iterations=2)
    path = trainer.save_checkpoint(tmp_path / "map" / "ckpt.pt")
    stored = sorted(f.stem for f in (tmp_path / "map" / "keyframes").glob("*.pt"))
    assert stored == sorted(v.uid for v in trainer.views)
    expected = [as_floats(trainer.step()) for _ in range(2)]
    resumed = Trainer.load_checkpoint(path)
    assert [v.uid for v in resumed.views] == [v.uid for v in trainer.views]
    for a, b in zip(trainer.views, resumed.views):
        for name in ("rgb", "K", "T_world_cam", "instance", "valid", "depth_m"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert torch.equal(a.label_index.group, b.label_index.group)
    got = [as_floats(resumed.step()) for _ in range(2)]
    assert got == expected
    # the resumed buffer goes on as the saved one would: the next frame is kept, and a
    # second save writes only its view
    assert resumed.add_frame(frames[3]) and len(resumed.views) == 4
    before = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "map" / "keyframes").glob("*.pt")}
    resumed.save_checkpoint(tmp_path / "map" / "ckpt2.pt")
    after = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "map" / "keyframes").glob("*.pt")}
    assert len(after) == 4 and all(after[n] == t for n, t in before.items())


def test_online_checkpoint_without_its_key_frames_is_refused(tiny_dataset, tmp_path):
    trainer = Trainer(tiny_config(), tiny_dataset.bounds, classes=tiny_dataset.classes)
    trainer.add_frame(tiny_dataset.train[0])
    path = trainer.save_checkpoint(tmp_path / "ckpt.pt")
    for f in (tmp_path / "keyframes").glob("*.pt"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match="key frame"):
        Trainer.load_checkpoint(path)


def test_sampler_covers_every_label():
    labels = torch.tensor([0] * 500 + [3] * 2 + [7] * 40 + [9] * 1 + [-1] * 10)
    index = LabelIndex(labels)
    g = torch.Generator().manual_seed(0)
    for n in (3, 64, 1024):
        pix = label_comprehensive_pixels(index, n, generator=g)
        assert set(labels[pix].tolist()) == {0, 3, 7, 9, -1}
        assert len(pix) == max(n, index.num_labels)
    pix = label_comprehensive_pixels(index, 100, per_label_share=0.1, generator=g)
    for label in (0, 3, 7, 9, -1):
        assert (labels[pix] == label).sum() >= 10   # ceil(0.1 * 100) rays for every label


def test_keyframe_selection_and_empty_frame_replacement():
    keys, empty = select_keyframes([3, 0, 7, 7, 1, 0, 2, 5, 4, 6], top_fraction=0.2)
    assert keys.tolist() == [2, 3] and empty.tolist() == [1, 5]
    sampler = KeyframeSampler([3, 0, 7, 7, 1, 0, 2, 5, 4, 6], Config().keyframes)
    rng = np.random.default_rng(0)
    draws = {sampler.draw(rng) for _ in range(500)}
    assert 1 not in draws and 5 not in draws and {2, 3} <= draws
    swapping = KeyframeSampler([1, 1, 1, 9], Config().keyframes.replace(swap_probability=1.0))
    assert {swapping.draw(rng) for _ in range(50)} == {3}


def _pose(x: float, yaw_deg: float = 0.0) -> np.ndarray:
    T = np.eye(4)
    a = np.radians(yaw_deg)
    T[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    T[0, 3] = x
    return T


def test_keyframe_buffer_policies():
    cfg = Config().keyframes.replace(buffer_size=3, min_translation_m=0.1, min_rotation_deg=5.0)
    buf = KeyframeBuffer(cfg)
    assert buf.offer("a", _pose(0.0), 2) == (True, None)
    assert buf.offer("b", _pose(0.01), 5) == (False, None)          # barely moved
    assert buf.offer("b", _pose(0.0, 10), 5)[0]                      # turned enough
    assert buf.offer("c", _pose(0.5), 4)[0]
    assert buf.offer("d", _pose(1.0), 3) == (True, "a")              # fewest labels leaves
    assert buf.offer("e", _pose(2.0), 1) == (False, None)            # fewer labels than all kept
    oldest = KeyframeBuffer(cfg.replace(eviction="oldest"))
    for i, name in enumerate("abcd"):
        accepted, evicted = oldest.offer(name, _pose(float(i)), 1)
    assert evicted == "a" and oldest.items() == ["b", "c", "d"]


def test_online_frames_and_bad_input(tiny_dataset, torch_device):
    config = tiny_config(**{"keyframes.min_translation_m": 0.0, "keyframes.min_rotation_deg": 0.0,
                            "trainer.device": torch_device})
    trainer = Trainer(config, tiny_dataset.bounds, classes=tiny_dataset.classes)
    frames = list(tiny_dataset.train)
    assert trainer.add_frame(frames[0]) and trainer.add_frame(frames[1])
    trainer.step()
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    bad = frames[2].with_labels(instance=frames[2].instance[:-1])
    with pytest.raises(ValueError, match="instance"):
        trainer.add_frame(bad)
    nan_pose = frames[2].with_labels()
    nan_pose.T_world_cam = np.full((4, 4), np.nan)
    with pytest.raises(ValueError, match="NaN"):
        trainer.add_frame(nan_pose)
    assert len(trainer.views) == 2
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, state[k])
    trainer.step()
    assert trainer.iteration == 2


def test_live_update_of_loss_weights_and_learning_rate(tiny_dataset):
    trainer = Trainer.from_dataset(tiny_dataset, tiny_config(**{"trainer.iterations": 10}))
    trainer.step()
    state = {k: v.clone() for k, v in trainer.optimizer.state_dict()["state"][0].items()}
    new = trainer.config.merged({"loss.lambda_diff": 3.0, "trainer.lr": 1.0e-4, "model.num_channels": 9})
    trainer.update_live(new)
    assert trainer.config.loss.lambda_diff == 3.0 and trainer.model.config.loss.lambda_diff == 3.0
    assert trainer.config.model.num_channels == 6          # structural changes are not live
    lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    factor = trainer.lr_factor
    assert lrs["networks"] == pytest.approx(1.0e-4 * factor)
    assert lrs["grid"] == pytest.approx(1.0e-4 * trainer.config.trainer.grid_lr_factor * factor)
    assert torch.equal(trainer.optimizer.state_dict()["state"][0]["exp_avg"], state["exp_avg"])
    trainer.step()
    assert trainer.iteration == 2


def test_channel_seeds_land_on_observed_foreground(tiny_dataset):
    config = tiny_config(**{"model.init_seeds_observed": 0.6})       # 0.6 * 5 object channels = 3
    trainer = Trainer.from_dataset(tiny_dataset, config)
    random_centres = trainer.model.sdf_net.sphere_centres.clone()
    trainer.step()
    centres = trainer.model.sdf_net.sphere_centres
    moved = [k for k in range(1, 6) if not torch.equal(centres[k], random_centres[k])]
    assert moved == [1, 2, 3]
    assert torch.equal(centres[4:], random_centres[4:]) and torch.equal(centres[0], random_centres[0])
    # Each placed centre is a back-projected foreground pixel of some view (a segment's medoid).
    foreground = []
    for f in tiny_dataset.train:
        v, u = np.nonzero((f.instance > 0) & (f.depth_m > 0))
        K = f.intrinsics
        cam = np.stack([(u + 0.5 - K.cx) / K.fx, (v + 0.5 - K.cy) / K.fy, np.ones_like(u, float)], -1)
        cam *= f.depth_m[v, u][:, None]
        foreground.append(cam @ f.T_world_cam[:3, :3].T + f.T_world_cam[:3, 3])
    foreground = trainer.box.to_normalised(np.concatenate(foreground))
    for k in moved:
        gap = np.linalg.norm(foreground - centres[k].numpy(), axis=1).min()
        assert gap < 1e-3, (k, gap)
    # Farthest-point sampling spreads them: no two share a spot.
    d = torch.cdist(centres[1:4], centres[1:4])
    assert float(d[~torch.eye(3, dtype=torch.bool)].min()) > 0.05
    # Placed once: later steps (and resumed trainers) keep them.
    placed = centres.clone()
    trainer.step()
    assert torch.equal(trainer.model.sdf_net.sphere_centres, placed)


def test_late_channel_seeds_take_free_channels_beyond_the_first_share():
    """The share limits the first placement; later segments take the free channel that
    wins the fewest labelled rays, until every object channel is placed."""
    from clusteringsdf_core.training.seeding import ChannelSeeds

    config = tiny_config(**{"model.init_seeds_observed": 0.4, "model.init_seed_spacing_m": 0.1,
                            "model.init_late_seeds": "spacing"}).model
    seeds = ChannelSeeds(config)                  # 6 channels: 5 object channels, a share of 2
    centres = torch.zeros(6, 3)
    gen = torch.Generator().manual_seed(0)
    first = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.05]])     # room for two
    seeds.placed = True
    assert seeds.extend(centres, first, 1.0, gen) == 2 and seeds.channels == [1, 2]
    assert not seeds.full
    usage = torch.tensor([0.0, 9.0, 9.0, 5.0, 0.0, 0.0])    # channel 3 already wins rays
    assert seeds.extend(centres, torch.tensor([[0.0, 0.0, 0.02]]), 1.0, gen, usage) == 0   # within the spacing
    late = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [3.0, 3.0, 3.0]])
    assert seeds.extend(centres, late, 1.0, gen, usage) == 3
    assert seeds.channels[2:] == [4, 5, 3] and seeds.full
    for k, i in zip(seeds.channels[2:], (3, 1, 2)):              # farthest first
        assert torch.equal(centres[k], late[i]), k
    restored = ChannelSeeds(config)
    restored.load(seeds.state())
    assert restored.channels == seeds.channels and restored.placed
    legacy = ChannelSeeds(config)
    legacy.load([True, 2])                        # a checkpoint from before the channel list
    assert legacy.channels == [1, 2]


def test_late_channel_seeds_by_policy_share_and_unowned():
    """share: later segments only while the first share lasts, channels in order;
    unowned: only where the background channel owns the segment's point."""
    from clusteringsdf_core.training.seeding import ChannelSeeds

    late = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]])
    usage = torch.tensor([0.0, 9.0, 9.0, 5.0, 0.0, 0.0])
    results = {}
    for mode in ("share", "spacing", "unowned"):
        config = tiny_config(**{"model.init_seeds_observed": 0.4, "model.init_seed_spacing_m": 0.1,
                                "model.init_late_seeds": mode}).model
        seeds, centres = ChannelSeeds(config), torch.zeros(6, 3)
        seeds.placed = True
        gen = torch.Generator().manual_seed(0)
        assert seeds.extend(centres, torch.tensor([[0.0, 0.0, 0.0]]), 1.0, gen) == 1   # one of a share of 2
        owned_by = torch.tensor([0, 2, 0])          # the second point's surface is held by channel 2
        seeds.extend(centres, late, 1.0, gen, usage, owner=lambda p: owned_by[[int(
            (late - q).norm(dim=-1).argmin()) for q in p]])
        results[mode] = seeds.channels, centres
    assert results["share"][0] == [1, 2]           # the share's last channel, the next index
    assert results["spacing"][0] == [1, 4, 5, 3]   # every point, free channels by least usage
    assert results["unowned"][0] == [1, 4, 5]      # not the point channel 2 holds
    placed = results["unowned"][1][[4, 5]]
    assert {tuple(c.tolist()) for c in placed} == {tuple(late[0].tolist()), tuple(late[2].tolist())}


def test_channel_seeds_stay_random_without_the_option(tiny_dataset):
    trainer = Trainer.from_dataset(tiny_dataset, tiny_config(**{"model.init_seeds_observed": 0.0}))
    before = trainer.model.sdf_net.sphere_centres.clone()
    trainer.step()
    assert torch.equal(trainer.model.sdf_net.sphere_centres, before)


def test_reg_weight_follows_the_channel_count(tiny_dataset):
    """loss.reg_reference_channels: lambda_reg is meant for that many channels (6 here)."""
    def first_reg(ref):
        trainer = Trainer.from_dataset(tiny_dataset, tiny_config(**{"loss.reg_reference_channels": ref}))
        return float(trainer.step()["reg"])

    unscaled, same, double = first_reg(0), first_reg(6), first_reg(12)
    assert same == pytest.approx(unscaled)
    assert double == pytest.approx(unscaled / 4)     # (6 / 12)^2


def test_online_frames_add_channel_centres_where_new_foreground_appears(tiny_dataset):
    config = tiny_config(**{"model.init_seeds_observed": 1.0, "model.init_seed_spacing_m": 0.4,
                            "keyframes.min_translation_m": 0.0, "keyframes.min_rotation_deg": 0.0})
    trainer = Trainer(config, tiny_dataset.bounds, classes=tiny_dataset.classes)
    frames = list(tiny_dataset.train)
    trainer.add_frame(frames[0])
    trainer.step()
    first = trainer.seeds.count
    assert first >= 1
    for f in frames[1:]:
        trainer.add_frame(f)
    placed = trainer.model.sdf_net.sphere_centres[trainer.seeds.channels]
    pts = trainer.foreground_points(trainer.views, max_points_per_view=10_000)
    gap = torch.cdist(pts, placed).min(dim=1).values.max() * trainer.box.scale
    # Every segment seen has a centre within the spacing, unless the budget ran out.
    assert trainer.seeds.count == 5 or gap <= 0.4 + 1e-4, (trainer.seeds.count, float(gap))
    assert trainer.seeds.count >= first
    # Centres are never closer than the spacing.
    if len(placed) > 1:
        d = torch.cdist(placed, placed) * trainer.box.scale
        assert float(d[~torch.eye(len(placed), dtype=torch.bool)].min()) > 0.4


def test_rays_end_at_render_far_m(tiny_dataset):
    """render.far_m bounds the samples of every ray, whatever the map's bounds."""
    trainer = Trainer.from_dataset(tiny_dataset, tiny_config(**{"render.far_m": 0.6, "render.sampler": "uniform"}))
    view = trainer.views[0]
    _, origins, dirs, _ = trainer.rays(view, torch.arange(0, view.width * view.height, 7))
    with torch.no_grad():
        out = trainer.model.render(origins, dirs, train=False)
    assert float(out["t"].max()) * trainer.box.scale <= 0.6 + 1e-4
    far = Trainer.from_dataset(tiny_dataset, tiny_config(**{"render.sampler": "uniform"}))
    with torch.no_grad():
        assert float(far.model.render(origins, dirs, train=False)["t"].max()) * far.box.scale > 1.0


def test_label_comprehensive_false_draws_rays_uniformly(tiny_dataset, monkeypatch):
    import clusteringsdf_core.training.trainer as trainer_module

    def refuse(*args, **kwargs):
        raise AssertionError("label-comprehensive sampling used")

    monkeypatch.setattr(trainer_module, "label_comprehensive_pixels", refuse)
    trainer = Trainer.from_dataset(tiny_dataset, tiny_config(**{"sampling.label_comprehensive": False}))
    assert np.isfinite(float(trainer.step()["total"]))
    with pytest.raises(AssertionError, match="label-comprehensive"):
        Trainer.from_dataset(tiny_dataset, tiny_config()).step()


def test_class_votes_gather_during_training_and_survive_a_checkpoint(tiny_dataset, tmp_path):
    trainer = Trainer.from_dataset(tiny_dataset, tiny_config(**{"trainer.iterations": 3}))
    assert trainer.config.extract.split_channels and trainer.class_votes is not None
    trainer.fit()
    assert len(trainer.class_votes) > 0
    resumed = Trainer.load_checkpoint(trainer.save_checkpoint(tmp_path / "c.pt"), dataset=tiny_dataset)
    assert torch.equal(resumed.class_votes.keys, trainer.class_votes.keys)
    assert torch.equal(trainer.snapshot().class_votes.counts, trainer.class_votes.counts)
    off = Trainer.from_dataset(tiny_dataset, tiny_config(**{"extract.split_channels": False}))
    assert off.class_votes is None and off.snapshot().class_votes is None


def test_views_without_instance_labels_rank_by_their_classes(tiny_dataset):
    """Semantic mode on a segmenter that gives classes only: key frames still rank by
    what the views show (their classes), not all as empty."""
    trainer = Trainer.from_dataset(tiny_dataset, tiny_config())
    view = trainer.views[0]
    assert view.num_labels > 0
    classes_only = type(view)(**{**{f: getattr(view, f) for f in view.__dataclass_fields__},
                                 "instance": torch.zeros_like(view.instance)})
    expected = int(torch.unique(view.semantic[view.valid & (view.semantic > 0)]).numel())
    assert expected > 0 and classes_only.num_labels == expected


@pytest.mark.parametrize("method", ["finite_difference", "autograd_scene"])
def test_eikonal_gradients_of_a_render_are_those_of_its_points(tiny_dataset, method):
    """The finite-difference probes share the render's one network call; the gradients are
    those of the points the eikonal term is meant to see (random samples, then the box's)."""
    trainer = Trainer.from_dataset(tiny_dataset, tiny_config(**{"loss.eikonal_method": method}))
    model, view = trainer.model, trainer.views[0]
    pixels, origins, dirs, depth_t = trainer.rays(view, torch.arange(0, 200))
    extra = trainer.random_points(64)
    out = model.render(origins, dirs, depth_t=depth_t, train=True, eikonal_points=extra,
                       generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)                    # the same draws, made by hand
    origins_n = model.box.to_normalised(origins)
    near, far = ray_box(origins_n, dirs, model.domain_lo, model.domain_hi,
                        model.config.render.near_m / model.box.scale, model.config.render.far_m / model.box.scale)
    t = model.sample_t(origins_n, dirs, near, far, depth_t, train=True, generator=g)
    flat = (origins_n[:, None, :] + dirs[:, None, :] * t[..., None]).reshape(-1, 3)
    points = model._eikonal_samples(flat, extra, g)
    expected = model.sdf_gradient(points, method=method, step=model.config.loss.finite_difference_step)
    assert out["grad"].shape == (points.shape[0], model.num_channels, 3)
    assert torch.allclose(out["grad"], expected, atol=1e-5)


def test_per_channel_gradients_in_forward_mode_match_one_reverse_pass_per_channel(tiny_dataset):
    config = preset("paper").merged({"model": {"num_channels": 5, "sdf_hidden": [32, 32], "grid_levels": 4},
                                     "trainer": {"device": "cpu"}})
    trainer = Trainer(config, tiny_dataset.bounds, classes=tiny_dataset.classes)
    model = trainer.model
    x = torch.rand(50, 3, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.6
    got = model.sdf_gradient(x, method="autograd_per_channel", step=1e-3)
    xr = x.clone().requires_grad_(True)
    sdf = model.sdf_net.sdf(xr)
    expected = torch.stack([torch.autograd.grad(sdf[:, k].sum(), xr, retain_graph=True)[0] for k in range(5)], 1)
    assert torch.allclose(got, expected, atol=1e-5)
    # differentiable: the eikonal loss reaches the network's weights through the tangents
    ((got.norm(dim=-1) - 1) ** 2).mean().backward()
    reached = [p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.sdf_net.parameters()]
    assert sum(reached) == len(reached) - 1          # all but the output bias, which no gradient depends on


def test_an_offline_run_resumes_from_its_last_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    # A run that dies after its periodic checkpoint at iteration 2 (before the one at
    # the end), resumed, ends where an uninterrupted run ends.
    import json

    from clusteringsdf_core import pipeline
    from clusteringsdf_core.cli import main

    config = tiny_config(**{"trainer.iterations": 4, "trainer.checkpoint_every": 2, "trainer.log_every": 1})
    whole, _ = pipeline.train(tiny_dataset, config, tmp_path / "whole", progress=False)
    save = Trainer.save_checkpoint

    def die_after_iteration_2(self, path, **kwargs):
        if self.iteration > 2:
            raise KeyboardInterrupt("killed")
        save(self, path, **kwargs)

    monkeypatch.setattr(Trainer, "save_checkpoint", die_after_iteration_2)
    with pytest.raises(KeyboardInterrupt):
        pipeline.train(tiny_dataset, config, tmp_path / "cut", progress=False)
    monkeypatch.setattr(Trainer, "save_checkpoint", save)
    resumed, summary = pipeline.train(tiny_dataset, None, tmp_path / "cut", progress=False, resume=True)
    assert summary["resumed_from"] == 2 and resumed.iteration == 4
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert [h["iteration"] for h in json.loads((tmp_path / "cut" / "train.json").read_text())["history"]] == \
        [1, 2, 3, 4]
    # a longer run from there: the new total
    longer, _ = pipeline.train(tiny_dataset, None, tmp_path / "cut", progress=False, resume=True, iterations=6)
    assert longer.iteration == 6 and longer.config.trainer.iterations == 6
    history = json.loads((tmp_path / "cut" / "train.json").read_text())["history"]
    assert [h["iteration"] for h in history] == [1, 2, 3, 4, 5, 6]
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        pipeline.train(tiny_dataset, None, tmp_path / "empty", resume=True)
    with pytest.raises(SystemExit, match="--resume"):
        main(["train", str(tmp_path), "--out", str(tmp_path / "cut"), "--resume", "--set", "loss.rgb=1.0"])


def test_labels_over_the_channel_budget_are_not_taught_to_the_background(tiny_dataset):
    # Only the largest label of a view fits the budget (max_labels=1): the other objects'
    # pixels become unknown (-1). The view then has them neither as background (L_bg,
    # L_fg-bg's bg set = valid & instance 0) nor as a label group of L_diff / L_reg;
    # merged into 0, as before, they were background.
    from clusteringsdf_core.online.labels import compact_labels
    from clusteringsdf_core.training.views import make_view

    frame = tiny_dataset.train[0]
    ids, over = compact_labels(frame.instance, 1)
    assert over == len(np.unique(frame.instance[frame.instance > 0])) - 1 and (ids == -1).any()
    unknown = torch.as_tensor(ids.reshape(-1) == -1)
    config = tiny_config()
    view = make_view(frame.with_labels(instance=ids), config, torch.device("cpu"))
    assert not view.valid[unknown].any()                                  # no label loss sees them
    assert (view.label_index.labels[view.label_index.group[unknown]] == -1).all()   # the ignored group
    assert view.valid[~unknown & (view.instance == 1)].all()              # the kept label still counts
    merged = make_view(frame.with_labels(instance=np.maximum(ids, 0)), config, torch.device("cpu"))
    background = merged.valid & (merged.instance == 0)
    assert background[unknown].float().mean() > 0.5                      # as 0 they were background
