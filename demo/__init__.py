"""The demo behind ``make demo``: a dataset lands in S3 and turns up in search.

Modules: ``stack`` starts and stops the servers (reusing the test harness in
``tests.services`` and ``tests.dserver``), ``story`` plays the scenes,
``watch`` observes dserver from outside, ``console`` prints the timeline,
``sample`` loads the sample dataset from ``sample_dataset/``.
"""
