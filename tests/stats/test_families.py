"""Each question of the report is ONE Holm family, checked whole against one independent adjustment.

The three questions ("beyond these settings": an entry's top-level keys; "for these settings": its
``these_settings``; "drop from the base": its ``drop``) each adjust every factor entry's p-value and
every compared method's pooled p-value together (a method compared on a single factor pools nothing:
its pooled answer is that factor's, counted once). These tests collect the raw p-values of the whole
family from the report, run one :func:`supcon_ray.stats.holm` over them, and compare every entry's
``p_adjusted`` with its own position's value, pooled entries included and keyed by method name, then
derive each entry's claim from that adjusted p-value and the entry's own direction.

Bugs these tests catch, which comparing only the factor entries (or a slice of the family) missed:

* the "beyond" adjustment run per method group instead of over the whole family (on the three-loss
  data SupCon's pooled adjusted p falls from 0.078 to 0.039 and its claim flips to
  ``supcon_less_sensitive``);
* the pooled drop's adjusted p-values handed to the wrong methods (reversed or rotated before they are
  matched to the groups: poly1's pooled drop gets SupCon's 0.0015 instead of its own 0.311);
* a method compared on one factor counted twice in a family, or its pooled answer differing from
  its factor's; the overall headline differing from SupCon's pooled entry; claims not following
  from the adjusted p-value and the direction;
* :func:`~supcon_ray.stats.multiplicity.holm_with_pooled` itself, against a brute-force Holm (NaN
  entries out of the family, groups of one counted once).
"""

import math
from functools import cache

import numpy as np
import pandas as pd
import pytest

from supcon_ray.stats import ALPHA, Claim, holm
from views import analyze_factors
from supcon_ray.stats.claims import less_sensitive
from supcon_ray.stats.multiplicity import holm_with_pooled

BASELINE = "ce"
THREE_LOSSES = {"ce": 0.08, "supcon": 0.02, "poly1": 0.05}  # tests/stats/test_methods.py's data
THREE_FACTORS = {"lr": [f"lr=x{m}" for m in (0.1, 0.3, 1, 3, 10)], "augment": ["augment=a", "augment=b", "augment=c"]}
# 7 and 6 settings: their "beyond" tests can reach alpha (2 / 2^K <= 0.05); 3 settings cannot (left out)
FACTORS = {"lr": [f"lr=x{m}" for m in (0.1, 0.2, 0.5, 1, 2, 5, 10)], "augment": ["augment=a", "augment=b", "augment=c"],
           "wd": [f"wd=x{m}" for m in (0.1, 0.3, 1, 3, 10, 30)]}


def _trials(spreads, factors, runs=None, seed=0, noise=0.005, peaked=False) -> pd.DataFrame:
    """3 seeds per (factor, loss, setting); each setting's effect drawn with the loss's spread. With the
    defaults this is the data of ``tests/stats/test_methods.py``. ``runs``: factor -> the losses run on it
    (default all); ``peaked``: the ``x1`` setting is each loss's best (effects ``-|e|``, 0 at ``x1``), so
    the drop from the base measures sensitivity and can claim a direction."""
    rng = np.random.default_rng(seed)
    rows = []
    for factor, settings in factors.items():
        for loss, spread in spreads.items():
            if runs is not None and loss not in runs.get(factor, spreads):
                continue
            effects = rng.normal(0, spread, len(settings))
            if peaked and f"{factor}=x1" in settings:
                effects = -np.abs(effects)
                effects[settings.index(f"{factor}=x1")] = 0.0
            for setting, effect in zip(settings, effects):
                for s in range(3):
                    rows.append({"study": "s", "factor": factor, "setting": setting, "loss": loss, "seed": s,
                                 "status": "completed", "test_top1": 0.8 + effect + rng.normal(0, noise),
                                 "trial_id": f"{loss}-{setting}-{s}", "design": "one_factor"})
    return pd.DataFrame(rows)


DATA = {
    # ce against supcon and poly1 on 2 factors (5 and 3 settings: no "beyond" factor test can reach alpha)
    "three_losses": lambda: _trials(THREE_LOSSES, THREE_FACTORS),
    # ce against supcon, poly1 and simclr on 3 factors; simclr on lr only (a group of one factor)
    "four_losses": lambda: _trials({"ce": 0.04, "supcon": 0.02, "poly1": 0.05, "simclr": 0.03}, FACTORS,
                                   runs={"augment": ("ce", "supcon", "poly1"), "wd": ("ce", "supcon", "poly1")},
                                   seed=3, noise=0.01, peaked=True),
    # ce against supcon only, on 3 factors: one group, no ``by_method``
    "two_losses": lambda: _trials({"ce": 0.04, "supcon": 0.02}, FACTORS, seed=3, noise=0.01, peaked=True),
}


