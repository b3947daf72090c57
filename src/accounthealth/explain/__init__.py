"""Explanations: what makes up a score and what changed it, in plain sentences."""

from accounthealth.explain.drivers import ComponentPart, Explanation, MetricPart, explain

__all__ = ["ComponentPart", "Explanation", "MetricPart", "explain"]
