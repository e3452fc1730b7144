"""From run directories to tables and figures (docs/spec.md §5).

    aggregate   - run directories -> runs.csv (one row per run) and curves.csv.gz (per step)
    inputs      - reading those tables for a figure; refusing when a run is missing
    tables      - ablation tables (csv, md, tex)
    figures     - the paper figure and the ablation figures
    sag_figure  - sag.pdf: one SAG call of a run, recomputed and drawn
    sides       - the two sides of a reproduction check: runs by configuration, common steps
    verdict     - does it reproduce? the verdict per configuration and metric
    intervals   - Welch's interval on a difference of means (and the percentile bootstrap it replaced)
    reproduction_figure - reproduction.pdf: ours solid, theirs dashed
"""
