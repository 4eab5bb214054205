"""Flow guides against the mean-field guide: same budget, rows with costs from the trainer."""

import pytest

from pyro_gen.data import load_data
from pyro_gen.experiments.flow_guides import compare_guides


def test_compare_guides_trains_every_guide_on_the_same_budget():
    data = load_data("digits", binarize="dynamic", seed=0)
    rows = compare_guides(data, flows=("planar",), num_flows=2, latent_dim=2, hidden=(16,), epochs=0.1, k=8)
    assert [r["guide"] for r in rows] == ["mean-field", "planar x2"]
    assert rows[0]["steps"] == rows[1]["steps"] > 0
    assert rows[1]["num_parameters"] > rows[0]["num_parameters"]  # the flow steps add parameters
    for r in rows:
        assert r["seconds"] == r["costs"]["train_seconds"]
        assert r["costs"]["ms_per_step"] == pytest.approx(1000 * r["seconds"] / r["steps"])
        assert r["gap"] == pytest.approx(r["test_log_likelihood"] - r["test_elbo"])
