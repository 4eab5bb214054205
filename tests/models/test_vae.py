import pyro
import pytest
import torch

from pyro_gen.models import VAE


def test_bernoulli_refuses_data_outside_unit_interval():
    vae = VAE(6, 2, hidden=(8,))
    with pytest.raises(ValueError, match=r"data has values in \[-0.5, 1\]"):
        vae.check_data(torch.tensor([[-0.5, 0, 1, 1, 0, 0.5]]))
    vae.check_data(torch.rand(3, 6))  # grey levels are fine
    gauss = VAE(6, 2, hidden=(8,), likelihood="gaussian")
    gauss.check_data(torch.randn(3, 6) * 5)
    with pytest.raises(ValueError, match="likelihood"):
        VAE(6, 2, likelihood="poisson")


def test_model_guide_trace_shapes_and_log_density():
    vae = VAE(6, 3, hidden=(8,))
    x = torch.bernoulli(torch.rand(5, 6))
    guide_tr = pyro.poutine.trace(vae.guide).get_trace(x)
    model_tr = pyro.poutine.trace(pyro.poutine.replay(vae.model, trace=guide_tr)).get_trace(x)
    z = guide_tr.nodes["z"]["value"]
    assert z.shape == (5, 3)
    logits = vae.decoder(z)
    manual = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum()
    assert torch.allclose(model_tr.nodes["x"]["fn"].log_prob(x).sum(), manual)


def test_encode_decode_sample_interpolate():
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=(8,))
    x = torch.rand(4, 6)
    loc, scale = vae.encode(x)
    assert loc.shape == (4, 2) and (scale > 0).all()
    assert torch.allclose(vae.reconstruct(x), vae.decode(loc))
    s = vae.sample(10)
    assert s.shape == (10, 6) and (s >= 0).all() and (s <= 1).all()
    assert set(vae.sample(10, mean=False).unique().tolist()) <= {0.0, 1.0}
    path = vae.interpolate(x[0], x[1], steps=5)
    assert torch.allclose(path[0], vae.decode(loc[:1])[0], atol=1e-6)
    assert torch.allclose(path[-1], vae.decode(loc[1:2])[0], atol=1e-6)


def test_output_bias_initialised_to_data_mean():
    vae = VAE(3, 2, hidden=(4,))
    mean = torch.tensor([0.1, 0.5, 0.9])
    vae.init_output_bias(mean)
    with torch.no_grad():
        vae.decoder[-1].weight.zero_()
    assert torch.allclose(vae.decode(torch.zeros(1, 2))[0], mean, atol=1e-6)


def test_learned_gaussian_scale_is_a_parameter():
    vae = VAE(3, 2, hidden=(4,), likelihood="gaussian", gaussian_scale=0.3, learn_scale=True)
    assert any(n == "raw_scale" for n, _ in vae.named_parameters())
    d = vae.likelihood_dist(torch.zeros(1, 2))
    assert torch.allclose(d.base_dist.scale, torch.full((3,), 0.3), atol=1e-6)


def test_two_layer_vae_sites_and_conditionals():
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=(8,), lower_latents=(4,), between_hidden=(5,))
    assert vae.latent_sites == ["z1", "z2"] and vae.latent_dims == [4, 2]
    x = torch.bernoulli(torch.rand(5, 6))
    guide_tr = pyro.poutine.trace(vae.guide).get_trace(x)
    model_tr = pyro.poutine.trace(pyro.poutine.replay(vae.model, trace=guide_tr)).get_trace(x)
    z1, z2 = guide_tr.nodes["z1"]["value"], guide_tr.nodes["z2"]["value"]
    assert z1.shape == (5, 4) and z2.shape == (5, 2)
    # guide: q(z2 | z1) from the upward network; model: p(z1 | z2) from the downward one
    loc, scale = vae.up[0](z1)
    want = torch.distributions.Normal(loc, scale).log_prob(z2).sum()
    assert torch.allclose(guide_tr.nodes["z2"]["fn"].log_prob(z2).sum(), want)
    loc, scale = vae.down[0](z2)
    want = torch.distributions.Normal(loc, scale).log_prob(z1).sum()
    assert torch.allclose(model_tr.nodes["z1"]["fn"].log_prob(z1).sum(), want)
    manual = torch.distributions.Bernoulli(logits=vae.decoder(z1)).log_prob(x).sum()
    assert torch.allclose(model_tr.nodes["x"]["fn"].log_prob(x).sum(), manual)
    assert set(model_tr.stochastic_nodes) - {"data"} == {"z1", "z2"}  # "data": the subsampling plate
    # the utilities speak of the top layer
    top_loc, _ = vae.encode(x)
    assert top_loc.shape == (5, 2) and vae.reconstruct(x).shape == (5, 6)
    assert vae.sample(7).shape == (7, 6) and vae.interpolate(x[0], x[1], steps=3).shape == (3, 6)


def _inv_softplus_scale(std: torch.Tensor) -> torch.Tensor:
    return (std - 1e-5).expm1().log()


