"""The report's numbers as Markdown: the tables of docs/results.md.

:func:`results_markdown` formats what :func:`supcon_ray.reporting.numbers.compute` returned (the ``--json``
contract) and computes nothing new, so every number it prints is one the HTML report shows too.
``python -m supcon_ray.report DIR --markdown -`` prints it.

The paper's direction of effect (Khosla et al. 2020, Fig. 4a: ImageNet, ResNet-50) is SupCon less
sensitive than CE for every factor it varied; :data:`PAPER_FIG4A` records it by factor name, and
each factor's claim is set beside it as agree, disagree or cannot tell.
"""

from __future__ import annotations

import math
from typing import Any

from supcon_ray.stats.claims import Claim, display, less_sensitive_loss
from supcon_ray.stats.agreement import PAPER_FIG4A, PAPER_PAIR, pooled_direction
from supcon_ray.stats.base_margin import margin_sentence
from supcon_ray.stats.settings import ALPHA, MIN_SETTINGS_BEYOND


CLAIM_WORDS = {
    Claim.SUPCON_LESS: "SupCon less sensitive",
    Claim.CE_LESS: "CE less sensitive",
    Claim.NO_DIFFERENCE: "no detectable difference",
    Claim.INSUFFICIENT: "cannot tell",
    Claim.MOVES: Claim.MOVES,
    Claim.NO_EFFECT: "no detectable effect",
}


def claim_words(claim: str) -> str:
    """A claim in words: ``<Loss> less sensitive`` for any loss, else the fixed wording."""
    loss = less_sensitive_loss(claim)
    return f"{display(loss)} less sensitive" if loss is not None else CLAIM_WORDS.get(claim, str(claim))


def pair_of(entry: dict[str, Any]) -> tuple[str, str] | None:
    """An entry's compared ``(baseline, method)``, or ``None`` for a one-method entry."""
    return (entry["baseline"], entry["method"]) if entry.get("baseline") and entry.get("method") else None


def columns(numbers: dict[str, Any]) -> tuple[tuple[str, str], bool]:
    """The ``(baseline, method)`` the tables' per-loss columns hold, and whether entries compare several pairs
    (then a row says which it compares and the columns read "method" and "baseline")."""
    pairs = list(dict.fromkeys(p for p in map(pair_of, numbers["factors"]) if p is not None))
    if len(pairs) == 1:
        return pairs[0], False
    if not pairs:
        losses = {f["method"] for f in numbers["factors"] if f.get("method")}
        return (("ce", "supcon") if losses <= {"ce", "supcon"} else ("ce", sorted(losses)[0])), False
    return PAPER_PAIR, True


def slots(entry: dict[str, Any], cols: tuple[str, str]) -> tuple[str | None, str | None]:
    """The losses an entry shows in the ``(method, baseline)`` columns."""
    pair = pair_of(entry)
    if pair is not None:
        return pair[1], pair[0]
    method = entry.get("method")
    return (None, method) if method == cols[0] else (method, None)


def _label(name: str, entry: dict[str, Any], several: bool) -> str:
    pair = pair_of(entry)
    return f"{name} ({display(pair[1])} vs {display(pair[0])})" if several and pair else name


def _paper(entry: dict[str, Any]) -> str | None:
    return PAPER_FIG4A.get(entry["factor"]) if pair_of(entry) == PAPER_PAIR else None

#: What an interval covers next to a Holm-adjusted p-value (said wherever both are shown).
INTERVAL_NOTE = (f"{1 - ALPHA:.0%} intervals are for each comparison on its own; p-values and claims are "
                 f"Holm-adjusted, so an interval can exclude 1 while the adjusted p stays above {ALPHA}.")


def agreement(claim: str, paper: str | None) -> str:
    """``agree`` / ``disagree`` when the claim names a direction, else ``cannot tell``."""
    if paper is None:
        return "n/a"
    if less_sensitive_loss(claim) is not None:
        return "agree" if claim == paper else "disagree"
    return "cannot tell"


def outcome(entry: dict[str, Any]) -> str:
    """The agreement outcome computed in :mod:`supcon_ray.stats.agreement` (it can disagree through an
    equivalence test), or ``n/a`` where the paper states no direction."""
    a = entry.get("agreement") or {}
    return a.get("outcome") or "n/a"


