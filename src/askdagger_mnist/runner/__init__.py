"""What runs one training job around the algorithm (the train rule's process).

    train_job   - train one run and publish it with its kept copy (the torch part of cli.train)
"""
