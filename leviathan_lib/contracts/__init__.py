"""The documents that cross a process or image boundary, with their versions and JSON Schema snapshots.

``attempt`` (the attempt spec the orchestrator sends and the result the worker sends back, through files,
an env var and the ``return_value`` XCom), ``recipes`` (the target repository's recipes and checks file, read
by the worker, ``leviathan validate`` and the cycle), ``xcom`` (the ``read`` and ``guardrails`` XComs ``plan``
hands to the cycle's later tasks), ``versions`` (how a versioned document is read: a named error
for a version, a cut-short document or a field a reader does not know) and ``snapshots`` (the committed
snapshots in ``schemas/``, one per document and major version; the evidence records of ``evidence`` are
snapshotted there too). The worker image imports this package, so it never imports Airflow.
May import: ``evidence``, ``core``.
"""
