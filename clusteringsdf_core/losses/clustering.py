"""The clustering losses of ClusteringSDF (paper section 3), as pure functions.

Notation: ``opacity`` O is (R, c), the rendered occlusion-aware object opacity of
every channel for R rays of ONE view; ``O^s = softmax(O / temperature)`` over the c
channels; ``labels`` (R,) are that view's 2D ids (view-local, arbitrary values; 0
is the background/stuff label). Rays are grouped by label: ``m_l`` is the set of
rays with label ``l`` and ``mu(.)`` the mean over a group (the cluster centre).

``definition`` selects the paper's equations or the variants of the authors'
public code where they differ (see docs/METHOD.md, Losses): L_reg and L_sem.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from clusteringsdf_core.losses.weighted import masked_mean

__all__ = ["RayGroups", "softmax_opacity", "group_means", "diff_loss", "onehot_loss", "reg_loss",
           "fg_bg_loss", "semantic_loss", "cross_view_loss", "opacity_label_loss", "violation_loss",
           "pairwise_contrastive_loss"]


@dataclass(frozen=True)
class RayGroups:
    """The rays of one view grouped by label, in shapes that do not depend on the data.

    ``index`` (R,) is each ray's group in [0, n), ``label`` (n,) each group's label and
    ``weight`` (R,) 1 for the rays that take part, 0 for the others (masks as weights:
    no boolean indexing, so a training step needs no host synchronisation). A group
    without a taking-part ray has count 0 and is left out of every loss.

    :meth:`of` groups arbitrary label values with ``torch.unique`` (a host round trip on
    a GPU); the trainer instead takes the groups a view's :class:`~clusteringsdf_core.training.sampling.LabelIndex`
    computed once, or :meth:`dense` for ids that are already in [0, n) (classes).
    """

    index: Tensor
    label: Tensor
    weight: Tensor

    @property
    def n(self) -> int:
        return int(self.label.shape[0])

    @classmethod
    def of(cls, labels: Tensor, mask: Tensor | None = None) -> "RayGroups":
        uniq, inverse = torch.unique(labels, return_inverse=True)
        return cls(inverse, uniq, _weight(mask, labels))

    @classmethod
    def dense(cls, ids: Tensor, n: int, mask: Tensor | None = None) -> "RayGroups":
        """Group ``ids`` in [0, n) by value: group k has label k."""
        return cls(ids.long(), torch.arange(n, device=ids.device), _weight(mask, ids))

    def where(self, mask: Tensor) -> "RayGroups":
        """The same groups with only the rays of ``mask`` (R,) taking part."""
        return RayGroups(self.index, self.label, self.weight * mask.to(self.weight.dtype))

    def without_label(self, label: int) -> "RayGroups":
        """The rays of the group(s) labelled ``label`` no longer take part."""
        return self.where(self.label[self.index] != label)

    def sums(self, values: Tensor) -> tuple[Tensor, Tensor]:
        """Weighted sums (n, D) of ``values`` (R, D) per group, and counts (n,)."""
        w = self.weight.to(values.dtype)
        sums = torch.zeros(self.n, values.shape[1], dtype=values.dtype, device=values.device)
        sums = sums.index_add(0, self.index, values * w[:, None])
        counts = torch.zeros(self.n, dtype=values.dtype, device=values.device).index_add(0, self.index, w)
        return sums, counts

    def means(self, values: Tensor) -> tuple[Tensor, Tensor]:
        """Cluster centres (n, D) (0 for groups without rays) and counts (n,)."""
        sums, counts = self.sums(values)
        return sums / counts.clamp(min=1e-12)[:, None], counts


def _weight(mask: Tensor | None, like: Tensor) -> Tensor:
    if mask is None:
        return torch.ones(like.shape[0], device=like.device)
    return mask.float()


def _groups(labels: Tensor | RayGroups) -> RayGroups:
    return labels if isinstance(labels, RayGroups) else RayGroups.of(labels)


def softmax_opacity(opacity: Tensor, temperature: float = 1.0) -> Tensor:
    """O^s = Softmax(O / t) over channels: each ray becomes a point of the (c-1)-simplex."""
    return torch.softmax(opacity / temperature, dim=-1)


def group_means(values: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Cluster centres of ``values`` (R, D) grouped by ``labels`` (R,).

    Returns (unique labels (N,), centres (N, D), counts (N,), inverse (R,) group index).
    O(R * D): no pairwise ray terms.
    """
    groups = RayGroups.of(labels)
    centres, counts = groups.means(values)
    return groups.label, centres, counts, groups.index


