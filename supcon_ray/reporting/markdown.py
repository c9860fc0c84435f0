"""The report's numbers as Markdown: the tables of docs/results.md.

:func:`results_markdown` formats a :class:`~supcon_ray.analysis.ReportNumbers` (the numbers ``--json``
writes) and computes nothing new, so every number it prints is one the HTML report shows too.
``python -m supcon_ray.report DIR --markdown -`` prints it.

The paper's direction of effect (Khosla et al. 2020, Fig. 4a: ImageNet, ResNet-50) is SupCon less
sensitive than CE for every factor it varied (:data:`supcon_ray.stats.agreement.PAPER_FIG4A`); each
factor's claim is set beside it as the agreement :mod:`supcon_ray.stats.agreement` decided.
"""

from __future__ import annotations

import math

from supcon_ray.analysis import (AcrossEntry, FactorEntry, LossDrop, LossSpread, LossSummary, PooledEntry,
                                 ReportNumbers, TheseAnswer)
from supcon_ray.analysis.formatting import interval, number, p_value
from supcon_ray.analysis.wording import CLAIM_WORDS, INTERVAL_NOTE, claim_words, margin_sentence
from supcon_ray.labels import SettingLabel, base_label
from supcon_ray.results.cost import cost_line
from supcon_ray.stats.agreement import PAPER_FIG4A, PAPER_PAIR, direction_agreement, pooled_direction
from supcon_ray.stats.claims import Claim, display, less_sensitive_loss
from supcon_ray.stats.settings import MIN_SETTINGS_BEYOND

__all__ = ["AGREEMENT_NOTE", "columns", "curve_table", "drop_table", "nuisance_table", "outcome", "results_markdown",
           "slots"]

Entry = FactorEntry | PooledEntry | AcrossEntry


def _pair(entry: Entry) -> tuple[str, str] | None:
    return tuple(entry.pair) if entry.pair is not None else None


def columns(numbers: ReportNumbers) -> tuple[tuple[str, str], bool]:
    """The ``(baseline, method)`` the tables' per-loss columns hold, and whether entries compare several pairs
    (then a row says which it compares and the columns read "method" and "baseline")."""
    pairs = list(dict.fromkeys(p for p in map(_pair, numbers.factors) if p is not None))
    if len(pairs) == 1:
        return pairs[0], False
    if not pairs:
        losses = {f.method for f in numbers.factors if f.method}
        return (("ce", "supcon") if losses <= {"ce", "supcon"} else ("ce", sorted(losses)[0])), False
    return PAPER_PAIR, True


def slots(entry: Entry, cols: tuple[str, str]) -> tuple[str | None, str | None]:
    """The losses an entry shows in the ``(method, baseline)`` columns."""
    pair = _pair(entry)
    if pair is not None:
        return pair[1], pair[0]
    return (None, entry.method) if entry.method == cols[0] else (entry.method, None)


def _label(name: str, entry: Entry, several: bool) -> str:
    pair = _pair(entry)
    return f"{name} ({display(pair[1])} vs {display(pair[0])})" if several and pair else name


def _paper(entry: Entry) -> str | None:
    return PAPER_FIG4A.get(entry.factor) if _pair(entry) == PAPER_PAIR else None


def outcome(answer: TheseAnswer) -> str:
    """The agreement outcome :mod:`supcon_ray.stats.agreement` decided (it can disagree through an
    equivalence test), or ``n/a`` where the paper states no direction."""
    return (answer.agreement.outcome if answer.agreement else None) or "n/a"


def _n(x, digits: int = 3) -> str:
    return number(x, digits)


def _interval(ci, digits: int = 3) -> str:
    return interval(ci, digits)


def _ratio(answer, digits: int = 2) -> str:
    """An answer's ratio with its interval."""
    return f"{_n(answer.ratio, digits)} {_interval(answer.ci95, digits)}"


def _drop_cell(d: LossDrop | None) -> str:
    if d is None or d.drop is None:
        return "n/a"
    return f"{_n(d.drop)} {_interval(d.ci95)}"


def _spread(entry: LossSpread | None) -> str:
    """A "these settings" spread with its interval."""
    if entry is None:
        return "n/a"
    return f"{_n(entry.spread)} {_interval(entry.spread_ci95)}"


