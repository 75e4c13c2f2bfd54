"""Exact Medicare money arithmetic: the one place where fee-schedule amounts are computed.

CMS keeps the GPCI-weighted RVU sum at full precision, multiplies by the conversion factor and
rounds once, half-up, to cents (billing-domain 2.2). We do the same with scaled integers so the
function is exact and vectorises over numpy arrays as well as plain ints:

- RVUs are published with 2 decimals   -> hundredths            (scale 10**2)
- GPCIs with at most 3 decimals        -> thousandths           (scale 10**3)
- conversion factor with 4 decimals    -> ten-thousandths       (scale 10**4)
- percentage adjustments as a fraction num/den (e.g. 150/100, 625/1000, 136/1000)

Where billing-domain marks the order of rounding after percentage adjustments unverified (2.2,
point 5), we apply every percentage to the *unrounded* amount and round once at the end. This is
the single documented choice; ``tests/test_money.py`` pins it.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import TypeVar

import numpy as np

RVU_SCALE = 100
GPCI_SCALE = 1000
CF_SCALE = 10_000
#: scale of rvu*gpci*cf products: 10**9 per dollar
PRODUCT_SCALE = RVU_SCALE * GPCI_SCALE * CF_SCALE
CENTS_DIVISOR = PRODUCT_SCALE // 100  # 10**7 product units per cent

IntLike = TypeVar("IntLike", int, np.ndarray)


def to_scaled(value: Decimal | str | int | float | None, scale: int) -> int:
    """Exact scaled integer of a published decimal; raises if it has more precision than ``scale``."""
    if value is None or value == "":
        return 0
    d = Decimal(str(value)) * scale
    if d != d.to_integral_value():
        raise ValueError(f"{value} has more decimals than the scale 1/{scale} allows")
    return int(d)


def div_round_half_up(numerator: IntLike, denominator: int) -> IntLike:
    """Integer division rounding half away from zero (CMS rounds amounts half-up; amounts are >= 0)."""
    if isinstance(numerator, np.ndarray):
        sign = np.sign(numerator)
        return sign * ((np.abs(numerator) * 2 + denominator) // (2 * denominator))
    sign = -1 if numerator < 0 else 1
    return sign * ((abs(numerator) * 2 + denominator) // (2 * denominator))


def weighted_rvu_units(work: IntLike, pe: IntLike, mp: IntLike,
                       gpci_work: IntLike, gpci_pe: IntLike, gpci_mp: IntLike) -> IntLike:
    """GPCI-weighted RVU sum, unrounded, in units of 10**-5 RVU (rvu hundredths x gpci thousandths)."""
    return work * gpci_work + pe * gpci_pe + mp * gpci_mp


def fee_cents(work: IntLike, pe: IntLike, mp: IntLike,
              gpci_work: IntLike, gpci_pe: IntLike, gpci_mp: IntLike,
              cf: IntLike, pct_num: IntLike | int = 1, pct_den: int = 1) -> IntLike:
    """Fee schedule amount in integer cents: round_half_up((W*Gw + PE*Gpe + MP*Gmp) * CF * pct, 2).

    All inputs are scaled integers (see module docstring); ``pct_num/pct_den`` is the product of the
    percentage adjustments, applied before the single rounding.
    """
    product = weighted_rvu_units(work, pe, mp, gpci_work, gpci_pe, gpci_mp) * cf * pct_num
    return div_round_half_up(product, CENTS_DIVISOR * pct_den)


def cents_to_decimal(cents: int) -> Decimal:
    """Cents as a 2-decimal Decimal, for display and JSON."""
    return (Decimal(int(cents)) / 100).quantize(Decimal("0.01"))


def round_money(value: Decimal) -> Decimal:
    """Round a Decimal dollar amount half-up to cents."""
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
