"""Every sentence and claim word of the report, in one place: the answers' sentences and reasons (they are
part of the ``--json`` contract), the claim words of the tables and the figure, and the notes on what a
number means. The statistics decide; this module only says it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from supcon_ray.stats.claims import Claim, display, less_sensitive, less_sensitive_loss
from supcon_ray.stats.drop import LossDrop
from supcon_ray.stats.paired import PairedResult
from supcon_ray.stats.settings import ALPHA, MIN_SEEDS_THESE, MIN_SETTINGS_BEYOND, MIN_SETTINGS_THESE
from supcon_ray.stats.these_settings import OneLossSpread, TheseSettingsResult
# the protocol's own words for a pick and its source, said the same way in the report
from supcon_ray.study import margin_sentence, source_text  # noqa: F401

from .formatting import PLAIN, TEXT, interval, number

__all__ = ["CLAIM_WORDS", "INTERVAL_NOTE", "PLANNER", "SHORT_CLAIMS", "claim_words", "divergence_sentence",
           "margin_sentence", "name_list", "short_claim", "source_text"]

Pair = tuple[str, str] | None
PLANNER = "python -m supcon_ray.power STUDY_DIR"

#: A claim in words, in the tables and the page.
CLAIM_WORDS = {
    Claim.SUPCON_LESS: "SupCon less sensitive",
    Claim.CE_LESS: "CE less sensitive",
    Claim.NO_DIFFERENCE: "no detectable difference",
    Claim.INSUFFICIENT: "cannot tell",
    Claim.MOVES: Claim.MOVES,
    Claim.NO_EFFECT: "no detectable effect",
}
#: A claim in a few words, in the figure's panel titles.
SHORT_CLAIMS = {Claim.SUPCON_LESS: "SupCon less", Claim.CE_LESS: "CE less",
                Claim.NO_DIFFERENCE: "no difference", Claim.INSUFFICIENT: "cannot tell", Claim.MOVES: Claim.MOVES,
                Claim.NO_EFFECT: "no effect"}

#: What an interval covers next to a Holm-adjusted p-value (said wherever both are shown).
INTERVAL_NOTE = (f"{1 - ALPHA:.0%} intervals are for each comparison on its own; p-values and claims are "
                 f"Holm-adjusted, so an interval can exclude 1 while the adjusted p stays above {ALPHA}.")


def claim_words(claim: str) -> str:
    """A claim in words: ``<Loss> less sensitive`` for any loss, else the fixed wording."""
    loss = less_sensitive_loss(claim)
    return f"{display(loss)} less sensitive" if loss is not None else CLAIM_WORDS.get(claim, str(claim))


def short_claim(claim: str | None) -> str:
    """A claim in a few words (``<Loss> less`` for any loss)."""
    loss = less_sensitive_loss(claim) if claim else None
    return f"{display(loss)} less" if loss is not None else SHORT_CLAIMS.get(claim, "–")


def name_list(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def both(pair: Pair) -> str:
    return f"{display(pair[1])} and {display(pair[0])}" if pair else "two methods"


def versus(pair: tuple[str, str]) -> str:
    """``SupCon vs CE``: a compared pair as scopes name it."""
    return f"{display(pair[1])} vs {display(pair[0])}"


def _ci(ci: tuple[float, float]) -> str:
    return interval(ci, 2, TEXT)


# --- beyond these settings ------------------------------------------------------------------------

def beyond_sentence(scope: str, claim: str, r: PairedResult | None, p_adjusted: float, reason: str,
                    sigmas: tuple[float, float] = (math.nan, math.nan), pair: Pair = None) -> str:
    scope = f"{scope}, beyond these settings"
    if claim == Claim.INSUFFICIENT:
        return f"{scope}: cannot tell. {reason}"
    b, m = display(pair[0]), display(pair[1])
    detail = (f"ratio of between-setting std {b}/{m} {r.ratio:.2f}, 95% CI {_ci(r.ci95)}, "
              f"Holm-adjusted p = {p_adjusted:.3g}")
    if not any(math.isnan(s) for s in sigmas):
        detail = f"std across settings {b} {sigmas[0]:.3g}, {m} {sigmas[1]:.3g}; " + detail
    if claim == less_sensitive(pair[1]):
        return f"{scope}: {m}'s accuracy would move less than {b}'s across other settings like these ({detail})."
    if claim == less_sensitive(pair[0]):
        return f"{scope}: {b}'s accuracy would move less than {m}'s across other settings like these ({detail})."
    return (f"{scope}: no difference in sensitivity to other settings like these is detectable ({detail}). The "
            f"interval still allows ratios from {_ci(r.ci95)[1:-1].replace(', ', ' to ')}, so a difference of that size "
            "is not ruled out.")


def beyond_insufficient(losses: set[str], paired: list[str], r: PairedResult | None, pair: Pair) -> str:
    missing = [x for x in (pair or ()) if x not in losses]
    if pair is None or missing:
        return f"{both(pair)} are both needed; missing: {', '.join(missing) or 'a second method'}."
    if len(paired) < 2:
        return (f"{len(paired)} setting(s) have completed runs for both losses; at least 2 paired settings are needed "
                "(settings run for one loss only are never compared).")
    return (f"This question treats the settings as a sample of the settings one could try; with {r.n_settings} "
            f"paired settings its smallest possible p-value is {r.min_p:.3g}, above alpha = {ALPHA}. It needs at least "
            f"{MIN_SETTINGS_BEYOND} settings; `{PLANNER}` computes the design that would decide it.")


def uneven_reason(flagged: list[str], seeds: list[int]) -> str:
    return (f"Seed noise too uneven at {name_list(flagged)} for "
            f"{'/'.join(map(str, seeds))} seeds: there one loss's seeds split (between a collapse and success), so its "
            "noise stands out from its own elsewhere and exceeds the spread of the other settings' means. This question swaps "
            "whole settings between the losses, which needs their seed noise alike at each setting; no test at this "
            "seed count was calibrated for such noise. More seeds at those settings would let it be measured.")


def one_method_beyond(loss: str, setting_std: float, ci: tuple[float, float]) -> str:
    return (f"Beyond these settings compares two methods' sensitivity to other settings like these; with one method "
            f"({loss}) there is nothing to compare. Treated as a sample of settings, {loss}'s between-setting std is "
            f"{setting_std:.3g}, 95% CI {_ci(ci)} (seed noise removed).")


def _contrasts_note(r: PairedResult) -> str:
    """Why a pooled test's smallest p-value is above ``2 / 2^settings``: it flips contrasts within each block."""
    return (" (pooled over several factors or studies, the test flips the contrasts between each block's settings: "
            "one fewer per block than its settings, and a base shared by factors counts once)"
            if r.exact and r.min_p > 2 / 2**r.n_settings * (1 + 1e-9) else "")


