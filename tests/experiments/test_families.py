"""`compare families` reads what it needs from the family declarations, never from names."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pyro_gen.experiments.families import (
    draw_samples,
    family_budget,
    format_table,
    has_encoder,
    likelihood_kind,
    split_compare_options,
)


class _Sampler:
    def sample(self, num, mean=True):
        return torch.full((num, 2, 2), 0.25 if mean else 1.0)


def test_budget_comes_from_the_family_declaration():
    fam = SimpleNamespace(name="x", budgets={"quick": {"epochs": 2}, "smoke": {"steps": 3}})
    assert family_budget(fam, "quick") == {"epochs": 2}
    assert family_budget(fam, "smoke") == {"steps": 3}
    assert family_budget(fam, "full") == {}  # the family's own default budget
    assert family_budget(SimpleNamespace(name="y"), "quick") == {}
    with pytest.raises(ValueError, match="budget must be one of"):
        family_budget(fam, "huge")
    with pytest.raises(ValueError, match="unknown keys"):
        family_budget(SimpleNamespace(name="z", budgets={"quick": {"epoch": 1}}), "quick")


def test_samples_go_through_the_likelihood_only_when_declared():
    model = _Sampler()
    through = draw_samples(model, SimpleNamespace(sample_observations=True), 3, seed=0)
    plain = draw_samples(model, SimpleNamespace(sample_observations=False), 3, seed=0)
    assert through.shape == plain.shape == (3, 4)
    assert bool((through == 1.0).all()) and bool((plain == 0.25).all())
    assert bool((draw_samples(model, SimpleNamespace(), 2, seed=0) == 0.25).all())


def test_compare_options_split_into_family_and_run_settings():
    fam = SimpleNamespace(compare_options={"binarize": "dynamic", "method": "pcd"})
    assert split_compare_options(fam) == ({"method": "pcd"}, {"binarize": "dynamic"})
    assert fam.compare_options == {"binarize": "dynamic", "method": "pcd"}  # the declaration is untouched
    assert split_compare_options(SimpleNamespace()) == ({}, {})


def test_the_registered_ebm_joins_on_the_others_binary_pixels_with_an_ais_estimate():
    from pyro_gen.registry import get_family

    ebm = get_family("ebm")
    assert split_compare_options(ebm)[1] == {"binarize": "dynamic"}
    assert likelihood_kind(ebm, {"log_z_runs": [1.0, 1.1]}) == "estimate (AIS)"
    assert likelihood_kind(SimpleNamespace(likelihood="estimate"), {}) == "estimate"
    assert likelihood_kind(SimpleNamespace(likelihood="exact"), {"log_z_runs": [0.0]}) == "exact"
    assert likelihood_kind(SimpleNamespace(), {}) is None


def test_encoders_are_recognized_by_what_a_model_offers():
    assert has_encoder(SimpleNamespace(encode=lambda x: x))
    assert has_encoder(SimpleNamespace(features=lambda x: x))
    assert not has_encoder(SimpleNamespace(sample=lambda n: n))


def test_table_reports_declared_kind_and_costs():
    costs = {
        "steps": 10,
        "train_seconds": 2.0,
        "ms_per_step": 200.0,
        "cpu_ms_per_step": 150.0,
        "eval_seconds": 0.5,
        "final_eval_seconds": 1.5,
        "threads": 1,
        "device": "cpu",
        "step_ms": {"median": 190.0, "p10": 180.0, "p90": 250.0, "n": 10},
    }
    row = {
        "family": "mine",
        "role": "flow",
        "pixels": "binary pixels",
        "test_bits_per_dim": 0.3,
        "likelihood_kind": "bound",
        "frechet_distance": 1.0,
        "probe_accuracy": None,
        "costs": costs,
    }
    floor = {
        "frechet_distance_train_vs_test": 0.1,
        "probe_accuracy_raw_pixels": 0.9,
        "feature_classifier_accuracy": 0.95,
    }
    text = format_table([row], {"other": "not registered"}, floor, "digits", "smoke", 10)
    assert "| mine | flow | binary pixels | 0.3000 | bound | 1.00 | - |" in text
    assert (
        "| mine | 10 | 200.00 | 150.00 | 2.00 | 0.50 | 1.50 | 1 | cpu | 190.00 [180.00, 250.00] (n=10) |"
        in text
    )
    assert "evaluation is excluded" in text and "other (not registered)" in text


@pytest.mark.slow
def test_compare_families_smoke(tmp_path):
    from pyro_gen.experiments.families import compare_families

    res = compare_families(
        "digits",
        tmp_path,
        families=["made", "autoencoder", "nonexistent"],
        budget="smoke",
        k=5,
        num_samples=50,
        progress=False,
        device="cpu",
    )
    rows = {r["family"]: r for r in res["rows"]}
    assert rows["made"]["likelihood_kind"] == "exact" and rows["made"]["frechet_distance"] > 0
    assert (
        rows["autoencoder"]["test_bits_per_dim"] is None and 0 <= rows["autoencoder"]["probe_accuracy"] <= 1
    )
    for r in rows.values():
        c = r["costs"]
        assert c["ms_per_step"] == pytest.approx(1000 * c["train_seconds"] / c["steps"])
    assert res["skipped"] == {"nonexistent": "not registered"}
    assert (tmp_path / "families.md").exists() and (tmp_path / "samples.png").exists()
    page = (tmp_path / "index.html").read_text()
    assert 'href="made/index.html"' in page and (tmp_path / "made" / "index.html").is_file()
