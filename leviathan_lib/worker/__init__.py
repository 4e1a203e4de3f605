"""The worker: one attempt at one task, from a pinned commit to a patch.

It runs the same way as a local subprocess and in a Kubernetes pod (``python3 -m leviathan_lib.worker``)
and talks only through the JSON documents of :mod:`leviathan_lib.contracts.attempt`. It holds no forge
credential: it clones, runs the executor the spec names (a human-defined recipe, or a model editing
files through scope-checked tools, whose API key is the only secret it reads) and returns the diff;
delivering it is the orchestrator's job.

Layout: ``contract`` (the spec and result documents), ``attempt`` (one attempt), ``recipes`` and ``llm*``
(the executors), ``workspace`` (the untrusted checkout), ``sandbox`` with ``egress`` and ``egress_shim``
(the recipe sandbox and its only way out), ``backends/`` (where it runs). May import:
``core``, ``git``. Never Airflow (the worker image has none), except ``backends.kubernetes``, which builds
the KubernetesPodOperator on the orchestrator side.
"""
