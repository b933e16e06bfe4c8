"""The demo behind ``make demo``: a dataset lands in S3 and turns up in search.

Modules: ``stack`` starts and stops the servers (from ``devstack``, the
development stack the tests use too), ``story`` plays the scenes,
``watch`` observes dserver from outside, ``console`` prints the timeline,
``sample`` loads the sample dataset from ``sample_dataset/``.
"""
