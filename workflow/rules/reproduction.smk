# Does it reproduce? (docs/reproduction.md) Only with compare_with set.
#
#   fetch_archive, then import_comparison   archive -> results/compare/{name}/{mode}/{variant}/s{s}/rep{r}
#   comparable_configurations (a checkpoint)  the configurations both sides have
#   reproduction_verdict   our runs of those vs. the imported ones -> results/reproduction/verdict.{csv,md}
#   plot_reproduction      the same two sides -> figures/reproduction.pdf
#
# The imported runs live in a tree of their own and never become ours. Both sides are read from
# their run directories, so runs of any length compare over the steps both have. The verdict
# waits for the archives to be imported and then asks only for the runs of ours it can compare:
# after the main figure, comparing with the authors' sensitivity archive trains nothing more.

if config["compare_with"]:

    localrules:
        import_comparison,
        comparable_configurations,
        reproduction_verdict,
        plot_reproduction,

    # Our runs the verdict compares: those whose configuration an imported archive holds.
    ours_comparable = lambda wildcards: comparable_runs(
        config, checkpoints.comparable_configurations.get().output.json
    )

    use rule import_archive as import_comparison with:
        output:
            staging=directory(f"{COMPARE}/{{name}}"),
        log:
            f"{LOGS}/import_comparison/{{name}}.log",
        benchmark:
            f"{BENCHMARKS}/import_comparison/{{name}}.tsv"

    checkpoint comparable_configurations:
        input:
            theirs=[f"{COMPARE}/{name}" for name in config["compare_with"]],
        output:
            json=f"{REPRODUCTION}/comparable.json",
        log:
            f"{LOGS}/reproduction/comparable.log",
        benchmark:
            f"{BENCHMARKS}/reproduction/comparable.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            ours=lambda wildcards: json.dumps(
                sorted(set(planned_configurations(config).values()))
            ),
        shell:
            "python -m askdagger_mnist.cli.reproduction configurations --theirs {input.theirs:q}"
            " --ours-configurations {params.ours:q} --out {output.json:q} > {log:q} 2>&1"

    rule reproduction_verdict:
        input:
            ours=ours_comparable,
            theirs=[f"{COMPARE}/{name}" for name in config["compare_with"]],
        output:
            csv=report(
                f"{REPRODUCTION}/verdict.csv",
                caption="../report/reproduction_verdict.rst",
                category="Reproduction",
                labels={"table": "verdict (verdict.csv)"},
            ),
            md=f"{REPRODUCTION}/verdict.md",
        log:
            f"{LOGS}/reproduction/verdict.log",
        benchmark:
            f"{BENCHMARKS}/reproduction/verdict.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            settings=reproduction_flags(config),
        shell:
            "python -m askdagger_mnist.cli.reproduction verdict --ours {input.ours:q}"
            " --theirs {input.theirs:q} {params.settings} --out-csv {output.csv:q}"
            " --out-md {output.md:q} > {log:q} 2>&1"

    rule plot_reproduction:
        input:
            ours=ours_comparable,
            theirs=[f"{COMPARE}/{name}" for name in config["compare_with"]],
        output:
            figure=report(
                "figures/reproduction.pdf",
                caption="../report/reproduction.rst",
                category="Reproduction",
                labels={"figure": "reproduction (reproduction.pdf)"},
            ),
        log:
            f"{LOGS}/reproduction/figure.log",
        benchmark:
            f"{BENCHMARKS}/reproduction/figure.tsv"
        conda:
            "../../envs/analysis.yaml"
        shell:
            "python -m askdagger_mnist.cli.reproduction figure --ours {input.ours:q}"
            " --theirs {input.theirs:q} --out {output.figure:q} > {log:q} 2>&1"
