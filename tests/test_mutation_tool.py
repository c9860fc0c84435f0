"""tools/mutation.py: the seeded, stratified draw and the per-module score (mutmut itself is not run here)."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("mutation_tool", Path(__file__).resolve().parents[1] / "tools" / "mutation.py")
mutation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutation)

NAMES = ([f"supcon_ray.stats.drop.x_fieller__mutmut_{i}" for i in range(1, 31)]
         + [f"supcon_ray.networks.optim.xǁLARSǁstep__mutmut_{i}" for i in range(1, 6)]
         + ["supcon_ray.stats.claims.x_display__mutmut_1"])


def test_module_of_strips_the_function_and_class_parts():
    assert mutation.module_of("supcon_ray.stats.drop.x_fieller__mutmut_3") == "supcon_ray.stats.drop"
    assert mutation.module_of("supcon_ray.networks.optim.xǁLARSǁstep__mutmut_2") == "supcon_ray.networks.optim"


def test_the_draw_is_stratified_seeded_and_keeps_small_modules_whole():
    drawn = mutation.sample(NAMES, 10, seed=0)
    by_module = {m: [n for n in drawn if mutation.module_of(n) == m] for m in {mutation.module_of(n) for n in NAMES}}
    assert {m: len(v) for m, v in by_module.items()} == {"supcon_ray.stats.drop": 10, "supcon_ray.networks.optim": 5,
                                                         "supcon_ray.stats.claims": 1}
    assert drawn == mutation.sample(list(reversed(NAMES)), 10, seed=0)  # the order of mutmut's listing does not matter
    assert drawn != mutation.sample(NAMES, 10, seed=1)


def test_the_score_counts_unreached_and_timed_out_mutants_against_the_module():
    drawn = NAMES[:4] + NAMES[30:32]
    status = {NAMES[0]: "killed", NAMES[1]: "survived", NAMES[2]: "no tests", NAMES[3]: "timeout",
              NAMES[30]: "killed", NAMES[31]: "killed"}
    text, survivors = mutation.table(drawn, status)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()[2:]}
    assert rows["stats.drop"] == "| stats.drop | 4 | 1 | 1 | 1 | 1 | 25% |"
    assert rows["networks.optim"] == "| networks.optim | 2 | 2 | 0 | 0 | 0 | 100% |"
    assert rows["**all**"] == "| **all** | 6 | 3 | 1 | 1 | 1 | 50% |"
    assert survivors == NAMES[1:4]
