"""The same functions as ``algorithm/``, faster. Each names its plain twin and the test in
tests/fast/ that binds them; ``engines.FAST`` uses one only where docs/architecture.md's swap
table shows it saves at least 5% of a full run.

    polyphase - 2x2 max-pooling as a maximum of four contiguous blocks (for query, backprop)
    query     - MC-dropout probabilities with the work shared between passes
    backprop  - training loss and gradients written out, no autograd graph
    optim     - torch.optim.SGD's Nesterov arithmetic without importing torch._dynamo
    sag       - the SAG threshold: tail-first window search, scalar Newton, vectorised imputations
"""
