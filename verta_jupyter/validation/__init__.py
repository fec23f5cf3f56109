"""Validation before anything is logged: `validate` runs the checks (`checks`) and gathers a
report; `summary` renders it for a notebook or a terminal."""
