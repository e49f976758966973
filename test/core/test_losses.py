"""Properties of the clustering losses stated in the paper and its appendix."""

import math

import pytest
import torch

from clusteringsdf_core.losses import clustering as lc
from clusteringsdf_core.losses import reconstruction as lr


def _onehot(channels, c):
    return torch.nn.functional.one_hot(torch.as_tensor(channels), c).float()


def test_diff_is_minimal_when_centres_sit_on_distinct_vertices():
    """L_diff reaches -sqrt(2)/2 (pairwise distance sqrt(2), appendix A.2) on distinct vertices."""
    c = 6
    labels = torch.tensor([3, 3, 8, 8, 9, 9])
    vertices = _onehot([0, 0, 2, 2, 5, 5], c)
    best = lc.diff_loss(vertices, labels)
    assert math.isclose(float(best), -math.sqrt(2) / 2, rel_tol=1e-5)
    # Same vertex for two labels, or points inside the simplex, are worse.
    assert float(lc.diff_loss(_onehot([0, 0, 0, 0, 5, 5], c), labels)) > float(best)
    torch.manual_seed(0)
    for _ in range(20):
        inside = torch.softmax(torch.randn(6, c) * 3, dim=-1)
        assert float(lc.diff_loss(inside, labels)) > float(best) - 1e-6


def test_diff_gradient_pushes_centres_towards_vertices():
    logits = torch.zeros(4, 5, requires_grad=True)
    with torch.no_grad():
        logits[:2, 1] = 0.1
        logits[2:, 3] = 0.1
    labels = torch.tensor([1, 1, 2, 2])
    for _ in range(200):
        loss = lc.diff_loss(torch.softmax(logits * 10, dim=-1), labels)
        loss.backward()
        with torch.no_grad():
            logits -= 0.5 * logits.grad
            logits.grad = None
    probs = torch.softmax(logits * 10, dim=-1)
    assert probs[:2, 1].min() > 0.9 and probs[2:, 3].min() > 0.9


@pytest.mark.parametrize("definition", ["paper", "public_code"])
def test_reg_is_minimal_at_the_uniform_distribution(definition):
    c = 7
    labels = torch.tensor([1, 1, 2, 2, 2])
    uniform = torch.full((5, c), 1.0 / c)
    assert float(lc.reg_loss(uniform, labels, definition=definition)) == pytest.approx(0.0, abs=1e-12)
    torch.manual_seed(1)
    for _ in range(10):
        other = torch.softmax(torch.randn(5, c), dim=-1)
        assert float(lc.reg_loss(other, labels, definition=definition)) > 0.0


def test_reg_definitions_weight_clusters_differently_and_ignore_label_zero():
    """Softmax rows all have mean 1/c, so the variance of a cluster's values is the mean
    of its rays' variances: the paper averages clusters equally, the public code rays."""
    c = 4
    onehot = _onehot([0], c)                       # variance 3/16
    uniform = torch.full((1, c), 1.0 / c)          # variance 0
    values = torch.cat([onehot, uniform, uniform, uniform])
    labels = torch.tensor([1, 2, 2, 2])            # cluster sizes 1 and 3
    assert float(lc.reg_loss(values, labels, definition="paper")) == pytest.approx((3 / 16) / 2)
    assert float(lc.reg_loss(values, labels, definition="public_code")) == pytest.approx((3 / 16) / 4)
    with_zero = torch.cat([labels, torch.zeros(2, dtype=torch.long)])
    more = torch.cat([values, _onehot([1, 2], c)])  # label-0 rays never count
    for definition in ("paper", "public_code"):
        assert float(lc.reg_loss(more, with_zero, definition=definition)) == pytest.approx(
            float(lc.reg_loss(values, labels, definition=definition)))
    with pytest.raises(ValueError):
        lc.reg_loss(values, labels, definition="other")


def test_onehot_is_zero_on_onehot_predictions():
    o = _onehot([2, 0, 1, 2], 3)
    fg = torch.tensor([True, False, True, True])
    assert float(lc.onehot_loss(o, torch.softmax(o, -1), fg)) == pytest.approx(0.0, abs=1e-5)
    blurred = o * 0.6 + 0.1
    assert float(lc.onehot_loss(blurred, torch.softmax(blurred, -1), fg)) > 0.1


