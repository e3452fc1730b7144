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

from askdagger_mnist.settings import configuration_key


def planned_configurations():
    """Every configured run directory -> its configuration (settings.configuration_key)."""
    shared = {name: config[name] for name in
              ("batch_size", "update_every", "mc_samples", "dropout", "n_min", "n_rep")}
    planned = [(mode, variant, s) for group in FIGURE_GROUPS
               for mode, variant in group_settings(group) for s in config["s_des"]]
    sag = config["figures"]["sag"]["variant"]
    planned.append((ABLATION_MODE, sag, max(config["s_des"])))  # figures/sag.pdf's run
    found = {}
    for mode, variant, s in planned:
        key = configuration_key({**config["variants"][variant], **shared, "mode": mode, "s_des": s})
        for rep in range(config["repetitions"]):
            found.setdefault(run_dir(mode, variant, s, rep), key)
    return found


def comparable_runs(wildcards):
    """The runs of ours whose configuration an imported archive holds (the checkpoint's list)."""
    listing = checkpoints.comparable_configurations.get().output.json
    wanted = {tuple(c) for c in json.loads(Path(listing).read_text())["configurations"]}
    return [run for run, key in planned_configurations().items() if key in wanted]


if config["compare_with"]:

    localrules:
        comparable_configurations,
        reproduction_verdict,
        plot_reproduction,

    use rule import_archive as import_comparison with:
        output:
            staging=directory(f"{COMPARE}/{{name}}"),
        log:
            f"{LOGS}/import_comparison/{{name}}.log",
        benchmark:
            f"{BENCHMARKS}/import_comparison/{{name}}.tsv"

    checkpoint comparable_configurations:
        input:
            theirs=comparison_dirs(),
        output:
            json=f"{REPRODUCTION}/comparable.json",
        log:
            f"{LOGS}/reproduction/comparable.log",
        benchmark:
            f"{BENCHMARKS}/reproduction/comparable.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            ours=lambda wildcards: json.dumps(sorted(set(planned_configurations().values()))),
        shell:
            "python -m askdagger_mnist.cli.reproduction configurations --theirs {input.theirs:q}"
            " --ours-configurations {params.ours:q} --out {output.json:q} > {log:q} 2>&1"

    rule reproduction_verdict:
        input:
            ours=comparable_runs,
            theirs=comparison_dirs(),
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
            settings=reproduction_flags(),
        shell:
            "python -m askdagger_mnist.cli.reproduction verdict --ours {input.ours:q}"
            " --theirs {input.theirs:q} {params.settings} --out-csv {output.csv:q}"
            " --out-md {output.md:q} > {log:q} 2>&1"

    rule plot_reproduction:
        input:
            ours=comparable_runs,
            theirs=comparison_dirs(),
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
