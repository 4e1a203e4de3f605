"""Deployment files (manifests, Helm values, CloudFormation) read in the YAML dialect their own tools read.

Safe loading, every document of a file, and CloudFormation short-form tags (``!Sub``, ``!GetAtt``, ``!If``)
read as their plain argument. Not Leviathan's strict loader (``core.yamlsrc``): these files belong to
Kubernetes, Helm and AWS, which accept what they accept.
"""

from __future__ import annotations

from typing import Any

import yaml

from leviathan_lib.core.errors import Problem, ValidationFailed


class _TolerantLoader(yaml.SafeLoader):
    """Safe loading that reads CloudFormation short-form tags (``!Sub``, ``!GetAtt``) as plain values."""


def _any_tag(
    loader: yaml.SafeLoader, _suffix: str, node: yaml.ScalarNode | yaml.SequenceNode | yaml.MappingNode
) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)


_TolerantLoader.add_multi_constructor("!", _any_tag)


def load_documents(text: str, source: str) -> list[Any]:
    """Every non-empty document of ``text``; invalid YAML is a :class:`ValidationFailed` naming ``source``."""
    try:
        return [d for d in yaml.load_all(text, Loader=_TolerantLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise ValidationFailed([Problem(source, "", f"not valid YAML/JSON: {exc}")]) from None