def pooled_beyond_reason(r: PairedResult | None, pair: Pair, key: str, uneven: tuple[str, ...] = ()) -> str:
    """Why the pooled "beyond" answer says "cannot tell"; ``uneven``: the factors left out for uneven seed noise."""
    if pair is None:
        return (f"Beyond these settings compares two methods' sensitivity to other settings like these; with one "
                f"method ({key}) there is nothing to compare.")
    if r is None and uneven:
        return (f"Seed noise is too uneven for this question in {name_list(list(uneven))}, and no other factor has 2 "
                f"or more settings run for both {both(pair)}.")
    if r is None:
        return f"No factor has 2 or more settings run for both {both(pair)}."
    return (f"With {r.n_settings} paired settings over all factors the smallest possible p-value is {r.min_p:.3g}"
            f"{_contrasts_note(r)}, above alpha = {ALPHA}; `{PLANNER}` computes the design that would decide it.")


NOTHING_POOLED = "No factor has 2 or more settings run for two methods, and no single method was run alone."


def across_beyond_reason(r: PairedResult | None) -> str:
    return ("No study has 2 or more settings of this factor run for both losses." if r is None else
            f"With {r.n_settings} paired settings over these studies the smallest possible p-value is "
            f"{r.min_p:.3g}{_contrasts_note(r)}, above alpha = {ALPHA}.")


# --- for these settings ---------------------------------------------------------------------------

