"""Scoring: functions from metric values to 0-100, components, tiers, segments, rollups."""
