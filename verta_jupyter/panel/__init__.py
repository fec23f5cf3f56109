"""The predict panel: `widget` (layout and wiring), `render` (HTML for results and errors),
`sources` (what a panel can be opened on), `endpoint` (a deployed model as a predictor)."""
