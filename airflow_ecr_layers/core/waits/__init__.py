"""Waits on ECR: one probe per check for the sensors and the triggers, scan results and thresholds.
Imports ecr and the floor.
"""
