"""The shared output-bias initialization: every model starts at the data mean, as before."""

import math

import pytest
import torch

from pyro_gen.models.autoencoders import Autoencoder
from pyro_gen.models.autoregressive import MADE, PixelCNN
from pyro_gen.models.discrete import DiscreteVAE
from pyro_gen.models.nets import set_output_bias
from pyro_gen.models.vae import VAE


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-3, 1 - 1e-3)
    return torch.log(p) - torch.log1p(-p)


@pytest.fixture
def mean() -> torch.Tensor:
    # includes 0 and 1, where the clamp decides the logit
    return torch.cat(
        [torch.tensor([0.0, 1.0, 0.5]), torch.rand(13, generator=torch.Generator().manual_seed(0))]
    )


def test_logit_link_is_the_clamped_logit(mean):
    bias = torch.zeros(16)
    set_output_bias(bias, mean)
    assert torch.equal(bias, _logit(mean))
    assert bias[0] == pytest.approx(math.log(1e-3 / (1 - 1e-3)), rel=1e-5)
    assert torch.sigmoid(bias[2:]).sub(mean[2:]).abs().max() < 1e-6


def test_identity_link_copies_the_mean(mean):
    bias = torch.zeros(16)
    set_output_bias(bias, mean, link="identity")
    assert torch.equal(bias, mean)


def test_shared_bias_matches_the_float64_logit_of_the_overall_mean(mean):
    bias = torch.zeros(1)
    set_output_bias(bias, mean, shared=True)
    p = float(mean.mean().clamp(1e-3, 1 - 1e-3))
    assert bias.item() == torch.tensor(math.log(p) - math.log1p(-p), dtype=torch.float32).item()


def test_unknown_link_is_refused(mean):
    with pytest.raises(ValueError, match="link must be"):
        set_output_bias(torch.zeros(16), mean, link="probit")


def test_models_set_their_output_bias_as_before(mean):
    vae = VAE(16, latent_dim=2, hidden=(8,))
    vae.init_output_bias(mean)
    assert torch.equal(vae.decoder[-1].bias, _logit(mean))
    gauss = VAE(16, latent_dim=2, hidden=(8,), likelihood="gaussian")
    gauss.init_output_bias(mean)
    assert torch.equal(gauss.decoder[-1].bias, mean)

    ae = Autoencoder(16, code_dim=3, hidden=(8,))
    ae.init_output_bias(mean)
    assert torch.equal(ae.decoder[-1].bias, _logit(mean))
    ae_mse = Autoencoder(16, code_dim=3, hidden=(8,), loss="mse")
    ae_mse.init_output_bias(mean)
    assert torch.equal(ae_mse.decoder[-1].bias, mean)

    made = MADE(16, hidden=(32,))
    made.init_output_bias(mean)
    assert torch.equal(made.net[-1].bias, _logit(mean))
    made_g = MADE(16, hidden=(32,), likelihood="gaussian")
    before = made_g.net[-1].bias.detach().clone()
    made_g.init_output_bias(mean)
    assert torch.equal(made_g.net[-1].bias, before)  # Gaussian conditionals are left alone

    dvae = DiscreteVAE(16, num_latents=3, hidden=(8,))
    dvae.init_output_bias(mean)
    assert torch.equal(dvae.decoder[-1].bias, _logit(mean))

    cnn = PixelCNN(shape=(4, 4), channels=4, num_layers=1)
    cnn.init_output_bias(mean)
    p = float(mean.mean().clamp(1e-3, 1 - 1e-3))
    expected = torch.full_like(cnn.head[-1].bias, math.log(p) - math.log1p(-p))
    assert torch.equal(cnn.head[-1].bias, expected)


# ----------------------------------------------------------------------------- convolutional
@pytest.mark.parametrize("side", [8, 28])
def test_conv_encoder_and_decoder_shapes(side):
    from pyro_gen.models.nets import ConvDecoder, ConvEncoder

    enc = ConvEncoder((side, side), latent_dim=5, channels=(4, 8), hidden=(16,))
    dec = ConvDecoder(5, (side, side), channels=(4, 8), hidden=(16,))
    x = torch.rand(3, side * side)
    loc, scale = enc(x)
    assert loc.shape == (3, 5) and scale.shape == (3, 5) and (scale > 0).all()
    assert dec(loc).shape == (3, side * side)
    # leading batch dims (particles, points) are kept
    assert enc(torch.rand(2, 3, side * side))[0].shape == (2, 3, 5)
    assert dec(torch.randn(2, 3, 5)).shape == (2, 3, side * side)
    # each point is encoded on its own (no mixing across the batch)
    assert torch.allclose(enc(x[:1])[0], loc[:1], atol=1e-6)


def test_conv_networks_refuse_non_image_and_indivisible_shapes():
    from pyro_gen.models.nets import ConvDecoder, ConvEncoder

    with pytest.raises(ValueError, match=r"needs image data of shape \(H, W\)"):
        ConvEncoder((2,), latent_dim=2)
    with pytest.raises(ValueError, match="divisible by 2\\^3"):
        ConvDecoder(2, (28, 28), channels=(4, 8, 16))
    with pytest.raises(ValueError, match="--arch conv needs image data"):
        VAE(2, 2, arch="conv", image_shape=None)


def test_conv_encoder_context_is_used():
    from pyro_gen.models.nets import ConvEncoder

    torch.manual_seed(0)
    enc = ConvEncoder((8, 8), latent_dim=3, channels=(4,), hidden=(8,), context_dim=2)
    x = torch.rand(4, 64)
    a = enc(x, torch.tensor([[1.0, 0.0]]).expand(4, 2))[0]
    b = enc(x, torch.tensor([[0.0, 1.0]]).expand(4, 2))[0]
    assert not torch.allclose(a, b)


def test_conv_decoder_output_bias_starts_at_the_data_mean(mean):
    vae = VAE(64, 2, hidden=(8,), arch="conv", image_shape=(8, 8), conv_channels=(4, 8))
    m = torch.rand(64, generator=torch.Generator().manual_seed(1))
    vae.init_output_bias(m)
    with torch.no_grad():  # silence the network: the output is the bias alone
        vae.decoder.deconv[-1].weight.zero_()
    assert torch.allclose(vae.decode(torch.zeros(1, 2))[0], m.clamp(1e-3, 1 - 1e-3), atol=1e-5)


def test_conv_networks_start_with_he_initialization():
    from pyro_gen.models.nets import ConvEncoder

    torch.manual_seed(0)
    enc = ConvEncoder((28, 28), latent_dim=4, channels=(32, 64), hidden=(256,))
    conv = enc.conv[2]  # 32 -> 64 channels, 4x4 kernels: fan-in 512
    assert float(conv.weight.detach().std()) == pytest.approx(math.sqrt(2 / 512), rel=0.05)
    assert float(conv.bias.detach().abs().max()) == 0.0
