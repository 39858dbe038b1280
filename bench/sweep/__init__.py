"""Calibration of the sweep's size budget (sweep/budget.py): `python -m bench.sweep.calibrate_flash`."""
