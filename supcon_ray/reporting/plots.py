"""Plotly figures of stability studies, one function per report section.

Functions take the trials/epochs DataFrames or the entries of :class:`supcon_ray.analysis.ReportNumbers` and return a
``plotly.graph_objects.Figure``, so they can be reused in a notebook. SupCon and CE keep the same
colours everywhere; completed, diverged and failed runs have their own markers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from supcon_ray.analysis import FactorEntry, LossSummary
from supcon_ray.analysis.wording import short_claim
from supcon_ray.labels import SettingLabel
from supcon_ray.stats.agreement import PAPER_PAIR
from supcon_ray.stats.claims import display

LOSS_COLORS = {"supcon": "#1f77b4", "ce": "#d62728", "simclr": "#2ca02c"}
#: Colours of other losses (plugins), in order of their names.
EXTRA_COLORS = ("#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def color_of(loss: str, losses: list[str] | None = None) -> str:
    """A loss's colour: fixed for the built-in ones, else one of :data:`EXTRA_COLORS` by its rank among ``losses``."""
    if loss in LOSS_COLORS:
        return LOSS_COLORS[loss]
    others = sorted(x for x in (losses or [loss]) if x not in LOSS_COLORS)
    return EXTRA_COLORS[others.index(loss) % len(EXTRA_COLORS)] if loss in others else EXTRA_COLORS[0]
STATUS_SYMBOLS = {"completed": "circle-open", "diverged": "x", "failed": "triangle-down"}


def setting_axis(trials: pd.DataFrame, factor: str) -> tuple[dict[str, float] | None, bool]:
    """Numeric x positions of a factor's settings when the factor is one numeric hyperparameter
    (lr, batch size, temperature), else ``None``; and whether a log axis fits (all positive, spanning 4x or more).

    Settings written as multiples of each loss's tuned base (``lr=x0.1``) sit at the multiple, so every
    loss and every study shares one axis whatever its base; otherwise at the hyperparameter's value."""
    settings = [str(s) for s in trials["setting"].unique()] if "setting" in trials.columns else []
    multiples = {s: SettingLabel(s).multiple for s in settings}
    if settings and all(m is not None and m > 0 for m in multiples.values()):
        pos = {s: float(m) for s, m in multiples.items()}
    elif factor not in trials.columns or not pd.api.types.is_numeric_dtype(trials[factor]) or pd.api.types.is_bool_dtype(trials[factor]):
        return None, False
    else:
        per = trials.groupby("setting")[factor].agg(["nunique", "first"])
        if (per["nunique"] != 1).any():
            return None, False
        pos = {str(s): float(v) for s, v in per["first"].items()}
    values = np.array(list(pos.values()))
    return pos, bool(values.min() > 0 and values.max() / values.min() >= 4)


#: Short tick labels for long setting names (anything else keeps its own name).
SHORT_SETTINGS = {"autoaugment": "AutoAug", "randaugment": "RandAug", "simaugment": "SimAug",
                  "stacked_randaugment": "Stacked RA", "rmsprop": "RMSProp", "sgd": "SGD", "lars": "LARS"}


def short_label(setting: str) -> str:
    """A setting's tick label: its value without the factor's name, shortened (``augment=stacked_randaugment`` -> ``Stacked RA``)."""
    value = SettingLabel(setting).value
    return SHORT_SETTINGS.get(value, value)


@dataclass(frozen=True)
class Panel:
    """One (study, factor) panel: the entry whose answers its title shows (SupCon against CE, else the first
    compared method), the losses of every entry of that factor, and how many entries it draws."""

    entry: FactorEntry
    losses: dict[str, LossSummary]
    methods: int = 1


def panel_title(panel: Panel) -> str:
    """A factor's panel title with both answers: for these settings, and beyond them."""
    f = panel.entry
    these = short_claim(f.these_settings.claim)
    ratio = f.these_settings.ratio
    if isinstance(ratio, (int, float)) and math.isfinite(ratio):
        these += f" (ratio {ratio:.2f})"
    if f.pair is None:  # one method: its own answers, no comparison "beyond"
        return f"{f.study} / {f.factor} ({f.method})<br>these settings: {these}; drop: {short_claim(f.drop.claim)}"
    if panel.methods > 1:  # a panel of several compared methods: the paper pair's (or the first) answers
        return (f"{f.study} / {f.factor} ({display(f.method)} vs {display(f.baseline)})<br>these settings: "
                f"{these}; beyond: {short_claim(f.claim)}")
    return f"{f.study} / {f.factor}<br>these settings: {these}; beyond: {short_claim(f.claim)}"


