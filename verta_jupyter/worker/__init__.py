"""The one fresh-process path: a model package rebuilt and run in its own interpreter.

`process` starts the child (the only place that builds its command line and environment),
`protocol` frames messages, `__main__` is the child (`python -m verta_jupyter.worker`), `client`
is the kernel side, and `rebuild` is validation's rebuild check as one worker call. `limits`
holds the memory and message limits and how each is enforced; `scratch` names temporary
folders by their owner so a killed process's are swept by the next (docs/worker.md).
"""