def test_onehot_object_target_never_pulls_a_foreground_ray_into_the_background():
    # rays of a labelled object still rendered in the background channel 0
    o = torch.tensor([[0.9, 0.05, 0.2], [0.0, 0.1, 0.8]])
    fg = torch.tensor([True, True])
    o_s = torch.softmax(o, -1)
    # paper: the first ray's target is channel 0, so raising O_0 lowers the loss
    probe = o.clone().requires_grad_(True)
    lc.onehot_loss(probe, o_s, fg).backward()
    assert probe.grad[0, 0] < 0
    # object target: its target is its best object channel (2); O_0 is pushed down
    probe = o.clone().requires_grad_(True)
    lc.onehot_loss(probe, o_s, fg, target="object").backward()
    assert probe.grad[0, 0] > 0 and probe.grad[0, 2] < 0 and probe.grad[0, 1] > 0
    # the same on rays already one-hot on an object channel; a one-hot background ray
    # costs nothing for the paper's target and a full unit for the object target
    on_object = _onehot([1, 2], 3)
    assert float(lc.onehot_loss(on_object, torch.softmax(on_object, -1), fg, target="object")) == pytest.approx(
        0.0, abs=1e-5)
    on_bg = _onehot([0], 3)
    one = torch.tensor([True])
    assert float(lc.onehot_loss(on_bg, torch.softmax(on_bg, -1), one)) == pytest.approx(0.0, abs=1e-5)
    assert float(lc.onehot_loss(on_bg, torch.softmax(on_bg, -1), one, target="object")) == pytest.approx(
        2 ** 0.5, abs=1e-5)
    with pytest.raises(ValueError):
        lc.onehot_loss(o, o_s, fg, target="other")


def test_onehot_settled_target_leaves_background_rays_alone_and_sharpens_the_others():
    # ray 0: a labelled object still in the background; ray 1: already on channel 2
    o = torch.tensor([[0.9, 0.05, 0.2], [0.1, 0.1, 0.8]])
    fg = torch.tensor([True, True])
    o_s = torch.softmax(o, -1)
    probe = o.clone().requires_grad_(True)
    lc.onehot_loss(probe, o_s, fg, target="settled").backward()
    assert torch.all(probe.grad[0] == 0)                 # no pull either way
    assert probe.grad[1, 2] < 0 and probe.grad[1, 0] > 0 and probe.grad[1, 1] > 0
    # the mean is over settled rays only: ray 1 alone gives the same value
    assert float(lc.onehot_loss(o, o_s, fg, target="settled")) == pytest.approx(
        float(lc.onehot_loss(o[1:], o_s[1:], fg[1:])), abs=1e-6)
    # nothing settled: zero, and still a graph-connected tensor
    only_bg = o[:1].clone().requires_grad_(True)
    loss = lc.onehot_loss(only_bg, torch.softmax(only_bg, -1), fg[:1], target="settled")
    assert float(loss.detach()) == 0.0 and loss.requires_grad


def test_onehot_distinct_target_gives_the_labels_of_a_view_distinct_object_channels():
    # labels 1 and 2 both still in the background, both closest to channel 1; label 3
    # already peaks on channel 2 and keeps it
    o = torch.tensor([[0.9, 0.30, 0.0, 0.10], [0.9, 0.25, 0.0, 0.05],
                      [0.0, 0.10, 0.9, 0.00], [0.7, 0.20, 0.6, 0.10]])
    labels = torch.tensor([1, 2, 3, 3])
    fg = torch.ones(4, dtype=torch.bool)
    probe = o.clone().requires_grad_(True)
    lc.onehot_loss(probe, torch.softmax(o, -1), fg, target="distinct", labels=labels).backward()
    target = probe.grad.argmin(-1).tolist()   # the pulled-up channel has the negative gradient
    assert target[0] == 1 and target[1] == 3  # label 2 takes the free channel, not label 1's
    assert target[2] == 2
    assert target[3] == 2                     # a background ray of label 3: its label's channel
    assert all(probe.grad[i, 0] > 0 for i in (0, 1, 3))  # never pulled into the background
    # a label peaking on an object channel is left as in the paper
    on_object = _onehot([1, 2], 4)
    assert float(lc.onehot_loss(on_object, torch.softmax(on_object, -1), torch.ones(2, dtype=torch.bool),
                                target="distinct", labels=torch.tensor([5, 6]))) == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="labels"):
        lc.onehot_loss(o, torch.softmax(o, -1), fg, target="distinct")


def test_clustering_loss_is_invariant_to_relabelling_a_view():
    torch.manual_seed(2)
    o = torch.rand(40, 8)
    os_ = lc.softmax_opacity(o)
    labels = torch.randint(0, 5, (40,))
    relabelled = torch.tensor([0, 17, 3, 1000, 42])[labels]   # a permutation of the ids (0 kept)

    def total(lab):
        fg = lab > 0
        return (20 * lc.diff_loss(os_, lab) + 0.5 * lc.onehot_loss(o, os_, fg)
                + 1e4 * lc.reg_loss(os_, lab) + lc.fg_bg_loss(o, fg, ~fg, 0.2, 0.1))

    assert float(total(labels)) == pytest.approx(float(total(relabelled)), rel=1e-6)