def _diverged(entry: LossSummary | None) -> str:
    return "n/a" if entry is None else f"{entry.diverged}/{entry.runs}"


AGREEMENT_NOTE = ('Agreement: "agree" is significant in the paper\'s direction, "disagree: opposite" significant '
                  'against it, "disagree: no meaningful difference" a ratio CE/SupCon shown inside [1/m, m] by two '
                  "one-sided tests (TOST, Holm-adjusted over the question's family; m is the study's equivalence_ratio, "
                  '1.25 unless declared), "inconclusive" otherwise.')


def _pooled(numbers: ReportNumbers) -> list[tuple[str, PooledEntry]]:
    """The pooled rows: ``overall``, or one per compared method where there are several."""
    rows = numbers.pooled_rows()
    if len(rows) == 1:
        return [("", rows[0])]
    return [(f" ({display(o.method)} vs {display(o.baseline)})" if o.baseline else f" ({display(k)})", o)
            for k, o in numbers.overall_by_method.items()]


def _name(numbers: ReportNumbers, f: FactorEntry) -> str:
    return f"{f.study} / {f.factor}" if len(numbers.studies) > 1 else f.factor


def drop_table(numbers: ReportNumbers) -> list[str]:
    """The drop from the base per factor and pooled (its own Holm family), with the agreement outcome."""
    (b, m), pairs = columns(numbers)
    B, M = ("baseline", "method") if pairs else (display(b), display(m))
    declared = ", ".join(f"{s}: {a.primary}" + ("" if a.declared else
                                                " (not declared before the data: the drop was added afterwards)")
                         for s, a in numbers.analysis.items())
    out = ["", "**Drop from the base** (accuracy points: the base setting's mean minus the mean of the other settings' "
           f"means; each setting's own seed noise; Welch-Satterthwaite t-intervals). The difference {B} - {M} is its "
           f"own Holm family; the ratio {B}/{M} (Fieller interval) only where both drops are positive."
           + (f" Primary measure: {declared}." if declared else ""), "",
           f"| factor | base | {M} drop [95% CI] | {B} drop [95% CI] | difference {B} - {M} [95% CI] | p (Holm) "
           f"| claim | ratio {B}/{M} [95% CI] | worst drop {M} / {B} | agreement |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    rows = [(_label(_name(numbers, f), f, pairs), f.drop, slots(f, (b, m))) for f in numbers.factors]
    rows += [(f"**all pooled**{key}", o.drop, slots(o, (b, m))) for key, o in _pooled(numbers)]
    for name, d, (mm, bb) in rows:
        base = "; ".join(sorted({SettingLabel(v.base_setting).value for v in d.losses.values() if v.base_setting}))
        worst = " / ".join(_n(getattr(d.losses.get(x), "worst", None)) for x in (mm, bb)) if len(d.losses) == 2 else "n/a"
        ratio = _ratio(d) if d.ratio is not None else "n/a"
        diff = d.difference
        difference = f"{_n(diff.estimate)} {_interval(diff.ci95)}" if diff else "n/a"
        out.append(f"| {name} | {base} | {_drop_cell(d.losses.get(mm))} | {_drop_cell(d.losses.get(bb))} "
                   f"| {difference} | {p_value(d.p_adjusted)} | {claim_words(d.claim)} | {ratio} "
                   f"| {worst} | {outcome(d)} |")
    return out + ["", AGREEMENT_NOTE]


def _cell(entry: Entry | TheseAnswer, paper: str | None, these: bool = False) -> str:
    """One answer in a side-by-side cell: the claim (bold when it names a direction), ratio, interval, agreement."""
    answer = entry if these else entry.beyond
    claim = claim_words(answer.claim)
    if less_sensitive_loss(answer.claim) is not None:
        claim = f"**{claim}**"
    verdict = outcome(answer) if these else direction_agreement(answer.claim, paper)
    agree = f" ({verdict})" if paper and verdict not in ("n/a", "cannot tell", "inconclusive") else ""
    return f"{claim}: {_ratio(answer)}{agree}"


def _across_rows(numbers: ReportNumbers, across: tuple[AcrossEntry, ...]) -> list[str]:
    """Each factor pooled over the studies that ran it."""
    out = ["", "Each factor pooled over the studies that ran it (each study a block; for these settings each "
           "study's settings stay fixed). Each question is its own Holm family over these pooled factors. "
           + INTERVAL_NOTE, "",
           "| factor | studies | settings | SupCon spread [95% CI] | CE spread [95% CI] "
           "| these settings: ratio CE/SupCon [95% CI] | p (Holm) | claim | agreement "
           "| beyond: ratio [95% CI] | p (Holm) | claim | agreement |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    several = len({_pair(x) for x in across}) > 1
    for a in across:
        paper, t = _paper(a), a.these_settings
        mm, bb = slots(a, PAPER_PAIR)
        out.append(f"| {_label(a.factor, a, several)} | {', '.join(a.studies)} "
                   f"| {a.n_settings} | {_spread(t.losses.get(mm))} | {_spread(t.losses.get(bb))} "
                   f"| {_ratio(t)} | {p_value(t.p_adjusted)} | {claim_words(t.claim)} "
                   f"| {outcome(t)} | {_ratio(a.beyond)} "
                   f"| {p_value(a.beyond.p_adjusted)} | {claim_words(a.claim)} | {direction_agreement(a.claim, paper)} |")
    return out


def _beside_the_paper(numbers: ReportNumbers, across: tuple[AcrossEntry, ...]) -> list[str]:
    """Every answer beside the paper's: its own pair where the studies compare it, else every entry."""
    entries = [f for f in numbers.factors if _pair(f) == PAPER_PAIR] or list(numbers.factors)
    if any(_pair(f) for f in entries) and not any(_pair(f) == PAPER_PAIR for f in entries):
        return []  # the paper's directions are of SupCon against CE, which these studies do not compare
    if pooled_direction((f.factor for f in entries), PAPER_PAIR) is None:
        return []  # no factor the paper states a direction for (Fig. 4b-d state accuracy levels only)
    by: dict[tuple[str, str], FactorEntry] = {}
    for f in entries:
        by.setdefault((f.study, f.factor), f)
    pooled = {a.factor: a for a in across}
    head = ["factor", "paper, Fig. 4a (ImageNet, ResNet-50)"]
    for st in numbers.studies:
        head += [f"{st}: these settings", f"{st}: beyond"]
    if across:
        head += ["pooled over studies: these settings", "pooled: beyond"]
    out = ["", "Side by side with the paper (each answer: claim, ratio CE/SupCon [95% CI], agreement with Fig. 4a):", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in sorted({f.factor for f in entries}):
        paper = PAPER_FIG4A.get(name)
        row = [name, CLAIM_WORDS[paper] if paper else "n/a"]
        for st in numbers.studies:
            f = by.get((st, name))
            row += [_cell(f.these_settings, paper, True), _cell(f, paper)] if f else ["not run", "not run"]
        if across:
            a = pooled.get(name)
            row += [_cell(a.these_settings, paper, True), _cell(a, paper)] if a else ["one study", "one study"]
        out.append("| " + " | ".join(row) + " |")
    o, paper = numbers.overall, Claim.SUPCON_LESS
    row = ["**all pooled**", CLAIM_WORDS[paper]]
    for st in numbers.studies:
        p = numbers.overall_per_study.get(st, o)  # one study: the report's own pooled answer
        row += [_cell(p.these_settings, paper, True), _cell(p, paper)]
    if across:
        row += [_cell(o.these_settings, paper, True), _cell(o, paper)]
    out.append("| " + " | ".join(row) + " |")
    return out + ["", "A claim in bold names a direction and says whether it agrees with the paper's; the others name no "
                  "direction, so they neither agree nor disagree. \"All pooled\" is every factor of the study"
                  + (" (each study's own Holm families), and every factor of every study in the pooled columns."
                     if across else ".")]


def _across_tables(numbers: ReportNumbers) -> list[str]:
    """With several studies, each factor pooled over the studies that ran it; then every answer beside the paper's."""
    across = numbers.overall.by_factor or ()
    return (_across_rows(numbers, across) if across else []) + _beside_the_paper(numbers, across)


def curve_table(numbers: ReportNumbers) -> list[str]:
    """Each factor's curve: every setting's mean over seeds with its 95% t-interval and seed count, per loss
    (the points of the figure), numeric settings in order."""
    out = ["", f"**Per setting** ({numbers.metric}: the mean over seeds, its 95% t-interval and the number of seeds; "
           "the base setting in bold; the curve the figure draws):"]
    seen: set[tuple[str, str]] = set()
    for f in numbers.factors:
        key = (f.study, f.factor)
        if key in seen:
            continue
        seen.add(key)
        losses: dict[str, LossSummary] = {}
        bases: dict[str, str] = {}
        for g in (g for g in numbers.factors if (g.study, g.factor) == key):
            for loss, summary in g.losses.items():
                losses.setdefault(loss, summary)
            for loss, d in g.drop.losses.items():
                if d.base_setting:
                    bases.setdefault(loss, d.base_setting)
        every = list(dict.fromkeys(s for summary in losses.values() for s in summary.settings))
        settings = sorted(every, key=lambda s: SettingLabel(s).order()[:2])  # stable: names keep their order
        out += ["", f"| {_name(numbers, f)} | " + " | ".join(display(loss) for loss in losses) + " |",
                "|---|" + "---|" * len(losses)]
        for s in settings:
            cells = []
            for loss, summary in losses.items():
                v = summary.settings.get(s)
                cell = f"{_n(v.mean)} {_interval(v.ci95)} ({v.n})" if v else "not run"
                cells.append(f"**{cell}**" if v and bases.get(loss) == s else cell)
            out.append(f"| {SettingLabel(s).value} | " + " | ".join(cells) + " |")
    return out


def nuisance_table(numbers: ReportNumbers) -> list[str]:
    """Each re-tuned setting's pick (e.g. the learning rate per optimizer or per batch size) with its lead over
    the runner-up of its search, on the selection seeds; the runs behind it are never analysed."""
    out: list[str] = []
    several = len(numbers.studies) > 1
    for study, picks in (numbers.nuisance or {}).items():
        if not picks:
            continue
        out += ["", f"**Re-tuned per setting** ({study}: each setting's nuisance search on the selection seeds, "
                "picked on validation; the pick then ran on the study seeds):", "",
                "| factor | setting | method | pick | validation mean | configurations | lead over the runner-up (SE) |",
                "|---|---|---|---|---|---|---|"]
        for p in sorted(picks, key=lambda p: (p["factor"], SettingLabel(p["setting"]).order()[:2], p["setting"], p["loss"])):
            m = p.get("margin")
            lead = margin_sentence(m).removeprefix("lead ") if m else "n/a (one configuration)"
            pick = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in p["pick"].items())
            name = f"{study} / {p['factor']}" if several else p["factor"]
            out.append(f"| {name} | {SettingLabel(p['setting']).value} | {display(p['loss'])} | {pick} "
                       f"| {_n(p.get('mean'))} | {p.get('configurations') or 'n/a'}"
                       + (f" (halving, won at {p['fidelity']['epochs']} epochs)" if p.get("fidelity") else "")
                       + f" | {lead} |")
        out.append("")
    return out


def _one_method_markdown(numbers: ReportNumbers, out: list[str]) -> str:
    """A study of one method (every entry a one-method answer): its own spread and drop per factor, each
    tested against no effect beyond seed noise; no ratio, no agreement (there is nothing to compare)."""
    who = ", ".join(display(x) for x in sorted({f.method for f in numbers.factors if f.method})) or "the method"
    out += ["", f"One method ({who}), so each factor has its own answers, not a comparison. **For these settings**: "
            "does the mean accuracy move across the settings tried beyond seed noise? Spread = std of the setting "
            "means with seed noise removed, tested against no effect. **Drop from the base**: the base setting's mean "
            "minus the mean of the other settings' means (each setting's own seed noise; Welch-Satterthwaite), tested "
            "against no drop. Both are one Holm family each over the factors and the pooled test. \"Beyond these "
            "settings\" compares two methods, so it has no answer here. " + INTERVAL_NOTE, "",
            "| factor | method | settings | spread [95% CI] | p (Holm) | claim | drop from the base [95% CI] "
            "| p (Holm) | claim | worst drop (at) | diverged |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    rows: list[tuple[str, FactorEntry | PooledEntry]] = [(_name(numbers, f), f) for f in numbers.factors]
    if len(numbers.factors) > 1:
        rows += [(f"**all pooled**{key}", o) for key, o in _pooled(numbers)]
    for name, f in rows:
        t, d = f.these_settings, f.drop
        method = f.method or next(iter(t.losses), None)
        drop = d.losses.get(method) if method else None
        worst = (f"{_n(drop.worst)} ({SettingLabel(str(drop.worst_setting)).value})"
                 if drop and drop.worst is not None else "n/a")
        settings = t.n_settings if t.n_settings is not None else f.n_settings
        diverged = _diverged(f.losses.get(method)) if isinstance(f, FactorEntry) else ""
        out.append(f"| {name} | {display(method) if method else 'n/a'} | {settings} "
                   f"| {_spread(t.losses.get(method) if method else None)} | {p_value(t.p_adjusted)} "
                   f"| {claim_words(t.claim)} | {_drop_cell(drop)} | {p_value(d.p_adjusted)} | {claim_words(d.claim)} "
                   f"| {worst} | {diverged} |")
    out.extend(curve_table(numbers))
    o = numbers.overall
    out += ["", f"Conclusion: {o.these_settings.sentence}", f"Conclusion: {o.drop.sentence}"]
    _tail(numbers, o, out)
    return "\n".join(out + cost_lines(numbers)) + "\n"


def _tail(numbers: ReportNumbers, o: PooledEntry, out: list[str]) -> None:
    """The sensitivity views' verdict and the divergence count over every trial."""
    changed = [name for name, view in (("logit", o.logit), ("conservative", o.conservative))
               if view is not None and view.changes_conclusion]
    out.append("Sensitivity views (logit scale; diverged runs scored at chance): "
               + (f"the {' and '.join(changed)} view changes the pooled claim." if changed
                  else "neither changes the pooled claim."))
    every = numbers.divergence_all_trials
    if every:
        runs = ", ".join(f"{display(loss)} {c['diverged']} of {c['completed'] + c['diverged'] + c.get('failed', 0)}"
                         for loss, c in every["per_loss"].items())
        fisher = every["fisher_p"]
        out.append(f"Diverged runs over every trial of the study (tuning and re-tuning included): {runs}"
                   + (f" (Fisher exact p = {fisher:.3g})." if fisher is not None and math.isfinite(fisher) else "."))


def _bases_lines(numbers: ReportNumbers) -> list[str]:
    out = []
    for study, per_loss in (numbers.bases or {}).items():
        tuned = "; ".join(f"{display(loss)}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in rec.get("values", {}).items())
                          + (f" (successive halving, won at {rec['fidelity']['epochs']} epochs)" if rec.get("fidelity") else "")
                          + (f" ({margin_sentence(rec['margin'])})" if rec.get("margin") else "")
                          for loss, rec in per_loss.items())
        if any(rec.get("values") for rec in per_loss.values()):
            out.append(f"Tuned bases ({study}, step 1, picked on validation): {tuned}.")
    return out + [f"Edge of the search space: {flag}." for flag in numbers.flags or ()]


def _at_base(numbers: ReportNumbers, cols: tuple[str, str]) -> list[str]:
    """Each factor's accuracy at the tuned base, where its ``x1`` setting is the base itself."""
    out = []
    for f in numbers.factors:
        at_base = {loss: f.losses[loss].settings.get(base_label(f.factor)) if loss in f.losses else None
                   for loss in slots(f, cols) if loss is not None}
        if len(at_base) == 2 and all(at_base.values()):
            text = ", ".join(f"{display(loss)} {_n(s.mean)} [{_n(s.ci95.low)}, {_n(s.ci95.high)}] over {s.n} seeds"
                             for loss, s in at_base.items())
            extra = f" (chance {_n(numbers.chance)})" if numbers.chance else ""
            where = f"{f.study}, " if len(numbers.studies) > 1 else ""
            out.append(f"{numbers.metric} at the tuned base ({where}the {f.factor} factor's x1 setting){extra}: {text}.")
    return out


def _factor_rows(numbers: ReportNumbers, cols: tuple[str, str], pairs: bool) -> list[str]:
    out = []
    for f in numbers.factors:
        t = f.these_settings
        mm, bb = slots(f, cols)
        out.append(
            f"| {_label(_name(numbers, f), f, pairs)} | {f.paired_settings} | {_spread(t.losses.get(mm))} "
            f"| {_spread(t.losses.get(bb))} | {_ratio(t)} | {p_value(t.p_adjusted)} | {claim_words(t.claim)} "
            f"| {outcome(t)} | {_ratio(f.beyond)} | {p_value(f.beyond.p_adjusted)} | {claim_words(f.claim)} "
            f"| {direction_agreement(f.claim, _paper(f))} | {_diverged(f.losses.get(mm))} / {_diverged(f.losses.get(bb))} |")
    for key, o in _pooled(numbers):
        ot = o.these_settings
        paper = (pooled_direction({f.factor for f in numbers.factors}, PAPER_PAIR)
                 if _pair(o) in (PAPER_PAIR, None) else None)
        out.append(f"| **all pooled**{key} | {o.n_settings} | | | {_ratio(ot)} "
                   f"| {p_value(ot.p_adjusted)} | {claim_words(ot.claim)} | {outcome(ot)} "
                   f"| {_ratio(o.beyond)} | {p_value(o.beyond.p_adjusted)} | {claim_words(o.claim)} "
                   f"| {direction_agreement(o.claim, paper)} | |")
    return out


def results_markdown(numbers: ReportNumbers) -> str:
    """Markdown tables for one study's ``numbers``: bases and base accuracy, each factor's spread per
    loss with its interval, the paired test and claim beside the paper's direction, divergence, and
    the pooled conclusion."""
    out = _bases_lines(numbers) + nuisance_table(numbers)
    if numbers.factors and all(f.pair is None for f in numbers.factors):
        return _one_method_markdown(numbers, out)
    (b, m), pairs = columns(numbers)
    B, M = ("baseline", "method") if pairs else (display(b), display(m))
    out += _at_base(numbers, (b, m))
    what = ("each method's mean accuracy move less than its baseline's" if pairs else
            f"{B}'s mean accuracy move more than {M}'s")
    out += ["", f"Two questions per factor. **For these settings** (the paper's Fig. 4a question): across the settings "
            f"tried, does {what}? Spread = std of the setting means with seed noise "
            "removed; nothing is said about other settings. **Beyond these settings**: would it hold for other "
            f"settings like these? That treats the settings as a sample and needs at least {MIN_SETTINGS_BEYOND} of them.",
            "",
            f"| factor | settings | {M} spread [95% CI] | {B} spread [95% CI] | these settings: ratio {B}/{M} [95% CI] "
            "| p (Holm) | claim | agreement | beyond: ratio [95% CI] | p (Holm) | claim | agreement "
            f"| diverged {M} / {B} |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    out += _factor_rows(numbers, (b, m), pairs)
    o = numbers.overall
    directed = pooled_direction((f.factor for f in numbers.factors), PAPER_PAIR) is not None
    out += ["", ("The paper's Fig. 4a direction is \"SupCon less sensitive\" for every factor it varied (optimizer, "
                 "augmentation, learning rate). " if directed else
                 "The paper states no direction of sensitivity for these factors (its Fig. 4b-d give accuracy levels), "
                 "so no agreement is scored. ")
            + "Each question is one Holm family over the factors and the pooled test"
            + (" of every study in this table. " if len(numbers.studies) > 1 else ". ") + INTERVAL_NOTE]
    out += drop_table(numbers)
    out += ["", f"Conclusion: {o.these_settings.sentence}", f"Conclusion: {o.drop.sentence}",
            f"Conclusion: {o.beyond.sentence}"]
    _tail(numbers, o, out)
    return "\n".join(out + curve_table(numbers) + _across_tables(numbers) + cost_lines(numbers)) + "\n"


def cost_lines(numbers: ReportNumbers) -> list[str]:
    """Each study's cost (study folders only): its runs, trial-epochs, time, selection share and disk."""
    return ["", *(f"Cost of {study}: {cost_line(c)}." for study, c in (numbers.cost or {}).items())] if numbers.cost else []