def test_two_layer_linear_gaussian_vae_with_exact_guide_recovers_closed_form_likelihood():
    """Linear maps and constant scales make the two-layer VAE linear-Gaussian: z2 ~ N(0, 1),
    z1 | z2 ~ N(A z2 + a, s1^2), x | z1 ~ N(W z1 + b, 0.7^2 I). With the guide set to the exact
    posterior p(z1 | x) p(z2 | z1) every importance weight equals p(x): the estimate and the
    ELBO must both be the closed-form log N(x; W a + b, W v1 W^T + 0.49 I) for any k."""
    from pyro_gen.evaluation.likelihood import importance_log_likelihood

    torch.manual_seed(1)
    vae = VAE(
        3, 1, hidden=(), lower_latents=(1,), between_hidden=(), likelihood="gaussian", gaussian_scale=0.7
    )
    down, up, enc = vae.down[0].net[-1], vae.up[0].net[-1], vae.encoder.net[-1]
    with torch.no_grad():
        down.weight[1:] = 0.0  # constant scale of p(z1 | z2)
        down.bias[1] = 0.3
    A, a = down.weight[0, 0].detach(), down.bias[0].detach()
    s1 = torch.nn.functional.softplus(down.bias[1].detach()) + 1e-5
    W, b = vae.decoder[-1].weight.detach()[:, 0], vae.decoder[-1].bias.detach()
    v1 = A**2 + s1**2  # Var z1
    post_var = 1 / (1 / v1 + W @ W / 0.49)  # Var(z1 | x)
    with torch.no_grad():
        enc.weight[0] = post_var * W / 0.49
        enc.bias[0] = post_var * (a / v1 - W @ b / 0.49)
        enc.weight[1] = 0.0
        enc.bias[1] = _inv_softplus_scale(post_var.sqrt())
        up.weight[0, 0] = A / v1  # E(z2 | z1) = A (z1 - a) / v1
        up.bias[0] = -A * a / v1
        up.weight[1] = 0.0
        up.bias[1] = _inv_softplus_scale((1 - A**2 / v1).sqrt())
    exact = torch.distributions.MultivariateNormal(W * a + b, v1 * torch.outer(W, W) + 0.49 * torch.eye(3))
    x = exact.sample((5,)) * 2
    est = importance_log_likelihood(vae, x, k=7, seed=0)
    assert torch.allclose(est["per_point"], exact.log_prob(x).double(), atol=1e-4)
    assert torch.allclose(est["per_point_elbo"], exact.log_prob(x).double(), atol=1e-4)


def test_two_layer_vae_from_the_command_line_reloads_with_its_layers(tmp_path, capsys):
    from pyro_gen.cli import main
    from pyro_gen.runs.folder import load_run

    out = tmp_path / "run"
    args = ["fit", "vae", "--latent-dim", "3", "--hidden", "16", "--lower-latents", "6"]
    args += ["--between-hidden", "5", "--steps", "4", "--k", "2", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    model, config = load_run(out)
    assert config["model"]["lower_latents"] == "6" and model.latent_dims == [6, 3]
    assert model.up[0].net[0].in_features == 6 and model.up[0].net[0].out_features == 5
    x = torch.bernoulli(torch.full((2, 64), 0.3))
    assert pyro.poutine.trace(model.guide).get_trace(x).nodes["z2"]["value"].shape == (2, 3)
    capsys.readouterr()
    assert main(["fit", "vae", "--lower-latents", "0", "--steps", "1", "--out", str(tmp_path / "bad")]) == 2
    assert "--lower-latents widths must be positive" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_conv_vae_keeps_the_sites_and_likelihood_of_the_mlp_vae():
    torch.manual_seed(0)
    vae = VAE(64, 3, hidden=(16,), arch="conv", image_shape=(8, 8), conv_channels=(4, 8))
    x = torch.bernoulli(torch.rand(5, 64))
    guide_tr = pyro.poutine.trace(vae.guide).get_trace(x)
    model_tr = pyro.poutine.trace(pyro.poutine.replay(vae.model, trace=guide_tr)).get_trace(x)
    assert set(model_tr.stochastic_nodes) - {"data"} == {"z"}
    z = guide_tr.nodes["z"]["value"]
    manual = torch.distributions.Bernoulli(logits=vae.decoder(z)).log_prob(x).sum()
    assert torch.allclose(model_tr.nodes["x"]["fn"].log_prob(x).sum(), manual)
    assert vae.config["arch"] == "conv" and "arch" not in VAE(64, 3).config  # MLP config unchanged


def test_conv_vae_with_lower_latents_keeps_mlp_networks_between_layers():
    torch.manual_seed(0)
    vae = VAE(64, 2, hidden=(16,), arch="conv", image_shape=(8, 8), lower_latents=(4,), between_hidden=(5,))
    x = torch.bernoulli(torch.rand(3, 64))
    guide_tr = pyro.poutine.trace(vae.guide).get_trace(x)
    assert guide_tr.nodes["z1"]["value"].shape == (3, 4) and guide_tr.nodes["z2"]["value"].shape == (3, 2)
    assert vae.up[0].net[0].in_features == 4 and vae.sample(2).shape == (2, 64)


def test_vae_family_refuses_conv_on_non_image_data():
    from pyro_gen.data import load_data
    from pyro_gen.families.vae import VAEConfig, build_vae

    with pytest.raises(ValueError, match=r"--arch conv needs image data .* moons has points of shape \(2,\)"):
        build_vae(load_data("moons"), VAEConfig(arch="conv"))
    model = build_vae(load_data("digits"), VAEConfig(arch="conv", hidden="8", conv_channels="4"))
    assert model.arch == "conv" and model.encoder.image_shape == (8, 8)


def test_kl_to_prior_is_the_closed_form_for_the_normal_prior():
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=(8,))
    x = torch.rand(4, 6)
    loc, scale = vae.encoder(x)
    want = (0.5 * (loc**2 + scale**2 - 1) - scale.log()).sum(-1)
    assert torch.allclose(vae.kl_to_prior(x), want, atol=1e-5)
