"""Model zoo: registry, shared layers, every registered architecture, descriptor, FLOPs."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from superres.core.resize import imresize
from superres.models import (
    SRModel,
    count_flops,
    create_model,
    flops_per_output_pixel,
    get_model_spec,
    list_models,
    register_model,
)
from superres.models import registry as registry_module
from superres.models.layers import ChannelAttention, ResBlock, SpatialAttention, Upsampler

# Shrinks the big models (timm-style hyperparameter names) so the suite stays fast on a CPU;
# paper-size configurations are checked separately without (or with a tiny) forward pass.
SHRINK = {"n_feats": 16, "n_blocks": 2, "n_groups": 2, "reduction": 4, "depth": 6}


def build(name: str, scale: int, **overrides) -> nn.Module:
    defaults = get_model_spec(name).defaults
    small = {k: v for k, v in SHRINK.items() if k in defaults and v < defaults[k]}
    return create_model(name, scale=scale, **{**small, **overrides})


def scales_of(name: str) -> tuple[int, ...]:
    return get_model_spec(name).scales or (2, 3, 4)


CASES = [pytest.param(n, s, id=f"{n}-x{s}") for n in list_models() for s in scales_of(n)]


def conv_weights(module: nn.Module) -> int:
    """Convolution weights only (no biases, no PReLU slopes): how the early papers count."""
    return sum(
        m.weight.numel() for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    )


# --- every registered model ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "scale"), CASES)
def test_forward_odd_sizes(name: str, scale: int) -> None:
    torch.manual_seed(0)
    net = build(name, scale).eval()
    with torch.no_grad():
        for shape in [(1, 3, 7, 9), (2, 3, 13, 17), (1, 3, 1, 2)]:
            sr = net(torch.rand(shape))
            assert sr.shape == (shape[0], 3, shape[2] * scale, shape[3] * scale)
            assert torch.isfinite(sr).all()


@pytest.mark.parametrize("name", list_models())
def test_descriptor_attributes(name: str) -> None:
    spec = get_model_spec(name)
    net = build(name, scales_of(name)[-1])
    assert net.arch == name and net.scale == scales_of(name)[-1]
    assert net.tiling in ("exact", "approximate")
    assert isinstance(net.receptive_field, int) and net.receptive_field >= 1
    assert set(net.hparams) == set(spec.defaults)
    assert json.loads(json.dumps(net.hparams)) == net.hparams
    again = create_model(name, **net.hparams)  # hparams alone rebuild the same architecture
    assert again.hparams == net.hparams
    assert [p.shape for p in again.parameters()] == [p.shape for p in net.parameters()]
    assert spec.description


@pytest.mark.parametrize("name", [n for n in list_models() if get_model_spec(n).scales is None])
def test_any_integer_scale_models(name: str) -> None:
    net = build(name, 5).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 3, 4)).shape == (1, 3, 15, 20)
        assert build(name, 1).eval()(torch.rand(1, 3, 3, 4)).shape == (1, 3, 3, 4)


EXACT_CASES = [
    pytest.param(n, s, id=f"{n}-x{s}")
    for n in list_models()
    if get_model_spec(n).tiling == "exact"
    for s in (2, 3, 4)
] + [
    pytest.param("edsr_baseline:deconv", 3, id="edsr_baseline-deconv-x3"),
    pytest.param("edsr_baseline:spatial", 2, id="edsr_baseline-spatial-x2"),
]


@pytest.mark.parametrize(("name", "scale"), EXACT_CASES)
def test_receptive_field_bounds_influence(name: str, scale: int) -> None:
    """Perturbing one LR pixel changes the output only within receptive_field LR pixels of it,
    and the bound is no more than twice the reach observed."""
    extra = {}
    if ":" in name:
        name, variant = name.split(":")
        extra = {"upsampler": "deconv"} if variant == "deconv" else {"attention": variant}
    torch.manual_seed(0)
    net = build(name, scale, **extra).double().eval()
    rf = net.receptive_field
    size, centre = 2 * rf + 5, rf + 2
    lr = torch.rand(1, 3, size, size, dtype=torch.float64)
    bumped = lr.clone()
    bumped[..., centre, centre] += 1.0
    with torch.no_grad():
        changed = (net(bumped) - net(lr)).abs().amax(dim=(0, 1)) > 1e-12
    rows, cols = torch.nonzero(changed, as_tuple=True)
    reach = max(
        (rows // scale - centre).abs().max().item(), (cols // scale - centre).abs().max().item()
    )
    assert reach <= rf, f"{name} x{scale}: influence reaches {reach} > receptive_field {rf}"
    assert 2 * reach >= rf, f"{name} x{scale}: receptive_field {rf} is loose (reach {reach})"


# --- registry --------------------------------------------------------------------------------


def test_list_models() -> None:
    names = list_models()
    assert names == sorted(names)
    expected = {"bicubic", "srcnn", "fsrcnn", "espcn", "vdsr", "edsr_baseline", "rcan"}
    assert expected <= set(names)


def test_overrides_change_parameter_count() -> None:
    def count(net: nn.Module) -> int:
        return sum(p.numel() for p in net.parameters())

    full = create_model("edsr_baseline", scale=2)
    short = create_model("edsr_baseline", scale=2, n_blocks=4)
    assert short.hparams["n_blocks"] == 4 and full.hparams["n_blocks"] == 16
    # each removed block: two 3x3 64->64 convolutions with biases
    assert count(full) - count(short) == 12 * 2 * (64 * 64 * 9 + 64)


def test_unknown_model_lists_available_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'edsr_tiny'.*edsr_baseline"):
        create_model("edsr_tiny")


def test_unknown_hyperparameter_is_named() -> None:
    with pytest.raises(TypeError, match="'n_block'.*valid:.*n_blocks"):
        create_model("edsr_baseline", n_block=4)


@pytest.mark.parametrize("scale", [5, 0, 2.5, True])
def test_unsupported_scale(scale) -> None:
    with pytest.raises(ValueError, match="scale"):
        create_model("edsr_baseline", scale=scale)


def test_non_json_hyperparameter() -> None:
    with pytest.raises(ValueError, match="JSON"):
        create_model("espcn", act=nn.ReLU)


def test_spec_is_frozen_and_read_only() -> None:
    spec = get_model_spec("rcan")
    assert spec.scales == (2, 3, 4, 8) and spec.tiling == "approximate"
    assert spec.defaults["n_groups"] == 10 and spec.supports(4) and not spec.supports(5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.defaults["n_groups"] = 3  # type: ignore[index]
    assert get_model_spec("bicubic").scales is None and get_model_spec("bicubic").supports(7)


@pytest.fixture
def scratch_registry():
    before = dict(registry_module._REGISTRY)
    yield
    registry_module._REGISTRY.clear()
    registry_module._REGISTRY.update(before)


def test_register_model_validates(scratch_registry) -> None:
    @register_model(description="test")
    class Tiny(nn.Module):
        def __init__(self, scale: int = 2, width: int = 4) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
            self.shuffle = nn.PixelShuffle(scale)
            self.receptive_field = 1

        def forward(self, x):
            return self.shuffle(self.conv(x))

    assert "tiny" in list_models()
    assert create_model("tiny", scale=3, width=8).hparams == {"scale": 3, "width": 8}
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny")(Tiny)
    with pytest.raises(TypeError, match="keyword"):
        register_model("kw")(lambda scale=2, **kwargs: None)
    with pytest.raises(TypeError, match="no default"):
        register_model("nodefault")(lambda width, scale=2: None)
    with pytest.raises(TypeError, match="scale"):
        register_model("noscale")(lambda width=2: None)
    with pytest.raises(ValueError, match="tiling"):
        register_model("badtiling", tiling="sometimes")


# --- shared layers ---------------------------------------------------------------------------


def test_channel_attention_rescales_channels() -> None:
    torch.manual_seed(0)
    attention = ChannelAttention(16, reduction=4)
    x = torch.rand(2, 16, 5, 7) + 0.1
    ratio = attention(x) / x  # one sigmoid weight per (sample, channel), in (0, 1)
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-6)
    assert ((ratio > 0) & (ratio < 1)).all()
    assert attention.is_global


def test_spatial_attention_is_local() -> None:
    torch.manual_seed(0)
    attention = SpatialAttention(kernel_size=7)
    x = torch.rand(1, 8, 15, 15, dtype=torch.float64)
    attention.double()
    bumped = x.clone()
    bumped[..., 7, 7] += 1
    changed = torch.nonzero((attention(bumped) - attention(x)).abs().amax(dim=(0, 1)) > 0)
    assert (changed - 7).abs().max() <= attention.radius == 3
    assert not attention.is_global


def test_resblock_residual_scaling() -> None:
    block = ResBlock(8, res_scale=0.0, attention="spatial")
    x = torch.rand(1, 8, 4, 5)
    assert torch.equal(block(x), x)
    assert block.radius == 2 + 3
    with pytest.raises(ValueError, match="attention"):
        ResBlock(8, attention="global")


@pytest.mark.parametrize("mode", ["pixelshuffle", "deconv"])
@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_upsampler_shapes(mode: str, scale: int) -> None:
    up = Upsampler(scale, 8, mode=mode, out_channels=4)
    assert up(torch.rand(1, 8, 3, 5)).shape == (1, 4, 3 * scale, 5 * scale)
    if mode == "pixelshuffle":
        stages = 1 if scale == 3 else int(math.log2(scale))
        assert sum(isinstance(m, nn.PixelShuffle) for m in up) == stages


@pytest.mark.parametrize(("scale", "kernel_size"), [(1, 3), (2, 9), (3, 9), (5, 9), (6, 3)])
def test_deconv_upsampler_any_scale(scale: int, kernel_size: int) -> None:
    up = Upsampler(scale, 4, mode="deconv", kernel_size=kernel_size)
    assert up(torch.rand(1, 4, 2, 3)).shape == (1, 4, 2 * scale, 3 * scale)


def test_upsampler_rejects_unsupported() -> None:
    with pytest.raises(ValueError, match="cannot upsample by 5"):
        Upsampler(5, 8)
    with pytest.raises(ValueError, match="mode"):
        Upsampler(2, 8, mode="nearest")


# --- architecture specifics ------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_equals_imresize(scale: int) -> None:
    x = torch.rand(2, 3, 7, 9)
    net = create_model("bicubic", scale=scale)
    assert torch.equal(net(x), imresize(x, scale))
    assert sum(p.numel() for p in net.parameters()) == 0 and net.receptive_field == 2


def test_rcan_uses_channel_attention_and_is_approximate() -> None:
    net = build("rcan", 2)
    assert sum(isinstance(m, ChannelAttention) for m in net.modules()) == 2 * 2
    assert net.tiling == "approximate"
    assert build("edsr_baseline", 2).tiling == "exact"
    assert build("edsr_baseline", 2, attention="channel").tiling == "approximate"
    assert build("edsr_baseline", 2, attention="spatial").tiling == "exact"


def test_rcan_paper_configuration() -> None:
    """RCAN x4 (10 groups x 20 RCABs, 64 features, reduction 16): 15,592,379 parameters as
    counted on the official code, which includes two MeanShift 1x1 convolutions (2 x 12
    non-trainable parameters) that we keep as a buffer."""
    with torch.device("meta"):
        net = create_model("rcan", scale=4)
    assert sum(p.numel() for p in net.parameters()) == 15_592_379 - 24
    torch.manual_seed(0)
    net = create_model("rcan", scale=4).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 5, 5)).shape == (1, 3, 20, 20)


@pytest.mark.parametrize(
    ("name", "scale", "params"),
    [
        ("edsr_baseline", 2, 1_369_859),  # Lim et al. 2017: "1.5M" at x4; 1,369,859 at x2
        ("edsr_baseline", 4, 1_517_571),
        ("edsr", 4, 43_089_923),  # Lim et al. 2017, Table 1: 43M
    ],
)
def test_edsr_parameter_counts(name: str, scale: int, params: int) -> None:
    with torch.device("meta"):
        net = create_model(name, scale=scale)
    assert sum(p.numel() for p in net.parameters()) == params


def test_srcnn_paper_parameter_counts() -> None:
    """Dong et al., TPAMI 2016, Sec. 4.3: 9-1-5 has 8,032 parameters, 9-5-5 has 57,184
    (one luminance channel, weights only)."""
    assert conv_weights(create_model("srcnn", in_channels=1, f2=1)) == 8_032
    assert conv_weights(create_model("srcnn", in_channels=1)) == 57_184


def test_fsrcnn_paper_parameter_counts() -> None:
    """Dong et al., ECCV 2016: FSRCNN(56, 12, 4) has 12,464 parameters and FSRCNN-s(32, 5, 1)
    3,937 (one luminance channel, weights only)."""
    net = create_model("fsrcnn", scale=3, in_channels=1)
    assert conv_weights(net) == 12_464
    assert conv_weights(create_model("fsrcnn_s", scale=3, in_channels=1)) == 3_937
    assert isinstance(net.upsample[0], nn.ConvTranspose2d)
    assert not any(isinstance(m, nn.PixelShuffle) for m in net.modules())


def test_espcn_uses_pixel_shuffle() -> None:
    net = create_model("espcn", scale=3)
    shuffles = [m for m in net.modules() if isinstance(m, nn.PixelShuffle)]
    assert len(shuffles) == 1 and shuffles[0].upscale_factor == 3
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    assert isinstance(create_model("espcn", act="relu").body[1], nn.ReLU)
    with pytest.raises(ValueError, match="act"):
        create_model("espcn", act="gelu")


def test_vdsr_global_residual() -> None:
    torch.manual_seed(0)
    net = create_model("vdsr", scale=3, depth=5, n_feats=8).eval()
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        upsampled = imresize(x, 3)
        assert torch.allclose(net(x) - upsampled, net.body(upsampled), atol=1e-6)
    paper = create_model("vdsr", in_channels=1)  # 20 layers, 64 filters: about 0.67M
    assert sum(p.numel() for p in paper.parameters()) == 665_921


# --- descriptor and FLOPs --------------------------------------------------------------------


def test_srmodel_descriptor() -> None:
    torch.manual_seed(0)
    net = build("edsr_baseline", 2)
    model = SRModel.from_module(net, metadata={"name": "test"})
    assert (model.arch, model.scale, model.in_channels, model.out_channels) == (
        "edsr_baseline",
        2,
        3,
        3,
    )
    assert model.num_params == sum(p.numel() for p in net.parameters())
    assert model.size_multiple == 1 and model.tiling == "exact"
    assert model.receptive_field == net.receptive_field
    assert model.eval() is model and not net.training
    assert model.to("cpu") is model and model.device.type == "cpu"
    x = torch.rand(3, 5, 6)
    sr = model(x)
    assert sr.shape == (3, 10, 12) and sr.is_inference()
    assert torch.equal(model(x[None])[0], sr)
    summary = json.loads(json.dumps(model.describe()))
    assert summary["num_params"] == model.num_params and summary["metadata"]["name"] == "test"
    assert "edsr_baseline x2" in repr(model) and "n_blocks=2" in repr(model)
    with pytest.raises(ValueError, match="channels"):
        model(torch.rand(1, 4, 5, 5))
    with pytest.raises(ValueError, match="create_model"):
        SRModel.from_module(nn.Conv2d(3, 3, 3))


def test_count_flops_espcn_by_hand() -> None:
    net = create_model("espcn", scale=3)
    h, w = 5, 7
    per_pixel = 3 * 64 * 25 + 64 * 32 * 9 + 32 * (3 * 9) * 9  # multiply-adds per LR pixel
    assert count_flops(net, lr_hw=(h, w)) == 2 * h * w * per_pixel
    assert flops_per_output_pixel(SRModel.from_module(net)) == pytest.approx(2 * per_pixel / 9)


def test_count_flops_deconv_and_parameter_free() -> None:
    net = create_model("fsrcnn_s", scale=2, in_channels=1)
    h, w = 4, 5
    convs = 25 * 32 + 32 * 5 + 9 * 5 * 5 + 5 * 32  # per LR pixel, one channel in
    deconv = 32 * 81  # each LR feature value spreads over a 9x9 kernel to one output channel
    assert count_flops(net, lr_hw=(h, w)) == 2 * h * w * (convs + deconv)
    assert count_flops(create_model("bicubic", scale=2), lr_hw=(h, w)) == 0


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_plainsr_residual_equals_pixel_shuffle_of_repeated_input(scale: int) -> None:
    """The broadcast residual is the published form shuffle(body(x) + repeat(x, s^2)), for
    NCHW and channels-last input, with and without autograd."""
    torch.manual_seed(0)
    model = create_model("plainsr", scale=scale).eval()
    x = torch.rand(2, 3, 9, 13)
    with torch.no_grad():
        residual = torch.repeat_interleave(x, scale * scale, dim=1)
        reference = nn.functional.pixel_shuffle(model.body(x) + residual, scale)
        plain = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        last = model_cl(x.contiguous(memory_format=torch.channels_last))
    assert torch.equal(plain, reference)
    assert last.is_contiguous(memory_format=torch.channels_last)
    assert float((last - reference).abs().max()) < 1e-6
    y = model(x.requires_grad_())
    assert float((y.detach() - reference).abs().max()) < 1e-6
    y.sum().backward()
    assert x.grad is not None


def _perturb(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter (the zero-initialised branches included) random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_reparameterised_fast_tier_deploys_as_plainsr_with_the_same_output(scale: int) -> None:
    """plainsr_rep's four branches fuse into one 3x3 per block: the deployed plainsr module
    gives the same output (borders included) at the plain network's cost."""
    rep = create_model("plainsr_rep", scale=scale, channels=8, n_convs=2).eval()
    _perturb(rep)
    plain = rep.deploy().eval()
    assert plain.arch == "plainsr" and plain.hparams["channels"] == 8
    assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in rep.parameters())
    x = torch.rand(2, 3, 13, 17, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (rep(x) - plain(x)).abs().max() < 1e-5
        block = rep.body[2]
        assert (
            block(x[:, :1].expand(2, 8, 13, 17)) - block.fused()(x[:, :1].expand(2, 8, 13, 17))
        ).abs().max() < 1e-5


def test_a_1x1_tail_deploys_tiles_exactly_and_costs_less() -> None:
    """tail_kernel=1: the rep form's plain 1x1 tail deploys as plainsr's, the receptive field
    shrinks by one pixel and still bounds what tiles need (exact tiling with the least
    overlap), and the tail's multiply-adds drop to a ninth; other sizes are refused."""
    from superres.inference import engine
    from superres.models.flops import flops_per_output_pixel

    rep = create_model("plainsr_rep", scale=4, channels=8, n_convs=2, tail_kernel=1).eval()
    _perturb(rep)
    plain = rep.deploy().eval()
    assert plain.hparams["tail_kernel"] == 1 and plain.body[-1].kernel_size == (1, 1)
    assert plain.receptive_field == rep.receptive_field == 3
    x = torch.rand(1, 3, 29, 23, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = plain(x)
        assert (rep(x) - whole).abs().max() < 1e-5
    tiled = engine.upscale_tensor(x, plain, tile=8, overlap=0)
    assert float((tiled - whole).abs().max()) < 1e-5
    wide = create_model("plainsr", scale=4, channels=8, n_convs=2)
    saved = flops_per_output_pixel(wide) - flops_per_output_pixel(plain)
    assert saved == pytest.approx(2 * 8 * 48 * 8 / 16)  # 8 of 9 taps, per output pixel
    with pytest.raises(ValueError, match="tail_kernel must be 1 or 3, got 5"):
        create_model("plainsr", scale=4, tail_kernel=5)


def test_reparameterised_model_starts_at_the_plain_weights_it_is_initialised_from() -> None:
    """Its main branches carry plainsr's tensor names and the other branches start at zero,
    so init_from a plainsr checkpoint reproduces that network exactly."""
    plain = create_model("plainsr", scale=2, channels=8, n_convs=2).eval()
    _perturb(plain, seed=2)
    rep = create_model("plainsr_rep", scale=2, channels=8, n_convs=2).eval()
    missing, unexpected = rep.load_state_dict(plain.state_dict(), strict=False)
    assert (
        not unexpected
        and missing
        and all(
            k.split(".")[-2] in ("conv1", "expand", "squeeze") or k.endswith("gamma")
            for k in missing
        )
    )
    x = torch.rand(1, 3, 11, 9, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (rep(x) - plain(x)).abs().max() < 1e-6