@cache
def _analysis(name: str):
    return analyze_factors(DATA[name](), "test_top1", sensitivity=False)


def _nan(x) -> float:
    return math.nan if x is None else float(x)


# --- the three questions: where each keeps its answer, which p-values are in its family, its claim -----------

def _beyond_raw(e) -> float:
    """In the family only where the design can reach alpha at all (its smallest possible p-value)."""
    min_p = _nan(e["min_p"])
    return _nan(e["p_value"]) if not math.isnan(min_p) and min_p <= ALPHA else math.nan


def _beyond_claim(parent, e, p_adj: float) -> str:
    min_p = _nan(e["min_p"])
    if math.isnan(min_p) or min_p > ALPHA:
        return Claim.INSUFFICIENT
    if p_adj < ALPHA:  # direction +1: the baseline moves more
        return less_sensitive(parent["method"] if e["direction"] > 0 else parent["baseline"])
    return Claim.NO_DIFFERENCE


def _these_claim(parent, t, p_adj: float) -> str:
    if t["p_value"] is None:
        return Claim.INSUFFICIENT
    spread_b = t["losses"][parent["baseline"]]["spread"]
    spread_m = t["losses"][parent["method"]]["spread"]
    if spread_b == spread_m == 0:  # no ratio
        return Claim.NO_DIFFERENCE
    if p_adj < ALPHA:
        return less_sensitive(parent["method"] if spread_b > spread_m else parent["baseline"])
    return Claim.NO_DIFFERENCE


def _drop_claim(parent, d, p_adj: float) -> str:
    if d["p_value"] is None:
        return Claim.INSUFFICIENT
    if any(x["ci95"][1] is not None and x["ci95"][1] < 0 for x in d["losses"].values()):
        return Claim.INSUFFICIENT  # a base below the loss's other settings: the drop cannot rank the losses
    difference = d["difference"]["estimate"]  # baseline's drop - method's drop
    if p_adj < ALPHA and difference != 0:
        return less_sensitive(parent["method"] if difference > 0 else parent["baseline"])
    return Claim.NO_DIFFERENCE


QUESTIONS = {
    "beyond": (lambda e: e, _beyond_raw, _beyond_claim),
    "these_settings": (lambda e: e["these_settings"], lambda t: _nan(t["p_value"]), _these_claim),
    "drop": (lambda e: e["drop"], lambda d: _nan(d["p_value"]), _drop_claim),
}


def _label(f) -> str:
    return f"{f['factor']} ({f['method']} vs {f['baseline']})"


def _groups(factors) -> dict[str, list[int]]:
    """Each compared method's factor entries, found from the entries themselves."""
    out: dict[str, list[int]] = {}
    for i, f in enumerate(factors):
        assert f["baseline"] == BASELINE
        out.setdefault(f["method"], []).append(i)
    return out


def _pooled(factors, overall) -> dict[str, dict]:
    """Each method's pooled entry: ``by_method`` with several methods, else ``overall``."""
    methods = set(_groups(factors))
    if len(methods) > 1:
        by = overall["by_method"]
        assert set(by) == methods
        for m, e in by.items():
            assert (e["baseline"], e["method"]) == (BASELINE, m)
            assert e["factors"] == [f"{f['study']}/{f['factor']}" for f in factors if f["method"] == m]
        return by
    assert "by_method" not in overall
    (m,) = methods
    assert (overall["baseline"], overall["method"]) == (BASELINE, m)
    return {m: overall}


def _family(factors, pooled, question):
    """Every entry's expected adjusted p-value (one holm over the whole family) and raw p-values, by label."""
    section, raw, _ = QUESTIONS[question]
    labels = [_label(f) for f in factors]
    ps = [raw(section(f)) for f in factors]
    groups = _groups(factors)
    for m, idx in groups.items():
        if len(idx) != 1:  # a group of one factor pools nothing: not a second test
            labels.append(f"pooled {m}")
            ps.append(raw(section(pooled[m])))
    expected = dict(zip(labels, holm(ps)))
    for m, idx in groups.items():
        if len(idx) == 1:
            expected[f"pooled {m}"] = expected[_label(factors[idx[0]])]
    return expected, ps