def _drop_cell(d: dict[str, Any] | None) -> str:
    if not d or d.get("drop") is None:
        return "n/a"
    return f"{_n(d['drop'])} {_interval(d['ci95'])}"


AGREEMENT_NOTE = ('Agreement: "agree" is significant in the paper\'s direction, "disagree: opposite" significant '
                  'against it, "disagree: no meaningful difference" a ratio CE/SupCon shown inside [1/m, m] by two '
                  "one-sided tests (TOST, Holm-adjusted over the question's family; m is the study's equivalence_ratio, "
                  '1.25 unless declared), "inconclusive" otherwise.')


def drop_table(numbers: dict[str, Any]) -> list[str]:
    """The drop from the base per factor and pooled (its own Holm family), with the agreement outcome."""
    several = len(numbers.get("studies", [])) > 1
    (b, m), pairs = columns(numbers)
    B, M = ("baseline", "method") if pairs else (display(b), display(m))
    primary = {s: a.get("primary", "spread") for s, a in (numbers.get("analysis") or {}).items()}
    declared = ", ".join(f"{s}: {p}" + ("" if (numbers.get("analysis") or {})[s].get("declared") else
                                        " (not declared before the data: the drop was added afterwards)")
                         for s, p in primary.items())
    out = ["", "**Drop from the base** (accuracy points: the base setting's mean minus the mean of the other settings' "
           f"means; each setting's own seed noise; Welch-Satterthwaite t-intervals). The difference {B} - {M} is its "
           f"own Holm family; the ratio {B}/{M} (Fieller interval) only where both drops are positive."
           + (f" Primary measure: {declared}." if declared else ""), "",
           f"| factor | base | {M} drop [95% CI] | {B} drop [95% CI] | difference {B} - {M} [95% CI] | p (Holm) "
           f"| claim | ratio {B}/{M} [95% CI] | worst drop {M} / {B} | agreement |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    rows = [(_label(f"{f['study']} / {f['factor']}" if several else f["factor"], f, pairs), f.get("drop") or {},
             slots(f, (b, m))) for f in numbers["factors"]]
    for key, o in _pooled(numbers):
        rows.append((f"**all pooled**{key}", o.get("drop") or {}, slots(o, (b, m))))
    for name, d, (mm, bb) in rows:
        if not d:
            continue
        losses = d.get("losses", {})
        base = "; ".join(sorted({str(v["base_setting"]).split("=", 1)[-1] for v in losses.values()
                                 if v.get("base_setting")}))
        diff = d.get("difference") or {}
        worst = " / ".join(_n(losses.get(x, {}).get("worst")) for x in (mm, bb)) if len(losses) == 2 else "n/a"
        ratio = f"{_n(d['ratio'], 2)} {_interval(d['ci95'], 2)}" if d.get("ratio") is not None else "n/a"
        difference = f"{_n(diff.get('estimate'))} {_interval(diff.get('ci95', [None, None]))}" if diff else "n/a"
        out.append(f"| {name} | {base} | {_drop_cell(losses.get(mm))} | {_drop_cell(losses.get(bb))} "
                   f"| {difference} | {_p(d.get('p_adjusted'))} | {claim_words(d['claim'])} | {ratio} "
                   f"| {worst} | {outcome(d)} |")
    out += ["", AGREEMENT_NOTE]
    return out