def panels(factors: tuple[FactorEntry, ...] | list[FactorEntry]) -> list[Panel]:
    """One panel per (study, factor): the entry of SupCon against CE (else the first compared method), with the
    losses of every entry of that factor, so a factor compared for several methods is drawn once."""
    out: dict[tuple[str, str], Panel] = {}
    for f in factors:
        key = (f.study, f.factor)
        if key not in out:
            out[key] = Panel(f, dict(f.losses))
            continue
        panel = out[key]
        if f.pair is not None and tuple(f.pair) == PAPER_PAIR:
            out[key] = Panel(f, {**panel.losses, **f.losses}, panel.methods + 1)
        else:
            out[key] = Panel(panel.entry, {**panel.losses, **{k: v for k, v in f.losses.items() if k not in panel.losses}},
                             panel.methods + 1)
    return list(out.values())


def fig4a(trials: pd.DataFrame, factors: tuple[FactorEntry, ...] | list[FactorEntry], metric: str) -> go.Figure:
    """The paper's Fig. 4a view, every factor side by side: each loss's mean per setting with 95% seed
    intervals, and every run as a marker (diverged at chance, failed at the bottom of the axis)."""
    factors = panels(factors)
    every_loss = sorted({loss for f in factors for loss in f.losses})
    n = max(len(factors), 1)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    height = 380 * rows + 40 * (rows - 1) + 80
    # plotly needs spacing <= 1 / (rows - 1): keep a fixed 130 px gap (a row's axis title, then the next
    # row's two-line panel title), whatever the number of rows
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[panel_title(f) for f in factors],
                        horizontal_spacing=0.07, vertical_spacing=min(0.18, 130 / height))
    shown: set[str] = set()
    floor = float(trials[metric].min()) if trials[metric].notna().any() else 0.0
    for i, f in enumerate(factors):
        r, c = i // cols + 1, i % cols + 1
        study, factor = f.entry.study, f.entry.factor
        sub = trials[(trials["study"] == study) & (trials["factor"] == factor)]
        positions, log = setting_axis(sub, factor)
        order = sorted(sub["setting"].astype(str).unique(), key=lambda s: (positions or {}).get(s, 0.0))
        x_of = (lambda s: positions[s]) if positions else (lambda s: s)
        for loss, le in f.losses.items():
            color = color_of(loss, every_loss)
            settings = [s for s in order if s in le.settings]
            means = [le.settings[s].mean for s in settings]
            half = [le.settings[s].ci95.high - le.settings[s].mean for s in settings]
            fig.add_trace(go.Scatter(
                x=[x_of(s) for s in settings], y=means, mode="lines+markers", name=display(loss), legendgroup=loss,
                showlegend=loss not in shown, line={"color": color}, marker={"size": 9},
                error_y={"type": "data", "array": [h if np.isfinite(h) else 0 for h in half], "visible": True}),
                row=r, col=c)
            shown.add(loss)
            runs = sub[sub["loss"] == loss]
            for status, symbol in STATUS_SYMBOLS.items():
                pts = runs[runs["status"] == status]
                if pts.empty:
                    continue
                y = pts[metric].fillna(floor) if status == "failed" else pts[metric]
                key = f"{loss} {status}"
                fig.add_trace(go.Scatter(
                    x=[x_of(str(s)) for s in pts["setting"]], y=y, mode="markers", name=f"{display(loss)} {status}", legendgroup=key,
                    showlegend=key not in shown and status != "completed", opacity=0.6,
                    marker={"symbol": symbol, "color": color, "size": 7 if status == "completed" else 10},
                    hovertext=[f"seed {s}, {status}" for s in pts["seed"]]), row=r, col=c)
                shown.add(key)
        if positions:
            relative = all(SettingLabel(s).multiple is not None for s in order)
            title = f"{factor} (x each loss's tuned base)" if relative else factor
            ticks = {} if relative else {"tickmode": "array", "tickvals": [positions[s] for s in order],
                                         "ticktext": [short_label(s) for s in order]}  # each setting tried, by its value
            fig.update_xaxes(type="log" if log else "linear", title_text=title, row=r, col=c, **ticks)
        else:
            fig.update_xaxes(type="category", categoryorder="array", categoryarray=order, tickmode="array",
                             tickvals=order, ticktext=[short_label(s) for s in order], row=r, col=c)
        fig.update_yaxes(title_text=metric if c == 1 else None, row=r, col=c)
    fig.update_layout(title=f"{metric} per setting: mean and 95% interval over seeds; every run as a marker",
                      height=height)
    fig.update_annotations(font_size=11)
    return fig


