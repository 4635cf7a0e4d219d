"""Signal sources: each delivers :class:`Chunk` objects from its own acquisition thread.

Modules: ``base`` (the Source protocol, Chunk, ThreadedSource), ``spec`` (``open_source(SPEC, modality)``, the
entry point), ``lsl`` / ``lsl_streams`` (LSL inlets and stream resolution), ``brainflow`` /
``brainflow_boards`` (shared BrainFlow board sessions, board names and parameters), ``profiles`` (device profiles
in ``drivers/``), ``devices`` (what ``rt-physio devices`` lists), ``replay`` (the drift-free LSL player and the
``replay:`` SPEC; files are read by :func:`rt_physio.io.read_recording`), ``polar``
(Polar H10 over Bluetooth LE: scanning and the source), ``polar_protocol`` (its frames and strap clock) and
``commands`` (``rt-physio devices`` and ``rt-physio replay``).
"""

from rt_physio.sources.base import Chunk, Modality, Source, SourceStats, StreamInfo

__all__ = ["Chunk", "Modality", "Source", "SourceStats", "StreamInfo"]
