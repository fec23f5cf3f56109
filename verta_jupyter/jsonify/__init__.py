"""Known types <-> strict JSON: `output` (model results -> JSON), `input` (JSON -> the types a
`predict` annotation asks for), `forms` (what both sides share)."""
