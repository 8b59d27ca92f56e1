from lightfence.units import C_VACUUM_KM_PER_MS, Bound, max_distance_km


def test_one_ms_round_trip_is_at_most_149_9_km_in_vacuum() -> None:
    assert abs(max_distance_km(1.0) - 149.896229) < 1e-6
    assert C_VACUUM_KM_PER_MS == 299.792458


def test_fibre_bound_is_two_thirds_of_vacuum() -> None:
    assert abs(max_distance_km(3.0, Bound.FIBRE) - 2 * 149.896229) < 1e-6
