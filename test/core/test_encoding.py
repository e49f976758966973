"""The dense grid's trilinear reads against torch's grid_sample, which they replace."""

import pytest
import torch
import torch.nn.functional as F

from clusteringsdf_core.model.encoding import DenseGridEncoding, trilinear


def _grid_sample(volume, x):
    return F.grid_sample(volume, x.reshape(1, 1, 1, -1, 3), mode="bilinear", padding_mode="border",
                         align_corners=True).reshape(volume.shape[1], -1)


@pytest.mark.parametrize("shape", [(5, 7, 9), (16, 16, 16), (3, 2, 4)])
def test_trilinear_equals_grid_sample_in_values_and_gradients(shape):
    g = torch.Generator().manual_seed(0)
    volume = torch.randn(1, 3, *shape, generator=g, dtype=torch.float64, requires_grad=True)
    # inside, on the faces and corners, and outside the cube (clamped as padding "border")
    x = torch.cat([torch.rand(200, 3, generator=g, dtype=torch.float64) * 2.6 - 1.3,
                   torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [1.0, -1.0, 0.3]], dtype=torch.float64)])
    x.requires_grad_(True)
    d, h, w = shape
    nodes = torch.tensor([w, h, d], dtype=torch.float64)
    offsets = torch.tensor([(dz * h + dy) * w + dx for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)])
    ours, theirs = trilinear(volume, x, nodes, offsets), _grid_sample(volume, x)
    torch.testing.assert_close(ours, theirs)
    weights = torch.randn_like(ours)
    gv_ours, gx_ours = torch.autograd.grad((ours * weights).sum(), (volume, x))
    gv_theirs, gx_theirs = torch.autograd.grad((theirs * weights).sum(), (volume, x))
    torch.testing.assert_close(gv_ours, gv_theirs)
    inside = (x.detach().abs() < 1).all(-1)          # on a clamped face the two pick other one-sided slopes
    torch.testing.assert_close(gx_ours[inside], gx_theirs[inside])


def test_dense_grid_encoding_matches_grid_sample_on_a_grown_grid():
    torch.manual_seed(0)
    enc = DenseGridEncoding(3, 2, 4, 16, init_std=1.0, reach=(1.4, 1.0, 1.9))
    assert enc.padded
    x = torch.rand(300, 3) * 3.4 - 1.7
    reference = torch.cat([_grid_sample(grid, x / enc.extents[i]) for i, grid in enumerate(enc.grids)], dim=0).t()
    torch.testing.assert_close(enc(x), reference)


def test_dense_grid_encoding_has_forward_mode_and_second_derivatives():
    torch.manual_seed(0)
    enc = DenseGridEncoding(2, 2, 4, 8, init_std=1.0)
    x = torch.rand(50, 3) * 1.8 - 0.9
    tangent = torch.zeros_like(x)
    tangent[:, 0] = 1
    _, jvp = torch.func.jvp(lambda p: enc(p).sum(-1), (x,), (tangent,))
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(enc(xr).sum(), xr, create_graph=True)
    torch.testing.assert_close(jvp, grad[:, 0])
    # the eikonal term's backward: d/d(grid) of a function of the spatial gradient
    (grad ** 2).sum().backward()
    assert all(g.grad is not None and g.grad.abs().sum() > 0 for g in enc.grids)
