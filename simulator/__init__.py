"""Simulated wearable fleet: devices, labelled anomalies and stream faults, and publishers."""