def _entries(factors, pooled):
    return [(_label(f), f) for f in factors] + [(f"pooled {m}", e) for m, e in pooled.items()]


# --- the tests ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("question", list(QUESTIONS))
@pytest.mark.parametrize("data", list(DATA))
def test_every_entry_and_every_pooled_answer_is_adjusted_in_one_family(data, question):
    factors, overall = _analysis(data)
    pooled = _pooled(factors, overall)
    section = QUESTIONS[question][0]
    expected, ps = _family(factors, pooled, question)
    got = {label: _nan(section(e)["p_adjusted"]) for label, e in _entries(factors, pooled)}
    assert set(got) == set(expected)
    assert got == pytest.approx(expected, rel=1e-12, nan_ok=True)
    # entries left out of the family are exactly those without a usable p-value
    assert {k for k, v in got.items() if math.isnan(v)} == {k for k, v in expected.items() if math.isnan(v)}
    assert sum(not math.isnan(p) for p in ps) >= 2  # a family, not a single test


@pytest.mark.parametrize("question", list(QUESTIONS))
@pytest.mark.parametrize("data", list(DATA))
def test_each_claim_follows_from_its_adjusted_p_and_its_direction(data, question):
    factors, overall = _analysis(data)
    pooled = _pooled(factors, overall)
    section, _, claim_of = QUESTIONS[question]
    expected_p, _ = _family(factors, pooled, question)
    entries = _entries(factors, pooled)
    expected = {label: str(claim_of(e, section(e), expected_p[label])) for label, e in entries}
    got = {label: str(section(e)["claim"]) for label, e in entries}
    assert got == expected


def test_the_families_decide_both_ways():
    """The data sets give each question directional claims and no-difference claims, so the claim
    checks above are not vacuous."""
    seen = {q: set() for q in QUESTIONS}
    for data in DATA:
        factors, overall = _analysis(data)
        for _, e in _entries(factors, _pooled(factors, overall)):
            for q, (section, _, _) in QUESTIONS.items():
                seen[q].add(str(section(e)["claim"]))
    for q, claims in seen.items():
        assert Claim.NO_DIFFERENCE in claims, q
        assert {less_sensitive("supcon"), less_sensitive("ce")} & claims, q
    assert Claim.INSUFFICIENT in seen["beyond"]  # left out of its family: the design cannot reach alpha


def test_three_loss_data_pooled_answers_keep_their_own_family_values():
    """The pooled answers whose adjustment the two planted bugs changed, by value."""
    factors, overall = _analysis("three_losses")
    by = overall["by_method"]
    assert all(math.isnan(_beyond_raw(f)) for f in factors)  # 5 and 3 settings: out of the "beyond" family
    # the sign-flip test pooled over the 2 blocks' 6 distinct cells (compare_pooled): 6 of 64 patterns
    assert by["supcon"]["p_value"] == pytest.approx(0.09375)
    assert by["supcon"]["p_adjusted"] == pytest.approx(2 * 0.09375, rel=1e-12)  # family of 2 pooled tests
    assert by["supcon"]["claim"] == Claim.NO_DIFFERENCE
    lr_poly1 = next(f for f in factors if (f["factor"], f["method"]) == ("lr", "poly1"))
    assert by["poly1"]["drop"]["p_value"] == lr_poly1["drop"]["p_value"]  # augment has no base: lr alone
    assert by["poly1"]["drop"]["p_adjusted"] == pytest.approx(
        holm([f["drop"]["p_value"] for f in factors if f["factor"] == "lr"] +
             [by[m]["drop"]["p_value"] for m in ("poly1", "supcon")])[2], rel=1e-12)
    assert by["poly1"]["drop"]["p_adjusted"] > 0.3 and by["poly1"]["drop"]["claim"] == Claim.NO_DIFFERENCE