def diff_loss(opacity_s: Tensor, labels: Tensor | RayGroups) -> Tensor:
    """L_diff (Eq. 4) = -1/(N(N-1)) sum_{i<j} ||mu(O^s_{m_i}) - mu(O^s_{m_j})||_2.

    Minimal (-sqrt(2)/2) when every cluster centre sits on its own simplex vertex
    (pairwise distance sqrt(2), appendix A.2). Zero for a single label. N counts the
    labels that have rays.
    """
    centres, counts = _groups(labels).means(opacity_s)
    present = (counts > 0).to(opacity_s.dtype)
    n = present.sum()
    diffs = centres[:, None, :] - centres[None, :, :]
    dist = torch.sqrt((diffs ** 2).sum(-1) + 1e-12)
    pairs = torch.triu(present[:, None] * present[None, :], diagonal=1)
    return -(dist * pairs).sum() / (n * (n - 1)).clamp(min=1.0)


ONEHOT_TARGETS = ("any", "settled", "object", "distinct")


def onehot_loss(opacity: Tensor, opacity_s: Tensor, foreground: Tensor, *, target: str = "any",
                labels: Tensor | None = None) -> Tensor:
    """L_onehot (Eq. 5) = mean over foreground rays of ||O_p - onehot(argmax O^s_p)||_2.

    Zero exactly when the raw opacities of foreground rays are one-hot.

    ``target`` picks the one-hot vertex of a foreground ray:

    - ``"any"`` (the paper): the argmax over all channels. Early in training every
      surface is still in the background channel 0, so the term pulls foreground rays
      *into* the background; once an object channel's opacity there has decayed,
      nothing pulls them out again (with sparse labels, e.g. 70 % of the instances of
      each view masked, whole objects stay in channel 0).
    - ``"settled"``: the paper's target, but only for rays whose argmax is already an
      object channel; rays still in the background are left alone (they contribute
      nothing and are not counted in the mean). The term then only sharpens what the
      clustering has placed and never decides foreground against background, which is
      L_fg-bg's job.
    - ``"object"``: the argmax over the object channels 1..c-1. A ray labelled
      foreground is not background (the premise of L_fg-bg), so it is pulled toward
      its closest object channel; but two objects of one view still in the background
      are pulled toward the same nearest channel, and merge.
    - ``"distinct"``: a ray whose argmax is an object channel keeps it (as the paper);
      a ray whose argmax is the background is pulled toward its label's object
      channel, chosen per label (``labels`` of the rays, required) so that labels of
      the view take distinct channels: labels whose mean O^s already peaks on an
      object channel own it, the others take, most confident first, the free object
      channel with the highest mean O^s.
    """
    if target not in ONEHOT_TARGETS:
        raise ValueError(f"unknown onehot target {target!r} ({', '.join(ONEHOT_TARGETS)})")
    c = opacity_s.shape[1]
    index = opacity_s.argmax(-1)
    weight = foreground.to(opacity.dtype)
    if target == "settled":
        weight = weight * (index != 0).to(opacity.dtype)
    elif target == "object" and c > 1:
        index = opacity_s[:, 1:].argmax(-1) + 1
    elif target == "distinct" and c > 1:
        # a per-label choice of channels on the host (the one target that needs a host round trip)
        if labels is None:
            raise ValueError("onehot target 'distinct' needs the rays' labels")
        index = index.clone()
        fg = foreground.bool()
        in_background = fg & (index == 0)
        if bool(in_background.any()):
            _, centres, _, inverse = group_means(opacity_s[fg].detach(), labels[fg])
            channel = _distinct_object_channels(centres)
            index[in_background] = channel[inverse[in_background[fg]]]
    one_hot = torch.zeros_like(opacity).scatter_(1, index[:, None], 1.0)
    return masked_mean(torch.sqrt(((opacity - one_hot) ** 2).sum(-1) + 1e-12), weight)


