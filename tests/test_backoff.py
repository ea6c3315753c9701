"""Capped exponential backoff with jitter (agent/backoff.py), as camera recovery uses it; the
MQTT link's variant (jitter only below each ceiling) is tested in tests/test_mqtt_link.py."""

import pytest

from agent.backoff import Backoff


@pytest.mark.parametrize("initial, cap, expected", [
    (0.5, 30.0, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),
    (1.0, 3.0, [1.0, 2.0, 3.0, 3.0]),
    (2.0, 2.0, [2.0, 2.0]),
])
def test_backoff_doubles_up_to_the_cap(initial, cap, expected):
    backoff = Backoff(initial, cap, jitter=0.0)
    assert [backoff.next_delay() for _ in expected] == expected
    backoff.reset()
    assert backoff.next_delay() == initial


@pytest.mark.parametrize("rng_value, factor", [(0.0, 0.8), (0.5, 1.0), (1.0, 1.2)])
def test_backoff_jitter_stays_within_its_fraction(rng_value, factor):
    backoff = Backoff(1.0, 30.0, jitter=0.2, rng=lambda: rng_value)
    assert backoff.next_delay() == pytest.approx(factor)
    assert backoff.next_delay() == pytest.approx(2 * factor)


def test_backoff_with_jitter_never_waits_longer_than_its_cap():
    backoff = Backoff(0.2, 2.0, jitter=0.2, rng=lambda: 1.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert delays[:3] == pytest.approx([0.24, 0.48, 0.96]) and max(delays) == 2.0


def test_default_reconnect_settings_find_a_camera_within_2_s_of_its_return():
    from agent.config.agent_config import CameraSettings
    from agent.sources.recovery import BACKOFF_INITIAL_S, BACKOFF_MAX_S
    camera = CameraSettings()
    assert (camera.reconnect_initial_s, camera.reconnect_max_s) == (BACKOFF_INITIAL_S,
                                                                    BACKOFF_MAX_S)
    assert BACKOFF_MAX_S <= 2.0


@pytest.mark.parametrize("initial, cap, jitter", [(0, 1, 0.2), (2, 1, 0.2), (1, 2, 1.0)])
def test_backoff_rejects_bad_settings(initial, cap, jitter):
    with pytest.raises(ValueError):
        Backoff(initial, cap, jitter)
