"""Where an attempt runs: ``local`` (a sandboxed subprocess on the Airflow worker) or ``kubernetes`` (a pod
through KubernetesPodOperator). Both hand the task the same result contract
(:class:`leviathan_lib.contracts.attempt.AttemptResult` as JSON), so delivery never knows which ran.
May import: ``worker`` (the contract), ``core``; only ``kubernetes`` imports Airflow (the operator).
"""
