"""mnp benchmarks: throughput, large arrays, submit→RUNNING latency, head-node memory,
MNP launch overhead, MNP bring-up time, SubmitJob throughput through boto3, container jobs.

Usage (from the repository root)::

    python benchmarks/run.py            # full sizes; writes results.json and README.md
    python benchmarks/run.py --only mnp,bringup   # a subset
    python benchmarks/run.py --only aws           # SubmitJob/DescribeJobs through boto3
    python benchmarks/run.py --only containers    # container vs process jobs vs docker run
    python benchmarks/run.py --quick    # small sizes; writes results-quick.json only

Every benchmark starts its own head node (``python -m mnp --home <tmp> up …`` in the
foreground, as a child process) with 4 local node agents (8 for the bring-up benchmark),
waits for the nodes to be ACTIVE, measures, and stops it again (SIGTERM to its PID; agents
it started that are still alive afterwards are SIGKILLed by PID). Each benchmark measures its
baseline in the same run. Results are merged into the results file (entries of benchmarks not
run this time are kept); a full-size run to the default file also rewrites README.md.

Layout: ``run.py`` is the entry point (``cli.main``). Shared helpers: ``config`` (sizes,
targets, cluster shape), ``head`` (``HeadNode``), ``cpu`` (``CpuMeter``, ``wait_quiet``),
``machine`` (``/proc``, machine info), ``polling``, ``jobs``, ``multinode``, ``stats``,
``results`` (``results.json``), ``report`` and ``readme`` (README.md). One module per
benchmark (``throughput``, ``array_job``, ``latency``, ``memory``, ``mnp_launch`` with ``mnp_raw``,
``bringup``, ``aws`` with ``aws_clients``, ``containers``), each with ``run``, ``rows`` and
``prose``; ``suite`` lists them in order.
"""

