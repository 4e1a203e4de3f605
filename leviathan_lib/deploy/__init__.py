"""Deployment checks: the invariants every Kubernetes manifest, Helm values file and repository file
must hold (``leviathan invariants``, also run in CI). May import: ``core``.
"""
