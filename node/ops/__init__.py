"""Running a node: its folder and config, enrolment, state file, backup, metrics,
the operator API adapter, rollback floors and the assembly of its objects."""
