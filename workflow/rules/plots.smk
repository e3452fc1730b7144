# Figures and tables (docs/spec.md §5.3-§5.6). Each figure reads its own group's tables and names
# exactly the runs it averages, so a missing run stops it with a list instead of a thinner plot.


localrules:
    plot_main,
    plot_ablation,
    plot_sag,


rule plot_main:
    input:
        runs=f"{METRICS}/main/runs.csv",
        curves=f"{METRICS}/main/curves.csv.gz",
    output:
        figure=report(
            "figures/mnist.pdf",
            caption="../report/mnist.rst",
            category="Figures",
            labels={"figure": "main (mnist.pdf)"},
        ),
    log:
        f"{LOGS}/plots/main.log",
    benchmark:
        f"{BENCHMARKS}/plots/main.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        modes=config["modes"],
        variant=config["figures"]["main"]["variant"],
        s_des=[fmt_s(s) for s in config["s_des"]],
        reps=config["repetitions"],
    shell:
        "python -m askdagger_mnist.cli.plots main --runs-csv {input.runs:q} --curves {input.curves:q}"
        " --modes {params.modes:q} --variant {params.variant:q} --s-des {params.s_des:q}"
        " --reps {params.reps:q} --out {output.figure:q} > {log:q} 2>&1"


rule plot_ablation:
    input:
        runs=f"{METRICS}/{{ablation}}/runs.csv",
        curves=f"{METRICS}/{{ablation}}/curves.csv.gz",
    output:
        figure=report(
            "figures/mnist_{ablation}.pdf",
            caption="../report/ablation.rst",
            category="Figures",
            labels={"figure": "{ablation} (mnist_{ablation}.pdf)"},
        ),
        csv=report(
            "results/tables/{ablation}.csv",
            caption="../report/ablation_table.rst",
            category="Tables",
            labels={"table": "{ablation}"},
        ),
        md="results/tables/{ablation}.md",
        tex="results/tables/{ablation}.tex",
    log:
        f"{LOGS}/plots/{{ablation}}.log",
    benchmark:
        f"{BENCHMARKS}/plots/{{ablation}}.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        command=lambda wildcards: wildcards.ablation.replace("_", "-"),
        variants=lambda wildcards: config["figures"][wildcards.ablation]["variants"],
        s_des=[fmt_s(s) for s in config["s_des"]],
        reps=config["repetitions"],
        prefix=lambda wildcards, output: output.csv[: -len(".csv")],
    shell:
        "python -m askdagger_mnist.cli.plots {params.command:q} --runs-csv {input.runs:q}"
        " --curves {input.curves:q} --variants {params.variants:q} --s-des {params.s_des:q}"
        " --reps {params.reps:q} --out-figure {output.figure:q} --out-tables {params.prefix:q}"
        " > {log:q} 2>&1"


rule plot_sag:
    input:
        run=sag_figure_run(config),
    output:
        figure=report(
            "figures/sag.pdf",
            caption="../report/sag.rst",
            category="Figures",
            labels={"figure": "SAG illustration (sag.pdf)"},
        ),
    log:
        f"{LOGS}/plots/sag.log",
    benchmark:
        f"{BENCHMARKS}/plots/sag.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python -m askdagger_mnist.cli.plots sag --run {input.run:q} --out {output.figure:q}"
        " > {log:q} 2>&1"
