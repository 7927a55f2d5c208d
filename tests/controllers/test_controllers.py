"""Controllers: start at the defaults, reach the whole [0, 1] range, follow knobs; dynamic ones are
causal, keep their state across blocks (frames aligned to absolute time) and stream exactly."""

import pytest
import torch

from nablafx.controllers import CONTROLLERS, build_controller
from nablafx.controllers.dynamic import DynamicController

DEFAULTS = torch.tensor([0.2, 0.5, 0.9])


def make(kind, n_knobs=2, **opts):
    return build_controller({"type": kind, **opts}, 3, n_knobs, DEFAULTS).double()


def sig(n=1000, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    env = torch.linspace(0.05, 1.0, n, dtype=torch.float64)
    return (env * torch.randn(batch, 1, n, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["static", "static-cond", "dynamic", "dynamic-cond"])
def test_starts_at_defaults(kind):
    c = make(kind)
    p, _ = c(sig(100), torch.rand(2, 2, dtype=torch.float64), None)
    torch.testing.assert_close(p[..., 0], DEFAULTS.double().expand(2, -1), atol=2e-2, rtol=0)


@pytest.mark.parametrize("kind", ["static", "static-cond", "dynamic", "dynamic-cond"])
def test_reaches_the_full_range(kind):
    """Reference defect 4: its controllers reached only the middle ~46 % (sigmoid of a tanh).

    Train each controller towards 0.01 on one parameter and 0.99 on another."""
    torch.manual_seed(0)
    c = make(kind)
    x, knobs = sig(512), torch.rand(2, 2, dtype=torch.float64)
    target = torch.tensor([0.01, 0.99, 0.5], dtype=torch.float64).reshape(1, 3, 1)
    opt = torch.optim.Adam(c.parameters(), lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        p, _ = c(x, knobs, None)
        loss = (torch.logit(p.clamp(1e-6, 1 - 1e-6)) - torch.logit(target)).pow(2).mean()
        loss.backward()
        opt.step()
    p, _ = c(x, knobs, None)
    assert p[:, 0].max() < 0.02 and p[:, 1].min() > 0.98


def test_static_cond_follows_knobs():
    c = make("static-cond")
    with torch.no_grad():
        for m in c.net:
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 1.0)
    p1, _ = c(sig(10), torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64), None)
    assert (p1[0] - p1[1]).abs().max() > 0.05


def test_conditional_controllers_need_knobs():
    with pytest.raises(ValueError, match="needs knobs"):
        build_controller("static-cond", 3, 0, DEFAULTS)


def test_unknown_controller_and_option():
    with pytest.raises(ValueError, match=r"ctrl\.type: unknown controller 'lfo'; known: dynamic, dynamic-cond, none"):
        build_controller("lfo", 3, 0, DEFAULTS, key="ctrl")
    with pytest.raises(ValueError, match=r"ctrl\.hop: unknown option for controller 'static'"):
        build_controller({"type": "static", "hop": 3}, 3, 0, DEFAULTS, key="ctrl")
    assert set(CONTROLLERS) == {"static", "static-cond", "dynamic", "dynamic-cond", "none"}


def _randomise(c):
    torch.manual_seed(3)
    with torch.no_grad():
        for p in c.parameters():
            p.normal_(0, 0.5)


@pytest.mark.parametrize("kind", ["dynamic", "dynamic-cond"])
@pytest.mark.parametrize("sizes", [[1000], [1, 127, 128, 744], [100] * 10, [333, 333, 334], [37] * 27 + [1]])
def test_dynamic_streams_exactly(kind, sizes):
    """Reference defect 4: its dynamic controllers reset their state every block.  Here any split of
    the signal into blocks gives the same parameters."""
    c = make(kind, hop=128)
    _randomise(c)
    x, knobs = sig(1000), torch.rand(2, 2, dtype=torch.float64)
    ref, _ = c(x, knobs, None)
    state, outs, s = c.init_state(2, dtype=x.dtype), [], 0
    for n in sizes:
        p, state = c(x[..., s:s + n], knobs, state)
        outs.append(p)
        s += n
    torch.testing.assert_close(torch.cat(outs, -1), ref, rtol=1e-12, atol=1e-12)


def test_dynamic_is_causal_held_per_frame_and_keeps_state():
    c = make("dynamic", hop=64)
    _randomise(c)
    x = sig(640)
    p, state = c(x, None, None)
    # held constant within each frame of 64 samples, changing at frame boundaries
    frames = p.reshape(2, 3, 10, 64)
    assert (frames == frames[..., :1]).all()
    assert (frames[:, :, 1:, 0] != frames[:, :, :-1, 0]).any()
    # causal: the parameters of frame k depend on frames < k only
    x2 = x.clone()
    x2[..., 300:] *= 3.0
    p2, _ = c(x2, None, None)
    torch.testing.assert_close(p2[..., :320], p[..., :320], rtol=0, atol=0)  # frame 4 (256..319) saw only x[:256]
    assert (p2[..., 320:] != p[..., 320:]).any()
    # the state after a block is not reset: continuing from it differs from starting afresh
    nxt, _ = c(x[..., :64], None, state)
    fresh, _ = c(x[..., :64], None, None)
    assert (nxt != fresh).any()
    assert state["pos"] == 0 and isinstance(c, DynamicController)


def test_dynamic_state_position_mid_frame():
    c = make("dynamic", hop=128)
    _, state = c(sig(200), None, None)
    assert state["pos"] == 72
