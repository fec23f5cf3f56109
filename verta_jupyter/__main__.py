"""`python -m verta_jupyter`: the `verta-jupyter` command line, for environments where the
console script is not on PATH (a kernel's interpreter, `pipx run`, Windows without Scripts/)."""
from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
