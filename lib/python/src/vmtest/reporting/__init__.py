"""Internal: What a run reports: a suite's JUnit, ``summary.json`` and ``report.html`` (``report``), the page
itself (``page``), the spans and guest clocks on its timeline (``timeline``), and a CI job's merged
results and a Nix test's verdict (``ci``, ``vmtest report`` and ``vmtest verdict``)."""
