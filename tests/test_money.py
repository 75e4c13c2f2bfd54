"""The one money function: CMS arithmetic and rounding (billing-domain 2.2, 2.3)."""

from decimal import Decimal

import numpy as np
import pytest

from scrubber.money import CF_SCALE, GPCI_SCALE, RVU_SCALE, cents_to_decimal, div_round_half_up, fee_cents, to_scaled

CF_2025 = to_scaled("32.3465", CF_SCALE)
ONE = GPCI_SCALE


def rvu(v: str) -> int:
    return to_scaled(v, RVU_SCALE)


def gpci(v: str) -> int:
    return to_scaled(v, GPCI_SCALE)


def test_national_20553_matches_cms() -> None:
    # 1.81 x 32.3465 = 58.547165 -> 58.55 ; 1.24 x 32.3465 = 40.10966 -> 40.11
    assert fee_cents(rvu("0.75"), rvu("0.98"), rvu("0.08"), ONE, ONE, ONE, CF_2025) == 5855
    assert fee_cents(rvu("0.75"), rvu("0.41"), rvu("0.08"), ONE, ONE, ONE, CF_2025) == 4011


def test_wisconsin_locality_matches_cms_payment_file() -> None:
    # PFWI25A.TXT amounts (billing-domain 2.3): GPCIs 1.000 / 0.957 / 0.331
    g = (gpci("1.000"), gpci("0.957"), gpci("0.331"))
    assert fee_cents(rvu("0.75"), rvu("0.98"), rvu("0.08"), *g, CF_2025) == 5545
    assert fee_cents(rvu("0.75"), rvu("0.41"), rvu("0.08"), *g, CF_2025) == 3781
    assert fee_cents(rvu("0.66"), rvu("0.84"), rvu("0.07"), *g, CF_2025) == 4810
    assert fee_cents(rvu("0.66"), rvu("0.36"), rvu("0.07"), *g, CF_2025) == 3324


def test_percentage_applied_to_unrounded_amount_then_rounded_once() -> None:
    # 20553 at 50% (MPPR): 58.547165 / 2 = 29.2735825 -> 29.27 (not 29.28 = half of the rounded 58.55)
    assert fee_cents(rvu("0.75"), rvu("0.98"), rvu("0.08"), ONE, ONE, ONE, CF_2025, 50, 100) == 2927
    # 20610-50 bilateral 150%: 1.96 x 32.3465 x 1.5 = 95.09871 -> 95.10
    assert fee_cents(rvu("0.79"), rvu("1.04"), rvu("0.13"), ONE, ONE, ONE, CF_2025, 150, 100) == 9510


def test_vectorised_equals_scalar() -> None:
    rng = np.random.default_rng(1)
    w, pe, mp = (rng.integers(0, 5000, 1000) for _ in range(3))
    gw, gpe, gmp = (rng.integers(300, 2000, 1000) for _ in range(3))
    vec = fee_cents(w, pe, mp, gw, gpe, gmp, CF_2025)
    for i in range(0, 1000, 97):
        weighted = sum(Decimal(int(r[i])) / 100 * Decimal(int(g[i])) / 1000 for r, g in ((w, gw), (pe, gpe), (mp, gmp)))
        exact = weighted * Decimal("32.3465")
        assert cents_to_decimal(int(vec[i])) == exact.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
        assert int(vec[i]) == fee_cents(int(w[i]), int(pe[i]), int(mp[i]), int(gw[i]), int(gpe[i]), int(gmp[i]),
                                        CF_2025)


def test_half_up_and_scale_guard() -> None:
    assert div_round_half_up(15, 10) == 2 and div_round_half_up(14, 10) == 1
    assert list(div_round_half_up(np.array([15, 25, 24]), 10)) == [2, 3, 2]
    with pytest.raises(ValueError):
        to_scaled("0.123", RVU_SCALE)
