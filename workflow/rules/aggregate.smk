# Run directories -> tidy tables: results/metrics/runs.csv (one row per run) and
# results/metrics/curves.csv.gz (per step, per run). Once over every configured run, and once
# per figure group so that each figure depends on its own runs only.


localrules:
    aggregate,
    aggregate_group,


rule aggregate:
    input:
        runs=all_runs(config),
    output:
        runs=report(
            f"{METRICS}/runs.csv",
            caption="../report/runs.rst",
            category="Tables",
            labels={"table": "whole-run metrics, every run"},
        ),
        curves=f"{METRICS}/curves.csv.gz",
    log:
        f"{LOGS}/aggregate/all.log",
    benchmark:
        f"{BENCHMARKS}/aggregate/all.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m askdagger_mnist.cli.aggregate --runs {input.runs:q}"
        " --out-runs {output.runs:q} --out-curves {output.curves:q} > {log:q} 2>&1"


rule aggregate_group:
    input:
        runs=lambda wildcards: group_runs(config, wildcards.group),
    output:
        runs=f"{METRICS}/{{group}}/runs.csv",
        curves=f"{METRICS}/{{group}}/curves.csv.gz",
    log:
        f"{LOGS}/aggregate/{{group}}.log",
    benchmark:
        f"{BENCHMARKS}/aggregate/{{group}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m askdagger_mnist.cli.aggregate --runs {input.runs:q}"
        " --out-runs {output.runs:q} --out-curves {output.curves:q} > {log:q} 2>&1"