@pytest.mark.parametrize("question", list(QUESTIONS))
def test_a_method_on_one_factor_pools_nothing_and_is_counted_once(question):
    factors, overall = _analysis("four_losses")
    section, raw, _ = QUESTIONS[question]
    groups = _groups(factors)
    assert [m for m, idx in groups.items() if len(idx) == 1] == ["simclr"]
    (i,) = groups["simclr"]
    single, pooled = section(factors[i]), section(overall["by_method"]["simclr"])
    assert overall["by_method"]["simclr"]["factors"] == ["s/lr"]
    for key in ("p_value", "p_adjusted", "claim"):
        assert pooled[key] == single[key], key
    assert not math.isnan(raw(single))
    # counted twice, the family would be one larger and the adjusted p-values differ
    expected, ps = _family(factors, _pooled(factors, overall), question)
    twice = holm(ps + [raw(single)])
    assert twice[i] != pytest.approx(expected[_label(factors[i])], rel=1e-12)
    assert _nan(single["p_adjusted"]) == pytest.approx(expected[_label(factors[i])], rel=1e-12)


@pytest.mark.parametrize("data", ["three_losses", "four_losses"])
def test_the_overall_headline_is_supcons_pooled_entry(data):
    _, overall = _analysis(data)
    head = overall["by_method"]["supcon"]
    for question, (section, _, _) in QUESTIONS.items():
        got, want = section(overall), section(head)
        assert [_nan(got["p_value"]), _nan(got["p_adjusted"])] == pytest.approx(
            [_nan(want["p_value"]), _nan(want["p_adjusted"])], rel=1e-12, nan_ok=True), question
        assert got["claim"] == want["claim"], question


def _brute_holm(ps: list[float]) -> list[float]:
    """Holm by hand: the live p-values sorted, each times (m - rank), running maximum, capped at 1."""
    live = sorted((p, i) for i, p in enumerate(ps) if not math.isnan(p))
    m, out, running = len(live), [math.nan] * len(ps), 0.0
    for rank, (p, i) in enumerate(live):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def _brute_with_pooled(p_units, groups, p_pooled):
    n = len(p_units)
    many = [k for k, g in enumerate(groups) if len(g) != 1]
    adjusted = _brute_holm(list(p_units) + [p_pooled[k] for k in many])
    units = adjusted[:n]
    pooled = [units[g[0]] if len(g) == 1 else adjusted[n + many.index(k)] for k, g in enumerate(groups)]
    return units, pooled


def test_holm_with_pooled_matches_holm_by_hand():
    nan = math.nan
    # family: 0.01 0.04 0.03 0.5 (units) + 0.02 0.3 (groups of two); the groups of one add nothing, whatever
    # pooled p-value they are given; m = 6
    units, pooled = holm_with_pooled([0.01, nan, 0.04, 0.03, 0.5], [[0, 2], [3], [1], [4, 1]], [0.02, 0.9, 0.7, 0.3])
    assert units == pytest.approx([0.06, nan, 0.12, 0.12, 0.6], rel=1e-12, nan_ok=True)
    assert pooled == pytest.approx([0.10, 0.12, nan, 0.6], rel=1e-12, nan_ok=True)
    # capped at 1, and monotone in the raw p-values
    assert holm_with_pooled([0.4, 0.6], [[0, 1]], [0.45]) == ([1.0, 1.0], [1.0])
    # nothing testable: all NaN, a group of one takes its unit's NaN, not its own pooled p-value
    units, pooled = holm_with_pooled([nan, nan], [[0], [1]], [0.01, 0.02])
    assert all(math.isnan(x) for x in units + pooled)
    # a group of two whose pooled p is NaN stays out of the family
    units, pooled = holm_with_pooled([0.01, 0.02, 0.2], [[0, 1], [2]], [nan, 0.001])
    assert units == pytest.approx([0.03, 0.04, 0.2], rel=1e-12) and pooled[1] == units[2] and math.isnan(pooled[0])
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 9))
        p_units = [nan if rng.random() < 0.25 else float(rng.choice([rng.random(), rng.random() / 50, 0.01]))
                   for _ in range(n)]
        groups = [sorted(rng.choice(n, size=int(rng.integers(1, min(n, 3) + 1)), replace=False).tolist())
                  for _ in range(int(rng.integers(1, 5)))]
        p_pooled = [nan if rng.random() < 0.2 else float(rng.random() / 10) for _ in groups]
        got_units, got_pooled = holm_with_pooled(p_units, groups, p_pooled)
        want_units, want_pooled = _brute_with_pooled(p_units, groups, p_pooled)
        assert got_units == pytest.approx(want_units, rel=1e-12, nan_ok=True), (p_units, groups, p_pooled)
        assert got_pooled == pytest.approx(want_pooled, rel=1e-12, nan_ok=True), (p_units, groups, p_pooled)
        assert holm(p_units) == pytest.approx(_brute_holm(p_units), rel=1e-12, nan_ok=True)