def these_missing(pair: Pair, present: set[str]) -> str:
    missing = ', '.join(x for x in (pair or ()) if x not in present) or "a second method"
    return f"{both(pair)} are both needed; no completed runs of: {missing}."


def too_few_paired(n: int) -> str:
    return (f"{n} setting(s) have completed runs for both losses; at least {MIN_SETTINGS_THESE} "
            "paired settings are needed.")


def too_few_seeds_paired(few: list[str]) -> str:
    return (f"every paired setting needs at least {MIN_SEEDS_THESE} completed seeds per loss to measure seed "
            f"noise; fewer for {', '.join(few)}.")


def too_few_settings_one(n: int) -> str:
    return f"{n} setting(s) have completed runs; at least {MIN_SETTINGS_THESE} are needed."


def too_few_seeds_one(few: list[str]) -> str:
    return (f"every setting needs at least {MIN_SEEDS_THESE} completed seeds to measure seed noise; fewer at "
            f"{', '.join(few)}.")


def these_sentence(scope: str, names: str, claim: str, r: TheseSettingsResult | None, p_adjusted: float,
                   reason: str, pair: Pair) -> str:
    scope = f"{scope}, for these settings"
    if claim == Claim.INSUFFICIENT:
        return f"{scope}: cannot tell. {reason}"
    sp = r.spreads
    b, m = display(pair[0]), display(pair[1])
    detail = (f"std of the setting means {b} {sp[pair[0]]:.3g}, {m} {sp[pair[1]]:.3g}; ratio {b}/{m} "
              f"{r.ratio:.2f}, 95% CI {_ci(r.ci95)}, Holm-adjusted p = {p_adjusted:.3g}")
    where = f"across {names}"
    if claim == less_sensitive(pair[1]):
        return (f"{scope}: {where}, {m}'s mean accuracy moves less than {b}'s ({detail}). This is about the settings "
                "tried, not about other settings.")
    if claim == less_sensitive(pair[0]):
        return (f"{scope}: {where}, {b}'s mean accuracy moves less than {m}'s ({detail}). This is about the settings "
                "tried, not about other settings.")
    return f"{scope}: {where}, no difference in how much the two losses' mean accuracy moves is detectable ({detail})."


def one_sentence(scope: str, names: str, loss: str, claim: str, r: OneLossSpread | None, p_adjusted: float,
                 reason: str) -> str:
    scope = f"{scope}, for these settings"
    if r is None:
        return f"{scope}: cannot tell. {reason}"
    detail = (f"std of the setting means {r.spread:.3g}, 95% CI {_ci(r.ci95)}, Holm-adjusted p = {p_adjusted:.3g} "
              "against no effect beyond seed noise")
    if claim == Claim.MOVES:
        return f"{scope}: {loss}'s mean accuracy moves across {names} ({detail})."
    return f"{scope}: across {names}, no movement of {loss}'s mean accuracy beyond seed noise is detectable ({detail})."


RETUNED = " (each with its nuisance hyperparameters re-tuned per setting and loss)"
NO_PAIRED_THESE = "No factor has 2 or more paired settings with 2 or more seeds per loss."
NO_SINGLE_THESE = "No factor has 2 or more settings with 2 or more seeds."
NO_STUDY_THESE = "No study has 2 or more paired settings of this factor with 2 or more seeds per loss."


def pooled_settings(n_settings: int, n_factors: int, pair: Pair) -> str:
    """What a pooled "these settings" answer pools over."""
    if pair is None:
        return f"all {n_settings} settings of {n_factors} factor(s)"
    return (f"all {n_settings} settings of {n_factors} factor(s) (each loss's spread pooled as the root mean "
            "square over factors, every factor once)")


def across_settings(n_settings: int, n_studies: int) -> str:
    return (f"{n_settings} settings of {n_studies} stud{'y' if n_studies == 1 else 'ies'} (each loss's spread "
            "pooled as the root mean square over studies)")


# --- drop from the base ---------------------------------------------------------------------------

def _drop_ci(ci: tuple[float, float]) -> str:
    return interval(ci, 3, PLAIN)