def _distinct_object_channels(centres: Tensor) -> Tensor:
    """One object channel per cluster centre (N, c), distinct while channels last:
    centres peaking on an object channel keep it; the others, most confident first,
    take the free object channel with the largest share."""
    peak = centres.argmax(-1).tolist()
    taken = {k for k in peak if k != 0}
    channel = [k if k != 0 else -1 for k in peak]
    order = torch.argsort(centres[:, 1:].max(-1).values, descending=True).tolist()
    for i in order:
        if channel[i] != -1:
            continue
        ranked = (torch.argsort(centres[i, 1:], descending=True) + 1).tolist()
        free = [k for k in ranked if k not in taken]
        channel[i] = free[0] if free else ranked[0]
        taken.add(channel[i])
    return torch.as_tensor(channel, device=centres.device)


def reg_loss(opacity_s: Tensor, labels: Tensor | RayGroups, *, definition: str = "paper") -> Tensor:
    """L_reg (Eq. 6): slows entropy reduction; minimal at the uniform distribution.

    - ``paper``: (1/N) sum over labels l != 0 of Var(O^s_{m_l}), the variance of all
      softmax values of the cluster (its rays x channels);
    - ``public_code``: variance across the c channels of each labelled ray's softmax
      vector, averaged over labelled rays.
    """
    groups = _groups(labels).without_label(0)
    if definition == "public_code":
        return masked_mean(opacity_s.var(dim=-1, unbiased=False), groups.weight)
    if definition != "paper":
        raise ValueError(f"unknown definition {definition!r}")
    c = opacity_s.shape[1]
    # per cluster: mean and variance of its rays x channels values
    sums, counts = groups.sums(opacity_s.sum(-1, keepdim=True))
    mean = sums[:, 0] / (counts * c).clamp(min=1e-12)
    sq, _ = groups.sums(((opacity_s - mean[groups.index, None]) ** 2).sum(-1, keepdim=True))
    present = (counts > 0).to(opacity_s.dtype)
    var = sq[:, 0] / (counts * c).clamp(min=1e-12)
    return (var * present).sum() / present.sum().clamp(min=1.0)


def fg_bg_loss(opacity: Tensor, foreground: Tensor, background: Tensor, lambda_bg: float,
               lambda_fg: float) -> Tensor:
    """L_fg-bg (Eq. 7) = l4 mean_bg |O_p0 - 1| + l5 mean_fg |O_p0| on channel 0 (background)."""
    o0 = opacity[:, 0]
    return lambda_bg * masked_mean((o0 - 1.0).abs(), background) + lambda_fg * masked_mean(o0.abs(), foreground)


def semantic_loss(opacity: Tensor, opacity_s: Tensor, class_labels: Tensor | RayGroups,
                  confidence: Tensor | None = None, *, definition: str = "paper") -> Tensor:
    """L_sem (Eq. 8) = 1/N sum_{l != 0} mu(C_{m_l}) ||mu(O^s_{m_l}) - onehot(y_l)||_2.

    Semantic mode: channel index = class id; rays grouped by their class label y
    (a tensor of class ids, or ``RayGroups.dense(ids, c)``). ``public_code`` uses the
    raw opacities instead of the softmax.
    """
    values = opacity if definition == "public_code" else opacity_s
    c = values.shape[1]
    if not isinstance(class_labels, RayGroups):
        if class_labels.numel() and int(class_labels.max()) >= c:
            raise ValueError(f"class id {int(class_labels.max())} has no channel (only {c})")
        class_labels = RayGroups.dense(class_labels, c)
    groups = class_labels.without_label(0)
    centres, counts = groups.means(values)
    target = torch.nn.functional.one_hot(groups.label.clamp(0, c - 1), c).to(values.dtype)
    dist = torch.sqrt(((centres - target) ** 2).sum(-1) + 1e-12)
    if confidence is not None:
        dist = dist * groups.means(confidence[:, None].to(values.dtype))[0][:, 0]
    present = (counts > 0).to(values.dtype)
    return (dist * present).sum() / present.sum().clamp(min=1.0)


