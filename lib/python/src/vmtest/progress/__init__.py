"""Internal: Live progress of long work: typed events (``events``), the one source that stamps and hands them
on (``source``), and two renderers fed from the same events: time-stamped lines (``plain``) and a
live display on a terminal (``live``, rich)."""
