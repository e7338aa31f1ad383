"""Convolutions over exactly one window run as matrix products (cqdkit.models.dense_conv), and the fused SGD
of Hardware.sgd: faster kernels that must compute the same numbers."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from timm.models.vgg import ConvMlp
from torch import nn

from cqdkit.models.dense_conv import DenseConv2d, use_dense_convolutions
from cqdkit.train.hardware import Hardware


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 4), cin=st.integers(1, 6), cout=st.integers(1, 6), kh=st.integers(1, 5),
       kw=st.integers(1, 5), stride=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_a_single_window_gives_the_convolutions_output_and_gradients(batch, cin, cout, kh, kw, stride, seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(cin, cout, (kh, kw), stride=stride)
    dense = DenseConv2d.replacing(copy.deepcopy(conv))
    x = torch.randn(batch, cin, kh, kw, requires_grad=True)
    x_dense = x.detach().clone().requires_grad_(True)
    assert dense.covers_input(x_dense)
    expected, got = conv(x), dense(x_dense)
    assert got.shape == expected.shape == (batch, cout, 1, 1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(expected)
    (expected * weights).sum().backward()
    (got * weights).sum().backward()
    torch.testing.assert_close(dense.weight.grad, conv.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dense.bias.grad, conv.bias.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_dense.grad, x.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(8, 8), (7, 9), (9, 7)])
def test_larger_inputs_take_the_ordinary_convolution(size):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 7)
    dense = DenseConv2d.replacing(copy.deepcopy(conv))
    x = torch.randn(2, 3, *size)
    assert not dense.covers_input(x)
    torch.testing.assert_close(dense(x), conv(x))


def test_a_padded_window_is_not_a_matrix_product():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    assert use_dense_convolutions(nn.Sequential(conv)) == 0
    assert not DenseConv2d.replacing(conv).covers_input(torch.zeros(1, 3, 3, 3))


def test_vggs_first_fully_connected_layer_is_swapped_with_its_own_parameters():
    torch.manual_seed(0)
    head = ConvMlp(in_features=16, out_features=32, kernel_size=7)  # timm's vgg pre_logits, small
    reference = copy.deepcopy(head).eval()
    weight, keys = head.fc1.weight, list(head.state_dict())
    assert use_dense_convolutions(head) == 1  # fc1 (7x7); fc2 is 1x1
    assert isinstance(head.fc1, DenseConv2d) and type(head.fc2) is nn.Conv2d
    assert head.fc1.weight is weight and list(head.state_dict()) == keys
    x = torch.randn(3, 16, 7, 7)
    torch.testing.assert_close(head.eval()(x), reference(x), rtol=1e-5, atol=1e-5)
    small = torch.randn(3, 16, 2, 2)  # timm pools a small map up to 7x7 first
    torch.testing.assert_close(head(small), reference(small), rtol=1e-5, atol=1e-5)
    assert use_dense_convolutions(head) == 0  # already swapped


def test_hardware_prepares_a_cpu_model_with_dense_convolutions():
    model = nn.Sequential(nn.Conv2d(3, 4, 5), nn.Flatten())
    Hardware(device=torch.device("cpu")).prepare(model)
    assert isinstance(model[0], DenseConv2d)


def test_fused_sgd_takes_the_same_steps_as_plain_sgd():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    twin = copy.deepcopy(model)
    fused = Hardware(device=torch.device("cpu")).sgd(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    plain = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    assert fused.defaults["fused"]
    for _ in range(4):
        x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
        for net, optimizer in ((model, fused), (twin, plain)):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
