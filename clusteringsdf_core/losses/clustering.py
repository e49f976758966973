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

import torch
from torch import Tensor

__all__ = ["softmax_opacity", "group_means", "diff_loss", "onehot_loss", "reg_loss", "fg_bg_loss",
           "semantic_loss", "cross_view_loss", "opacity_label_loss", "violation_loss",
           "pairwise_contrastive_loss"]


def softmax_opacity(opacity: Tensor, temperature: float = 1.0) -> Tensor:
    """O^s = Softmax(O / t) over channels: each ray becomes a point of the (c-1)-simplex."""
    return torch.softmax(opacity / temperature, dim=-1)


def group_means(values: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Cluster centres of ``values`` (R, D) grouped by ``labels`` (R,).

    Returns (unique labels (N,), centres (N, D), counts (N,), inverse (R,) group index).
    O(R * D): no pairwise ray terms.
    """
    uniq, inverse = torch.unique(labels, return_inverse=True)
    counts = torch.bincount(inverse, minlength=uniq.shape[0]).to(values.dtype)
    sums = torch.zeros(uniq.shape[0], values.shape[1], dtype=values.dtype, device=values.device)
    sums = sums.index_add(0, inverse, values)
    return uniq, sums / counts[:, None], counts, inverse


def diff_loss(opacity_s: Tensor, labels: Tensor) -> Tensor:
    """L_diff (Eq. 4) = -1/(N(N-1)) sum_{i<j} ||mu(O^s_{m_i}) - mu(O^s_{m_j})||_2.

    Minimal (-sqrt(2)/2) when every cluster centre sits on its own simplex vertex
    (pairwise distance sqrt(2), appendix A.2). Zero for a single label.
    """
    _, centres, _, _ = group_means(opacity_s, labels)
    n = centres.shape[0]
    if n < 2:
        return opacity_s.sum() * 0.0
    diffs = centres[:, None, :] - centres[None, :, :]
    dist = torch.sqrt((diffs ** 2).sum(-1) + 1e-12)
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=dist.device), diagonal=1)
    return -dist[upper].sum() / (n * (n - 1))


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
    if target == "settled":
        foreground = foreground & (opacity_s.argmax(-1) != 0)
    if not bool(foreground.any()):
        return opacity.sum() * 0.0
    o = opacity[foreground]
    scores = opacity_s[foreground]
    c = scores.shape[1]
    index = scores.argmax(-1)
    if target == "object" and c > 1:
        index = scores[:, 1:].argmax(-1) + 1
    elif target == "distinct" and c > 1:
        if labels is None:
            raise ValueError("onehot target 'distinct' needs the rays' labels")
        index = index.clone()
        in_background = index == 0
        if bool(in_background.any()):
            _, centres, _, inverse = group_means(scores.detach(), labels[foreground])
            channel = _distinct_object_channels(centres)
            index[in_background] = channel[inverse[in_background]]
    one_hot = torch.zeros_like(o).scatter_(1, index[:, None], 1.0)
    return torch.sqrt(((o - one_hot) ** 2).sum(-1) + 1e-12).mean()


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


def reg_loss(opacity_s: Tensor, labels: Tensor, *, definition: str = "paper") -> Tensor:
    """L_reg (Eq. 6): slows entropy reduction; minimal at the uniform distribution.

    - ``paper``: (1/N) sum over labels l != 0 of Var(O^s_{m_l}), the variance of all
      softmax values of the cluster (its rays x channels);
    - ``public_code``: variance across the c channels of each labelled ray's softmax
      vector, averaged over labelled rays.
    """
    labelled = labels != 0
    if not bool(labelled.any()):
        return opacity_s.sum() * 0.0
    if definition == "public_code":
        return opacity_s[labelled].var(dim=-1, unbiased=False).mean()
    if definition != "paper":
        raise ValueError(f"unknown definition {definition!r}")
    uniq, inverse = torch.unique(labels[labelled], return_inverse=True)
    values = opacity_s[labelled]
    n = uniq.shape[0]
    c = values.shape[1]
    counts = torch.bincount(inverse, minlength=n).to(values.dtype) * c
    mean = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, inverse, values.sum(-1)) / counts
    sq = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(
        0, inverse, ((values - mean[inverse, None]) ** 2).sum(-1))
    return (sq / counts).mean()


def fg_bg_loss(opacity: Tensor, foreground: Tensor, background: Tensor, lambda_bg: float,
               lambda_fg: float) -> Tensor:
    """L_fg-bg (Eq. 7) = l4 mean_bg |O_p0 - 1| + l5 mean_fg |O_p0| on channel 0 (background)."""
    loss = opacity.sum() * 0.0
    if bool(background.any()):
        loss = loss + lambda_bg * (opacity[background, 0] - 1.0).abs().mean()
    if bool(foreground.any()):
        loss = loss + lambda_fg * opacity[foreground, 0].abs().mean()
    return loss


def semantic_loss(opacity: Tensor, opacity_s: Tensor, class_labels: Tensor,
                  confidence: Tensor | None = None, *, definition: str = "paper") -> Tensor:
    """L_sem (Eq. 8) = 1/N sum_{l != 0} mu(C_{m_l}) ||mu(O^s_{m_l}) - onehot(y_l)||_2.

    Semantic mode: channel index = class id; rays grouped by their class label y.
    ``public_code`` uses the raw opacities instead of the softmax.
    """
    keep = class_labels != 0
    if not bool(keep.any()):
        return opacity.sum() * 0.0
    values = (opacity if definition == "public_code" else opacity_s)[keep]
    uniq, centres, _, inverse = group_means(values, class_labels[keep])
    if int(uniq.max()) >= values.shape[1]:
        raise ValueError(f"class id {int(uniq.max())} has no channel (only {values.shape[1]})")
    target = torch.zeros_like(centres).scatter_(1, uniq[:, None].long(), 1.0)
    dist = torch.sqrt(((centres - target) ** 2).sum(-1) + 1e-12)
    if confidence is not None:
        conf = group_means(confidence[keep][:, None], class_labels[keep])[1][:, 0]
        dist = dist * conf
    return dist.mean()


def cross_view_loss(opacity_s_views: list[Tensor], class_labels_views: list[Tensor]) -> Tensor:
    """L_cross_view (paper 3.5) = exp(-sum_v sum_{l1 in view 0, l2 in view v, l1 != l2}
    ||mu(O^s_{m_l1}) - mu(O^s_{m_l2})||_2).

    View 0 is the current view, the others are the extra views; groups are by
    semantic class, which is consistent across views, so clusters of different
    classes seen in different views are pushed apart.
    """
    first_labels, first = class_labels_views[0], opacity_s_views[0]
    keep0 = first_labels != 0
    if not bool(keep0.any()) or len(opacity_s_views) < 2:
        return first.sum() * 0.0
    cls0, mu0, _, _ = group_means(first[keep0], first_labels[keep0])
    total = first.sum() * 0.0
    for values, labels in zip(opacity_s_views[1:], class_labels_views[1:]):
        keep = labels != 0
        if not bool(keep.any()):
            continue
        cls_v, mu_v, _, _ = group_means(values[keep], labels[keep])
        different = cls0[:, None] != cls_v[None, :]
        if bool(different.any()):
            dist = torch.sqrt(((mu0[:, None, :] - mu_v[None, :, :]) ** 2).sum(-1) + 1e-12)
            total = total + dist[different].sum()
    return torch.exp(-total)


def opacity_label_loss(opacity: Tensor, labels: Tensor) -> Tensor:
    """ObjectSDF++'s L_O (paper Eq. 2): mean over rays of (1/M) sum_i |O_i - onehot(label)_i|,
    taking label value k as channel k (labels >= c are ignored). Only meaningful when ids
    are consistent across views (GT labels); used for the Table 2 baselines."""
    keep = labels < opacity.shape[1]
    if not bool(keep.any()):
        return opacity.sum() * 0.0
    target = torch.zeros_like(opacity[keep]).scatter_(1, labels[keep, None].long(), 1.0)
    return (opacity[keep] - target).abs().mean()


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
