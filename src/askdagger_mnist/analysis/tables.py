"""Ablation tables: whole-run metric mean +- (population) std across repetitions per s_des and
variant, written as ``{prefix}.csv`` (tidy, full precision), ``{prefix}.md`` and ``{prefix}.tex``
(3 decimals; the .tex needs ``\\usepackage{booktabs}``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from ..data.atomic import write_bytes_atomic
from ..experiment.naming import format_s_des

TABLE_COLUMNS = ("metric", "variant", "label", "p_rand", "s_des", "n_reps", "mean", "std")
METRIC_NAMES = {"sensitivity": "Sensitivity", "specificity": "Specificity", "informedness": "Informedness"}


def summary_table(
    runs: pd.DataFrame,
    metrics: Sequence[str],
    variants: Sequence[str],
    labels: Sequence[str],
    s_des: Sequence[float],
) -> pd.DataFrame:
    """Tidy table: one row per (metric, variant, s_des) with mean, population std and count.

    ``runs`` must hold exactly the runs to summarise (plot_inputs.load_for_figure checks that).
    """
    label_of = dict(zip(variants, labels))
    grouped = runs.groupby(["variant", "s_key"])
    rows = []
    for metric in metrics:
        for variant in variants:
            for s in s_des:
                values = grouped.get_group((variant, format_s_des(s)))
                col = values[metric].astype(float)
                rows.append(
                    {
                        "metric": metric,
                        "variant": variant,
                        "label": label_of[variant],
                        "p_rand": float(values["p_rand"].iloc[0]),
                        "s_des": float(s),
                        "n_reps": int(col.count()),
                        "mean": float(col.mean()),
                        "std": float(col.std(ddof=0)),
                    }
                )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def _cell(mean: float, std: float, pm: str) -> str:
    if pd.isna(mean):
        return "n/a"
    return f"{mean:.3f} {pm} {std:.3f}"


def _wide(table: pd.DataFrame, pm: str) -> tuple[list[str], list[tuple[str, list[str]]], list[list[str]]]:
    """(s_des values, [(metric, [variant labels])], rows of cells) in the table's order."""
    metrics = list(dict.fromkeys(table["metric"]))
    labels = list(dict.fromkeys(table["label"]))
    s_values = list(dict.fromkeys(table["s_des"]))
    cells = {
        (r.metric, r.label, r.s_des): _cell(r.mean, r.std, pm) for r in table.itertuples(index=False)
    }
    rows = [
        [format_s_des(s)] + [cells[(m, lab, s)] for m in metrics for lab in labels] for s in s_values
    ]
    return [format_s_des(s) for s in s_values], [(m, labels) for m in metrics], rows


def to_markdown(table: pd.DataFrame, caption: str) -> str:
    _, groups, rows = _wide(table, "±")
    header = ["s_des"] + [
        (f"{METRIC_NAMES.get(m, m)}: {lab}" if len(groups) > 1 else lab) for m, labs in groups for lab in labs
    ]
    lines = [caption, "", "| " + " | ".join(header) + " |", "|" + "|".join(["---:"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _tex_escape(text: str) -> str:
    text = text.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")
    return text.replace("±", r"$\pm$")


def to_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    _, groups, rows = _wide(table, r"$\pm$")
    n_cols = sum(len(labs) for _, labs in groups)
    lines = [
        "% Requires \\usepackage{booktabs}.",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{_tex_escape(caption)}}}",
        f"\\label{{{label}}}",
        "\\begin{tabular}{r" + "c" * n_cols + "}",
        "\\toprule",
    ]
    if len(groups) > 1:
        heads, rules, start = [], [], 2
        for metric, labs in groups:
            heads.append(f"\\multicolumn{{{len(labs)}}}{{c}}{{{METRIC_NAMES.get(metric, metric)}}}")
            rules.append(f"\\cmidrule(lr){{{start}-{start + len(labs) - 1}}}")
            start += len(labs)
        lines.append(" & " + " & ".join(heads) + " \\\\")
        lines.append(" ".join(rules))
    sub = [lab for _, labs in groups for lab in labs]
    lines.append("$s_{\\mathrm{des}}$ & " + " & ".join(sub) + " \\\\")
    lines.append("\\midrule")
    lines += [" & ".join(row) + " \\\\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_tables(
    table: pd.DataFrame, prefix: Path, caption: str, tex_labels: Sequence[str] | None = None
) -> list[Path]:
    """Write ``prefix``.csv/.md/.tex atomically; returns the three paths.

    ``tex_labels`` optionally replaces the variant labels in the .tex (mathtext-free LaTeX)."""
    prefix = Path(prefix)
    paths = [Path(f"{prefix}.{ext}") for ext in ("csv", "md", "tex")]
    _write_text_atomic(paths[0], table.to_csv(index=False))
    _write_text_atomic(paths[1], to_markdown(table, caption))
    tex_table = table
    if tex_labels is not None:
        mapping = dict(zip(dict.fromkeys(table["label"]), tex_labels))
        tex_table = table.assign(label=table["label"].map(mapping))
    else:
        tex_table = table.assign(label=table["label"].map(_tex_escape))
    _write_text_atomic(paths[2], to_latex(tex_table, caption, f"tab:{prefix.name}"))
    return paths
