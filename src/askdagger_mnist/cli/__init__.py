"""One command-line module per workflow stage (``python -m askdagger_mnist.cli.<stage>``).

    download_mnist  - rule download_mnist: MNIST present and valid under a root folder
    train           - rule train: one interactive run (engine, device, checkpoints, run lock)
    fetch_results   - rules fetch_archive, import_archive, import_run, bundle
    aggregate       - rules aggregate, aggregate_group
    plots           - rules plot_main, plot_ablation, plot_sag
    reproduction    - rules reproduction_verdict, plot_reproduction
    common          - what the commands that write files share: name what they wrote, errors
"""