def _finite(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else math.nan


def sensitivity_intervals(factors: tuple[FactorEntry, ...] | list[FactorEntry]) -> go.Figure:
    """Per factor and loss, both spreads with 95% intervals: over these settings (filled markers) and
    sigma_a of settings like these (open markers). An unbounded end is drawn to the plot's top."""
    fig = go.Figure()
    names = [f"{f.study} / {f.factor}" for f in factors]
    if len(set(names)) < len(names):  # a factor compared for several methods: name each entry's method
        names = [f"{n} ({f.method})" for n, f in zip(names, factors)]
    every_loss = sorted({loss for f in factors for loss in f.losses})
    for loss in every_loss:
        for question, symbol in (("these settings", "circle"), ("beyond", "circle-open")):
            y, lo, hi = [], [], []
            for f in factors:
                if question == "these settings":
                    e = f.these_settings.losses.get(loss)
                    s, ci = (_finite(e.spread), e.spread_ci95) if e else (math.nan, (None, None))
                else:
                    e = f.losses.get(loss)
                    s, ci = (_finite(e.setting_std), e.setting_std_ci95) if e else (math.nan, (None, None))
                low, high = (_finite(x) for x in ci)
                y.append(s)
                lo.append(s - low if np.isfinite(s) and np.isfinite(low) else 0)
                hi.append(high - s if np.isfinite(s) and np.isfinite(high) else 0)
            fig.add_trace(go.Scatter(x=names, y=y, mode="markers", name=f"{display(loss)}, {question}",
                                     marker={"size": 11, "color": color_of(loss, every_loss), "symbol": symbol},
                                     error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo}))
    fig.update_layout(title="Sensitivity: std of the metric across settings, seed noise removed (95% intervals); "
                      "filled: these settings, open: settings like these",
                      xaxis_title="study / factor", yaxis_title="std across settings", scattermode="group")
    return fig


def expected_max_band(section: dict[str, Any]) -> go.Figure:
    """Expected best validation accuracy versus k random configurations, with a bootstrap band."""
    fig = go.Figure()
    for loss, c in section["curves"].items():
        color = color_of(loss, list(section["curves"]))
        band_k = c["k"][:len(c["low"])]
        fig.add_trace(go.Scatter(x=band_k + band_k[::-1], y=c["high"] + c["low"][::-1], fill="toself", opacity=0.2,
                                 line={"width": 0}, fillcolor=color, name=f"{display(loss)} 95% band", hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=c["k"], y=c["mean"], mode="lines+markers", name=display(loss), line={"color": color}))
    fig.update_layout(title=f"Expected best {section['metric']} after k random configurations (Tang et al. 2020)",
                      xaxis_title="k (configurations tried)", yaxis_title=f"expected max {section['metric']}")
    return fig


def importance_bars(importances: dict[str, dict[str, dict[str, float]]]) -> go.Figure:
    """fANOVA importance per hyperparameter and loss (mean and sd over evaluator seeds) next to the
    permuted-metric noise baseline."""
    fig = go.Figure()
    for loss, imp in importances.items():
        keys = list(imp)
        fig.add_trace(go.Bar(x=[f"{display(loss)}: {k}" for k in keys], y=[imp[k]["mean"] for k in keys], name=display(loss),
                             marker_color=color_of(loss, list(importances)), error_y={"type": "data", "array": [imp[k]["sd"] for k in keys]}))
        fig.add_trace(go.Bar(x=[f"{display(loss)}: {k}" for k in keys], y=[imp[k]["noise_mean"] for k in keys],
                             name=f"{display(loss)} noise baseline", marker_color="#999999",
                             error_y={"type": "data", "array": [imp[k]["noise_sd"] for k in keys]}))
    fig.update_layout(barmode="group", title="Hyperparameter importance (fANOVA) against a permuted-metric baseline",
                      yaxis_title="share of variance")
    return fig


def learning_curves(epochs: pd.DataFrame) -> go.Figure:
    """Training loss per epoch of every trial's main stage (pre-training for SupCon, CE training for CE)."""
    main = epochs[epochs["stage"] != "linear"].sort_values(["trial_id", "epoch"])
    losses = sorted(epochs["loss"].unique())
    main = main.assign(loss=main["loss"].map(lambda x: display(str(x))))  # each method as the report names it
    fig = px.line(main, x="epoch", y="train_loss", color="loss", line_group="trial_id", facet_col="loss",
                  color_discrete_map={display(str(x)): color_of(x, losses) for x in losses},
                  hover_data=["setting", "seed"],
                  title="Learning curves: training loss per epoch, one line per trial")
    fig.update_yaxes(matches=None)
    fig.update_traces(opacity=0.6)
    return fig
