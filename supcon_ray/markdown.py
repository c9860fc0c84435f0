"""The report's numbers as Markdown: the tables of the README's Results section.

:func:`results_markdown` formats what :func:`supcon_ray.report.compute` returned (the ``--json``
contract) and computes nothing new, so every number it prints is one the HTML report shows too.
``python -m supcon_ray.report DIR --markdown -`` prints it.

The paper's direction of effect (Khosla et al. 2020, Fig. 4a: ImageNet, ResNet-50) is SupCon less
sensitive than CE for every factor it varied; :data:`PAPER_FIG4A` records it by factor name, and
each factor's claim is set beside it as agree, disagree or cannot tell.
"""

from __future__ import annotations

import math
from typing import Any

#: Fig. 4a's direction of effect by factor name (the keys this project's study files vary).
PAPER_FIG4A = {
    "optimizer": "supcon_less_sensitive",
    "augment": "supcon_less_sensitive",
    "lr": "supcon_less_sensitive",
}

CLAIM_WORDS = {
    "supcon_less_sensitive": "SupCon less sensitive",
    "ce_less_sensitive": "CE less sensitive",
    "no_difference": "no detectable difference",
    "insufficient": "cannot tell (design too small)",
}


def agreement(claim: str, paper: str | None) -> str:
    """``agree`` / ``disagree`` when the claim names a direction, else ``cannot tell``."""
    if paper is None:
        return "n/a"
    if claim in ("supcon_less_sensitive", "ce_less_sensitive"):
        return "agree" if claim == paper else "disagree"
    return "cannot tell"


def _n(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _interval(ci: list[float], digits: int = 3) -> str:
    lo, hi = ci
    return f"[{_n(lo, digits)}, {'inf' if hi == math.inf else _n(hi, digits)}]"


def _p(x: Any) -> str:
    return "n/a (cannot reach 0.05)" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def _spread(entry: dict[str, Any] | None) -> str:
    if not entry or not math.isfinite(entry.get("setting_std", math.nan)):
        return "n/a"
    return f"{_n(entry['setting_std'])} {_interval(entry['setting_std_ci95'])}"


def _diverged(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "n/a"
    ran = entry["completed"] + entry["diverged"] + entry.get("failed", 0)
    return f"{entry['diverged']}/{ran}"


def _base_accuracy(factor: dict[str, Any], loss: str) -> dict[str, Any] | None:
    """The ``x1`` setting of a relative factor (``lr=x1``) is the tuned base itself."""
    entry = factor["losses"].get(loss) or {}
    return entry.get("settings", {}).get(f"{factor['factor']}=x1")


def results_markdown(numbers: dict[str, Any]) -> str:
    """Markdown tables for one study's ``numbers``: bases and base accuracy, each factor's spread per
    loss with its interval, the paired test and claim beside the paper's direction, divergence, and
    the pooled conclusion."""
    out: list[str] = []
    metric = numbers["metric"]
    for study, per_loss in (numbers.get("bases") or {}).items():
        tuned = "; ".join(f"{loss}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in rec.get("values", {}).items())
                          for loss, rec in per_loss.items())
        out.append(f"Tuned bases ({study}, stage 1, picked on validation): {tuned}.")
    for f in numbers["factors"]:
        at_base = {loss: _base_accuracy(f, loss) for loss in ("supcon", "ce")}
        if all(at_base.values()):
            text = ", ".join(f"{loss} {_n(s['mean'])} [{_n(s['ci95'][0])}, {_n(s['ci95'][1])}] over {s['n']} seeds"
                             for loss, s in at_base.items())
            extra = f" (chance {_n(numbers['chance'])})" if numbers.get("chance") else ""
            where = f"{f['study']}, " if len(numbers.get("studies", [])) > 1 else ""
            out.append(f"{metric} at the tuned base ({where}the {f['factor']} factor's x1 setting){extra}: {text}.")
    out.append("")
    out.append(f"| factor | settings | SupCon std across settings [95% CI] | CE std across settings [95% CI] "
               f"| ratio CE/SupCon [95% CI] | p (Holm) | claim | paper, Fig. 4a | agreement | diverged SupCon / CE |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    several = len(numbers.get("studies", [])) > 1
    for f in numbers["factors"]:
        paper = PAPER_FIG4A.get(f["factor"])
        losses = f["losses"]
        name = f"{f['study']} / {f['factor']}" if several else f["factor"]
        out.append(
            f"| {name} | {f['paired_settings']} | {_spread(losses.get('supcon'))} | {_spread(losses.get('ce'))} "
            f"| {_n(f['ratio'], 2)} {_interval(f['ci95'], 2)} | {_p(f['p_adjusted'])} | {CLAIM_WORDS[f['claim']]} "
            f"| {CLAIM_WORDS.get(paper, 'n/a') if paper else 'n/a'} | {agreement(f['claim'], paper)} "
            f"| {_diverged(losses.get('supcon'))} / {_diverged(losses.get('ce'))} |")
    o = numbers["overall"]
    out.append(f"| **all pooled** | {o['n_settings']} | | | {_n(o['ratio'], 2)} {_interval(o['ci95'], 2)} "
               f"| {_p(o['p_adjusted'])} | {CLAIM_WORDS[o['claim']]} | SupCon less sensitive "
               f"| {agreement(o['claim'], 'supcon_less_sensitive')} | |")
    out.append("")
    out.append(f"Conclusion: {o['sentence']}")
    changed = [view for view in ("logit", "conservative") if o.get(view, {}).get("changes_conclusion")]
    out.append("Sensitivity views (logit scale; diverged runs scored at chance): "
               + (f"the {' and '.join(changed)} view changes the pooled claim." if changed
                  else "neither changes the pooled claim."))
    every = numbers.get("divergence_all_trials")
    if every:
        runs = ", ".join(f"{loss} {c['diverged']} of {c['completed'] + c['diverged'] + c.get('failed', 0)}"
                         for loss, c in every["per_loss"].items())
        out.append(f"Diverged runs over every trial of the study (tuning and re-tuning included): {runs}"
                   + (f" (Fisher exact p = {every['fisher_p']:.3g})." if math.isfinite(every["fisher_p"]) else "."))
    return "\n".join(out) + "\n"
