"""IsoFLOP scaling studies: shapes from a parameter count (``shapes``), the planner (``plan``), the study on disk
and its results (``study``, written as an lm-sweep study by ``sweep``), the fits with their bootstrap (``fit``), the
report and figure (``report``, ``plot``) and the check at a larger budget (``verify``). ``lm-scaling``
(``cs336_lm.cli.scaling``) is the command; docs/scaling-laws.md the method.
"""