def cross_view_loss(opacity_s_views: list[Tensor], class_labels_views: list[Tensor], *,
                    num_classes: int | None = None) -> Tensor:
    """L_cross_view (paper 3.5) = exp(-sum_v sum_{l1 in view 0, l2 in view v, l1 != l2}
    ||mu(O^s_{m_l1}) - mu(O^s_{m_l2})||_2).

    View 0 is the current view, the others are the extra views; groups are by
    semantic class, which is consistent across views, so clusters of different
    classes seen in different views are pushed apart. With ``num_classes`` the class
    ids are taken as they are (fixed shapes, no host round trip).
    """
    first = opacity_s_views[0]
    if len(opacity_s_views) < 2:
        return first.sum() * 0.0

    def clusters(values: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        groups = (RayGroups.dense(labels, num_classes) if num_classes else RayGroups.of(labels)).without_label(0)
        centres, counts = groups.means(values)
        return groups.label, centres, (counts > 0).to(values.dtype)

    cls0, mu0, present0 = clusters(first, class_labels_views[0])
    total = first.sum() * 0.0
    for values, labels in zip(opacity_s_views[1:], class_labels_views[1:]):
        cls_v, mu_v, present_v = clusters(values, labels)
        pairs = (cls0[:, None] != cls_v[None, :]).to(first.dtype) * present0[:, None] * present_v[None, :]
        dist = torch.sqrt(((mu0[:, None, :] - mu_v[None, :, :]) ** 2).sum(-1) + 1e-12)
        total = total + (dist * pairs).sum()
    return torch.exp(-total)


def opacity_label_loss(opacity: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
    """ObjectSDF++'s L_O (paper Eq. 2): mean over rays (those of ``weight``, default all) of
    (1/M) sum_i |O_i - onehot(label)_i|, taking label value k as channel k (labels >= c
    are ignored). Only meaningful when ids are consistent across views (GT labels); used
    for the Table 2 baselines."""
    c = opacity.shape[1]
    keep = (labels >= 0) & (labels < c)
    if weight is not None:
        keep = keep & weight.bool()
    target = torch.nn.functional.one_hot(labels.clamp(0, c - 1).long(), c).to(opacity.dtype)
    return masked_mean((opacity - target).abs().mean(-1), keep)


def violation_loss(sdf: Tensor) -> Tensor:
    """ObjectSDF++'s object-distinction term: a point inside one object (its smallest SDF
    negative) must be outside all others, so the second smallest SDF is penalised when
    negative: mean ReLU(-d_(2)). ``sdf`` is (M, c)."""
    two = torch.topk(sdf, k=2, dim=-1, largest=False).values
    return torch.relu(-two[:, 1]).mean()


def pairwise_contrastive_loss(features: Tensor, labels: Tensor, margin: float = 1.0) -> Tensor:
    """A Contrastive-Lift-style pairwise loss over all ray pairs of a view, O(R^2 * D):
    pull same-label pairs together, push different-label pairs beyond ``margin``.
    Provided to measure the complexity argument of the paper (section 3.2)."""
    dist = torch.cdist(features, features)
    same = labels[:, None] == labels[None, :]
    pull = (dist ** 2)[same].mean()
    push = (torch.relu(margin - dist) ** 2)[~same]
    return pull + (push.mean() if push.numel() else dist.sum() * 0.0)
