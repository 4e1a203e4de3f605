"""Evidence: the versioned records a cycle leaves, the history ledger, and the event projection.

Pure data and parsing (pydantic models); reading and writing them in the metadata DB lives in
``leviathan_lib.control`` (operator tools) and ``leviathan_lib.orchestrator`` (task outlets).
May import: ``leviathan_lib.core``.
"""
