"""The analysis layer's own pieces: the setting label, the number formatter's styles, the baseline rule,
and the typed model's JSON (the whole contract is frozen in tests/reporting/test_golden.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from supcon_ray.analysis import Interval, Pair, analyze_entries, build_numbers, clean_json
from supcon_ray.analysis.formatting import PLAIN, TABLE, TEXT, interval, number, p_value
from supcon_ray.labels import SettingLabel, base_label, distinct_labels, format_label, label_positions
from supcon_ray.study import default_baseline


def test_a_setting_label_is_written_read_back_ordered_and_known_as_the_base():
    assert format_label({"optimizer": "sgd", "lr": 0.0123456}) == "optimizer=sgd,lr=0.01235"
    assert distinct_labels([{"lr": 0.100001}, {"lr": 0.100002}]) == ["lr=0.100001", "lr=0.100002"]
    labels = ["lr=x10", "lr=x0.1", "lr=x1", "optimizer=sgd", "optimizer=lars", "temperature=0.5"]
    assert sorted(labels, key=lambda s: SettingLabel(s).order()) == [
        "lr=x0.1", "temperature=0.5", "lr=x1", "lr=x10", "optimizer=lars", "optimizer=sgd"]
    assert SettingLabel("lr=x0.1").value == "x0.1" and SettingLabel("lr=x0.1").multiple == 0.1
    assert SettingLabel("temperature=0.5").multiple is None and SettingLabel("temperature=0.5").number == 0.5
    assert SettingLabel("sgd").value == "sgd" and SettingLabel("optimizer=sgd").number is None
    assert SettingLabel(base_label("lr")).is_base_of("lr") and not SettingLabel("lr=x1").is_base_of("batch_size")
    assert label_positions(["lr=x0.1", "lr=x1"]) == {"lr=x0.1": 0.1, "lr=x1": 1.0}
    assert label_positions(["lr=x0.1", "optimizer=sgd"]) is None


@pytest.mark.parametrize("style, missing, infinite, unbounded", [(TEXT, "–", "∞", "∞"), (TABLE, "n/a", "n/a", "inf"),
                                                                  (PLAIN, "nan", "inf", "inf")])
def test_each_style_writes_a_missing_value_and_an_unbounded_end_its_own_way(style, missing, infinite, unbounded):
    assert number(None, 3, style) == number(math.nan, 3, style) == missing
    assert number(math.inf, 3, style) == infinite
    assert number(0.12345, 2, style) == "0.12"
    assert interval((0.5, math.inf), 2, style) == f"[0.50, {unbounded}]"
    assert interval((0.5, None), 2, style) == f"[0.50, {unbounded}]"  # the JSON form of an unbounded end
    assert interval((None, None), 2, style) == f"[{missing}, {missing}]"


def test_the_table_style_drops_the_sign_of_a_rounded_zero_and_says_why_a_p_value_is_missing():
    assert number(-0.0001, 3, TABLE) == "0.000" and number(-0.0001, 3, TEXT) == "-0.000"
    assert number(3, 3, TABLE) == "3.000" and number(3, 3, TEXT) == "3"
    assert p_value(None, TABLE) == "n/a (cannot reach 0.05)" and p_value(math.nan, TEXT) == "–"
    assert p_value(0.012345, TABLE) == "0.0123"


def test_one_baseline_rule_for_study_files_and_tables():
    assert default_baseline(["supcon", "ce", "poly1"]) == "ce"
    assert default_baseline(["supcon", "poly1"]) == "poly1"  # a table: the first in alphabetical order
    assert default_baseline(["supcon", "ce"], named="supcon") == "supcon"
    assert default_baseline([]) is None
    from supcon_ray.study import Study

    one = Study.model_validate({"study": "s", "losses": ["supcon"], "seeds": [0], "vary": {"lr": ["x1", "x2"]}})
    assert one.baseline == "supcon" == default_baseline(one.losses)


def test_a_pair_is_the_tuple_the_statistics_take():
    pair = Pair("ce", "supcon")
    assert pair == ("ce", "supcon") and tuple(pair) == ("ce", "supcon") and pair.method == "supcon"
    assert Interval.of((0.1, None)).as_dict() == [0.1, None] and tuple(Interval(1.0, 2.0)) == (1.0, 2.0)


def _table(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for factor in ("lr", "optimizer"):
        for loss, spread in (("ce", 0.05), ("supcon", 0.01), ("poly1", 0.03)):
            for k in range(4):
                mean = 0.8 + spread * rng.standard_normal()
                rows += [{"study": "s", "factor": factor, "setting": f"{factor}=x{k + 1}", "loss": loss, "seed": r,
                          "status": "completed", "design": "one_factor",
                          "test_top1": mean + 0.005 * rng.standard_normal()} for r in range(3)]
    return pd.DataFrame(rows)


def test_the_numbers_are_built_once_and_their_json_is_strict_and_complete():
    """Every compared pair gets an entry that names it; the pooled entries are keyed by method; the JSON has no
    NaN (strict JSON) and holds exactly the typed model's entries."""
    table = _table(np.random.default_rng(3))
    numbers = build_numbers(table, "test_top1", with_importance=False)
    assert [(f.factor, tuple(f.pair)) for f in numbers.factors] == [
        ("lr", ("ce", "poly1")), ("lr", ("ce", "supcon")), ("optimizer", ("ce", "poly1")), ("optimizer", ("ce", "supcon"))]
    assert list(numbers.overall_by_method) == ["poly1", "supcon"] and numbers.overall.method == "supcon"
    assert numbers.overall.factors == ("s/lr", "s/lr", "s/optimizer", "s/optimizer")
    text = json.dumps(numbers.to_json(), allow_nan=False)
    back = json.loads(text)
    assert [f["method"] for f in back["factors"]] == [f.method for f in numbers.factors]
    assert back["overall"]["these_settings"]["claim"] == numbers.overall.these_settings.claim
    same = analyze_entries(table, "test_top1")  # the entries alone: the same objects' numbers
    assert clean_json([f.as_dict() for f in same.factors]) == back["factors"]
