import numpy as np

from lightfence.sim.latency import fit_latency_model, shipped_latency_model


def test_shipped_model_matches_the_data_readme() -> None:
    model = shipped_latency_model()
    # README: median RTT / fibre-minimum about 2.0, 1st percentile about 1.3.
    med = float(model.inflation(3000.0, 0.5))
    assert 1.6 < med < 2.4
    assert float(model.inflation(3000.0, 0.0)) >= 1.0  # cleaned data never beats fibre
    assert sum(model.pairs_per_band) > 20_000


def test_inflation_is_monotone_in_quantile_and_rtt_never_beats_fibre() -> None:
    model = shipped_latency_model()
    qs = np.linspace(0, 1, 21)
    for d in (50.0, 800.0, 4000.0, 15000.0):
        infl = model.inflation(np.full_like(qs, d), qs)
        assert np.all(np.diff(infl) >= 0)
        assert np.all(model.rtt_ms(d, qs) >= model.fibre_rtt_ms(d) * 0.999)


def test_sparse_bands_borrow_a_neighbour() -> None:
    rng = np.random.default_rng(0)
    d = rng.uniform(3000, 5000, 200)
    model = fit_latency_model(d, model_rtt := 2 * d / 199.86 * 2.0)
    assert model_rtt.shape == d.shape
    assert abs(float(model.inflation(100.0, 0.5)) - 2.0) < 0.01