def base_not_best(losses: dict[str, LossDrop]) -> str:
    """Why the drop cannot rank two losses: a loss whose tuned base is clearly below its other settings
    (its drop's interval below 0) gains away from its base, so its drop says nothing of its sensitivity."""
    below = [f"{display(loss)}'s tuned base is below the mean of its other settings (drop {number(d.drop, 3, PLAIN)} "
             f"{_drop_ci(d.ci95)})" for loss, d in losses.items() if d.ci95[1] < 0]
    if not below:
        return ""
    return (f"{'; '.join(below)}: the base was not the best setting here, so the drop from it does not measure "
            "sensitivity, and the two losses cannot be ranked by it.")


def drop_sentence(scope: str, claim: str, losses: dict[str, LossDrop] | None, difference: tuple[float, tuple] | None,
                  p_adjusted: float, reason: str, pair: Pair) -> str:
    """The drop answer's sentence (``losses``: each loss's drop, ``None`` where it cannot be computed;
    ``difference``: the baseline's drop minus the method's, with its interval)."""
    scope = f"{scope}, drop from the base"
    if losses is None:
        return f"{scope}: cannot tell. {reason}"
    if pair is not None and claim == Claim.INSUFFICIENT:
        return f"{scope}: cannot tell. {base_not_best(losses)}"
    fmt = lambda x: number(x, 3, PLAIN)  # noqa: E731
    parts = "; ".join(f"{display(loss)} {fmt(d.drop)} {_drop_ci(d.ci95)}" for loss, d in losses.items())
    if pair is None:
        (loss, d), = losses.items()
        loss = display(loss)
        detail = f"drop {fmt(d.drop)}, 95% CI {_drop_ci(d.ci95)}, Holm-adjusted p = {p_adjusted:.3g}"
        if claim == Claim.MOVES:
            return (f"{scope}: {loss}'s mean accuracy away from its base is lower by {fmt(d.drop)} on average "
                    f"({detail}); the drop is more than seed noise explains." if d.drop > 0 else
                    f"{scope}: {loss}'s mean accuracy away from its base differs from the base's by {fmt(-d.drop)} "
                    f"on average, higher away from it ({detail}).")
        return f"{scope}: no drop beyond seed noise is detectable for {loss} ({detail})."
    b, m = display(pair[0]), display(pair[1])
    detail = (f"mean drop {parts}; difference {b} - {m} {fmt(difference[0])}, 95% CI {_drop_ci(difference[1])}, "
              f"Holm-adjusted p = {p_adjusted:.3g}")
    if claim == less_sensitive(pair[1]):
        return f"{scope}: away from its tuned base, {m} loses less accuracy than {b} ({detail})."
    if claim == less_sensitive(pair[0]):
        return f"{scope}: away from its tuned base, {b} loses less accuracy than {m} ({detail})."
    return f"{scope}: no difference in how much the two losses lose away from their bases is detectable ({detail})."


NO_POOLED_DROP = "No factor has its base among 2 or more settings with 2 or more seeds each."


def no_base(loss: str) -> str:
    return (f"{loss}'s base value is not among this factor's settings (or is not known for this folder), so there "
            "is no base to drop from.")


def base_not_run(loss: str, base: str) -> str:
    return f"{loss}'s base setting {base} has no completed runs to compare."


NEED_TWO_SETTINGS = "at least 2 settings are needed: the base and another."


def drop_too_few_seeds(loss: str, few: list[str]) -> str:
    return (f"every setting needs at least {MIN_SEEDS_THESE} completed seeds to measure seed noise; fewer for {loss} "
            f"at {', '.join(few)}.")


# --- divergence -----------------------------------------------------------------------------------

def divergence_sentence(summary: Mapping[str, Any], scope: str) -> str:
    """One plain sentence on divergence for ``scope`` (a factor or the whole report)."""
    parts = [f"{loss} {c['diverged']}/{c['completed'] + c['diverged']}" for loss, c in summary["per_loss"].items()]
    text = f"{scope}: diverged runs " + ", ".join(parts)
    p = summary["fisher_p"]
    if math.isnan(p):
        return text + "."
    verdict = "the rates differ" if p < ALPHA else "no difference in divergence rate is detectable"
    return f"{text} (Fisher exact p = {p:.3g}: {verdict})."