def test_fg_bg_loss_targets_channel_zero():
    o = torch.zeros(4, 3)
    o[:2, 0] = 1.0        # background rays fully in channel 0
    o[2:, 1] = 1.0        # foreground rays elsewhere
    fg = torch.tensor([False, False, True, True])
    assert float(lc.fg_bg_loss(o, fg, ~fg, 0.2, 0.1)) == pytest.approx(0.0)
    o_bad = o.flip(0)
    assert float(lc.fg_bg_loss(o_bad, fg, ~fg, 0.2, 0.1)) == pytest.approx(0.2 + 0.1)


@pytest.mark.parametrize("definition", ["paper", "public_code"])
def test_semantic_loss_is_zero_when_clusters_match_their_classes(definition):
    c = 5
    classes = torch.tensor([1, 1, 3, 4])
    o = _onehot([1, 1, 3, 4], c)
    os_ = o if definition == "public_code" else torch.softmax(o * 50, -1)
    assert float(lc.semantic_loss(o, os_, classes, definition=definition)) == pytest.approx(0.0, abs=1e-5)
    wrong = torch.tensor([2, 2, 3, 4])
    assert float(lc.semantic_loss(o, os_, wrong, definition=definition)) > 0.4
    conf = torch.tensor([0.0, 0.0, 1.0, 1.0])   # zero confidence silences a cluster
    assert float(lc.semantic_loss(o, os_, wrong, conf, definition=definition)) == pytest.approx(0.0, abs=1e-5)


def test_cross_view_loss_pushes_different_classes_apart():
    c = 4
    cur = _onehot([1, 1], c)
    other_same_place = _onehot([1, 1], c)
    other_apart = _onehot([2, 2], c)
    labels_cur, labels_other = torch.tensor([5, 5]), torch.tensor([6, 6])   # different classes
    close = float(lc.cross_view_loss([cur, other_same_place], [labels_cur, labels_other]))
    apart = float(lc.cross_view_loss([cur, other_apart], [labels_cur, labels_other]))
    assert close == pytest.approx(1.0, abs=1e-5) and apart == pytest.approx(math.exp(-math.sqrt(2)), rel=1e-4)
    # Same class in both views: no push.
    assert float(lc.cross_view_loss([cur, other_apart], [labels_cur, labels_cur])) == pytest.approx(1.0, abs=1e-5)


def test_opacity_label_and_violation_losses():
    o = _onehot([1, 2], 4)
    assert float(lc.opacity_label_loss(o, torch.tensor([1, 2]))) == 0.0
    assert float(lc.opacity_label_loss(o, torch.tensor([2, 1]))) > 0.0
    inside_two = torch.tensor([[-0.1, -0.2, 0.5]])
    inside_one = torch.tensor([[-0.1, 0.2, 0.5]])
    assert float(lc.violation_loss(inside_two)) == pytest.approx(0.1)
    assert float(lc.violation_loss(inside_one)) == 0.0


def test_clustering_is_linear_in_rays_contrastive_is_quadratic():
    """The paper's complexity claim, as memory: the clustering loss never builds an
    R x R matrix; the pairwise loss does."""
    torch.manual_seed(3)
    o = torch.rand(64, 6)
    labels = torch.randint(0, 4, (64,))
    assert torch.isfinite(lc.diff_loss(torch.softmax(o, -1), labels))
    assert torch.isfinite(lc.pairwise_contrastive_loss(o, labels))


def test_depth_sdf_loss():
    t = torch.tensor([[0.5, 0.95, 1.0, 1.05, 1.5]])
    depth = torch.tensor([1.0])
    exact = (depth[:, None] - t).clamp(-0.1, 10)
    exact[0, 0] = 0.5
    assert float(lr.depth_sdf_loss(exact, t, depth, 0.1)) == pytest.approx(0.0)
    negative_in_free_space = exact.clone()
    negative_in_free_space[0, 0] = -0.2
    assert float(lr.depth_sdf_loss(negative_in_free_space, t, depth, 0.1)) == pytest.approx(0.2)
    assert float(lr.depth_sdf_loss(exact, t, torch.tensor([0.0]), 0.1)) == 0.0


def test_eikonal_is_zero_for_unit_gradients():
    g = torch.nn.functional.normalize(torch.randn(10, 3, 3), dim=-1)
    assert float(lr.eikonal_loss(g)) == pytest.approx(0.0, abs=1e-10)
    assert float(lr.eikonal_loss(2 * g)) == pytest.approx(1.0)


def test_loss_timing_reports_both_losses():
    from clusteringsdf_core.bench.loss_timing import time_losses

    rows = time_losses([64, 128], repeats=1)
    assert [r["rays"] for r in rows] == [64, 128]
    assert all(r["clustering_s"] > 0 and r["contrastive_s"] > 0 for r in rows)
