"""The quickstart's time-boxing: the 4M's step rate and per-call cost from two calibration calls."""

import pytest

from fourm_quickstart.stages import _steps_for, rate_and_overhead


def test_two_calls_separate_the_rate_from_the_per_call_cost():
    # a call costs 4 s outside its steps, a step 1.4 s: 10 steps 18 s, 20 steps 32 s
    rate, overhead = rate_and_overhead((10, 4 + 10 * 1.4), (20, 4 + 20 * 1.4), fallback=0.5)
    assert rate == pytest.approx(1 / 1.4) and overhead == pytest.approx(4.0)
    # the one-call estimate (10 steps in 18 s: 0.56 steps/s) would leave a fifth of the remaining time unused
    assert 10 / 18 < 0.8 * rate
    # 300 s left after 40 steps: the steps that fit
    assert _steps_for(300 - overhead, rate, 40, 8) == 40 + int(296 / 1.4)


@pytest.mark.parametrize("long_wall", [17.0, 18.0])
def test_noise_that_hides_the_difference_falls_back_to_the_trainers_rate(long_wall):
    # the longer call no slower than the shorter one: no rate from the difference; the trainer's own rate
    # (0.7 steps/s) is used and the rest of the longer call's time is its per-call cost
    rate, overhead = rate_and_overhead((10, 18.0), (20, long_wall), fallback=0.7)
    assert rate == 0.7 and overhead == pytest.approx(max(0.0, long_wall - 20 / 0.7))


def test_a_zero_fallback_rate_does_not_divide_by_zero():
    rate, overhead = rate_and_overhead((10, 5.0), (20, 5.0), fallback=0.0)
    assert rate > 0 and overhead == 0.0