def _pooled(numbers: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The pooled rows: ``overall``, or one per compared method (``overall_by_method``) where there are several."""
    by = numbers.get("overall_by_method") or {}
    if len(by) <= 1:
        return [("", numbers["overall"])]
    return [(f" ({display(o['method'])} vs {display(o['baseline'])})" if o.get("baseline") else f" ({display(k)})", o)
            for k, o in by.items()]


def _n(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}".replace(f"-{0:.{digits}f}", f"{0:.{digits}f}")  # no "-0.000"


def _interval(ci: list[float | None], digits: int = 3) -> str:
    """``[low, high]``; an unbounded upper end (``inf``, or ``None`` beside a known lower end) prints as inf."""
    lo, hi = ci
    unbounded = hi == math.inf or (hi is None and lo is not None and not (isinstance(lo, float) and math.isnan(lo)))
    return f"[{_n(lo, digits)}, {'inf' if unbounded else _n(hi, digits)}]"


def _p(x: Any) -> str:
    return f"n/a (cannot reach {ALPHA})" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def _spread(entry: dict[str, Any] | None) -> str:
    """A "these settings" spread with its interval."""
    if not entry:
        return "n/a"
    return f"{_n(entry['spread'])} {_interval(entry['spread_ci95'])}"


def _diverged(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "n/a"
    ran = entry["completed"] + entry["diverged"] + entry.get("failed", 0)
    return f"{entry['diverged']}/{ran}"


def _base_accuracy(factor: dict[str, Any], loss: str) -> dict[str, Any] | None:
    """The ``x1`` setting of a relative factor (``lr=x1``) is the tuned base itself."""
    entry = factor["losses"].get(loss) or {}
    return entry.get("settings", {}).get(f"{factor['factor']}=x1")


def _cell(entry: dict[str, Any], paper: str | None, these: bool = False) -> str:
    """One answer in a side-by-side cell: the claim (bold when it names a direction), ratio, interval, agreement."""
    claim = claim_words(entry["claim"])
    if less_sensitive_loss(entry["claim"]) is not None:
        claim = f"**{claim}**"
    verdict = outcome(entry) if these else agreement(entry["claim"], paper)
    agree = f" ({verdict})" if paper and verdict not in ("n/a", "cannot tell", "inconclusive") else ""
    return f"{claim}: {_n(entry['ratio'], 2)} {_interval(entry['ci95'], 2)}{agree}"


def _across_tables(numbers: dict[str, Any]) -> list[str]:
    """With several studies, each factor pooled over the studies that ran it; then every answer beside the paper's."""
    out: list[str] = []
    across = numbers["overall"].get("by_factor") or []
    if across:
        out += ["", "Each factor pooled over the studies that ran it (each study a block; for these settings each "
                "study's settings stay fixed). Each question is its own Holm family over these pooled factors. "
                + INTERVAL_NOTE, "",
                "| factor | studies | settings | SupCon spread [95% CI] | CE spread [95% CI] "
                "| these settings: ratio CE/SupCon [95% CI] | p (Holm) | claim | agreement "
                "| beyond: ratio [95% CI] | p (Holm) | claim | agreement |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for a in across:
            paper, t = _paper(a), a["these_settings"]
            mm, bb = slots(a, PAPER_PAIR)
            out.append(f"| {_label(a['factor'], a, len({pair_of(x) for x in across}) > 1)} | {', '.join(a['studies'])} "
                       f"| {a['n_settings']} | {_spread(t['losses'].get(mm))} | {_spread(t['losses'].get(bb))} "
                       f"| {_n(t['ratio'], 2)} {_interval(t['ci95'], 2)} | {_p(t['p_adjusted'])} | {claim_words(t['claim'])} "
                       f"| {outcome(t)} | {_n(a['ratio'], 2)} {_interval(a['ci95'], 2)} "
                       f"| {_p(a['p_adjusted'])} | {claim_words(a['claim'])} | {agreement(a['claim'], paper)} |")
    studies = numbers.get("studies", [])
    # beside the paper: its own pair where the studies compare it, else every entry
    paper_entries = [f for f in numbers["factors"] if pair_of(f) == PAPER_PAIR] or numbers["factors"]
    if any(pair_of(f) for f in paper_entries) and not any(pair_of(f) == PAPER_PAIR for f in paper_entries):
        return out  # the paper's directions are of SupCon against CE, which these studies do not compare
    if pooled_direction((f["factor"] for f in paper_entries), PAPER_PAIR) is None:
        return out  # no factor the paper states a direction for (Fig. 4b-d state accuracy levels only)
    by = {}
    for f in paper_entries:
        by.setdefault((f["study"], f["factor"]), f)
    pooled = {a["factor"]: a for a in across}
    names = sorted({f["factor"] for f in paper_entries})
    head = ["factor", "paper, Fig. 4a (ImageNet, ResNet-50)"]
    for st in studies:
        head += [f"{st}: these settings", f"{st}: beyond"]
    if across:
        head += ["pooled over studies: these settings", "pooled: beyond"]
    out += ["", "Side by side with the paper (each answer: claim, ratio CE/SupCon [95% CI], agreement with Fig. 4a):", "",
            "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        paper = PAPER_FIG4A.get(name)
        row = [name, CLAIM_WORDS[paper] if paper else "n/a"]
        for st in studies:
            f = by.get((st, name))
            row += [_cell(f["these_settings"], paper, True), _cell(f, paper)] if f else ["not run", "not run"]
        if across:
            a = pooled.get(name)
            row += [_cell(a["these_settings"], paper, True), _cell(a, paper)] if a else ["one study", "one study"]
        out.append("| " + " | ".join(row) + " |")
    o, own = numbers["overall"], numbers.get("overall_per_study") or {}
    paper = Claim.SUPCON_LESS
    row = ["**all pooled**", CLAIM_WORDS[paper]]
    for st in studies:
        p = own.get(st, o)  # one study: the report's own pooled answer
        row += [_cell(p["these_settings"], paper, True), _cell(p, paper)]
    if across:
        row += [_cell(o["these_settings"], paper, True), _cell(o, paper)]
    out.append("| " + " | ".join(row) + " |")
    out += ["", "A claim in bold names a direction and says whether it agrees with the paper's; the others name no "
            "direction, so they neither agree nor disagree. \"All pooled\" is every factor of the study" + (" (each study's own Holm families), and every "
            "factor of every study in the pooled columns." if across else ".")]
    return out


def _setting_key(setting: str) -> tuple[int, float]:
    """Sort key of a setting label: numeric values (``x`` multiples included) in order, before any names."""
    value = setting.split("=", 1)[-1]
    try:
        return (0, float(value[1:] if value.startswith("x") else value))
    except ValueError:
        return (1, 0.0)


def curve_table(numbers: dict[str, Any]) -> list[str]:
    """Each factor's curve: every setting's mean over seeds with its 95% t-interval and seed count, per loss
    (the points of the figure), numeric settings in order."""
    metric = numbers["metric"]
    out = ["", f"**Per setting** ({metric}: the mean over seeds, its 95% t-interval and the number of seeds; the "
           "base setting in bold; the curve the figure draws):"]
    several = len(numbers.get("studies", [])) > 1
    seen: set[tuple[str, str]] = set()
    for f in numbers["factors"]:
        key = (f["study"], f["factor"])
        if key in seen:
            continue
        seen.add(key)
        entries = [g for g in numbers["factors"] if (g["study"], g["factor"]) == key]
        losses: dict[str, dict[str, Any]] = {}
        bases: dict[str, str] = {}
        for g in entries:
            for loss, le in g["losses"].items():
                losses.setdefault(loss, le)
            for loss, d in ((g.get("drop") or {}).get("losses") or {}).items():
                if d.get("base_setting"):
                    bases.setdefault(loss, d["base_setting"])
        every = list(dict.fromkeys(s for le in losses.values() for s in le.get("settings", {})))
        settings = sorted(every, key=_setting_key)  # stable: names keep their order
        title = f"{f['study']} / {f['factor']}" if several else f["factor"]
        out += ["", f"| {title} | " + " | ".join(display(loss) for loss in losses) + " |",
                "|---|" + "---|" * len(losses)]
        for s in settings:
            cells = []
            for loss, le in losses.items():
                v = le.get("settings", {}).get(s)
                cell = f"{_n(v['mean'])} {_interval(v['ci95'])} ({v['n']})" if v else "not run"
                cells.append(f"**{cell}**" if v and bases.get(loss) == s else cell)
            out.append(f"| {s.split('=', 1)[-1]} | " + " | ".join(cells) + " |")
    return out


def nuisance_table(numbers: dict[str, Any]) -> list[str]:
    """Each re-tuned setting's pick (e.g. the learning rate per optimizer or per batch size) with its lead over
    the runner-up of its search, on the selection seeds; the runs behind it are never analysed."""
    out: list[str] = []
    several = len(numbers.get("studies", [])) > 1
    for study, picks in (numbers.get("nuisance") or {}).items():
        if not picks:
            continue
        out += ["", f"**Re-tuned per setting** ({study}: each setting's nuisance search on the selection seeds, "
                "picked on validation; the pick then ran on the study seeds):", "",
                "| factor | setting | method | pick | validation mean | configurations | lead over the runner-up (SE) |",
                "|---|---|---|---|---|---|---|"]
        for p in sorted(picks, key=lambda p: (p["factor"], _setting_key(p["setting"]), p["setting"], p["loss"])):
            m = p.get("margin")
            lead = margin_sentence(m).removeprefix("lead ") if m else "n/a (one configuration)"
            pick = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in p["pick"].items())
            name = f"{study} / {p['factor']}" if several else p["factor"]
            out.append(f"| {name} | {p['setting'].split('=', 1)[-1]} | {display(p['loss'])} | {pick} | {_n(p.get('mean'))} "
                       f"| {p.get('configurations') or 'n/a'} | {lead} |")
        out.append("")
    return out


def _one_method_markdown(numbers: dict[str, Any], out: list[str]) -> str:
    """A study of one method (every entry a one-method answer): its own spread and drop per factor, each
    tested against no effect beyond seed noise; no ratio, no agreement (there is nothing to compare)."""
    several = len(numbers.get("studies", [])) > 1
    loss_names = sorted({f["method"] for f in numbers["factors"] if f.get("method")})
    who = ", ".join(display(x) for x in loss_names) or "the method"
    out += ["", f"One method ({who}), so each factor has its own answers, not a comparison. **For these settings**: "
            "does the mean accuracy move across the settings tried beyond seed noise? Spread = std of the setting "
            "means with seed noise removed, tested against no effect. **Drop from the base**: the base setting's mean "
            "minus the mean of the other settings' means (each setting's own seed noise; Welch-Satterthwaite), tested "
            "against no drop. Both are one Holm family each over the factors and the pooled test. \"Beyond these "
            "settings\" compares two methods, so it has no answer here. " + INTERVAL_NOTE, "",
            "| factor | method | settings | spread [95% CI] | p (Holm) | claim | drop from the base [95% CI] "
            "| p (Holm) | claim | worst drop (at) | diverged |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = [(f"{f['study']} / {f['factor']}" if several else f["factor"], f) for f in numbers["factors"]]
    if len(numbers["factors"]) > 1:
        rows += [(f"**all pooled**{key}", o) for key, o in _pooled(numbers)]
    for name, f in rows:
        t, d = f.get("these_settings") or {}, f.get("drop") or {}
        method = f.get("method") or next(iter(t.get("losses") or {}), None)
        spread = (t.get("losses") or {}).get(method) if method else None
        drop = (d.get("losses") or {}).get(method) if method else None
        worst = (f"{_n(drop.get('worst'))} ({str(drop.get('worst_setting', '')).split('=', 1)[-1]})"
                 if drop and drop.get("worst") is not None else "n/a")
        out.append(f"| {name} | {display(method) if method else 'n/a'} | {t.get('n_settings', f.get('n_settings', 'n/a'))} "
                   f"| {_spread(spread)} | {_p(t.get('p_adjusted'))} | {claim_words(t.get('claim', Claim.INSUFFICIENT))} "
                   f"| {_drop_cell(drop)} | {_p(d.get('p_adjusted'))} | {claim_words(d.get('claim', Claim.INSUFFICIENT))} "
                   f"| {worst} | {_diverged((f.get('losses') or {}).get(method)) if 'losses' in f else ''} |")
    out.extend(curve_table(numbers))
    o = numbers["overall"]
    out.append("")
    out.append(f"Conclusion: {o['these_settings']['sentence']}")
    if (o.get("drop") or {}).get("sentence"):
        out.append(f"Conclusion: {o['drop']['sentence']}")
    _tail(numbers, o, out)
    return "\n".join(out) + "\n"


def _tail(numbers: dict[str, Any], o: dict[str, Any], out: list[str]) -> None:
    """The sensitivity views' verdict and the divergence count over every trial."""
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


def results_markdown(numbers: dict[str, Any]) -> str:
    """Markdown tables for one study's ``numbers``: bases and base accuracy, each factor's spread per
    loss with its interval, the paired test and claim beside the paper's direction, divergence, and
    the pooled conclusion."""
    out: list[str] = []
    metric = numbers["metric"]
    for study, per_loss in (numbers.get("bases") or {}).items():
        tuned = "; ".join(f"{loss}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in rec.get("values", {}).items())
                          + (f" ({margin_sentence(rec['margin'])})" if rec.get("margin") else "")
                          for loss, rec in per_loss.items())
        if any(rec.get("values") for rec in per_loss.values()):
            out.append(f"Tuned bases ({study}, step 1, picked on validation): {tuned}.")
    out.extend(f"Edge of the search space: {flag}." for flag in numbers.get("flags") or [])
    out.extend(nuisance_table(numbers))
    if numbers["factors"] and all(pair_of(f) is None for f in numbers["factors"]):
        return _one_method_markdown(numbers, out)
    (b, m), pairs = columns(numbers)
    B, M = ("baseline", "method") if pairs else (display(b), display(m))
    for f in numbers["factors"]:
        at_base = {loss: _base_accuracy(f, loss) for loss in slots(f, (b, m)) if loss is not None}
        if len(at_base) == 2 and all(at_base.values()):
            text = ", ".join(f"{loss} {_n(s['mean'])} [{_n(s['ci95'][0])}, {_n(s['ci95'][1])}] over {s['n']} seeds"
                             for loss, s in at_base.items())
            extra = f" (chance {_n(numbers['chance'])})" if numbers.get("chance") else ""
            where = f"{f['study']}, " if len(numbers.get("studies", [])) > 1 else ""
            out.append(f"{metric} at the tuned base ({where}the {f['factor']} factor's x1 setting){extra}: {text}.")
    out.append("")
    what = ("each method's mean accuracy move less than its baseline's" if pairs else
            f"{B}'s mean accuracy move more than {M}'s")
    out.append(f"Two questions per factor. **For these settings** (the paper's Fig. 4a question): across the settings "
               f"tried, does {what}? Spread = std of the setting means with seed noise "
               "removed; nothing is said about other settings. **Beyond these settings**: would it hold for other "
               f"settings like these? That treats the settings as a sample and needs at least {MIN_SETTINGS_BEYOND} of them.")
    out.append("")
    out.append(f"| factor | settings | {M} spread [95% CI] | {B} spread [95% CI] | these settings: ratio {B}/{M} [95% CI] "
               "| p (Holm) | claim | agreement | beyond: ratio [95% CI] | p (Holm) | claim | agreement "
               f"| diverged {M} / {B} |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    several = len(numbers.get("studies", [])) > 1
    for f in numbers["factors"]:
        paper = _paper(f)
        losses, t = f["losses"], f["these_settings"]
        mm, bb = slots(f, (b, m))
        name = _label(f"{f['study']} / {f['factor']}" if several else f["factor"], f, pairs)
        out.append(
            f"| {name} | {f['paired_settings']} | {_spread(t['losses'].get(mm))} | {_spread(t['losses'].get(bb))} "
            f"| {_n(t['ratio'], 2)} {_interval(t['ci95'], 2)} | {_p(t['p_adjusted'])} | {claim_words(t['claim'])} "
            f"| {outcome(t)} "
            f"| {_n(f['ratio'], 2)} {_interval(f['ci95'], 2)} | {_p(f['p_adjusted'])} | {claim_words(f['claim'])} "
            f"| {agreement(f['claim'], paper)} | {_diverged(losses.get(mm))} / {_diverged(losses.get(bb))} |")
    for key, o in _pooled(numbers):
        ot = o["these_settings"]
        paper = pooled_direction({f["factor"] for f in numbers["factors"]}, PAPER_PAIR) if pair_of(o) in (PAPER_PAIR, None) else None
        out.append(f"| **all pooled**{key} | {o['n_settings']} | | | {_n(ot['ratio'], 2)} {_interval(ot['ci95'], 2)} "
                   f"| {_p(ot['p_adjusted'])} | {claim_words(ot['claim'])} | {outcome(ot)} "
                   f"| {_n(o['ratio'], 2)} {_interval(o['ci95'], 2)} | {_p(o['p_adjusted'])} | {claim_words(o['claim'])} "
                   f"| {agreement(o['claim'], paper)} | |")
    o = numbers["overall"]
    ot = o["these_settings"]
    out.append("")
    directed = pooled_direction((f["factor"] for f in numbers["factors"]), PAPER_PAIR) is not None
    out.append(("The paper's Fig. 4a direction is \"SupCon less sensitive\" for every factor it varied (optimizer, "
                "augmentation, learning rate). " if directed else
                "The paper states no direction of sensitivity for these factors (its Fig. 4b-d give accuracy levels), "
                "so no agreement is scored. ")
               + "Each question is one Holm family over the factors and the pooled test"
               + (" of every study in this table. " if several else ". ") + INTERVAL_NOTE)
    out.extend(drop_table(numbers))
    out.append("")
    out.append(f"Conclusion: {ot['sentence']}")
    if (o.get("drop") or {}).get("sentence"):
        out.append(f"Conclusion: {o['drop']['sentence']}")
    out.append(f"Conclusion: {o['sentence']}")
    _tail(numbers, o, out)
    out.extend(curve_table(numbers))
    out.extend(_across_tables(numbers))
    return "\n".join(out) + "\n"
