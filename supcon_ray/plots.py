"""Plotly figures of a stability study, one function per report section.

Every function takes the trials (or epochs) DataFrame and returns a ``plotly.graph_objects.Figure``,
so the figures can be reused in a notebook. SupCon and CE keep the same colours everywhere.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

LOSS_COLORS = {"supcon": "#1f77b4", "ce": "#d62728", "simclr": "#2ca02c"}
STATUS_SYMBOLS = {"completed": "circle", "diverged": "x"}


def settings_box(trials: pd.DataFrame, factor: str, metric: str) -> go.Figure:
    """The paper's Fig. 4a view: a box per setting and loss, every trial drawn as a point."""
    data = trials[(trials["factor"] == factor) & trials["status"].isin(["completed", "diverged"])]
    fig = px.box(data, x="setting", y=metric, color="loss", points="all", color_discrete_map=LOSS_COLORS,
                 hover_data=["seed", "status", "trial_id"], title=f"{factor}: {metric} per setting (every trial shown)")
    fig.update_traces(boxmean=True, jitter=0.3, pointpos=0)
    fig.update_layout(boxmode="group", yaxis_title=metric, xaxis_title=factor)
    return fig


def noise_floor_bars(rows: list[dict[str, Any]]) -> go.Figure:
    """Spread across seeds (fixed setting) next to spread across settings, per factor and loss."""
    df = pd.DataFrame(rows)
    long = df.melt(id_vars=["factor", "loss"], value_vars=["seed_std", "setting_std"], var_name="spread", value_name="std")
    long["spread"] = long["spread"].map({"seed_std": "across seeds (same setting)", "setting_std": "across settings (seed mean)"})
    long["group"] = long["factor"] + " / " + long["loss"]
    fig = px.bar(long, x="group", y="std", color="spread", barmode="group",
                 title="Seed noise floor versus hyperparameter effect (standard deviation)")
    fig.update_layout(xaxis_title="factor / loss", yaxis_title="std of the metric")
    return fig


def expected_max_lines(curves: dict[str, list[float]], metric: str) -> go.Figure:
    """Expected best ``metric`` versus number of trials, per loss."""
    fig = go.Figure()
    for loss, values in curves.items():
        fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers", name=loss,
                                 line={"color": LOSS_COLORS.get(loss)}))
    fig.update_layout(title=f"Expected best {metric} after k trials (Dodge et al. 2019)",
                      xaxis_title="k (trials drawn from this study's settings)", yaxis_title=f"expected max {metric}")
    return fig


def importance_bars(importances: dict[str, dict[str, float]]) -> go.Figure:
    """fANOVA importance per hyperparameter, per loss."""
    rows = [{"loss": loss, "hyperparameter": k, "importance": v} for loss, imp in importances.items() for k, v in imp.items()]
    fig = px.bar(pd.DataFrame(rows), x="hyperparameter", y="importance", color="loss", barmode="group",
                 color_discrete_map=LOSS_COLORS, title="Hyperparameter importance (Optuna fANOVA)")
    return fig


def learning_curves(epochs: pd.DataFrame) -> go.Figure:
    """Training loss per epoch of every trial's main stage (pre-training for SupCon, CE training for CE)."""
    main = epochs[epochs["stage"] != "linear"].sort_values(["trial_id", "epoch"])
    fig = px.line(main, x="epoch", y="train_loss", color="loss", line_group="trial_id", facet_col="loss",
                  color_discrete_map=LOSS_COLORS, hover_data=["setting", "seed"],
                  title="Learning curves: training loss per epoch, one line per trial")
    fig.update_yaxes(matches=None)
    fig.update_traces(opacity=0.6)
    return fig
