"""Apply's fault points (see ``reconciler/faults.py``, where they live so that the SSH
transport in ``providers/`` can pause between an upload and its rename too)."""

from reconciler.faults import BATCH_SIZE_ENV, MARKER_ENV, PAUSE_ENV, fault_point

__all__ = ["BATCH_SIZE_ENV", "MARKER_ENV", "PAUSE_ENV", "fault_point"]
